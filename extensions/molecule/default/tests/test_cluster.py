"""What a working hard-way cluster must show, checked on the lab hosts.

Runs after every converge of the scenario (testinfra verifier). Hosts are
reached with `docker exec`; the cluster through kubectl (from the test bed's
mirror) with the admin kubeconfig that site.yml wrote on this machine. Pod and
Service addresses are only ever reached from inside lab hosts or pods.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
from labcluster import (
    ADDRESS,
    AGNHOST,
    BUSYBOX,
    CONTROL_PLANES,
    CP,
    HOSTS,
    KUBECONFIG,
    WORKERS,
    etcdctl,
    host,
    kubectl,
    mirror,
    units,
)

NS = "hardway-verify"
SERVICE_IP = "10.32.0.1"


def dns_mode() -> str:
    config = host(WORKERS[0]).file("/var/lib/kubelet/config.yaml").content_string
    return "systemd" if f"- {ADDRESS[WORKERS[0]]}" in config else "deployment"


def pod_manifest(name: str, node: str, image: str, command: list[str] | None = None,
                 args: list[str] | None = None, labels: dict | None = None) -> dict:
    container = {"name": "main", "image": image, "imagePullPolicy": "Never"}
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [container],
                     "terminationGracePeriodSeconds": 1}}


@pytest.fixture(scope="module")
def workload():
    """Two agnhost netexec pods (one per worker), two busybox pods, Services."""
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=180)
    kubectl("create", "namespace", NS)
    objects = []
    for i, node in enumerate(WORKERS, 1):
        objects.append(pod_manifest(f"web-{i}", node, AGNHOST, args=["netexec", "--http-port=8080"],
                                    labels={"app": "web"}))
        objects.append(pod_manifest(f"shell-{i}", node, BUSYBOX, command=["sleep", "3600"]))
    port = {"name": "http", "port": 80, "targetPort": 8080}
    objects.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "web", "namespace": NS},
                    "spec": {"selector": {"app": "web"}, "ports": [port]}})
    objects.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "web-nodeport", "namespace": NS},
                    "spec": {"type": "NodePort", "selector": {"app": "web"},
                             "ports": [dict(port, nodePort=30080)]}})
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    kubectl("-n", NS, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=200)
    pods = json.loads(kubectl("-n", NS, "get", "pods", "-o", "json"))["items"]
    info = {p["metadata"]["name"]: {"ip": p["status"]["podIP"], "node": p["spec"]["nodeName"]} for p in pods}
    svc = json.loads(kubectl("-n", NS, "get", "service", "web", "-o", "json"))
    info["service_ip"] = svc["spec"]["clusterIP"]
    # A Service answers once the controller-manager has listed its pods in an
    # EndpointSlice (on a busy machine some seconds after the pods are Ready).
    deadline = time.monotonic() + 120
    while True:
        slices = json.loads(kubectl("-n", NS, "get", "endpointslices", "-l", "kubernetes.io/service-name=web",
                                    "-o", "json"))["items"]
        ready = [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
        if len(ready) == 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    yield info
    kubectl("delete", "namespace", NS, "--wait=false", check=False)


# ------------------------------------------------------------------- hosts
@pytest.mark.parametrize("name", HOSTS)
def test_hosts_run_the_scenarios_debian_release(name):
    """The default scenario runs on bookworm, the trixie scenario on trixie."""
    wanted = os.environ.get("HARDWAY_LAB_OS") or "bookworm"
    release = host(name).file("/etc/os-release").content_string
    assert f"VERSION_CODENAME={wanted}" in release, release


@pytest.mark.parametrize("name", HOSTS)
def test_units_active_and_enabled(name):
    h = host(name)
    for unit in units(name):
        svc = h.service(unit)
        assert svc.is_running, f"{unit} is not active on {name}"
        assert svc.is_enabled, f"{unit} is not enabled on {name}"


@pytest.mark.parametrize("name", CONTROL_PLANES)
def test_control_plane_runs_no_kubelet(name):
    assert not host(name).service("kubelet").is_running


@pytest.mark.parametrize("name", HOSTS)
def test_private_keys_are_0600_and_no_ca_key(name):
    h = host(name)
    keys = h.check_output("find /etc/kubernetes -name '*-key.pem' -o -name '*.kubeconfig'").split()
    assert keys, f"no keys found on {name}"
    for path in keys:
        assert h.file(path).mode == 0o600, f"{path} on {name} is not 0600"
        assert h.file(path).user == "root"
    assert not [k for k in keys if k.endswith("-ca-key.pem")], f"a CA key is on {name}"
    assert h.check_output("find / -xdev -name '*ca-key.pem' 2>/dev/null || true") == ""


@pytest.mark.parametrize("name", WORKERS)
def test_registry_k8s_io_pulls_go_to_the_lab_registry_only(name):
    """containerd_registry_mirrors: the lab sends registry.k8s.io to its registry (.5:5000) and nowhere else."""
    h = host(name)
    registry = ADDRESS[name].rsplit(".", 1)[0] + ".5:5000"
    hosts_toml = h.file("/etc/containerd/certs.d/registry.k8s.io/hosts.toml")
    assert hosts_toml.mode == 0o644
    assert f'server = "http://{registry}"' in hosts_toml.content_string
    assert 'config_path = "/etc/containerd/certs.d"' in h.file("/etc/containerd/config.toml").content_string
    # A pull of an image nobody has: containerd asks the mirror, never registry.k8s.io itself.
    out = h.run("crictl pull registry.k8s.io/hardway/no-such-image:0 2>&1")
    assert out.rc != 0
    assert registry in out.stdout, out.stdout
    assert "https://registry.k8s.io" not in out.stdout, out.stdout


# ---------------------------------------------------------------- nodes, flannel
def test_workers_ready():
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    ready = {n["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in n["status"]["conditions"]) for n in nodes}
    assert ready == {w: True for w in WORKERS}


@pytest.mark.parametrize("name", HOSTS)
def test_flannel_vxlan_device(name):
    out = host(name).check_output("ip -d link show flannel.1")
    assert "vxlan id 1 " in out
    assert f"local {ADDRESS[name]} " in out
    assert "dstport 8472" in out


@pytest.mark.parametrize("name", CONTROL_PLANES)
def test_control_plane_reaches_pods_on_every_worker(workload, name):
    """A control plane runs no pods but joins the pod network: its API server reaches webhooks in pods."""
    for pod in ("web-1", "web-2"):
        ip = workload[pod]["ip"]
        out = host(name).run(f"curl -s -m 5 http://{ip}:8080/hostname")
        assert out.rc == 0 and out.stdout.strip() == pod, (name, pod, out.stdout, out.stderr)


def test_flannel_leases_and_network_config_in_etcd():
    config = json.loads(etcdctl("get /coreos.com/network/config --print-value-only"))
    assert config == {"Network": "10.200.0.0/16", "SubnetLen": 24,
                      "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    leases = etcdctl("get --prefix /coreos.com/network/subnets/ -w json")
    kvs = json.loads(leases).get("kvs", [])
    owners = {json.loads(base64.b64decode(kv["value"]))["PublicIP"] for kv in kvs}
    assert {ADDRESS[w] for w in WORKERS} <= owners
    for kv in kvs:
        key = base64.b64decode(kv["key"]).decode()
        assert key.startswith("/coreos.com/network/subnets/10.200.") and key.endswith("-24")


# --------------------------------------------------------------- pod traffic
def test_pod_reaches_pod_on_other_worker_over_vxlan(workload):
    assert workload["shell-1"]["node"] != workload["web-2"]["node"]
    out = kubectl("-n", NS, "exec", "shell-1", "--", "wget", "-q", "-O", "-",
                  f"http://{workload['web-2']['ip']}:8080/hostname")
    assert out.strip() == "web-2"
    out = kubectl("-n", NS, "exec", "shell-2", "--", "wget", "-q", "-O", "-",
                  f"http://{workload['web-1']['ip']}:8080/hostname")
    assert out.strip() == "web-1"


def test_cluster_ip_service_answers_from_both_backends(workload):
    h = host(WORKERS[0])
    seen = set()
    for _attempt in range(40):
        seen.add(h.check_output(f"curl -s -m 3 http://{workload['service_ip']}/hostname"))
        if seen == {"web-1", "web-2"}:
            break
    assert seen == {"web-1", "web-2"}


@pytest.mark.parametrize("name", WORKERS)
def test_node_port_answers_on_each_worker(workload, name):
    url = f"http://{ADDRESS[name]}:30080/hostname"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                assert resp.read().decode() in ("web-1", "web-2")
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def nslookup(pod: str, name: str) -> str:
    return kubectl("-n", NS, "exec", pod, "--", "nslookup", name)


def test_dns_resolves_kubernetes_service(workload):
    out = nslookup("shell-1", "kubernetes.default.svc.cluster.local")
    assert f"Address: {SERVICE_IP}" in out.split("Name:", 1)[1]


def test_dns_resolves_test_service(workload):
    out = nslookup("shell-2", f"web.{NS}.svc.cluster.local")
    assert f"Address: {workload['service_ip']}" in out.split("Name:", 1)[1]
    # and the short name through the pod's search path
    out = kubectl("-n", NS, "exec", "shell-1", "--", "wget", "-q", "-O", "-", "http://web/hostname")
    assert out.strip() in ("web-1", "web-2")


def test_dns_server_matches_layout(workload):
    resolv = kubectl("-n", NS, "exec", "shell-1", "--", "cat", "/etc/resolv.conf")
    expected = ADDRESS[WORKERS[0]] if dns_mode() == "systemd" else "10.32.0.10"
    assert f"nameserver {expected}" in resolv


# ------------------------------------------------------------ kubectl verbs
def test_kubectl_logs(workload):
    host(WORKERS[0]).check_output(f"curl -s -m 3 http://{workload['web-1']['ip']}:8080/echo?msg=logged")
    assert "logged" in kubectl("-n", NS, "logs", "web-1")


def test_kubectl_exec(workload):
    assert kubectl("-n", NS, "exec", "shell-1", "--", "hostname").strip() == "shell-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kubectl_port_forward(workload):
    port = free_port()
    cmd = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(KUBECONFIG), "-n", NS,
           "port-forward", "pod/web-2", f"{port}:8080"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=3) as resp:
                    assert resp.read().decode() == "web-2"
                    break
            except OSError as exc:
                if time.monotonic() > deadline or proc.poll() is not None:
                    err = proc.stderr.read() if proc.poll() is not None else ""
                    raise AssertionError(f"port-forward did not answer: {err}") from exc
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------- jobs, tokens, etcd
def test_job_completes(workload):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": NS},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never",
               "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
                               "command": ["sh", "-c", "echo job-ran"]}]}}}}
    kubectl("apply", "-f", "-", stdin=json.dumps(job))
    kubectl("-n", NS, "wait", "--for=condition=Complete", "job/once", "--timeout=120s", timeout=150)
    assert "job-ran" in kubectl("-n", NS, "logs", "job/once")


def test_pod_service_account_token_works(workload):
    token = kubectl("-n", NS, "exec", "shell-1", "--", "cat",
                    "/var/run/secrets/kubernetes.io/serviceaccount/token").strip()
    ca = kubectl("-n", NS, "exec", "shell-1", "--", "cat",
                 "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    ctx = ssl.create_default_context(cadata=ca)
    req = urllib.request.Request(
        f"https://{ADDRESS[CP]}:6443/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        review = json.loads(resp.read())
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:default"
    # and the pod reaches the API through the kubernetes Service
    kubectl("-n", NS, "exec", "web-1", "--", "/agnhost", "connect", "--timeout=5s", f"{SERVICE_IP}:443")


def test_secret_is_encrypted_in_etcd(workload):
    kubectl("-n", NS, "create", "secret", "generic", "sealed", "--from-literal=password=hunter2")
    raw = etcdctl(f"get /registry/secrets/{NS}/sealed --print-value-only | head -c 22")
    assert raw.startswith("k8s:enc:aescbc:v1:key1")
    assert "hunter2" not in etcdctl(f"get /registry/secrets/{NS}/sealed --print-value-only | tr -c '[:print:]' '.'")


# ------------------------------------------------- every control-plane host
def test_etcd_members_are_the_control_planes_all_voting_and_healthy():
    members = json.loads(etcdctl("member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == sorted(CONTROL_PLANES)
    assert not [m["name"] for m in members if m.get("isLearner")]
    assert sorted(m["peerURLs"][0] for m in members) == sorted(f"https://{ADDRESS[c]}:2380" for c in CONTROL_PLANES)
    health = json.loads(etcdctl("endpoint health -w json", endpoints=CONTROL_PLANES))
    assert len(health) == len(CONTROL_PLANES) and all(h["health"] for h in health), health


@pytest.mark.parametrize("name", CONTROL_PLANES)
def test_each_apiserver_lists_every_etcd_member(name):
    unit = host(name).file("/etc/systemd/system/kube-apiserver.service").content_string
    for cp in CONTROL_PLANES:
        assert f"https://{ADDRESS[cp]}:2379" in unit.split("--etcd-servers=", 1)[1].split()[0]


def test_kubernetes_service_has_every_apiserver():
    """Each API server keeps its own address in the endpoints through its lease (endpoint reconciler)."""
    deadline = time.monotonic() + 30
    while True:
        slices = json.loads(kubectl("-n", "default", "get", "endpointslices",
                                    "-l", "kubernetes.io/service-name=kubernetes", "-o", "json"))["items"]
        found = sorted(a for s in slices for e in s["endpoints"] for a in e["addresses"])
        if found == sorted(ADDRESS[c] for c in CONTROL_PLANES) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert found == sorted(ADDRESS[c] for c in CONTROL_PLANES)


def test_controller_manager_and_scheduler_elect_one_leader():
    for lease in ("kube-controller-manager", "kube-scheduler"):
        spec = json.loads(kubectl("-n", "kube-system", "get", "lease", lease, "-o", "json"))["spec"]
        assert spec["holderIdentity"].split("_")[0] in CONTROL_PLANES, spec


def test_apiserver_certificate_names_every_way_in():
    """Every control-plane host (name and address), 127.0.0.1 (the local load balancer), the first Service
    address and kubernetes.default.svc.<domain>."""
    text = host(CP).check_output("openssl x509 -noout -ext subjectAltName -in /etc/kubernetes/pki/kube-apiserver.pem")
    for cp in CONTROL_PLANES:
        assert f"IP Address:{ADDRESS[cp]}" in text and f"DNS:{cp}" in text
    for name in ("IP Address:127.0.0.1", f"IP Address:{SERVICE_IP}", "DNS:kubernetes.default.svc.cluster.local"):
        assert name in text


@pytest.mark.parametrize("name", WORKERS)
def test_node_kubeconfigs_use_the_local_load_balancer(name):
    h = host(name)
    for path in ("/etc/kubernetes/kubelet.kubeconfig", "/etc/kubernetes/kube-proxy.kubeconfig"):
        assert "server: https://127.0.0.1:6444" in h.file(path).content_string, path
    config = h.file("/etc/kubernetes/apiserver-lb/haproxy.cfg").content_string
    servers = sorted(line.split()[2] for line in config.splitlines() if line.strip().startswith("server "))
    assert servers == sorted(f"{ADDRESS[c]}:6443" for c in CONTROL_PLANES)
    # through the load balancer, with the cluster CA (the certificate names 127.0.0.1)
    assert h.check_output("curl -sS -m 5 --cacert /etc/kubernetes/pki/kubernetes-ca.pem "
                          "https://127.0.0.1:6444/readyz") == "ok"
