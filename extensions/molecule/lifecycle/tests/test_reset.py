"""playbooks/reset.yml takes the collection off every lab host, and site.yml brings the cluster back.

1. Without reset_confirm: refused, saying what it would remove; every service still runs, started
   at the same time as before.
2. With it: on every host no unit, binary, configuration directory, interface (flannel.1, cni0),
   iptables chain (KUBE-, FLANNEL-, CNI-) or mount under /var/lib/kubelet of the collection is
   left; a rule of the host's own is still there and the host answers; etcd's data stays.
3. site.yml again: every node Ready, and a ConfigMap made before the reset is still there (the same
   cluster, from the etcd data that was kept).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
from labcluster import ANSI, CONTROL_PLANES, RECAP, WORKERS, ansible_playbook, host, inventory, kubectl  # noqa: E402

REPO = Path(__file__).resolve().parents[4]
MARK = "hardway-test-reset-keep"
# What the collection leaves on a host, and the test looks for after the reset.
UNITS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-apiserver-lb",
         "containerd", "flanneld", "kubelet", "kube-proxy", "coredns"]
BINARIES = ["etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
            "kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "crictl",
            "flanneld", "coredns"]
PATHS = ["/etc/kubernetes", "/opt/cni/bin", "/etc/cni/net.d/10-flannel.conflist", "/var/lib/kubelet",
         "/var/lib/kube-proxy", "/etc/containerd", "/etc/coredns", "/var/lib/cni",
         "/var/lib/hardway", "/var/cache/hardway", "/etc/sysctl.d/90-hardway-kubernetes.conf",
         "/etc/modules-load.d/hardway-kubernetes.conf"]
INTERFACES = ["flannel.1", "cni0"]
CHAIN_PREFIXES = ["KUBE-", "FLANNEL-", "CNI-"]


def playbook(name: str, *extra: str, timeout: int = 1800) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run([ansible_playbook(), "-i", inventory(), str(REPO / "playbooks" / name), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, ANSI.sub("", proc.stdout + proc.stderr), time.monotonic() - start


def lab_hosts() -> list[str]:
    listed = json.loads(subprocess.run(["ansible-inventory", "-i", inventory(), "--list"], capture_output=True,
                                       text=True, check=True).stdout)
    return sorted(listed["_meta"]["hostvars"])


def started_at(name: str, unit: str) -> str:
    return host(name).check_output(f"systemctl show -p ActiveEnterTimestamp,ActiveState {unit}")


def test_reset_without_confirmation_is_refused():
    before = {(n, u): started_at(n, u) for n in (*CONTROL_PLANES, *WORKERS) for u in ("etcd", "kubelet")
              if host(n).run(f"systemctl is-enabled {u}").rc == 0}
    rc, out, _seconds = playbook("reset.yml")
    assert rc != 0
    assert "reset_confirm=true" in out and "Nothing has been changed" in out
    assert "iptables chains KUBE-*" in out
    assert {key: started_at(*key) for key in before} == before


def test_reset_takes_everything_off_and_site_brings_the_cluster_back():
    hosts = lab_hosts()
    kubectl("create", "configmap", "hardway-reset-keep", "--from-literal=kept=yes", check=False)
    for name in hosts:
        host(name).check_output(f"iptables -I INPUT -m comment --comment {MARK} -j ACCEPT")
    try:
        rc, out, seconds = playbook("reset.yml", "-e", "reset_confirm=true")
        print(f"\nreset.yml on {len(hosts)} hosts: {seconds:.1f} s")
        assert rc == 0, out[-4000:]
        for name in hosts:
            h = host(name)
            assert h.run("true").rc == 0, name
            for unit in UNITS:
                assert not h.file(f"/etc/systemd/system/{unit}.service").exists, (name, unit)
                assert h.run(f"systemctl is-active {unit}").stdout.strip() != "active", (name, unit)
            for binary in BINARIES:
                assert not h.file(f"/usr/local/bin/{binary}").exists, (name, binary)
            for path in PATHS:
                assert not h.file(path).exists, (name, path)
            # a volume in the lab hosts: the mount point stays, emptied
            assert not h.check_output("ls -A /var/lib/containerd 2>/dev/null || true"), name
            links = h.check_output("ip -o link show")
            for link in INTERFACES:
                assert f" {link}:" not in links, (name, link)
            rules = h.check_output("iptables-save")
            for prefix in CHAIN_PREFIXES:
                assert f":{prefix}" not in rules and f"-j {prefix}" not in rules, (name, prefix)
            assert f"--comment {MARK} -j ACCEPT" in rules, name
            assert "/var/lib/kubelet" not in h.check_output("cat /proc/mounts"), name
        for name in CONTROL_PLANES:
            assert host(name).file("/var/lib/etcd/member").is_directory, name  # etcd's data stays

        rc, out, seconds = playbook("site.yml")
        print(f"site.yml after the reset: {seconds:.1f} s")
        assert rc == 0, out[-4000:]
        assert all(int(recap[4]) == 0 for recap in RECAP.findall(out))
        nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
        ready = {n["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in n["status"]["conditions"]) for n in nodes}
        assert all(ready.get(w) for w in WORKERS), ready
        assert kubectl("get", "configmap", "hardway-reset-keep", "-o", "jsonpath={.data.kept}") == "yes"
    finally:
        for name in hosts:
            host(name).run(f"iptables -D INPUT -m comment --comment {MARK} -j ACCEPT")
        kubectl("delete", "configmap", "hardway-reset-keep", "--ignore-not-found", check=False)
