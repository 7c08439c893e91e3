"""playbooks/remove_node.yml takes the third worker (added by test_add_worker) out of the cluster.

1. A name that is not a host of the inventory: refused before any change, naming it and listing
   the inventory's hosts.
2. A Deployment on the worker with a PodDisruptionBudget that forbids any eviction (minAvailable =
   replicas): the drain does not finish, the run stops naming the pod, and the node is still
   there, cordoned, its services running.
3. Without the PDB: the node is gone from the cluster and from flannel's leases in etcd; on the host
   no flannel.1 or cni0, no unit, binary, KUBE-/FLANNEL-/CNI- chain or mount under /var/lib/kubelet
   of the collection, while an iptables rule and a chain the test added before are still there and
   the host answers; its certificates are gone from the controller's state directory.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
from labcluster import (  # noqa: E402
    ANSI,
    BUSYBOX,
    LAB_SET,
    STATE,
    ansible_playbook,
    etcdctl,
    host,
    inventory,
    kubectl,
    lab,
)

REPO = Path(__file__).resolve().parents[4]
W3 = f"{LAB_SET}-w3"
W3_ADDRESS = dict(lab.host_names(3, LAB_SET))[W3]
NS = "hardway-remove"
MARK = "hardway-test-keep"
UNITS = ["kubelet", "containerd", "flanneld", "kube-proxy", "kube-apiserver-lb", "coredns"]
BINARIES = ["/usr/local/bin/kubelet", "/usr/local/bin/kube-proxy", "/usr/local/bin/containerd",
            "/usr/local/bin/flanneld", "/usr/local/bin/runc", "/usr/local/bin/crictl", "/opt/cni/bin"]
FLANNEL_SUBNETS = "/coreos.com/network/subnets/"


def remove_node(*extra: str) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run([ansible_playbook(), "-i", inventory(), str(REPO / "playbooks" / "remove_node.yml"), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=1200, check=False)
    return proc.returncode, ANSI.sub("", proc.stdout + proc.stderr), time.monotonic() - start


def node_names() -> list[str]:
    return [n["metadata"]["name"] for n in json.loads(kubectl("get", "nodes", "-o", "json"))["items"]]


def leases() -> dict[str, dict]:
    """flannel's subnet leases in etcd: key -> value."""
    out = etcdctl("get", "--prefix", FLANNEL_SUBNETS, "-w", "json")
    kvs = json.loads(out).get("kvs") or []
    return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"])) for kv in kvs}


def unit_active(name: str, unit: str) -> bool:
    return host(name).run(f"systemctl is-active {unit}").stdout.strip() == "active"


@pytest.fixture(scope="module", autouse=True)
def third_worker():
    listed = subprocess.run(["ansible-inventory", "-i", inventory(), "--list"], capture_output=True, text=True,
                            check=False).stdout
    if W3 not in listed or W3 not in node_names():
        pytest.skip(f"{W3} is not a node of the lab cluster (test_add_worker adds it)")
    h = host(W3)
    clean_up(h)
    # The host's own rules, which the removal must leave: a rule in INPUT and a chain with a jump to it.
    h.check_output(f"iptables -I INPUT -m comment --comment {MARK} -j ACCEPT")
    h.check_output("iptables -N HWTEST-KEEP && iptables -A HWTEST-KEEP -j RETURN && iptables -A INPUT -j HWTEST-KEEP")
    kubectl("create", "namespace", NS)
    yield
    clean_up(h, wait="false")


def clean_up(h, wait: str = "true") -> None:
    """What an earlier run of these tests may have left: the namespace, the rule and the chain."""
    kubectl("delete", "namespace", NS, "--ignore-not-found", f"--wait={wait}", timeout=180, check=False)
    h.run(f"iptables -D INPUT -m comment --comment {MARK} -j ACCEPT")
    h.run("iptables -D INPUT -j HWTEST-KEEP; iptables -F HWTEST-KEEP; iptables -X HWTEST-KEEP")


def test_unknown_name_is_refused_before_any_change():
    started = host(W3).check_output("systemctl show -p ActiveEnterTimestamp kubelet")
    rc, out, _seconds = remove_node("-e", f"remove_node_names={W3},no-such-host")
    assert rc != 0
    assert "no-such-host is not a host of the inventory" in out
    assert W3 in out.split("its hosts:")[1]
    assert "nothing has been changed" in out
    assert W3 in node_names()
    node = json.loads(kubectl("get", "node", W3, "-o", "json"))
    assert not node["spec"].get("unschedulable")
    assert host(W3).check_output("systemctl show -p ActiveEnterTimestamp kubelet") == started


def test_drain_blocked_by_a_disruption_budget_leaves_the_node_cordoned():
    manifest = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pinned, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: pinned}}}}
  template:
    metadata: {{labels: {{app: pinned}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {W3}}}
      terminationGracePeriodSeconds: 1
      containers:
        - {{name: sleep, image: "{BUSYBOX}", command: [sleep, "3600"]}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: pinned, namespace: {NS}}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: pinned}}}}
"""
    kubectl("apply", "-f", "-", stdin=manifest)
    kubectl("-n", NS, "rollout", "status", "deployment/pinned", "--timeout=120s", timeout=150)
    pod = kubectl("-n", NS, "get", "pods", "-l", "app=pinned", "-o", "jsonpath={.items[0].metadata.name}")
    rc, out, seconds = remove_node("-e", f"remove_node_names={W3}", "-e", "remove_node_drain_timeout=15")
    print(f"\nremove_node stopped by the PDB after {seconds:.1f} s")
    assert rc != 0
    assert f"{NS}/{pod}" in out, out[-3000:]
    assert "stays cordoned" in out
    assert W3 in node_names()
    node = json.loads(kubectl("get", "node", W3, "-o", "json"))
    assert node["spec"].get("unschedulable") is True
    for unit in ("kubelet", "containerd", "flanneld", "kube-proxy"):
        assert unit_active(W3, unit), unit


def test_remove_node_takes_the_worker_out_and_nothing_else():
    kubectl("-n", NS, "delete", "pdb", "pinned")
    assert any(v.get("PublicIP") == W3_ADDRESS for v in leases().values())
    rc, out, seconds = remove_node("-e", f"remove_node_names={W3}")
    print(f"\nremove_node of {W3}: {seconds:.1f} s")
    assert rc == 0, out[-4000:]
    assert W3 not in node_names()
    assert not [k for k, v in leases().items() if v.get("PublicIP") == W3_ADDRESS]
    h = host(W3)
    assert h.run("true").rc == 0  # still reachable
    links = h.check_output("ip -o link show")
    assert "flannel.1" not in links and "cni0" not in links
    rules = h.check_output("iptables-save")
    assert f'--comment {MARK} -j ACCEPT' in rules
    assert ":HWTEST-KEEP" in rules and "-A INPUT -j HWTEST-KEEP" in rules
    for prefix in ("KUBE-", "FLANNEL-", "CNI-"):
        assert f":{prefix}" not in rules and f"-j {prefix}" not in rules, prefix
    for unit in UNITS:
        assert not h.file(f"/etc/systemd/system/{unit}.service").exists, unit
        assert not unit_active(W3, unit), unit
    # /var/lib/containerd is a volume in the lab hosts: the mount point stays, emptied
    assert not h.check_output("ls -A /var/lib/containerd")
    for path in BINARIES + ["/etc/kubernetes", "/var/lib/kubelet", "/etc/cni/net.d/10-flannel.conflist"]:
        assert not h.file(path).exists, path
    assert "/var/lib/kubelet" not in h.check_output("cat /proc/mounts")
    for path in (STATE / "pki" / f"kubelet-{W3}.pem", STATE / "pki" / f"kubelet-{W3}-key.pem",
                 STATE / "kubeconfigs" / f"kubelet-{W3}.kubeconfig"):
        assert not path.exists(), path
    # the other nodes keep running their pods
    assert f"{LAB_SET}-w1" in node_names()
