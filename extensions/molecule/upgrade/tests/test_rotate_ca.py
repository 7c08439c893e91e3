"""certificates.yml rotate_ca replaces the three CAs in three steps while a Service is asked every 0.2 s.

1. Without its step, rotate_ca is refused before any change; a step out of order (switch before
   stage) is refused too.
2. stage: every host trusts both CAs (its CA files hold two certificates); nothing is signed by the
   new ones yet.
3. switch: every leaf on the hosts is signed by the new CAs, except the API server's serving
   certificate, which stays on the old CA; the admin kubeconfigs from before the rotation (trusting
   the old CA only) and from the stage step (client certificates from the old CA) still work.
4. finish: the hosts trust only the new CAs, the API server's certificate is the new CA's; both old
   admin kubeconfigs are refused, the new one works;
   every node is Ready, the workload still serves, and site.yml afterwards changes nothing.
At most 1% of the requests fail over the three steps (the goal is none).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import mirror
from labcluster import (
    CP,
    HOSTS,
    KUBECONFIG,
    STATE,
    WORKERS,
    changed_by_host,
    host,
    kubectl,
    playbook,
)
from serviceprobe import ServiceProbe

NS = "hardway-rotate"
PKI = "/etc/kubernetes/pki"
CAS = {CP: ["kubernetes-ca", "etcd-ca", "front-proxy-ca"], **{w: ["kubernetes-ca", "etcd-ca"] for w in WORKERS}}
# leaf -> its CA, on each host
LEAVES = {CP: {"kube-apiserver": "kubernetes-ca", "kube-apiserver-etcd-client": "etcd-ca",
               f"etcd-server-{CP}": "etcd-ca", "front-proxy-client": "front-proxy-ca"},
          **{w: {f"kubelet-{w}": "kubernetes-ca", "etcd-client-flannel": "etcd-ca"} for w in WORKERS}}
# the API server's certificate stays on the old CA until the last step, for kubeconfigs that trust only it
KEPT = {f"{CP}:kube-apiserver"}
ROTATE = ["-e", "certificates_action=rotate_ca"]
BEFORE = "admin-before-rotation.kubeconfig"
AFTER_STAGE = "admin-after-stage.kubeconfig"
probe_results: list[dict] = []


def fingerprints(name: str, path: str) -> list[str]:
    """SHA-256 fingerprints of every certificate in a PEM file on a lab host."""
    out = host(name).check_output(
        f"awk '/BEGIN CERT/{{n++}} {{print > (\"/run/cert-\" n \".pem\")}}' {path} && "
        "for f in /run/cert-*.pem; do openssl x509 -noout -fingerprint -sha256 -in $f; done; rm -f /run/cert-*.pem")
    return [line.split("=", 1)[1] for line in out.splitlines()]


def issuer_key_ids() -> dict[str, str]:
    """host:leaf -> the authority key identifier of the CA that signed it."""
    out = {}
    for name, leaves in LEAVES.items():
        for leaf in leaves:
            text = host(name).check_output(f"openssl x509 -noout -ext authorityKeyIdentifier -in {PKI}/{leaf}.pem")
            out[f"{name}:{leaf}"] = text.splitlines()[-1].strip()
    return out


def ca_key_id(name: str, ca: str, index: int = 0) -> str:
    cert = host(name).check_output(
        f"awk -v want={index + 1} '/BEGIN CERT/{{n++}} n==want' {PKI}/{ca}.pem | "
        "openssl x509 -noout -ext subjectKeyIdentifier")
    return cert.splitlines()[-1].strip()


def works(kubeconfig: Path) -> bool:
    proc = subprocess.run([str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(kubeconfig), "get", "nodes",
                           "--request-timeout=10s"], capture_output=True, text=True, check=False)
    return proc.returncode == 0


def step(url: str, name: str) -> str:
    with ServiceProbe(WORKERS[0], url) as probe:
        time.sleep(1)
        rc, out, seconds = playbook("certificates.yml", *ROTATE, "-e", f"certificates_rotate_step={name}")
        time.sleep(1)
        result = probe.stop()
    probe_results.append(result)
    print(f"\nrotate_ca {name} took {seconds:.0f} s; requests made {result['made']}, failed {result['failed']}, "
          f"longest failure {result['longest_outage']} s")
    assert rc == 0, out[-5000:]
    assert result["failed"] <= result["made"] / 100, result
    return out


def test_rotate_ca_needs_its_step_and_the_steps_in_order():
    rc, out, _seconds = playbook("certificates.yml", *ROTATE)
    assert rc != 0 and "needs certificates_rotate_step: stage (1), switch (2) or finish (3)" in out
    rc, out, _seconds = playbook("certificates.yml", *ROTATE, "-e", "certificates_rotate_step=switch")
    assert rc != 0 and "run the stage step first" in out
    assert all(c == 0 for c in changed_by_host(out).values())


def test_stage_makes_every_host_trust_both_cas(web_service):
    shutil.copy(KUBECONFIG, STATE / BEFORE)
    before = {(name, ca): fingerprints(name, f"{PKI}/{ca}.pem") for name, cas in CAS.items() for ca in cas}
    signed_before = issuer_key_ids()
    step(web_service, "stage")
    for (name, ca), old in before.items():
        now = fingerprints(name, f"{PKI}/{ca}.pem")
        assert len(old) == 1 and len(now) == 2 and now[0] == old[0], (name, ca, now)
    assert issuer_key_ids() == signed_before  # nothing signed by the new CAs yet
    shutil.copy(KUBECONFIG, STATE / AFTER_STAGE)
    assert works(STATE / BEFORE)


def test_switch_signs_every_leaf_with_the_new_cas_and_old_kubeconfigs_still_work(web_service):
    step(web_service, "switch")
    signed = issuer_key_ids()
    for name, leaves in LEAVES.items():
        for leaf, ca in leaves.items():
            # the new CA comes first in the bundle now, the old one second
            new, old = ca_key_id(name, ca, 0), ca_key_id(name, ca, 1)
            assert signed[f"{name}:{leaf}"] == (old if f"{name}:{leaf}" in KEPT else new), (name, leaf)
    assert works(STATE / BEFORE) and works(STATE / AFTER_STAGE)


def test_finish_drops_the_old_cas_and_the_old_admin_kubeconfigs(web_service):
    step(web_service, "finish")
    for name, cas in CAS.items():
        for ca in cas:
            assert len(fingerprints(name, f"{PKI}/{ca}.pem")) == 1, (name, ca)
    signed = issuer_key_ids()
    for name, leaves in LEAVES.items():
        for leaf, ca in leaves.items():
            assert signed[f"{name}:{leaf}"] == ca_key_id(name, ca, 0), (name, leaf)
    assert not works(STATE / BEFORE) and not works(STATE / AFTER_STAGE)
    assert works(KUBECONFIG)
    ready = kubectl("get", "nodes", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')]"
                    ".status}{' '}{end}").split()
    assert ready == ["True"] * len(WORKERS)
    kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=60s", timeout=90)
    made = sum(r["made"] for r in probe_results)
    failed = sum(r["failed"] for r in probe_results)
    print(f"\nrotate_ca, the three steps: requests made {made}, failed {failed}")


def test_site_after_the_rotation_changes_nothing():
    rc, out, _seconds = playbook("site.yml")
    assert rc == 0, out[-3000:]
    counts = changed_by_host(out)
    assert set(counts) >= set(HOSTS) and all(c == 0 for c in counts.values()), counts
