"""The HA layout loses a host and keeps working (after the default scenario's suite has run on it).

1. A control-plane host is stopped (`docker stop`): the API answers through another control-plane
   host and through a worker's local load balancer; a new Deployment is scheduled and its pods run;
   its ClusterIP Service answers from both backends. The seconds the API did not answer through the
   load balancer are measured from a probe that asks every 0.2 s, and printed. The host comes back.
2. The etcd leader's host is stopped instead: the other two members keep a quorum and writes
   succeed; started again, the member rejoins and all three report healthy; no key under /registry
   is lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tests" / "testbed"))
import apiprobe  # noqa: E402
from labcluster import (  # noqa: E402
    ADDRESS,
    AGNHOST,
    CONTROL_PLANES,
    WORKERS,
    etcd_healthy,
    etcdctl,
    host,
    kubectl,
    registry_keys,
)

NS = "hardway-ha"
PKI = "/etc/kubernetes/pki"
# Time the cluster gets to answer again (the bound) and to take a host back.
RECOVERY_LIMIT = 60
REJOIN_LIMIT = 180

pytestmark = pytest.mark.skipif(len(CONTROL_PLANES) < 3, reason="the HA layout (HARDWAY_LAB_CONTROL_PLANES=3)")


def api(via: str, *args: str, stdin: str | None = None, timeout: int = 30, check: bool = True) -> str:
    """kubectl with the admin credentials, at one control-plane host's API server."""
    return kubectl("--server", f"https://{ADDRESS[via]}:6443", "--request-timeout", "10s", *args,
                   stdin=stdin, timeout=timeout, check=check)


def wait_until(what: str, check, limit: float, every: float = 1.0) -> float:
    """Seconds until check() is true; fails after ``limit`` seconds."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (AssertionError, subprocess.SubprocessError):
            pass
        if time.monotonic() - start > limit:
            pytest.fail(f"{what}: not within {limit:.0f} s")
        time.sleep(every)


def host_back(name: str) -> bool:
    """A restarted host runs its services, its API server is ready and its etcd member healthy."""
    h = host(name)
    if h.run("systemctl is-active etcd kube-apiserver kube-controller-manager kube-scheduler").rc != 0:
        return False
    ready = h.run(f"curl -sS -m 3 --cacert {PKI}/kubernetes-ca.pem https://127.0.0.1:6443/readyz")
    return ready.stdout == "ok" and etcd_healthy(CONTROL_PLANES, name)


def start_again(name: str) -> float:
    subprocess.run(["docker", "start", name], check=True, capture_output=True, timeout=60)
    return wait_until(f"{name} back with its services, API server and etcd member", lambda: host_back(name),
                      REJOIN_LIMIT, every=2)


@pytest.fixture(scope="module", autouse=True)
def namespace():
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=180)
    kubectl("create", "namespace", NS)
    yield
    kubectl("delete", "namespace", NS, "--wait=false", check=False)


def deployment(name: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1,
                         # one pod on each worker: the Service must answer from both
                         "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                        "whenUnsatisfiable": "DoNotSchedule",
                                                        "labelSelector": {"matchLabels": labels}}],
                         "containers": [{"name": "main", "image": AGNHOST, "imagePullPolicy": "Never",
                                         "args": ["netexec", "--http-port=8080"]}]}}}}


def test_losing_a_control_plane_host():
    lost, other = CONTROL_PLANES[0], CONTROL_PLANES[1]
    assert all(host_back(name) for name in CONTROL_PLANES), "the cluster is not whole before the test"
    try:
        figures = apiprobe.lose_host(lost, ADDRESS[other], WORKERS, limit=RECOVERY_LIMIT)
        print(f"\nHA: docker stop {lost} took {figures['stop_seconds']} s; after it, the API answered through "
              f"{other} in {figures['via_other_seconds']} s and through {WORKERS[1]}'s load balancer in "
              f"{figures['via_lb_seconds']} s; a probe through {WORKERS[0]}'s load balancer every 0.2 s: "
              f"{figures['requests']} requests, {figures['failed']} failed, longest outage "
              f"{figures['longest_outage']} s")
        assert figures["via_other_seconds"] is not None and figures["via_lb_seconds"] is not None, figures
        assert not figures["still_failing"] and figures["longest_outage"] < RECOVERY_LIMIT, figures

        # the control plane still schedules and runs new work, and Services work
        api(other, "apply", "-f", "-", stdin=json.dumps(deployment("after-loss")))
        scheduled = wait_until("the new Deployment's two pods Ready", lambda: ready_pods("after-loss", other) == 2,
                               RECOVERY_LIMIT + 60, every=2)
        api(other, "-n", NS, "expose", "deployment", "after-loss", "--port=80", "--target-port=8080")
        service_ip = json.loads(api(other, "-n", NS, "get", "service", "after-loss", "-o", "json"))["spec"]["clusterIP"]
        listed = json.loads(api(other, "-n", NS, "get", "pods", "-l", "app=after-loss", "-o", "json"))["items"]
        pods = {p["metadata"]["name"] for p in listed}
        seen = set()
        for _attempt in range(60):
            seen.add(host(WORKERS[0]).run(f"curl -s -m 3 http://{service_ip}/hostname").stdout)
            if seen >= pods:
                break
            time.sleep(0.5)
        assert seen >= pods, (seen, pods)
        print(f"HA: with {lost} down, a new Deployment had its 2 pods Ready {scheduled:.1f} s after it was applied, "
              f"and its Service answered from both")
    finally:
        back = start_again(lost)
    print(f"HA: {lost} was back (services, API server ready, etcd healthy) {back:.1f} s after docker start")


def ready_pods(app: str, via: str) -> int:
    pods = json.loads(api(via, "-n", NS, "get", "pods", "-l", f"app={app}", "-o", "json"))["items"]
    return sum(1 for p in pods for c in p["status"].get("conditions", []) if c["type"] == "Ready"
               and c["status"] == "True")


def etcd_leader(names: list[str]) -> str:
    """The member of ``names`` that leads (asked on the first of them)."""
    status = json.loads(etcdctl("endpoint status -w json", on=names[0], endpoints=names))
    by_url = {f"https://{ADDRESS[name]}:2379": name for name in names}
    leaders = [by_url[s["Endpoint"]] for s in status if s["Status"]["leader"] == s["Status"]["header"]["member_id"]]
    assert len(leaders) == 1, status
    return leaders[0]


def test_losing_the_etcd_leader():
    assert all(host_back(name) for name in CONTROL_PLANES), "the cluster is not whole before the test"
    leader = etcd_leader(CONTROL_PLANES)
    others = [name for name in CONTROL_PLANES if name != leader]
    before = registry_keys(others[0])
    subprocess.run(["docker", "stop", leader], check=True, capture_output=True, timeout=60)
    try:
        quorum = wait_until(f"{', '.join(others)} healthy without {leader}",
                            lambda: etcd_healthy(others, others[0]), RECOVERY_LIMIT)
        new_leader = etcd_leader(others)
        written = wait_until("a write through the API", lambda: bool(api(
            others[0], "-n", NS, "create", "configmap", "written-without-leader", "--from-literal=at=now")),
            RECOVERY_LIMIT, every=2)
        print(f"\nHA: etcd leader {leader} stopped; {new_leader} leads, the two members were healthy after "
              f"{quorum:.1f} s and a write succeeded after {written:.1f} s")
    finally:
        back = start_again(leader)
    members = json.loads(etcdctl("member list -w json", on=others[0]))["members"]
    assert sorted(m["name"] for m in members) == sorted(CONTROL_PLANES)
    assert not [m for m in members if m.get("isLearner")]
    after = registry_keys(leader)  # the member that came back has every key
    # events expire, and so does each API server's key in /registry/masterleases/ (the endpoint reconciler's)
    # while it is away
    lost = {key for key in before - after if not key.startswith(("/registry/events/", "/registry/masterleases/"))}
    assert not lost, sorted(lost)[:20]
    assert f"/registry/configmaps/{NS}/written-without-leader" in after
    print(f"HA: {leader} rejoined in {back:.1f} s; keys under /registry: {len(before)} before, {len(after)} after "
          f"(on the member that was stopped), none lost")
