"""Unit tests of floor.py's pure parts (no Docker needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import floor  # noqa: E402


def test_kept_leaves_out_runtime_state_and_keeps_the_converge_files():
    assert floor.kept("/etc/kubernetes/pki/etcd-ca.pem")
    assert floor.kept("/usr/local/bin/kubelet")
    assert floor.kept("/var/lib/etcd")  # the data directory itself (owner, mode), not its member data
    assert not floor.kept("/var/lib/etcd/member/wal")
    assert floor.kept("/var/lib/kubelet/config.yaml")
    assert not floor.kept("/var/lib/kubelet/pods")
    assert not floor.kept("/var/lib/cni/networks/cbr0/lock")
    assert not floor.kept("/root")
    assert not floor.kept("/etc/passwd") and not floor.kept("/etc/shadow-")
    assert not floor.kept("/etc/machine-id")


def test_wait_script_is_valid_bash_and_fails_after_its_timeout():
    script = floor.wait_script("false", timeout=0.3, interval=0.1)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "not within" in proc.stderr
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", floor.wait_script("true") + "echo after"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == "after\n"
