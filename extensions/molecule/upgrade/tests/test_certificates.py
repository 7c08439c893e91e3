"""playbooks/certificates.yml on the lab cluster.

1. check lists every certificate of every host and of the controller's state, with its expiry and
   days left, and exits 0; with a warning window longer than the certificates' lifetime it fails,
   naming each host.
2. renew re-issues every leaf certificate from the same CAs while a worker host asks a Service every
   0.2 s: at most 1% of the requests fail (the goal is none); every leaf on the hosts has a new
   serial, every CA the old one; the cluster answers with the new admin kubeconfig and every node is
   Ready; site.yml afterwards changes nothing.
"""

from __future__ import annotations

import time

from labcluster import (
    CP,
    HOSTS,
    WORKERS,
    changed_by_host,
    host,
    kubectl,
    playbook,
)
from serviceprobe import ServiceProbe

NS = "hardway-certificates"
PKI = "/etc/kubernetes/pki"
LEAVES = {CP: ["kube-apiserver", "kube-apiserver-etcd-client", "kube-apiserver-kubelet-client", "front-proxy-client",
               f"etcd-server-{CP}", f"etcd-peer-{CP}"],
          **{w: [f"kubelet-{w}", "etcd-client-flannel"] for w in WORKERS}}
AUTHORITIES = ["kubernetes-ca", "etcd-ca"]


def serials() -> dict[str, str]:
    """host:file -> serial of every leaf and CA named above."""
    out = {}
    for name, leaves in LEAVES.items():
        for cert in leaves + (AUTHORITIES if name == CP else ["kubernetes-ca"]):
            serial = host(name).check_output(f"openssl x509 -noout -serial -in {PKI}/{cert}.pem")
            out[f"{name}:{cert}"] = serial.split("=", 1)[1]
    return out


def test_check_lists_every_certificate_with_its_days_left():
    rc, out, seconds = playbook("certificates.yml")
    print(f"\ncertificates.yml (check) took {seconds:.0f} s")
    assert rc == 0, out[-3000:]
    for leaves in LEAVES.values():
        for cert in leaves:
            assert f"{PKI}/{cert}.pem" in out, cert
    assert "/etc/kubernetes/admin-local.kubeconfig:client-certificate-data" in out
    assert "/etc/kubernetes/kubelet.kubeconfig:client-certificate-data" in out
    assert "admin.kubeconfig:client-certificate-data" in out  # the controller's state directory
    assert " 364 days  " in out or " 365 days  " in out


def test_check_fails_when_a_certificate_expires_within_the_warning_window():
    rc, out, _seconds = playbook("certificates.yml", "-e", "certificates_warn_days=400")
    assert rc != 0
    for name in HOSTS:
        assert f"certificate(s) on {name} expire within 400 days" in out, name


def test_renew_reissues_every_leaf_while_the_service_answers(web_service):
    before = serials()
    with ServiceProbe(WORKERS[0], web_service) as probe:
        time.sleep(2)
        rc, out, seconds = playbook("certificates.yml", "-e", "certificates_action=renew")
        time.sleep(2)
        result = probe.stop()
    print(f"\ncertificates.yml renew took {seconds:.0f} s; requests made {result['made']}, failed "
          f"{result['failed']}, longest failure {result['longest_outage']} s")
    assert rc == 0, out[-5000:]
    assert result["made"] > 50 and result["failed"] <= result["made"] / 100, result
    after = serials()
    kept = sorted(k for k in before if before[k] == after[k])
    assert kept == sorted(k for k in before if k.split(":")[1] in AUTHORITIES), kept
    nodes = kubectl("get", "nodes", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')]"
                    ".status}{' '}{end}").split()
    assert nodes == ["True"] * len(WORKERS)
    kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=60s", timeout=90)


def test_site_after_renew_changes_nothing():
    rc, out, _seconds = playbook("site.yml")
    assert rc == 0, out[-3000:]
    counts = changed_by_host(out)
    assert set(counts) >= set(HOSTS) and all(c == 0 for c in counts.values()), counts
