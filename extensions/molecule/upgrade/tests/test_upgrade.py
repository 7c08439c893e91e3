"""playbooks/upgrade.yml moves the lab cluster from Kubernetes 1.36.5 (etcd 3.6.15, containerd 2.3.6) to the
collection's pins.

1. The cluster runs 1.36.5 (every binary, every node), etcd 3.6.15 and containerd 2.3.6.
2. A worker pinned newer than the API server (a host variable) is refused in the first play,
   naming the host and both versions; nothing changes.
3. The upgrade, with a 2-replica Deployment behind a Service and a PodDisruptionBudget asked every
   0.2 s from a worker host the whole time: at most 1% of the requests fail (the goal is none);
   afterwards every binary (etcd and containerd too) and every node reports the new version, no node is
   left cordoned and
   both replicas serve.
4. An interrupted run (a service still running a replaced binary, a node left cordoned with the
   upgrade's mark) is finished by the next one; a node cordoned by someone else stays cordoned. The
   same upgrade again changes nothing.
5. Going back a minor (the inventory still pins 1.36.5) is refused before any change.
"""

from __future__ import annotations

import json
import re
import tempfile
import time

from labcluster import (
    CP,
    HOSTS,
    PINS,
    WORKERS,
    changed_by_host,
    host,
    kubectl,
    playbook,
)
from serviceprobe import ServiceProbe

OLD = "1.36.5"
NEW = PINS["kubernetes"]
NS = "hardway-upgrade"
# the pins of the collection, over the inventory's older one
TO_PINS = json.dumps({"cluster_versions": {}})
BINARIES = {CP: ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"],
            **{w: ["kubelet", "kube-proxy"] for w in WORKERS}}
# the older patches the scenario starts from, and the pins it goes to
OLD_OTHERS = {"etcd": "3.6.15", "containerd": "2.3.6"}
OTHERS = {CP: ["etcd"], **{w: ["containerd"] for w in WORKERS}}


def upgrade(*extra: str) -> tuple[int, str, float]:
    return playbook("upgrade.yml", *extra)


def version_of(name: str, binary: str) -> str:
    out = host(name).check_output(f"/usr/local/bin/{binary} " + ("version --client" if binary == "kubectl"
                                                                 else "--version"))
    return re.search(r"(\d+\.\d+\.\d+)", out).group(1)


def binaries() -> dict[str, dict[str, str]]:
    return {name: {b: version_of(name, b) for b in names} for name, names in BINARIES.items()}


def others() -> dict[str, dict[str, str]]:
    return {name: {b: version_of(name, b) for b in names} for name, names in OTHERS.items()}


def node_versions() -> dict[str, str]:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes}


def test_the_cluster_runs_the_older_version():
    assert binaries() == {name: dict.fromkeys(names, OLD) for name, names in BINARIES.items()}
    assert set(node_versions().values()) == {f"v{OLD}"}
    assert others() == {name: {b: OLD_OTHERS[b] for b in names} for name, names in OTHERS.items()}


def test_a_worker_pinned_newer_than_the_api_server_is_refused_before_any_change():
    before = binaries()
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as overlay:
        overlay.write(f"all:\n  hosts:\n    {WORKERS[1]}:\n      cluster_versions: {{kubernetes: \"{NEW}\"}}\n")
        overlay.flush()
        rc, out, _seconds = upgrade("-i", overlay.name)
    assert rc != 0
    assert (f"host {WORKERS[1]}: cluster_versions = {{'kubernetes': '{NEW}'}}: its kubelet would be {NEW}, newer "
            f"than the API server of {CP} ({OLD})") in out, out[-3000:]
    assert "nothing has been changed" in out
    assert all(count == 0 for count in changed_by_host(out).values()), out[-3000:]
    assert binaries() == before


def test_the_upgrade_keeps_the_service_answering(web_service):
    with ServiceProbe(WORKERS[0], web_service) as probe:
        time.sleep(2)
        rc, out, seconds = upgrade("-e", TO_PINS)
        time.sleep(2)
        result = probe.stop()
    print(f"\nupgrade {OLD} -> {NEW} (1 control plane, 2 workers) took {seconds:.0f} s; requests made "
          f"{result['made']}, failed {result['failed']}, longest failure {result['longest_outage']} s; "
          f"backends {result['backends']}")
    assert rc == 0, out[-5000:]
    assert result["made"] > 50
    assert result["failed"] <= result["made"] / 100, result
    assert not result["failed_at_end"]
    assert binaries() == {name: dict.fromkeys(names, NEW) for name, names in BINARIES.items()}
    assert set(node_versions().values()) == {f"v{NEW}"}
    assert others() == {name: {b: PINS[b] for b in names} for name, names in OTHERS.items()}
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert not [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")]
    assert not [n["metadata"]["name"] for n in nodes
                if "hardway.kubernetes/upgrade" in (n["metadata"].get("annotations") or {})]
    server = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert server == f"v{NEW}"
    kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=120s", timeout=150)


def test_an_interrupted_upgrade_is_finished_by_the_next_run():
    """As a run stopped half-way leaves them: a binary replaced under a running kube-proxy on one worker,
    the other worker cordoned with the upgrade's mark; and a node cordoned by someone else stays so."""
    kube_proxy = WORKERS[1]
    pid = host(kube_proxy).check_output("systemctl show -p MainPID --value kube-proxy")
    host(kube_proxy).check_output("cp -p /usr/local/bin/kube-proxy /usr/local/bin/.kube-proxy.new && "
                                  "mv /usr/local/bin/.kube-proxy.new /usr/local/bin/kube-proxy")
    kubectl("annotate", "--overwrite", "node", WORKERS[0], "hardway.kubernetes/upgrade=cordoned")
    kubectl("cordon", WORKERS[0])
    rc, out, _seconds = upgrade("-e", TO_PINS)
    assert rc == 0, out[-3000:]
    counts = changed_by_host(out)
    assert counts[kube_proxy] > 0 and counts[WORKERS[0]] > 0 and counts[CP] == 0, counts
    assert host(kube_proxy).check_output("systemctl show -p MainPID --value kube-proxy") != pid
    nodes = {n["metadata"]["name"]: n for n in json.loads(kubectl("get", "nodes", "-o", "json"))["items"]}
    assert not nodes[WORKERS[0]]["spec"].get("unschedulable")
    assert "hardway.kubernetes/upgrade" not in (nodes[WORKERS[0]]["metadata"].get("annotations") or {})
    # cordoned by someone else (no mark): left cordoned
    kubectl("cordon", WORKERS[1])
    try:
        rc, out, _seconds = upgrade("-e", TO_PINS)
        assert rc == 0 and all(c == 0 for c in changed_by_host(out).values()), out[-3000:]
        assert json.loads(kubectl("get", "node", WORKERS[1], "-o", "json"))["spec"].get("unschedulable")
    finally:
        kubectl("uncordon", WORKERS[1])


def test_the_upgrade_again_changes_nothing():
    rc, out, seconds = upgrade("-e", TO_PINS)
    print(f"\nupgrade.yml on an up-to-date cluster took {seconds:.0f} s")
    assert rc == 0, out[-3000:]
    counts = changed_by_host(out)
    assert set(counts) >= set(HOSTS) and all(c == 0 for c in counts.values()), counts


def test_going_back_a_minor_is_refused_before_any_change():
    rc, out, _seconds = upgrade()  # the inventory still pins the older minor
    assert rc != 0
    assert f"{CP}: kube-apiserver runs {NEW} and cluster_versions.kubernetes is {OLD}: that goes down a minor" in out
    assert all(count == 0 for count in changed_by_host(out).values()), out[-3000:]
    assert set(node_versions().values()) == {f"v{NEW}"}
