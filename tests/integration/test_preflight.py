"""Preflight refuses bad input with messages that name the variable or host,
before any host changes.

site.yml runs against an inventory whose hosts all point at this machine with
the local connection: preflight only reads (facts, variables), and the run
must stop in its first play with changed=0 everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def inventory(tmp_path: Path, hosts: dict[str, list[str]], group_vars: dict,
              addresses: dict[str, str] | None = None) -> Path:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    children = {}
    for group, members in hosts.items():
        children[group] = {"hosts": {h: dict(local, cluster_node_address=(addresses or {}).get(h, f"192.0.2.{i + 10}"))
                                     for i, h in enumerate(members)}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": children}}))
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump(
        dict({"cluster_state_dir": str(tmp_path / "state")}, **group_vars)))
    return path


def run_site(inv: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", ANSIBLE_NOCOLOR="1")
    return subprocess.run(["ansible-playbook", "-i", str(inv), str(REPO / "playbooks" / "site.yml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


GOOD = {"control_plane": ["cp1"], "etcd": ["cp1"], "workers": ["node1", "node2"]}


def assert_refused(proc: subprocess.CompletedProcess, *messages: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for message in messages:
        assert message in out, f"{message!r} not in output:\n{out[-3000:]}"
    # nothing past the first play ran, nothing changed
    assert "Put binaries, certificates and kubeconfigs" not in out
    recap = out.split("PLAY RECAP", 1)[1]
    assert "changed=0" in recap and "changed=1" not in recap


@pytest.mark.parametrize("hosts,group_vars,messages", [
    ({"control_plane": ["cp1"], "etcd": ["cp1", "node1"], "workers": ["node1"]}, {},
     ['cluster_etcd_group = "etcd": group "etcd" has 2 members (cp1, node1): etcd needs an odd number']),
    ({"control_plane": ["cp1"], "etcd": ["cp1"]}, {},
     ['cluster_worker_group = "workers": names the inventory group "workers", which is missing']),
    (GOOD, {"cluster_service_cidr": "10.200.8.0/24"},
     ['cluster_pod_cidr = "10.200.0.0/16": overlaps cluster_service_cidr 10.200.8.0/24']),
    (GOOD, {"cluster_pod_cidr": "10.300.0.0/16"},
     ['cluster_pod_cidr = "10.300.0.0/16": must be an IPv4 network in CIDR form']),
    (GOOD, {"cluster_versions": {"kubernetes": "1.99.0"}},
     ['cluster_versions.kubernetes = "1.99.0": is not a version this collection knows checksums for']),
    (GOOD, {"cluster_dns_mode": "dnsmasq"}, ['cluster_dns_mode = "dnsmasq": must be one of deployment, systemd']),
    ({"control_plane": ["cp1"], "etcd": ["cp1"], "workers": ["Node_1"]}, {},
     ['host Node_1: cluster_node_name = "Node_1": is the Kubernetes node name and must be lower-case']),
])
def test_preflight_refuses(tmp_path, hosts, group_vars, messages):
    assert_refused(run_site(inventory(tmp_path, hosts, group_vars)), *messages)


def test_preflight_names_host_address_inside_pod_network(tmp_path):
    inv = inventory(tmp_path, GOOD, {}, addresses={"node2": "10.200.5.5"})
    assert_refused(run_site(inv),
                   'host node2: cluster_node_address = "10.200.5.5": lies inside cluster_pod_cidr 10.200.0.0/16')


def test_preflight_names_a_missing_address(tmp_path):
    inv = inventory(tmp_path, GOOD, {}, addresses={"node1": "not-an-ip"})
    assert_refused(run_site(inv), 'host node1: cluster_node_address = "not-an-ip": must be an IPv4 address')
