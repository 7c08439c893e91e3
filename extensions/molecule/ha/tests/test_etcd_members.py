"""An etcd member leaves the HA cluster with remove_node.yml and comes back (before test_failover.py).

1. remove_node.yml naming the third control-plane host without the etcd step: refused, nothing changed.
2. With -e remove_node_etcd=true: the member leaves through etcd's API, the two that stay are healthy,
   no key is lost, and on the host etcd is stopped with its data directory moved aside.
3. site.yml with an inventory without the host: refused by preflight (two etcd members, an even count).
4. site.yml with the host back in the inventory: it joins as a new learner, is promoted, and the
   cluster has its three members and control planes again (as the later tests expect).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
from labcluster import (  # noqa: E402
    ANSI,
    CONTROL_PLANES,
    LAB_SET,
    REPO,
    WORKERS,
    ansible_playbook,
    etcd_healthy,
    etcdctl,
    host,
    kubectl,
    lab,
)

NS = "hardway-etcd-members"
pytestmark = pytest.mark.skipif(len(CONTROL_PLANES) < 3, reason="the HA layout (HARDWAY_LAB_CONTROL_PLANES=3)")


@pytest.fixture(scope="module")
def inventories(tmp_path_factory):
    work = tmp_path_factory.mktemp("etcd-members")
    (work / "group_vars").symlink_to(REPO / "inventories" / "lab" / "group_vars")
    out = {}
    for count in (len(CONTROL_PLANES), len(CONTROL_PLANES) - 1):
        out[count] = work / f"hosts-{count}.yml"
        out[count].write_text(lab.inventory(len(WORKERS), LAB_SET, count))
    return out


def playbook(inventory: Path, name: str, *extra: str) -> tuple[int, str, float]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    start = time.monotonic()
    proc = subprocess.run([ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / name), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    return proc.returncode, ANSI.sub("", proc.stdout + proc.stderr), time.monotonic() - start


def members() -> list[dict]:
    return json.loads(etcdctl("member", "list", "-w", "json"))["members"]


def registry_keys() -> dict[str, list[str]]:
    """The keys of the objects the test's workloads keep (Secrets, ConfigMaps): the removed host's own
    objects (its API server's leases) go with it."""
    return {prefix: sorted(etcdctl("get", "--prefix", "--keys-only", prefix).split())
            for prefix in ("/registry/secrets/", "/registry/configmaps/")}


def settled() -> bool:
    """No namespace is being deleted (earlier tests delete theirs without waiting), so keys only come."""
    items = json.loads(kubectl("get", "namespaces", "-o", "json"))["items"]
    return not [n for n in items if n["status"].get("phase") == "Terminating"]


def test_an_etcd_member_leaves_and_comes_back(inventories):
    full, smaller = inventories[len(CONTROL_PLANES)], inventories[len(CONTROL_PLANES) - 1]
    last = CONTROL_PLANES[-1]
    stay = CONTROL_PLANES[:-1]
    for _attempt in range(120):
        if settled():
            break
        time.sleep(1)
    kubectl("create", "namespace", NS)
    kubectl("-n", NS, "create", "configmap", "kept", "--from-literal=kept=yes")
    keys = registry_keys()
    try:
        rc, out, _seconds = playbook(full, "remove_node.yml", "-e", f"remove_node_names={last}")
        assert rc != 0 and "remove_node_etcd=true" in out and "nothing has been changed" in out
        assert len(members()) == len(CONTROL_PLANES)

        rc, out, seconds = playbook(full, "remove_node.yml", "-e", f"remove_node_names={last}",
                                    "-e", "remove_node_etcd=true")
        print(f"\nremove_node of etcd member {last}: {seconds:.1f} s")
        assert rc == 0, out[-4000:]
        assert sorted(m["name"] for m in members()) == sorted(stay)
        assert etcd_healthy(stay)
        now = registry_keys()
        assert all(set(keys[prefix]) <= set(now[prefix]) for prefix in keys), (keys, now)
        h = host(last)
        assert not h.file("/var/lib/etcd").exists
        assert h.check_output("ls -d /var/lib/etcd.removed-*")
        assert h.run("systemctl is-active etcd").stdout.strip() != "active"
        assert h.run("systemctl is-active kube-apiserver").stdout.strip() != "active"

        # Two etcd members: preflight refuses an even count, before any change; the host (or another)
        # comes back in the same inventory change.
        rc, out, _seconds = playbook(smaller, "site.yml")
        assert rc != 0 and "etcd needs an odd number" in out and "nothing has been changed" in out

        rc, out, seconds = playbook(full, "site.yml")
        print(f"site.yml with {last} back: {seconds:.1f} s")
        assert rc == 0, out[-4000:]
        after = members()
        assert sorted(m["name"] for m in after) == sorted(CONTROL_PLANES)
        assert not any(m.get("isLearner") for m in after)
        assert etcd_healthy(list(CONTROL_PLANES))
        assert kubectl("-n", NS, "get", "configmap", "kept", "-o", "jsonpath={.data.kept}") == "yes"
        now = registry_keys()
        assert all(set(keys[prefix]) <= set(now[prefix]) for prefix in keys)
        for name in CONTROL_PLANES:
            assert host(name).run("systemctl is-active kube-apiserver").stdout.strip() == "active", name
    finally:
        if len(members()) != len(CONTROL_PLANES):  # put the cluster back whole for the tests after this one
            playbook(full, "site.yml")
        kubectl("delete", "namespace", NS, "--wait=false", check=False)
