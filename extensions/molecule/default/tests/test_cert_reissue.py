"""A certificate re-issued on the controller restarts exactly the services that use it.

Each component role installs the certificates, keys and kubeconfigs its own
service reads in the same step as its unit, so a changed one notifies that
role's handler. Here two leaves are deleted in the controller's state
directory: one worker's kubelet certificate (read by that worker's kubelet,
in its certificate and its kubeconfig) and the kube-proxy certificate (read by
every worker's kube-proxy, through its kubeconfig). One run of site.yml
re-issues both (each with its old key); then exactly that worker's kubelet and
every worker's kube-proxy must have restarted, and no other service on any
host (MainPID and start time of every service the collection runs, before and
after). The hosts must have the new files, kubelet must serve its new
certificate, and the cluster must be healthy.

Runs in molecule's verify steps (inventory: the directory of
MOLECULE_INVENTORY_FILE) and by hand against another lab set, for example:

    HARDWAY_LAB_SET=dev2 HARDWAY_LAB_STATE=/tmp/dev2/state \
    HARDWAY_LAB_INVENTORY=/tmp/dev2/hosts.yml pytest extensions/molecule/default/tests/test_cert_reissue.py
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from labcluster import ANSI, HOSTS, RECAP, REPO, STATE, WORKERS, ansible_playbook, dns_mode, host, inventory
from labcluster import kubectl as lab_kubectl
from labcluster import units as lab_units

PKI, CONFIG = "/etc/kubernetes/pki", "/etc/kubernetes"
# The leaves deleted on the controller, and the services that read them.
KUBELET_CERT = STATE / "pki" / f"kubelet-{WORKERS[0]}.pem"
PROXY_CERT = STATE / "pki" / "kube-proxy.pem"
EXPECTED = {(WORKERS[0], "kubelet"), (WORKERS[0], "kube-proxy"), (WORKERS[1], "kube-proxy")}
# The files on the hosts that must then be the controller's new ones.
INSTALLED = {
    (WORKERS[0], f"{PKI}/kubelet-{WORKERS[0]}.pem"): KUBELET_CERT,
    (WORKERS[0], f"{CONFIG}/kubelet.kubeconfig"): STATE / "kubeconfigs" / f"kubelet-{WORKERS[0]}.kubeconfig",
    (WORKERS[0], f"{CONFIG}/kube-proxy.kubeconfig"): STATE / "kubeconfigs" / "kube-proxy.kubeconfig",
    (WORKERS[1], f"{CONFIG}/kube-proxy.kubeconfig"): STATE / "kubeconfigs" / "kube-proxy.kubeconfig",
}


def kubectl(*args: str) -> str:
    return lab_kubectl(*args, timeout=60)


def starts() -> dict[tuple[str, str], tuple[str, str]]:
    """(host, service) -> (MainPID, start time): they move only when the service (re)starts."""
    out = {}
    for name in HOSTS:
        units = lab_units(name)
        text = host(name).check_output("systemctl show --property=Id,MainPID,ExecMainStartTimestampMonotonic "
                                       + " ".join(units))
        for block in text.strip().split("\n\n"):
            props = dict(line.split("=", 1) for line in block.splitlines())
            unit = props["Id"].removesuffix(".service")
            assert props["MainPID"] != "0", f"{unit} does not run on {name}"
            out[name, unit] = (props["MainPID"], props["ExecMainStartTimestampMonotonic"])
        assert {u for h, u in out if h == name} == set(units)
    return out


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def served_certificate(name: str, port: int) -> str:
    """The certificate a daemon on a host serves on 127.0.0.1:<port>, as PEM."""
    script = f"import ssl; print(ssl.get_server_certificate(('127.0.0.1', {port})), end='')"
    return host(name).check_output(f'python3 -c "{script}"')


def pem_body(text: str) -> str:
    return "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))


@pytest.fixture(scope="module")
def reissue():
    """Delete the two leaves on the controller, run site.yml once, and record what moved."""
    for path in (KUBELET_CERT, PROXY_CERT):
        assert path.exists(), f"{path} is missing: converge the lab set first"
    old = {path: sha256_file(path) for path in (KUBELET_CERT, PROXY_CERT)}
    keys = {path: sha256_file(path.with_name(path.stem + "-key.pem")) for path in old}
    before = starts()
    for path in old:
        path.unlink()
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    cmd = [ansible_playbook(), "-i", inventory(), str(REPO / "playbooks" / "site.yml"),
           "-e", f"cluster_dns_mode={dns_mode()}"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    print(f"site.yml after deleting two certificates took {seconds:.0f} s")  # shown with pytest -s
    return {
        "rc": proc.returncode,
        "output": ANSI.sub("", proc.stdout + proc.stderr),
        "before": before,
        "after": starts(),
        "old": old,
        "keys": keys,
    }


def test_site_succeeds(reissue):
    assert reissue["rc"] == 0, reissue["output"][-6000:]
    assert {m[0] for m in RECAP.findall(reissue["output"])} == set(HOSTS)
    assert all(m[3] == "0" and m[4] == "0" for m in RECAP.findall(reissue["output"]))


def test_certificates_reissued_with_their_keys(reissue):
    for path, digest in reissue["old"].items():
        assert path.exists() and sha256_file(path) != digest, f"{path} was not re-issued"
        assert sha256_file(path.with_name(path.stem + "-key.pem")) == reissue["keys"][path], f"{path}: new key"


def test_exactly_the_services_that_use_them_restarted(reissue):
    before, after = reissue["before"], reissue["after"]
    assert set(before) == set(after)
    restarted = {unit for unit in before if before[unit] != after[unit]}
    assert restarted == EXPECTED, f"restarted: {sorted(restarted)}, expected: {sorted(EXPECTED)}"


def test_hosts_have_the_new_files(reissue):
    for (name, dest), src in INSTALLED.items():
        got = host(name).check_output(f"sha256sum {dest}").split()[0]
        assert got == sha256_file(src), f"{dest} on {name} is not the controller's {src}"
    # the other worker's kubelet files were left alone, and it got no other kubelet's certificate
    other = WORKERS[1]
    assert host(other).check_output(f"sha256sum {PKI}/kubelet-{other}.pem").split()[0] == \
        sha256_file(STATE / "pki" / f"kubelet-{other}.pem")
    assert not host(other).file(f"{PKI}/kubelet-{WORKERS[0]}.pem").exists


def test_kubelet_serves_its_new_certificate(reissue):
    assert pem_body(served_certificate(WORKERS[0], 10250)) == pem_body(KUBELET_CERT.read_text())


def test_cluster_is_healthy(reissue):
    deadline = time.monotonic() + 120
    while True:
        nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
        ready = {n["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in n["status"]["conditions"]) for n in nodes}
        healthy = [host(w).run(f"curl -fsS -m 3 http://127.0.0.1:{port}/healthz").rc == 0
                   for w in WORKERS for port in (10248, 10256)]  # kubelet, kube-proxy
        if all(ready.get(w) for w in WORKERS) and all(healthy):
            break
        assert time.monotonic() < deadline, f"nodes ready: {ready}, kubelet/kube-proxy healthz: {healthy}"
        time.sleep(2)
    assert kubectl("get", "--raw", "/readyz").strip() == "ok"
    # the API server reaches the restarted kubelet with its client certificate (logs go through it)
    pods = json.loads(kubectl("get", "pods", "-A", "-o", "json", "--field-selector",
                              f"spec.nodeName={WORKERS[0]}"))["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    if running:
        pod = running[0]
        kubectl("logs", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"], "--tail=1")
