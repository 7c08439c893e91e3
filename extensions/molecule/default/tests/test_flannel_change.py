"""Changing flannel's backend on a live cluster: refused without the force flag, done with it.

site.yml runs against the converged lab hosts with the vxlan port changed
(flannel_backend_overrides {Port: 8473}). Without flannel_force_network_config
the run stops before it writes, naming the current and the requested backend;
with it, the network config in etcd changes, every flanneld restarts (and no
other service), each node's vxlan device flannel.1 sends to the new port, and
pods on the two workers reach each other. Then the same run puts the default
back (with the flag again), and all of it holds for port 8472, so the steps
after this one find the cluster as the converge left it.

Runs in molecule's verify steps and by hand against another lab set, for example:

    HARDWAY_LAB_SET=dev1 HARDWAY_LAB_STATE=/tmp/dev1/state \
    HARDWAY_LAB_INVENTORY=/tmp/dev1/hosts.yml pytest extensions/molecule/default/tests/test_flannel_change.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from labcluster import (
    AGNHOST,
    ANSI,
    BUSYBOX,
    CONTROL_PLANES,
    CP,
    RECAP,
    REPO,
    WORKER_UNITS,
    WORKERS,
    ansible_playbook,
    dns_mode,
    etcdctl,
    host,
    inventory,
    kubectl,
)

NS = "hardway-flannel"
DEFAULT_PORT, CHANGED_PORT = 8472, 8473
# flanneld runs on every host: the control planes join the pod network too
FLANNEL_HOSTS = CONTROL_PLANES + WORKERS
# services that must not restart for a changed network config
OTHERS = {cp: ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"] for cp in CONTROL_PLANES} | {
    worker: [unit for unit in WORKER_UNITS if unit != "flanneld"] for worker in WORKERS}


def site(extra: dict) -> tuple[int, str]:
    """Run site.yml with extra variables (as JSON, so that numbers stay numbers); (exit status, output)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    variables = dict(extra, cluster_dns_mode=dns_mode())
    cmd = [ansible_playbook(), "-i", inventory(), str(REPO / "playbooks" / "site.yml"), "-e", json.dumps(variables)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False)
    return proc.returncode, ANSI.sub("", proc.stdout + proc.stderr)


def started(name: str, unit: str) -> str:
    """MainPID and start time of a service: they move only when it restarts."""
    return host(name).check_output(f"systemctl show --property=MainPID,ExecMainStartTimestampMonotonic {unit}")


def vxlan_port(name: str) -> int:
    details = host(name).check_output("ip -d link show flannel.1")
    return int(re.search(r"\bdstport (\d+)", details).group(1))


def etcd_config() -> dict:
    return json.loads(etcdctl("get /coreos.com/network/config --print-value-only"))


def pod(name: str, node: str, image: str, **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [dict(name="main", image=image, imagePullPolicy="Never", **container)]}}


@pytest.fixture(scope="module")
def pods():
    """A web server (agnhost netexec) and a shell (busybox) on each worker; {name: pod IP}."""
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=180)
    kubectl("create", "namespace", NS)
    items = []
    for i, node in enumerate(WORKERS, 1):
        items.append(pod(f"web-{i}", node, AGNHOST, args=["netexec", "--http-port=8080"]))
        items.append(pod(f"shell-{i}", node, BUSYBOX, command=["sleep", "3600"]))
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    kubectl("-n", NS, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=200)
    found = json.loads(kubectl("-n", NS, "get", "pods", "-o", "json"))["items"]
    yield {p["metadata"]["name"]: p["status"]["podIP"] for p in found}
    kubectl("delete", "namespace", NS, "--wait=false", check=False)


def reach_each_other(ips: dict, seconds: int = 90) -> list[str]:
    """Each worker's shell pod fetches the hostname of the web pod on the other worker (retried while the
    nodes learn each other's new vxlan devices); what they got."""
    deadline = time.monotonic() + seconds
    while True:
        got = []
        for shell, web in (("shell-1", "web-2"), ("shell-2", "web-1")):
            try:  # (this busybox's wget has no working -T: the exec gets a time limit instead)
                out = kubectl("-n", NS, "exec", shell, "--", "wget", "-q", "-O", "-",
                              f"http://{ips[web]}:8080/hostname", check=False, timeout=15)
            except subprocess.TimeoutExpired:
                out = ""
            got.append(out.strip())
        if got == ["web-2", "web-1"] or time.monotonic() > deadline:
            return got
        time.sleep(2)


def change(port: int | None, ips: dict) -> dict:
    """site.yml with the vxlan port (None: the default) and the force flag; what it left behind."""
    before = {w: started(w, "flanneld") for w in FLANNEL_HOSTS}
    others = {name: [started(name, unit) for unit in units] for name, units in OTHERS.items()}
    overrides = {"Port": port} if port else {}
    rc, out = site({"flannel_backend_overrides": overrides, "flannel_force_network_config": True})
    return {"rc": rc, "output": out, "flanneld_before": before,
            "flanneld_after": {w: started(w, "flanneld") for w in FLANNEL_HOSTS},
            "others_before": others,
            "others_after": {name: [started(name, unit) for unit in units] for name, units in OTHERS.items()},
            "ports": {w: vxlan_port(w) for w in FLANNEL_HOSTS}, "config": etcd_config(),
            "reached": reach_each_other(ips)}


@pytest.fixture(scope="module")
def refused(pods):
    """site.yml with the new port but without the force flag."""
    config = etcd_config()
    before = {w: started(w, "flanneld") for w in FLANNEL_HOSTS}
    rc, out = site({"flannel_backend_overrides": {"Port": CHANGED_PORT}})
    return {"rc": rc, "output": out, "config_before": config, "config_after": etcd_config(),
            "flanneld_before": before, "flanneld_after": {w: started(w, "flanneld") for w in FLANNEL_HOSTS}}


@pytest.fixture(scope="module")
def changed(refused, pods):
    return change(CHANGED_PORT, pods)


@pytest.fixture(scope="module")
def restored(changed, pods):
    return change(None, pods)


def test_pods_reach_each_other_before(pods):
    assert reach_each_other(pods) == ["web-2", "web-1"]
    assert {w: vxlan_port(w) for w in WORKERS} == {w: DEFAULT_PORT for w in WORKERS}


def test_without_the_flag_the_run_stops_before_writing(refused):
    assert refused["rc"] != 0
    out = " ".join(refused["output"].split())  # messages are wrapped
    assert (f"the backend is vxlan (Port {DEFAULT_PORT}, VNI 1) and would become vxlan (Port {CHANGED_PORT}, "
            "VNI 1) (changed: Backend.Port)") in out, refused["output"][-4000:]
    assert "flannel_force_network_config: true" in out
    assert refused["config_after"] == refused["config_before"]
    assert refused["config_after"]["Backend"]["Port"] == DEFAULT_PORT
    assert refused["flanneld_after"] == refused["flanneld_before"]


@pytest.mark.parametrize("step,port", [("changed", CHANGED_PORT), ("restored", DEFAULT_PORT)])
def test_change_with_the_flag(request, step, port):
    result = request.getfixturevalue(step)
    assert result["rc"] == 0, result["output"][-6000:]
    assert result["config"] == {"Network": "10.200.0.0/16", "SubnetLen": 24,
                                "Backend": {"Type": "vxlan", "VNI": 1, "Port": port}}
    # every flanneld restarted (the control planes' too: they join the pod network), and nothing else did
    assert all(result["flanneld_after"][w] != result["flanneld_before"][w] for w in FLANNEL_HOSTS), \
        result["output"][-3000:]
    assert result["others_after"] == result["others_before"]
    assert re.findall(r"RUNNING HANDLER \[hardway\.kubernetes\.flannel : Restart flanneld\]", result["output"])
    # flanneld made its vxlan device anew for the new port, on each node
    assert result["ports"] == {w: port for w in FLANNEL_HOSTS}
    for name in FLANNEL_HOSTS:
        record = json.loads(host(name).file("/etc/kubernetes/flannel/network-config.json").content_string)
        assert record == result["config"]
    # and pods on the two workers still reach each other
    assert result["reached"] == ["web-2", "web-1"]
    # each host restarted flanneld once, for the record; no other change
    recap = {m[0]: int(m[2]) for m in RECAP.findall(result["output"])}
    assert {w: recap[w] for w in WORKERS} == {w: 2 for w in WORKERS}
    assert recap[CP] == 3  # the network config in etcd, and its own flanneld's record and restart
    assert all(recap[cp] == 2 for cp in CONTROL_PLANES[1:])
