"""hardway.kubernetes benchmark: prints a table and writes bench.json.

1. cold converge of fresh lab hosts (1 control plane + 2 workers), artifacts
   cached, to all nodes Ready, then the smoke checks;
2. a re-run of site.yml on the same hosts (changed must be 0);
3. cold converges with 2, 4, 8 and 16 workers (no test images there), each
   followed by a re-run, and the figures per added worker: wall time,
   Ansible's CPU, bytes the controller sent a worker (counted by the
   benchmark's callback at the connection), task runs per host;
4. the pki module issuing a full cluster PKI for 3, 100 and 1000 nodes, and
   the same 100-node set made with community.crypto tasks;
5. the addons: on the cold converge's cluster, Pebble (the lab's ACME server)
   started, then site.yml with ingress and cert_manager on
   (tests/testbed/addons-vars.yml), then an Ingress with an ACME issuer: the
   seconds from switching the addons on to that first certificate Ready;
6. the HA layout: a cold converge of 3 control planes (also the etcd
   members) + 2 workers, then one control-plane host stopped while a probe
   reads through a worker's local load balancer every 0.2 s: the seconds
   until the API answers again;
7. adding a worker to the running cold-converge cluster (after the addons,
   with them on when they ran): a third worker started, then
   `site.yml --limit <it>`, timed until the node is Ready;
8. etcd backup and restore on that cluster: playbooks/etcd_backup.yml, then
   playbooks/etcd_restore.yml of that snapshot (confirmed), each timed;
9. a rolling upgrade: a cold converge of 1 control plane + 2 workers at the
   previous Kubernetes minor, etcd and containerd patch (UPGRADE_FROM, built
   into the mirror first), a
   2-replica Deployment behind a Service and a PodDisruptionBudget, then
   playbooks/upgrade.yml to the pins while a worker host asks the Service
   every 0.2 s: the upgrade's seconds and the requests made and failed; then
   the three steps of a CA rotation (certificates.yml rotate_ca) under the
   same probe;
10. the floor: the cold converge's hosts captured (tests/bench/floor.py),
    then the same hosts, fresh, brought to all-Ready from that capture with
    no Ansible at all; cold converge / floor;
11. the Ansible settings used and the machine's core count.

It reports; it never fails on a slow machine. Targets are printed beside the
figures. `--quick` skips the scale runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "testbed"))
sys.path.insert(0, str(REPO / "tests" / "bench"))
import apiprobe  # noqa: E402
import floor  # noqa: E402
import lab  # noqa: E402
import mirror  # noqa: E402
import pebble  # noqa: E402
import serviceprobe  # noqa: E402

CACHE = mirror.CACHE
BENCH = CACHE / "bench"
SET = "bench"
TARGETS = {"cold": 120, "rerun": 15, "pki100": 2.0, "ratio": 20, "per_worker": 5, "bytes_per_worker": 10e6,
           "cpu_per_worker": 2.0, "floor_ratio": 1.5}
# The scale runs' worker counts (one control plane each), and the memory a lab
# host needs at most (a converged worker uses about 0.3 GiB here): a run that
# would leave less than that per host free is skipped and the report says why.
SCALE_WORKERS = (2, 4, 8, 16)
HOST_MEMORY = 1 << 30
# The releases the upgrade part starts from (make test-extended's too).
UPGRADE_FROM = {"kubernetes": "1.36.5", "etcd": "3.6.15", "containerd": "2.3.6"}


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "tests" / "bench" / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "hardway_timer",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.null",
    })
    env.update(extra or {})
    return env


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent not idle (all cores, from /proc/stat), in seconds."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def playbook(inventory: Path, play: Path, state: Path, label: str, extra_args: list[str] | None = None) -> dict:
    out = BENCH / f"{label}.json"
    log = BENCH / f"{label}.log"
    sent = BENCH / f"{label}.bytes"
    sent.unlink(missing_ok=True)
    env = ansible_env({"HARDWAY_TIMER_OUT": str(out), "HARDWAY_LAB_STATE": str(state),
                       "ANSIBLE_STDOUT_CALLBACK": "default", "HARDWAY_BYTES_OUT": str(sent)})
    start, busy, ansible_cpu = time.monotonic(), busy_cpu_seconds(), children_cpu_seconds()
    with log.open("w") as f:
        proc = subprocess.Popen(["ansible-playbook", "-i", str(inventory), str(play), *(extra_args or [])],
                                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
        main_cpu = own_cpu_until_exit(proc)
    wall = time.monotonic() - start
    result = json.loads(out.read_text()) if out.exists() else {"tasks": [], "changed": None}
    result["wall"] = round(wall, 1)
    # Where the cores went: Ansible on the controller (this process's children),
    # and everything else on the machine (the lab hosts' daemons and modules, Docker).
    result["cpu_seconds"] = {"machine": round(busy_cpu_seconds() - busy, 1),
                             "ansible": round(children_cpu_seconds() - ansible_cpu, 1),
                             # of which ansible-playbook's own process (its strategy and results loop: one core
                             # at most, whatever the forks)
                             "ansible_main": round(main_cpu, 1),
                             "available": round(wall * (os.cpu_count() or 1), 1)}
    result["rc"] = proc.returncode
    result["log"] = str(log)
    # What the controller sent each host over its connection (module payloads, commands, files),
    # and the tasks each host ran (ok, changed or failed; skipped ones cost no remote step).
    result["bytes_sent"] = bytes_per_host(sent)
    result["task_runs"] = {host: counts.get("ok", 0) + counts.get("failures", 0)
                           for host, counts in result.get("hosts", {}).items()}
    if proc.returncode != 0:
        print(f"bench: {label} failed (rc {proc.returncode}); see {log}", flush=True)
    return result


def own_cpu_until_exit(proc: subprocess.Popen) -> float:
    """CPU seconds a child spent in its own process (not its children's), read from /proc while it runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    last = 0.0
    while proc.poll() is None:
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            last = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.2)
    return last


def bytes_per_host(path: Path) -> dict:
    """Sum of the "<host> <bytes>" lines the benchmark callback wrote, by host."""
    total: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            host, count = (line.split(" ", 1) + [""])[:2]
            if count.isdigit():
                total[host] = total.get(host, 0) + int(count)
    return total


def per_host(values: dict, role: str) -> float | None:
    """Mean of a per-host figure over the hosts of one role ("-w": workers, "-cp": control planes)."""
    picked = [v for h, v in values.items() if role in h]
    return round(sum(picked) / len(picked), 1) if picked else None


def slowest(result: dict, n: int = 10) -> list[dict]:
    return sorted(result["tasks"], key=lambda t: -t["seconds"])[:n]


def lab_inventory(workers: int, control_planes: int = 1) -> Path:
    return lab.write_inventory(BENCH / f"inventory-{control_planes}-{workers}", workers, SET, control_planes)


def smoke(state: Path) -> tuple[bool, float]:
    """The molecule scenario's checks for pods, Services, DNS, on these hosts."""
    start = time.monotonic()
    env = dict(os.environ, HARDWAY_LAB_STATE=str(state), HARDWAY_LAB_SET=SET)
    tests = REPO / "extensions" / "molecule" / "default" / "tests" / "test_cluster.py"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests),
                           "-k", "vxlan or cluster_ip or dns_resolves or workers_ready"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    (BENCH / "smoke.log").write_text(proc.stdout + proc.stderr)
    return proc.returncode == 0, time.monotonic() - start


def cold_converge(workers: int, label: str, control_planes: int = 1,
                  extra_args: list[str] | None = None) -> tuple[dict, Path, Path]:
    lab.down(SET)
    lab.up(workers, SET, control_planes=control_planes)
    state = BENCH / f"state-{label}"
    if state.exists():
        shutil.rmtree(state)
    inventory = lab_inventory(workers, control_planes)
    result = playbook(inventory, REPO / "playbooks" / "site.yml", state, label, extra_args)
    return result, inventory, state


# ------------------------------------------------------------------- floor
def floor_capture(state: Path, workers: int) -> Path:
    """The cold converge's result, per host (tests/bench/floor.py capture)."""
    where = BENCH / f"floor-capture-{workers}"
    if where.exists():
        shutil.rmtree(where)
    floor.capture(SET, where, 1, workers, state)
    return where


def floor_replay(capture: Path, workers: int) -> dict:
    """The same hosts, fresh, brought to all-Ready from the capture with no Ansible (floor.py replay)."""
    lab.down(SET)
    lab.up(workers, SET)
    try:
        return floor.replay(SET, capture, 1, workers)
    except (SystemExit, subprocess.CalledProcessError, RuntimeError, TimeoutError) as exc:
        return {"seconds": None, "error": str(exc)[:300]}
    finally:
        shutil.rmtree(capture, ignore_errors=True)


def api_request_rate(state: Path, seconds: float = 30) -> float | None:
    """Requests per second the API server serves on the settled cluster (apiserver_request_total over
    ``seconds``): the steady load each node adds (leases, status, watches), for the README's estimates."""
    kubectl = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(state / "admin.kubeconfig"),
               "get", "--raw", "/metrics"]

    def total() -> float | None:
        proc = subprocess.run(kubectl, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return None
        return sum(float(line.rsplit(" ", 1)[1]) for line in proc.stdout.splitlines()
                   if line.startswith("apiserver_request_total{"))

    first = total()
    time.sleep(seconds)
    second = total()
    if first is None or second is None:
        return None
    return round((second - first) / seconds, 2)


def memory_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------ addons
def first_certificate(inventory: Path, state: Path) -> dict:
    """On the running bench cluster: Pebble up, the addons on, an Ingress until its certificate is Ready."""
    net = lab.network_of(SET)[1]
    pebble_dir = BENCH / "pebble"
    pebble.up(f"{SET}-cp1", f"{net}.11", f"{net}.21", pebble_dir)
    kubectl = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(state / "admin.kubeconfig")]
    start = time.monotonic()
    os.environ["HARDWAY_PEBBLE_DIR"] = str(pebble_dir)
    converge = playbook(inventory, REPO / "playbooks" / "site.yml", state, "addons",
                        ["-e", "@" + str(REPO / "tests" / "testbed" / "addons-vars.yml")])
    result = {"converge_seconds": converge["wall"], "rc": converge["rc"], "tasks_run": converge.get("tasks_run"),
              "cpu_seconds": converge["cpu_seconds"], "slowest": slowest(converge, 5)}
    if converge["rc"] != 0:
        return result
    app = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": "default"},
         "spec": {"ports": [{"port": 80}], "selector": {"app": "bench"}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": "bench", "namespace": "default",
                      "annotations": {"cert-manager.io/cluster-issuer": "pebble"}},
         "spec": {"ingressClassName": "traefik", "tls": [{"hosts": ["bench.example.test"],
                                                          "secretName": "bench-tls"}],
                  "rules": [{"host": "bench.example.test", "http": {"paths": [{
                      "path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "bench", "port": {"number": 80}}}}]}}]}}]}
    applied = time.monotonic()
    subprocess.run(kubectl + ["apply", "-f", "-"], input=json.dumps(app), text=True, capture_output=True, check=True)
    ready = None
    while time.monotonic() - applied < 300:
        proc = subprocess.run(kubectl + ["get", "certificate", "bench-tls", "-o",
                                         "jsonpath={.status.conditions[?(@.type=='Ready')].status}"],
                              capture_output=True, text=True, check=False)
        if proc.stdout.strip() == "True":
            ready = time.monotonic()
            break
        time.sleep(1)
    result["certificate_seconds"] = round(ready - applied, 1) if ready else None
    result["seconds_to_first_certificate"] = round(ready - start, 1) if ready else None
    return result


def add_worker(state: Path, extra_args: list[str]) -> dict:
    """A third worker joins the running bench cluster: site.yml --limit it, until its node is Ready."""
    lab.up(3, SET)
    inventory = lab_inventory(3)
    new = f"{SET}-w3"
    start = time.monotonic()
    run = playbook(inventory, REPO / "playbooks" / "site.yml", state, "add-worker", ["--limit", new, *extra_args])
    result = {"converge_seconds": run["wall"], "rc": run["rc"], "tasks_run": run.get("tasks_run"),
              "changed": run["changed"], "cpu_seconds": run["cpu_seconds"], "seconds_to_ready": None}
    kubectl = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(state / "admin.kubeconfig")]
    while run["rc"] == 0 and time.monotonic() - start < 300:
        proc = subprocess.run(kubectl + ["get", "node", new, "-o",
                                         "jsonpath={.status.conditions[?(@.type=='Ready')].status}"],
                              capture_output=True, text=True, check=False)
        if proc.stdout.strip() == "True":
            result["seconds_to_ready"] = round(time.monotonic() - start, 1)
            break
        time.sleep(0.5)
    return result


def backup_restore(inventory: Path, state: Path) -> dict:
    """etcd_backup.yml, then etcd_restore.yml of the snapshot it wrote, on the running bench cluster."""
    backups = state / "backups"
    before = set(backups.glob("etcd-snapshot-*.db")) if backups.exists() else set()
    backup = playbook(inventory, REPO / "playbooks" / "etcd_backup.yml", state, "etcd-backup")
    made = sorted(set(backups.glob("etcd-snapshot-*.db")) - before) if backups.exists() else []
    result = {"backup_seconds": backup["wall"], "backup_rc": backup["rc"],
              "snapshot_bytes": made[-1].stat().st_size if made else None}
    if backup["rc"] == 0 and made:
        restore = playbook(inventory, REPO / "playbooks" / "etcd_restore.yml", state, "etcd-restore",
                           ["-e", f"etcd_restore_snapshot={made[-1]}", "-e", "etcd_restore_confirm=true"])
        result.update({"restore_seconds": restore["wall"], "restore_rc": restore["rc"]})
    return result


# ----------------------------------------------------------------- upgrade
def rolling_upgrade() -> dict:
    """A cluster at UPGRADE_FROM serving a Deployment, then upgrade.yml while a worker asks its Service."""
    if mirror.cmd_build([f"{name}@{version}" for name, version in UPGRADE_FROM.items()], force=False) != 0:
        return {"rc": None, "error": f"{UPGRADE_FROM} did not build into the mirror"}
    old = json.dumps({"cluster_versions": UPGRADE_FROM})
    lab.down(SET)
    lab.up(2, SET)
    state = BENCH / "state-upgrade"
    if state.exists():
        shutil.rmtree(state)
    inventory = lab_inventory(2)
    start = playbook(inventory, REPO / "playbooks" / "site.yml", state, "upgrade-from", ["-e", old])
    result = {"from": UPGRADE_FROM["kubernetes"], "to": mirror.load_versions()[0]["kubernetes"],
              "converge_rc": start["rc"], "rc": None}
    if start["rc"] != 0:
        return result
    kubectl = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(state / "admin.kubeconfig")]
    image = f"hardway.local/agnhost:{mirror.load_versions()[0]['agnhost']}"
    subprocess.run(kubectl + ["apply", "-f", "-"], input=serviceprobe.web_workload("bench-upgrade", image),
                   text=True, capture_output=True, check=True)
    subprocess.run(kubectl + ["-n", "bench-upgrade", "rollout", "status", "deployment/web", "--timeout=180s"],
                   capture_output=True, check=True)
    address = subprocess.run(kubectl + ["-n", "bench-upgrade", "get", "service", "web", "-o",
                                        "jsonpath={.spec.clusterIP}"], capture_output=True, text=True,
                             check=True).stdout
    probe = serviceprobe.ServiceProbe(f"{SET}-w1", f"http://{address}/hostname").start()
    run = playbook(inventory, REPO / "playbooks" / "upgrade.yml", state, "upgrade")
    time.sleep(1)
    asked = probe.stop()
    result.update({"seconds": run["wall"], "rc": run["rc"], "tasks_run": run.get("tasks_run"),
                   "cpu_seconds": run["cpu_seconds"], "requests": asked["made"], "failed": asked["failed"],
                   "longest_outage": asked["longest_outage"]})
    again = playbook(inventory, REPO / "playbooks" / "upgrade.yml", state, "upgrade-again")
    result.update({"again_seconds": again["wall"], "again_changed": again["changed"]})
    # then the three steps of a CA rotation on the upgraded cluster, under the same probe
    result["rotate"] = {"seconds": 0.0, "requests": 0, "failed": 0, "rc": 0}
    for step in ("stage", "switch", "finish"):
        probe = serviceprobe.ServiceProbe(f"{SET}-w1", f"http://{address}/hostname").start()
        run = playbook(inventory, REPO / "playbooks" / "certificates.yml", state, f"rotate-{step}",
                       ["-e", "certificates_action=rotate_ca", "-e", f"certificates_rotate_step={step}"])
        time.sleep(1)
        asked = probe.stop()
        rotate = result["rotate"]
        rotate.update({"seconds": round(rotate["seconds"] + run["wall"], 1),
                       "requests": rotate["requests"] + asked["made"], "failed": rotate["failed"] + asked["failed"],
                       "rc": rotate["rc"] or run["rc"]})
        if run["rc"] != 0:
            break
    return result


# --------------------------------------------------------------------- PKI
def pki_request(nodes: int, path: Path) -> dict:
    certs = [
        {"name": "kube-apiserver", "ca": "kubernetes-ca", "common_name": "kubernetes", "usage": ["server"],
         "dns_names": ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local", "cp1"],
         "ip_addresses": ["10.32.0.1", "127.0.0.1", "10.0.0.11"]},
        {"name": "admin", "ca": "kubernetes-ca", "common_name": "admin", "organization": ["system:masters"]},
    ]
    for name in ("kube-controller-manager", "kube-scheduler", "kube-proxy"):
        certs.append({"name": name, "ca": "kubernetes-ca", "common_name": f"system:{name}"})
    for name in ("kube-apiserver-kubelet-client", "front-proxy-client"):
        certs.append({"name": name, "ca": "kubernetes-ca", "common_name": name})
    for name in ("kube-apiserver-etcd-client", "etcd-client-flannel", "etcd-server-cp1", "etcd-peer-cp1"):
        certs.append({"name": name, "ca": "etcd-ca", "common_name": name, "usage": ["client", "server"],
                      "ip_addresses": ["10.0.0.11", "127.0.0.1"]})
    for i in range(nodes):
        node = f"node{i}"
        certs.append({"name": f"kubelet-{node}", "ca": "kubernetes-ca", "common_name": f"system:node:{node}",
                      "organization": ["system:nodes"], "usage": ["client", "server"], "dns_names": [node],
                      "ip_addresses": [f"10.{1 + i // 60000}.{(i // 250) % 240}.{1 + i % 250}"]})
    return {"path": str(path),
            "authorities": [{"name": n, "common_name": n} for n in ("kubernetes-ca", "etcd-ca", "front-proxy-ca")],
            "certificates": certs, "keypairs": [{"name": "service-account"}]}


def pki_play(path: Path, tasks: list[dict]) -> Path:
    play = [{"name": "PKI benchmark", "hosts": "localhost", "gather_facts": False,
             "connection": "local", "tasks": tasks}]
    path.write_text(json.dumps(play))
    return path


def task_seconds(result: dict, match: str) -> float:
    return round(sum(t["seconds"] for t in result["tasks"] if match in t["task"]), 2)


def bench_pki() -> dict:
    out = {}
    work = Path(tempfile.mkdtemp(prefix="pki-", dir=BENCH))
    inv = work / "inventory"
    inv.write_text("localhost ansible_connection=local ansible_python_interpreter=" + sys.executable + "\n")
    for nodes in (3, 100, 1000):
        request = pki_request(nodes, work / f"pki-{nodes}")
        tasks = [{"name": "issue", "hardway.kubernetes.pki": request},
                 {"name": "again", "hardway.kubernetes.pki": request}]
        play = pki_play(work / f"pki-{nodes}.json", tasks)
        r = playbook(inv, play, work, f"pki-{nodes}")
        first = next((t for t in r["tasks"] if t["task"] == "issue"), {"seconds": None})
        again = next((t for t in r["tasks"] if t["task"] == "again"), {"seconds": None})
        out[nodes] = {"certificates": len(request["certificates"]), "seconds": first["seconds"],
                      "unchanged_rerun_seconds": again["seconds"], "rc": r["rc"]}
        print(f"bench: pki {nodes} nodes: {first['seconds']} s for {len(request['certificates'])} certificates",
              flush=True)
    # The same 100-node set with community.crypto: key, CSR, certificate per entry.
    request = pki_request(100, work / "crypto")
    d = request["path"]
    tasks = [{"name": "dir", "ansible.builtin.file": {"path": d, "state": "directory", "mode": "0700"}}]
    for ca in request["authorities"]:
        n = ca["name"]
        tasks += [
            {"name": "ca key", "community.crypto.openssl_privatekey": {"path": f"{d}/{n}-key.pem",
                                                                       "type": "ECC", "curve": "secp256r1"}},
            {"name": "ca csr", "community.crypto.openssl_csr_pipe": {
                "privatekey_path": f"{d}/{n}-key.pem", "common_name": n, "use_common_name_for_san": False,
                "basic_constraints": ["CA:TRUE"], "basic_constraints_critical": True,
                "key_usage": ["keyCertSign", "cRLSign"]}, "register": "csr"},
            {"name": "ca cert", "community.crypto.x509_certificate": {
                "path": f"{d}/{n}.pem", "csr_content": "{{ csr.csr }}", "privatekey_path": f"{d}/{n}-key.pem",
                "provider": "selfsigned"}},
        ]
    loop = request["certificates"]
    tasks += [
        {"name": "cert keys", "community.crypto.openssl_privatekey": {
            "path": d + "/{{ item.name }}-key.pem", "type": "ECC", "curve": "secp256r1"},
         "loop": loop, "loop_control": {"label": "{{ item.name }}"}},
        {"name": "cert csrs", "community.crypto.openssl_csr_pipe": {
            "privatekey_path": d + "/{{ item.name }}-key.pem", "common_name": "{{ item.common_name }}",
            "organization_name": "{{ item.organization | default([]) | first | default(omit) }}",
            "subject_alt_name": "{{ (item.dns_names | default([]) | map('regex_replace', '^', 'DNS:') | list)"
                                " + (item.ip_addresses | default([]) | map('regex_replace', '^', 'IP:') | list)"
                                " or omit }}",
            "extended_key_usage": "{{ item.usage | default(['client']) | map('regex_replace', '^client$', "
                                  "'clientAuth') | map('regex_replace', '^server$', 'serverAuth') | list }}"},
         "loop": loop, "loop_control": {"label": "{{ item.name }}"}, "register": "csrs"},
        {"name": "cert certs", "community.crypto.x509_certificate": {
            "path": d + "/{{ item.item.name }}.pem", "csr_content": "{{ item.csr }}", "provider": "ownca",
            "ownca_path": d + "/{{ item.item.ca }}.pem", "ownca_privatekey_path": d + "/{{ item.item.ca }}-key.pem"},
         "loop": "{{ csrs.results }}", "loop_control": {"label": "{{ item.item.name }}"}},
    ]
    r = playbook(inv, pki_play(work / "crypto.json", tasks), work, "pki-community-crypto")
    crypto_seconds = round(sum(t["seconds"] for t in r["tasks"] if t["task"] != "dir"), 2)
    ours = out[100]["seconds"]
    out["community_crypto_100"] = {"seconds": crypto_seconds, "rc": r["rc"],
                                   "ratio": round(crypto_seconds / ours, 1) if ours else None}
    print(f"bench: community.crypto 100 nodes: {crypto_seconds} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return out


# ------------------------------------------------------------------- scale
def bench_scale(counts: list[int]) -> dict:
    """Cold converges of 1 control plane + N workers (no test images: no test runs there), each followed by a
    re-run; then the figures per added worker between the smallest and the largest run."""
    out: dict = {"runs": {}, "skipped": None}
    no_tests = ["-e", "lab_test_images_enabled=false"]
    for workers in counts:
        lab.down(SET)
        need = (workers + 2) * HOST_MEMORY
        if memory_available() < need:
            out["skipped"] = (f"{workers} workers and more: {memory_available() >> 20} MiB available, "
                              f"{need >> 20} MiB wanted ({HOST_MEMORY >> 20} MiB a host)")
            print(f"bench: scale: skipped, {out['skipped']}", flush=True)
            break
        print(f"bench: cold converge with {workers} workers", flush=True)
        r, inventory, state = cold_converge(workers, f"scale-{workers}", extra_args=no_tests)
        run = {"seconds": r["wall"], "rc": r["rc"], "tasks_run": r.get("tasks_run"), "cpu_seconds": r["cpu_seconds"],
               "bytes_per_worker": per_host(r["bytes_sent"], "-w"),
               "bytes_per_control_plane": per_host(r["bytes_sent"], "-cp"),
               "task_runs_per_worker": per_host(r["task_runs"], "-w"),
               "task_runs_per_control_plane": per_host(r["task_runs"], "-cp")}
        if r["rc"] == 0:
            again = playbook(inventory, REPO / "playbooks" / "site.yml", state, f"scale-{workers}-rerun", no_tests)
            run["rerun"] = {"seconds": again["wall"], "changed": again["changed"], "rc": again["rc"],
                            "cpu_seconds": again["cpu_seconds"]}
            run["api_requests_per_second"] = api_request_rate(state)
        out["runs"][workers] = run
        print(f"bench: {workers} workers: {r['wall']} s (rc {r['rc']}), Ansible CPU {r['cpu_seconds']['ansible']} s, "
              f"{run['bytes_per_worker']} bytes sent per worker", flush=True)
    done = [w for w in counts if out["runs"].get(w, {}).get("rc") == 0]
    if len(done) >= 2:
        low, high = out["runs"][done[0]], out["runs"][done[-1]]
        added = done[-1] - done[0]
        out["per_added_worker"] = {
            "from": done[0], "to": done[-1],
            "seconds": round((high["seconds"] - low["seconds"]) / added, 2),
            "ansible_cpu_seconds": round((high["cpu_seconds"]["ansible"] - low["cpu_seconds"]["ansible"]) / added, 2),
            "ansible_main_cpu_seconds": round((high["cpu_seconds"]["ansible_main"]
                                               - low["cpu_seconds"]["ansible_main"]) / added, 2),
            "machine_cpu_seconds": round((high["cpu_seconds"]["machine"] - low["cpu_seconds"]["machine"]) / added, 2),
            # Ansible's own share, with the hosts' start-up taken out: its CPU per worker over this
            # machine's cores, and the re-run (where no host starts anything) per worker.
            "ansible_side_seconds": round((high["cpu_seconds"]["ansible"] - low["cpu_seconds"]["ansible"])
                                          / added / (os.cpu_count() or 1), 2),
            "rerun_seconds": round((high["rerun"]["seconds"] - low["rerun"]["seconds"]) / added, 2)
            if "rerun" in high and "rerun" in low else None,
            "bytes_sent": high["bytes_per_worker"],
        }
    return out


# -------------------------------------------------------------------- main
def settings() -> dict:
    env = ansible_env()
    proc = subprocess.run(["ansible-config", "dump", "--only-changed", "--format", "json"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wanted = {"DEFAULT_FORKS": "forks", "ANSIBLE_PIPELINING": "pipelining", "DEFAULT_STRATEGY": "strategy",
              "DEFAULT_GATHERING": "gathering"}
    found = {"forks": 5, "pipelining": False, "strategy": "linear", "gathering": "implicit"}
    try:
        for item in json.loads(proc.stdout):
            if item.get("name") in wanted:
                found[wanted[item["name"]]] = item.get("value")
    except (json.JSONDecodeError, TypeError):
        pass
    found["fact_gathering"] = "preflight play only: gather_subset [min, network]"
    found["site_yml_strategy"] = "free for the etcd/control-plane/node play, linear for the others"
    found["cores"] = os.cpu_count()
    found["sha256_mb_per_s"] = machine_speed()
    return found


def machine_speed() -> int:
    """MB/s of sha256 over 64 MiB, best of three: how fast this machine's cores are right now.

    A virtual machine's speed varies with its neighbours; runs are comparable
    only at a similar figure.
    """
    data = os.urandom(64 * 1024 * 1024)
    best = 0.0
    for _attempt in range(3):
        start = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        best = max(best, 64 / (time.perf_counter() - start))
    return round(best)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 2/4/8/16-worker scale runs")
    parser.add_argument("--parts", default="pki,cold,floor,addons,add,backup,ha,upgrade,scale",
                        help="which parts to run, comma-separated among pki, cold (with the re-run), floor (the "
                             "cold converge's hosts brought up with no Ansible; needs cold), addons (needs cold), "
                             "add (a worker added; needs cold), backup (etcd backup and restore; needs cold), ha, "
                             "upgrade, scale")
    parser.add_argument("--scale", default=",".join(str(w) for w in SCALE_WORKERS),
                        help="the scale runs' worker counts, comma-separated (the first and last give the "
                             "per-worker figures)")
    parser.add_argument("--output", default=str(REPO / "bench.json"))
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if args.quick:
        parts.discard("scale")
    unknown = parts - {"pki", "cold", "floor", "addons", "add", "backup", "ha", "upgrade", "scale"}
    if unknown:
        parser.error("unknown parts: " + ", ".join(sorted(unknown)))
    scale_workers = sorted({int(w) for w in args.scale.split(",") if w.strip()})
    on_cold = sorted(parts & {"floor", "addons", "add", "backup"})
    if on_cold and "cold" not in parts:
        parser.error(f"{', '.join(on_cold)} run on the cold converge's cluster: add cold to --parts")
    cold_ok = False
    BENCH.mkdir(parents=True, exist_ok=True)
    others = [name for name in lab.running_hosts() if not name.startswith(SET + "-")]
    if others:
        print(f"bench: note: {len(others)} other lab hosts are running ({', '.join(others)}); they share the "
              "cores and slow every figure down. `make lab-down` stops the README's lab.", flush=True)
    report: dict = {"settings": settings(), "other_lab_hosts_running": others}
    if "pki" in parts:
        print("bench: PKI", flush=True)
        report["pki"] = bench_pki()
    if "cold" in parts:
        print("bench: cold converge, 1 control plane + 2 workers", flush=True)
        cold, inventory, state = cold_converge(2, "cold")
        ok, smoke_seconds = smoke(state) if cold["rc"] == 0 else (False, 0.0)
        report["cold"] = {"seconds": cold["wall"], "tasks_run": cold.get("tasks_run"), "changed": cold["changed"],
                          "rc": cold["rc"], "cpu_seconds": cold["cpu_seconds"],
                          "bytes_sent": cold["bytes_sent"], "task_runs": cold["task_runs"],
                          "smoke_ok": ok, "smoke_seconds": round(smoke_seconds, 1),
                          "seconds_to_smoke_green": round(cold["wall"] + smoke_seconds, 1),
                          "slowest": slowest(cold)}
        print("bench: re-run on the same hosts", flush=True)
        rerun = playbook(inventory, REPO / "playbooks" / "site.yml", state, "rerun")
        report["rerun"] = {"seconds": rerun["wall"], "changed": rerun["changed"], "rc": rerun["rc"],
                           "cpu_seconds": rerun["cpu_seconds"], "bytes_sent": rerun["bytes_sent"],
                           "tasks_run": rerun.get("tasks_run"), "slowest": slowest(rerun)}
        cold_ok = cold["rc"] == 0
    capture = None
    if "floor" in parts and cold_ok:
        print("bench: floor: the cold converge's files, users, units, etcd writes and API objects captured",
              flush=True)
        capture = floor_capture(state, 2)
    if "addons" in parts and cold_ok:
        print("bench: addons (ingress, cert_manager) on, until the first certificate is Ready", flush=True)
        report["addons"] = first_certificate(inventory, state)
    if "add" in parts and cold_ok:
        print("bench: a third worker added to the running cluster (site.yml --limit it)", flush=True)
        addons = ["-e", "@" + str(REPO / "tests" / "testbed" / "addons-vars.yml")] if "addons" in report else []
        report["add"] = add_worker(state, addons)
        inventory = BENCH / "inventory-1-3" / "hosts.yml"  # the cluster has the third worker now
    if "backup" in parts and cold_ok:
        print("bench: etcd backup, then a restore of that snapshot", flush=True)
        report["backup"] = backup_restore(inventory, state)
    if capture:
        print("bench: floor: fresh hosts to all-Ready from that capture, no Ansible (tests/bench/floor.py)",
              flush=True)
        report["floor"] = floor_replay(capture, 2)
        if report["floor"].get("seconds") and cold_ok:
            report["floor"]["converge_ratio"] = round(report["cold"]["seconds"] / report["floor"]["seconds"], 2)
    if "ha" in parts:
        print("bench: cold converge of the HA layout, 3 control planes + 2 workers", flush=True)
        ha, _inventory, _state = cold_converge(2, "ha", control_planes=3)
        report["ha"] = {"seconds": ha["wall"], "rc": ha["rc"], "tasks_run": ha.get("tasks_run"),
                        "cpu_seconds": ha["cpu_seconds"]}
        if ha["rc"] == 0:
            print("bench: HA, one control-plane host stopped while a probe reads through a worker's load balancer",
                  flush=True)
            net = lab.network_of(SET)[1]
            report["ha"]["loss"] = apiprobe.lose_host(f"{SET}-cp1", f"{net}.12", [f"{SET}-w1", f"{SET}-w2"])
    if "upgrade" in parts:
        print(f"bench: rolling upgrade from Kubernetes {UPGRADE_FROM['kubernetes']}, 1 control plane + 2 workers, "
              "while a worker host asks a Service every 0.2 s", flush=True)
        report["upgrade"] = rolling_upgrade()
    if "scale" in parts:
        report["scale"] = bench_scale(scale_workers)
    lab.down(SET)
    Path(args.output).write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"bench: JSON written to {args.output}")
    return 0


def mark(value, target, lower_is_better=True) -> str:
    if value is None:
        return "n/a"
    ok = value <= target if lower_is_better else value >= target
    return "met" if ok else "MISSED"


def mb(value) -> str:
    return "n/a" if value is None else f"{value / 1e6:.1f}"


def cpu_text(cpu: dict) -> str:
    return f"{cpu['machine']} / {cpu['ansible']} / {cpu['available']}"


def print_table(r: dict) -> None:
    rows = [("measure", "value", "target", "")]
    if "cold" in r:
        c, rr = r["cold"], r["rerun"]
        rows.append(("cold converge, 3 nodes (s)", c["seconds"], "<= 120",
                     mark(c["seconds"], TARGETS["cold"]) if c["rc"] == 0 else "FAILED"))
        rows.append(("  + smoke checks green (s)", c["seconds_to_smoke_green"], "",
                     "ok" if c["smoke_ok"] else "FAILED"))
        rows.append(("  tasks run", c["tasks_run"], "", ""))
        rows.append(("  task runs per host: control plane / worker",
                     f"{per_host(c['task_runs'], '-cp')} / {per_host(c['task_runs'], '-w')}", "", ""))
        rows.append(("  MB sent by the controller: control plane / worker",
                     f"{mb(per_host(c['bytes_sent'], '-cp'))} / {mb(per_host(c['bytes_sent'], '-w'))}", "", ""))
        rows.append(("  CPU s: machine / Ansible / cores x wall", cpu_text(c["cpu_seconds"]), "", ""))
        if "floor" in r:
            f = r["floor"]
            rows.append(("floor: same hosts to all-Ready, no Ansible (s)", f.get("seconds"), "",
                         "" if f.get("seconds") else "FAILED"))
            rows.append(("  cold converge / floor", f.get("converge_ratio"), "<= 1.5",
                         mark(f.get("converge_ratio"), TARGETS["floor_ratio"])))
        rows.append(("re-run (s)", rr["seconds"], "<= 15",
                     mark(rr["seconds"], TARGETS["rerun"]) if rr["rc"] == 0 else "FAILED"))
        rows.append(("re-run changed", rr["changed"], "0", "met" if rr["changed"] == 0 else "MISSED"))
        rows.append(("  tasks run", rr["tasks_run"], "", ""))
        rows.append(("  CPU s: machine / Ansible / cores x wall", cpu_text(rr["cpu_seconds"]), "", ""))
    if "addons" in r:
        a = r["addons"]
        rows.append(("addons on -> first certificate Ready (s)", a.get("seconds_to_first_certificate"), "",
                     "" if a["rc"] == 0 and a.get("certificate_seconds") is not None else "FAILED"))
        rows.append(("  converge with the addons (s)", a["converge_seconds"], "", ""))
        rows.append(("  Ingress created -> certificate Ready (s)", a.get("certificate_seconds"), "", ""))
        rows.append(("  CPU s: machine / Ansible / cores x wall", cpu_text(a["cpu_seconds"]), "", ""))
    if "add" in r:
        a = r["add"]
        rows.append(("add a worker to a running 3-node cluster: to Ready (s)", a["seconds_to_ready"], "",
                     "" if a["rc"] == 0 and a["seconds_to_ready"] is not None else "FAILED"))
        rows.append(("  site.yml --limit the new worker (s)", a["converge_seconds"], "", ""))
        rows.append(("  CPU s: machine / Ansible / cores x wall", cpu_text(a["cpu_seconds"]), "", ""))
    if "backup" in r:
        b = r["backup"]
        rows.append(("etcd backup to the controller (s)", b["backup_seconds"], "",
                     "" if b["backup_rc"] == 0 else "FAILED"))
        rows.append(("  snapshot size (bytes)", b["snapshot_bytes"], "", ""))
        rows.append(("etcd restore of that snapshot (s)", b.get("restore_seconds"), "",
                     "" if b.get("restore_rc") == 0 else "FAILED"))
    if "ha" in r:
        h = r["ha"]
        rows.append(("cold converge, HA: 3 control planes + 2 workers (s)", h["seconds"], "",
                     "" if h["rc"] == 0 else "FAILED"))
        rows.append(("  CPU s: machine / Ansible / cores x wall", cpu_text(h["cpu_seconds"]), "", ""))
        if "loss" in h:
            loss = h["loss"]
            rows.append(("  control plane lost: API answers again after (s)", loss["longest_outage"], "<= 60",
                         "FAILED" if loss["still_failing"] else mark(loss["longest_outage"], 60)))
            rows.append(("    probe every 0.2 s: requests / failed", f"{loss['requests']} / {loss['failed']}", "", ""))
            rows.append(("    after the stop: via another API server / via a worker's LB (s)",
                         f"{loss['via_other_seconds']} / {loss['via_lb_seconds']}", "", ""))
    if "upgrade" in r:
        u = r["upgrade"]
        rows.append((f"rolling upgrade {u.get('from')} -> {u.get('to')}, 1 cp + 2 workers (s)", u.get("seconds"), "",
                     "" if u.get("rc") == 0 else "FAILED"))
        if u.get("rc") is not None:
            rows.append(("  Service asked every 0.2 s: requests / failed", f"{u['requests']} / {u['failed']}",
                         "0 failed", mark(u["failed"], 0)))
            rows.append(("  longest run of failed requests (s)", u["longest_outage"], "", ""))
            rows.append(("  upgrade.yml again: seconds / changed", f"{u['again_seconds']} / {u['again_changed']}",
                         "changed 0", "met" if u["again_changed"] == 0 else "MISSED"))
            rows.append(("  CPU s: machine / Ansible / cores x wall", cpu_text(u["cpu_seconds"]), "", ""))
        if "rotate" in u:
            ro = u["rotate"]
            rows.append(("CA rotation, three steps (s)", ro["seconds"], "", "" if ro["rc"] == 0 else "FAILED"))
            rows.append(("  Service asked every 0.2 s: requests / failed", f"{ro['requests']} / {ro['failed']}",
                         "0 failed", mark(ro["failed"], 0)))
    if "pki" in r:
        p = r["pki"]
        for n in (3, 100, 1000):
            rows.append((f"pki module, {n} nodes (s)", p[n]["seconds"], "<= 2" if n == 100 else "",
                         mark(p[n]["seconds"], TARGETS["pki100"]) if n == 100 else ""))
        cc = p["community_crypto_100"]
        rows.append(("community.crypto, 100 nodes (s)", cc["seconds"], "", ""))
        rows.append(("  speed-up of pki module", cc["ratio"], ">= 20", mark(cc["ratio"], TARGETS["ratio"], False)))
    scale = r.get("scale") or {}
    for w, v in scale.get("runs", {}).items():
        rows.append((f"cold converge, 1 cp + {w} workers (s)", v["seconds"], "", "" if v["rc"] == 0 else "FAILED"))
        rows.append(("  CPU s: machine / Ansible / cores x wall", cpu_text(v["cpu_seconds"]), "", ""))
        rows.append(("  per worker: MB sent / task runs", f"{mb(v['bytes_per_worker'])} / {v['task_runs_per_worker']}",
                     "", ""))
        if "rerun" in v:
            rows.append(("  re-run: seconds / changed", f"{v['rerun']['seconds']} / {v['rerun']['changed']}", "", ""))
        if v.get("api_requests_per_second") is not None:
            rows.append(("  API server requests/s, settled", v["api_requests_per_second"], "", ""))
    if scale.get("skipped"):
        rows.append(("  scale runs skipped", scale["skipped"], "", ""))
    if "per_added_worker" in scale:
        a = scale["per_added_worker"]
        span = f"({a['from']} -> {a['to']} workers)"
        rows.append((f"per added worker {span}: wall (s)", a["seconds"], "<= 5",
                     mark(a["seconds"], TARGETS["per_worker"])))
        rows.append(("  Ansible CPU (s)", a["ansible_cpu_seconds"], "<= 2",
                     mark(a["ansible_cpu_seconds"], TARGETS["cpu_per_worker"])))
        rows.append(("    of which ansible-playbook's own process (s)", a["ansible_main_cpu_seconds"], "", ""))
        rows.append(("  MB sent by the controller", mb(a["bytes_sent"]), "<= 10",
                     mark(a["bytes_sent"], TARGETS["bytes_per_worker"])))
        rows.append(("  machine CPU (s), all of it", a["machine_cpu_seconds"], "", ""))
        rows.append(("  Ansible side only: its CPU / cores (s)", a["ansible_side_seconds"], "<= 5",
                     mark(a["ansible_side_seconds"], TARGETS["per_worker"])))
        rows.append(("  re-run wall (s)", a["rerun_seconds"], "", ""))
    s = r["settings"]
    rows.append(("settings", f"forks={s['forks']} pipelining={s['pipelining']} default strategy={s['strategy']}",
                 "", ""))
    rows.append(("", s["site_yml_strategy"], "", ""))
    rows.append(("", f"facts: {s['fact_gathering']}", "", ""))
    rows.append(("cores", s["cores"], "", ""))
    rows.append(("machine speed: sha256 MB/s", s["sha256_mb_per_s"], "", ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)))
    for key, title in (("cold", "the cold converge"), ("rerun", "the re-run")):
        if key in r:
            print(f"\nten slowest tasks of {title}:")
            for t in r[key]["slowest"]:
                print(f"  {t['seconds']:7.2f} s  {t['task']}")


if __name__ == "__main__":
    sys.exit(main())
