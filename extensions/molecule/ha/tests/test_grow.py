"""Grow a running cluster from one control plane and one etcd member to three of each (last in the ha scenario).

The scenario's hosts are replaced by a fresh lab of one control plane and two workers, converged with
site.yml from an inventory of that layout, given workloads (a Deployment behind a Service) and a Secret.
Then two more control-plane hosts start, they join the inventory's control_plane and etcd groups, and
site.yml runs again: etcd grows one member at a time, the new API servers, controller-managers and
schedulers start, and the workers' load balancers list all three. The pods that ran before still run
(the same pods), the Secret reads the same, no key under /registry is lost, and a run after that
changes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
import labcluster  # noqa: E402
from labcluster import ANSI, LAB_SET, RECAP, REPO, WORKERS, ansible_playbook, host, lab, mirror  # noqa: E402

NS = "hardway-grow"
ONE, THREE = 1, 3
pytestmark = pytest.mark.skipif(labcluster.CONTROL_PLANE_COUNT < 3, reason="the HA layout")


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    work = tmp_path_factory.mktemp("grow")
    state = work / "state"
    (work / "group_vars").symlink_to(REPO / "inventories" / "lab" / "group_vars")

    def inventory(control_planes: int) -> Path:
        path = work / f"hosts-{control_planes}.yml"
        path.write_text(lab.inventory(2, LAB_SET, control_planes))
        return path

    def site(control_planes: int) -> dict:
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", HARDWAY_LAB_STATE=str(state))
        env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
        started = time.monotonic()
        proc = subprocess.run([ansible_playbook(), "-i", str(inventory(control_planes)),
                               str(REPO / "playbooks" / "site.yml")], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=1500, check=False)
        output = ANSI.sub("", proc.stdout + proc.stderr)
        log = work / f"site-{len(list(work.glob('site-*.log'))) + 1}-{control_planes}.log"
        log.write_text(output)
        failed = [line for line in output.splitlines() if line.startswith(("fatal:", "failed:"))]
        assert proc.returncode == 0, f"site.yml failed (whole output in {log}): {failed}\n{output[-3000:]}"
        return {"seconds": time.monotonic() - started, "output": output,
                "changed": {m[0]: int(m[2]) for m in RECAP.findall(output)}}

    def kubectl(*args: str, stdin: str | None = None) -> str:
        cmd = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(state / "admin.kubeconfig"), *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=240, check=False)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    # one control plane (the etcd member) and two workers, from scratch
    lab.down(LAB_SET)
    lab.up(2, LAB_SET, control_planes=ONE)
    small = site(ONE)
    kubectl("create", "namespace", NS)
    kubectl("-n", NS, "create", "deployment", "web", f"--image={labcluster.AGNHOST}", "--replicas=2",
            "--", "/agnhost", "netexec", "--http-port=8080")
    kubectl("-n", NS, "expose", "deployment", "web", "--port=80", "--target-port=8080")
    password = secrets.token_hex(16)
    kubectl("-n", NS, "create", "secret", "generic", "kept", f"--from-literal=password={password}")
    kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=180s")
    pods = json.loads(kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o", "json"))["items"]
    before = {"pods": sorted(p["metadata"]["uid"] for p in pods), "keys": labcluster.registry_keys(f"{LAB_SET}-cp1")}

    # two more control-plane hosts, also etcd members
    lab.up(2, LAB_SET, control_planes=THREE)
    grow = site(THREE)
    again = site(THREE)
    print(f"\ngrow: site.yml on 1 control plane + 2 workers took {small['seconds']:.0f} s; growing to 3 control "
          f"planes and 3 etcd members took {grow['seconds']:.0f} s; the run after it {again['seconds']:.0f} s")
    return {"before": before, "password": password, "grow": grow, "again": again, "kubectl": kubectl}


def names(count: int) -> list[str]:
    return [name for name, _ip in lab.host_names(0, LAB_SET, count)]


def test_etcd_has_three_voting_members_all_healthy(grown):
    members = json.loads(labcluster.etcdctl("member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == names(THREE)
    assert not [m["name"] for m in members if m.get("isLearner")]
    health = json.loads(labcluster.etcdctl("endpoint health -w json", endpoints=names(THREE)))
    assert len(health) == THREE and all(h["health"] for h in health), health


def test_every_control_plane_serves(grown):
    for name in names(THREE):
        h = host(name)
        assert h.run("systemctl is-active etcd kube-apiserver kube-controller-manager kube-scheduler").rc == 0, name
        ready = h.check_output("curl -sS -m 5 --cacert /etc/kubernetes/pki/kubernetes-ca.pem "
                               "https://127.0.0.1:6443/readyz")
        assert ready == "ok", name


def test_workers_load_balancers_list_three_api_servers(grown):
    for worker in WORKERS:
        config = host(worker).file("/etc/kubernetes/apiserver-lb/haproxy.cfg").content_string
        assert len([line for line in config.splitlines() if line.strip().startswith("server ")]) == THREE


def test_workloads_and_secret_survive(grown):
    kubectl = grown["kubectl"]
    pods = json.loads(kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o", "json"))["items"]
    assert sorted(p["metadata"]["uid"] for p in pods) == grown["before"]["pods"]
    assert all(p["status"]["phase"] == "Running" for p in pods)
    secret = json.loads(kubectl("-n", NS, "get", "secret", "kept", "-o", "json"))
    assert base64.b64decode(secret["data"]["password"]).decode() == grown["password"]
    service_ip = json.loads(kubectl("-n", NS, "get", "service", "web", "-o", "json"))["spec"]["clusterIP"]
    assert host(WORKERS[0]).check_output(f"curl -s -m 5 http://{service_ip}/hostname") in {
        p["metadata"]["name"] for p in pods}


def test_no_key_lost(grown):
    after = labcluster.registry_keys(names(THREE)[-1])  # on the newest member
    lost = {key for key in grown["before"]["keys"] - after
            if not key.startswith(("/registry/events/", "/registry/masterleases/"))}
    assert not lost, sorted(lost)[:20]


def test_grow_changes_only_what_it_must_and_the_next_run_nothing(grown):
    changed = grown["grow"]["changed"]
    assert set(changed) == set(names(THREE) + WORKERS)
    assert all(changed[name] > 0 for name in names(THREE)[1:])  # the new hosts
    assert grown["again"]["changed"] == dict.fromkeys(names(THREE) + WORKERS, 0), grown["again"]["output"][-4000:]
