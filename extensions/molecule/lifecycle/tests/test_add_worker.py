"""Add a worker to a running cluster (first in the lifecycle scenario).

A third lab host starts; the test writes the inventory with it (HARDWAY_LAB_INVENTORY, which the
later tests use) and runs `site.yml --limit <new host>`, then `site.yml` on every host. The first
run changes only the new host (and files on the controller: its certificate and kubeconfig); the
second changes nothing anywhere; no existing certificate is re-issued and no service on the other
hosts restarts. The new node is Ready, has a flannel lease, and a pod on it reaches a pod on
another worker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
from labcluster import (  # noqa: E402
    AGNHOST,
    ANSI,
    HOSTS,
    LAB_SET,
    RECAP,
    REPO,
    STATE,
    WORKERS,
    ansible_playbook,
    etcdctl,
    host,
    kubectl,
    lab,
    units,
)

NEW = f"{LAB_SET}-w3"
NS = "hardway-add"


def site(*extra: str) -> dict:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    started = time.monotonic()
    proc = subprocess.run([ansible_playbook(), "-i", os.environ["HARDWAY_LAB_INVENTORY"],
                           str(REPO / "playbooks" / "site.yml"), *extra], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200, check=False)
    output = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-6000:]
    # changes on a host itself, not the controller-side tasks run for it ("changed: [cp1 -> localhost]")
    on_host = {}
    for name in re.findall(r"^changed: \[([^\]\s]+)\]", output, re.M):
        on_host[name] = on_host.get(name, 0) + 1
    return {"seconds": time.monotonic() - started, "output": output,
            "changed": {m[0]: int(m[2]) for m in RECAP.findall(output)}, "changed_on_host": on_host}


def leaves() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((STATE / "pki").glob("*.pem"))}


def starts(name: str) -> str:
    return host(name).check_output("systemctl show --property=Id,MainPID,ExecMainStartTimestampMonotonic "
                                   + " ".join(units(name)))


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    inventory = Path(os.environ["HARDWAY_LAB_INVENTORY"])
    inventory.parent.mkdir(parents=True, exist_ok=True)
    if not (inventory.parent / "group_vars").exists():
        (inventory.parent / "group_vars").symlink_to(REPO / "inventories" / "lab" / "group_vars")
    inventory.write_text(lab.inventory(3, LAB_SET))
    certificates, before = leaves(), {name: starts(name) for name in HOSTS}
    lab.up(3, LAB_SET)
    limited = site("--limit", NEW)
    whole = site()
    print(f"\nadd a worker: site.yml --limit {NEW} took {limited['seconds']:.0f} s, then site.yml on every host "
          f"{whole['seconds']:.0f} s")
    return {"limited": limited, "whole": whole, "certificates": certificates, "starts": before}


def test_limited_run_changes_only_the_new_host(added):
    limited = added["limited"]
    assert set(limited["changed"]) == {NEW}, limited["output"][-3000:]
    assert limited["changed"][NEW] > 0
    assert set(limited["changed_on_host"]) == {NEW}


def test_whole_run_then_changes_nothing(added):
    whole = added["whole"]
    assert whole["changed"] == dict.fromkeys([*HOSTS, NEW], 0), whole["output"][-4000:]


def test_no_certificate_reissued_and_no_service_restarted(added):
    now = leaves()
    assert {name: now[name] for name in added["certificates"]} == added["certificates"]
    new = {name for name in now if name not in added["certificates"]}
    assert new == {f"kubelet-{NEW}.pem", f"kubelet-{NEW}-key.pem"}
    assert {name: starts(name) for name in HOSTS} == added["starts"]


def test_new_node_is_ready_with_a_pod_subnet(added):
    node = json.loads(kubectl("get", "node", NEW, "-o", "json"))
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    leases = etcdctl("get --prefix /coreos.com/network/subnets/ -w json")
    owners = {json.loads(base64.b64decode(kv["value"]))["PublicIP"]
              for kv in json.loads(leases).get("kvs", [])}
    assert dict(lab.host_names(3, LAB_SET))[NEW] in owners


def test_pod_on_the_new_node_reaches_a_pod_on_another(added):
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=180)
    kubectl("create", "namespace", NS)
    pods = []
    for name, node in (("web-new", NEW), ("web-old", WORKERS[0])):
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                     "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                              "containers": [{"name": "main", "image": AGNHOST, "imagePullPolicy": "Never",
                                              "args": ["netexec", "--http-port=8080"]}]}})
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    kubectl("-n", NS, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s", timeout=150)
    old_ip = json.loads(kubectl("-n", NS, "get", "pod", "web-old", "-o", "json"))["status"]["podIP"]
    out = kubectl("-n", NS, "exec", "web-new", "--", "/agnhost", "connect", "--timeout=5s", f"{old_ip}:8080")
    assert out == ""  # agnhost connect prints nothing when it connected
    kubectl("delete", "namespace", NS, "--wait=false", check=False)
