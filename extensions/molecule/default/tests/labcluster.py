"""What the verify tests share: the lab set's hosts, the controller's state, kubectl and site.yml.

The lab set comes from HARDWAY_LAB_SET (molecule's "mol" by default), the controller's state
directory from HARDWAY_LAB_STATE, the number of control-plane hosts (which are the etcd members
too) from HARDWAY_LAB_CONTROL_PLANES (1; the ha scenario sets 3). The addons and ha scenarios'
tests import this module too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "tests" / "testbed"))
import lab  # noqa: E402
import mirror  # noqa: E402

STATE = Path(os.environ["HARDWAY_LAB_STATE"])
LAB_SET = os.environ.get("HARDWAY_LAB_SET", "mol")
CONTROL_PLANE_COUNT = int(os.environ.get("HARDWAY_LAB_CONTROL_PLANES", "1"))
# Names and addresses as tests/testbed/lab.py gives them: control planes on .11, .12, ..., workers on .21, .22.
ADDRESS = dict(lab.host_names(2, LAB_SET, CONTROL_PLANE_COUNT))
CONTROL_PLANES = [name for name in ADDRESS if "-cp" in name]
CP = CONTROL_PLANES[0]
WORKERS = [f"{LAB_SET}-w1", f"{LAB_SET}-w2"]
HOSTS = [*CONTROL_PLANES, *WORKERS]
# The first three octets of the lab set's addresses.
NET = lab.network_of(LAB_SET)[1]
# flanneld last: a control plane without a kubelet still joins the pod network
# (cluster_control_plane_pod_network), so that its API server reaches webhooks.
CONTROL_PLANE_UNITS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "flanneld"]
# On the workers: the local API load balancer first (the lab sets no cluster_apiserver_endpoint).
WORKER_UNITS = ["kube-apiserver-lb", "containerd", "flanneld", "kubelet", "kube-proxy"]
KUBECONFIG = STATE / "admin.kubeconfig"
PINS = mirror.load_versions()[0]
AGNHOST = f"hardway.local/agnhost:{PINS['agnhost']}"
BUSYBOX = f"hardway.local/busybox:{PINS['busybox']}"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def host(name: str):
    return testinfra.get_host(f"docker://{name}")


def kubectl(*args: str, stdin: str | None = None, timeout: int = 120, check: bool = True) -> str:
    """kubectl from the mirror with the admin kubeconfig site.yml wrote on this machine."""
    cmd = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(KUBECONFIG), *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def etcdctl(*args: str, on: str | None = None, endpoints: list[str] | None = None, check: bool = True) -> str:
    """etcdctl on a control-plane host (the first by default) with the API server's etcd client certificate
    (an etcd root user), at that host's own member or at the given hosts' members."""
    urls = ",".join(f"https://{ADDRESS[name]}:2379" for name in endpoints) if endpoints else "https://127.0.0.1:2379"
    cmd = (f"ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints {urls} --command-timeout 10s "
           "--cacert /etc/kubernetes/pki/etcd-ca.pem "
           "--cert /etc/kubernetes/pki/kube-apiserver-etcd-client.pem "
           "--key /etc/kubernetes/pki/kube-apiserver-etcd-client-key.pem " + " ".join(args))
    h = host(on or CP)
    if check:
        return h.check_output(cmd)
    result = h.run(cmd)
    return result.stdout if result.rc == 0 else ""


def etcd_healthy(names: list[str], on: str | None = None) -> bool:
    """Whether etcd reports every one of these members healthy, each asked at its own endpoint."""
    out = etcdctl("endpoint health -w json", on=on, endpoints=names, check=False)
    health = json.loads(out) if out else []
    return len(health) == len(names) and all(item.get("health") for item in health)


def registry_keys(on: str | None = None) -> set[str]:
    """Every key under /registry, read at one control-plane host's member (the first by default)."""
    return set(etcdctl("get /registry --prefix --keys-only", on=on).split())


def ansible_playbook() -> str:
    sibling = Path(sys.executable).parent / "ansible-playbook"
    return str(sibling) if sibling.exists() else "ansible-playbook"


def playbook(name: str, *extra: str, timeout: int = 1800) -> tuple[int, str, float]:
    """``ansible-playbook playbooks/<name>`` on the lab set's inventory, from the repository:
    its exit status, its output without colours, and the seconds it took."""
    start = time.monotonic()
    proc = subprocess.run([ansible_playbook(), "-i", inventory(), *extra, str(REPO / "playbooks" / name)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, ANSI.sub("", proc.stdout + proc.stderr), time.monotonic() - start


def changed_by_host(output: str) -> dict[str, int]:
    """The changed count of each host in a playbook's recap."""
    return {m.group(1): int(m.group(3)) for m in RECAP.finditer(output)}


def inventory() -> str:
    """The inventory of the lab set: given, or molecule's (a directory: its hosts, hosts.yml, group_vars)."""
    if os.environ.get("HARDWAY_LAB_INVENTORY"):
        return os.environ["HARDWAY_LAB_INVENTORY"]
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        return str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    if LAB_SET == "lab":
        return str(REPO / "inventories" / "lab" / "hosts.yml")
    pytest.fail(f"set HARDWAY_LAB_INVENTORY to the inventory of lab set {LAB_SET}")


def units(name: str) -> list[str]:
    """The collection's services on a lab host, in start order (CoreDNS on workers in the systemd layout)."""
    if name in CONTROL_PLANES:
        return list(CONTROL_PLANE_UNITS)
    return WORKER_UNITS + (["coredns"] if dns_mode() == "systemd" else [])


def dns_mode() -> str:
    """The layout the cluster was last converged with (the side_effect step switches it to systemd)."""
    return "systemd" if host(WORKERS[0]).run("systemctl is-enabled coredns").rc == 0 else "deployment"
