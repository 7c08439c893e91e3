"""The example inventories an operator copies parse, and have the layouts the README describes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def groups(inventory: str) -> dict:
    tool = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run([str(tool) if tool.exists() else shutil.which("ansible-inventory"), "-i",
                           str(REPO / "inventories" / inventory / "hosts.yml"), "--list"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    return {name: data[name]["hosts"] for name in ("control_plane", "etcd", "workers")}


@pytest.mark.parametrize("inventory, control_planes", [("example", ["cp1"]), ("ha", ["cp1", "cp2", "cp3"])])
def test_example_inventories(inventory, control_planes):
    found = groups(inventory)
    assert found == {"control_plane": control_planes, "etcd": control_planes, "workers": ["node1", "node2"]}
    assert len(found["etcd"]) % 2 == 1
