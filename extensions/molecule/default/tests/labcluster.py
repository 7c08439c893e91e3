"""What the verify tests share: the lab set's hosts, the controller's state, kubectl and site.yml.

The lab set comes from HARDWAY_LAB_SET (molecule's "mol" by default), the controller's state
directory from HARDWAY_LAB_STATE. The addons scenario's tests import this module too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "tests" / "testbed"))
import lab  # noqa: E402
import mirror  # noqa: E402

STATE = Path(os.environ["HARDWAY_LAB_STATE"])
LAB_SET = os.environ.get("HARDWAY_LAB_SET", "mol")
CP = f"{LAB_SET}-cp1"
WORKERS = [f"{LAB_SET}-w1", f"{LAB_SET}-w2"]
HOSTS = [CP, *WORKERS]
# The first three octets of the lab set's addresses (.11 the control plane, .21 and .22 the workers).
NET = lab.network_of(LAB_SET)[1]
KUBECONFIG = STATE / "admin.kubeconfig"
PINS = mirror.load_versions()[0]
AGNHOST = f"registry.k8s.io/e2e-test-images/agnhost:{PINS['agnhost']}"
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


def ansible_playbook() -> str:
    sibling = Path(sys.executable).parent / "ansible-playbook"
    return str(sibling) if sibling.exists() else "ansible-playbook"


def inventory() -> str:
    """The inventory of the lab set: given, or molecule's (a directory: its hosts, hosts.yml, group_vars)."""
    if os.environ.get("HARDWAY_LAB_INVENTORY"):
        return os.environ["HARDWAY_LAB_INVENTORY"]
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        return str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    if LAB_SET == "lab":
        return str(REPO / "inventories" / "lab" / "hosts.yml")
    pytest.fail(f"set HARDWAY_LAB_INVENTORY to the inventory of lab set {LAB_SET}")


def dns_mode() -> str:
    """The layout the cluster was last converged with (the side_effect step switches it to systemd)."""
    return "systemd" if host(WORKERS[0]).run("systemctl is-enabled coredns").rc == 0 else "deployment"
