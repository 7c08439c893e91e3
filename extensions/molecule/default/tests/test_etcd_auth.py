"""Least privilege in etcd, checked on the lab hosts.

The flannel certificate on a worker reads and writes its own prefix and
nothing else; the API server, whose certificate may use every key, keeps
working. flanneld talks gRPC, where etcd takes the client certificate's common
name as the user, so the checks use etcdctl (copied for the test from the
control-plane host, workers have none) with the worker's own flannel
certificate and flanneld's own endpoints and prefix; and curl through etcd's
JSON gateway, which refuses certificates with a common name while
authentication is on.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest
from labcluster import CP, KUBECONFIG, WORKERS, host, mirror

PKI = "/etc/kubernetes/pki"
ETCDCTL = "/root/hardway-verify-etcdctl"  # /tmp is noexec on the lab hosts


def flanneld_flags(name: str) -> dict:
    """flanneld's flags on that host, from its unit."""
    unit = host(name).file("/etc/systemd/system/flanneld.service").content_string
    return dict(re.findall(r"--([a-z-]+)=(\S+)", unit))


@pytest.fixture(scope="module", params=WORKERS)
def worker(request):
    """A worker with etcdctl copied from the control plane (removed afterwards)."""
    name = request.param
    copy = subprocess.run(f"docker cp {CP}:/usr/local/bin/etcdctl - | docker exec -i {name} "
                          f"sh -c 'tar -xO > {ETCDCTL} && chmod 0755 {ETCDCTL}'",
                          shell=True, capture_output=True, text=True, timeout=120, check=False)
    assert copy.returncode == 0, copy.stderr
    flags = flanneld_flags(name)
    yield {"name": name, "host": host(name), "flags": flags,
           "prefix": flags["etcd-prefix"].rstrip("/") + "/"}
    host(name).run(f"rm -f {ETCDCTL}")


def as_flannel(worker, *args: str):
    """etcdctl on the worker with its flannel certificate, at flanneld's own endpoints."""
    flags = worker["flags"]
    cmd = (f"{ETCDCTL} --endpoints {flags['etcd-endpoints']} --cacert {flags['etcd-cafile']} "
           f"--cert {flags['etcd-certfile']} --key {flags['etcd-keyfile']} --command-timeout 10s "
           + " ".join(f"'{a}'" for a in args))
    return worker["host"].run(cmd)


def test_flanneld_uses_the_flannel_certificate(worker):
    assert worker["flags"]["etcd-certfile"] == f"{PKI}/etcd-client-flannel.pem"
    subject = worker["host"].check_output(f"openssl x509 -noout -subject -in {PKI}/etcd-client-flannel.pem")
    assert re.search(r"CN\s*=\s*flannel\b", subject), subject


def test_flannel_certificate_cannot_read_registry(worker):
    for args in (("get", "/registry/", "--prefix", "--keys-only"),
                 ("get", "/registry/secrets/", "--prefix", "--keys-only"),
                 ("get", "/registry/namespaces/default")):
        out = as_flannel(worker, *args)
        assert out.rc != 0 and "permission denied" in out.stderr, (args, out.stdout, out.stderr)
        assert "/registry/" not in out.stdout


def test_flannel_certificate_cannot_write_outside_its_prefix(worker):
    for key in ("/registry/pods/default/injected", "/hardway-verify", worker["prefix"].rstrip("/") + "X"):
        out = as_flannel(worker, "put", key, "x")
        assert out.rc != 0 and "permission denied" in out.stderr, (key, out.stderr)


def test_flannel_certificate_reads_and_writes_its_prefix(worker):
    config = as_flannel(worker, "get", worker["prefix"] + "config", "--print-value-only")
    assert config.rc == 0, config.stderr
    assert json.loads(config.stdout)["Backend"]["Type"] == "vxlan"
    leases = as_flannel(worker, "get", worker["prefix"] + "subnets/", "--prefix", "--keys-only")
    assert leases.rc == 0 and worker["prefix"] + "subnets/" in leases.stdout, leases.stderr
    key = worker["prefix"] + "hardway-verify-" + worker["name"]
    assert as_flannel(worker, "put", key, "ok").rc == 0
    assert as_flannel(worker, "del", key).rc == 0


GATEWAY_REFUSES_CN = "CommonName of client sending a request against gateway will be ignored"


def test_gateway_refuses_the_flannel_certificate(worker):
    """curl with the flannel certificate through etcd's JSON gateway: etcd 3.6 refuses any client
    certificate with a common name there while authentication is on (the gateway could not tell who it is)."""
    flags = worker["flags"]
    endpoint = flags["etcd-endpoints"].split(",")[0]
    for prefix in (b"/registry/", worker["prefix"].encode()):
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        body = json.dumps({"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()})
        out = worker["host"].run(
            f"curl -sS -w '\\n%{{http_code}}' --cacert {flags['etcd-cafile']} --cert {flags['etcd-certfile']} "
            f"--key {flags['etcd-keyfile']} -X POST {endpoint}/v3/kv/range -d '{body}'")
        assert out.rc == 0, out.stderr
        text, _sep, status = out.stdout.rpartition("\n")
        assert status == "400" and GATEWAY_REFUSES_CN in text and "kvs" not in text, out.stdout


def test_etcd_authentication_is_on():
    """The gateway check above only applies while etcd authentication is on: the API server's own
    certificate is refused there too (it keeps working over gRPC, see below)."""
    key = base64.b64encode(b"/registry/").decode()
    out = host(CP).run(f"curl -sS --cacert {PKI}/etcd-ca.pem --cert {PKI}/kube-apiserver-etcd-client.pem "
                       f"--key {PKI}/kube-apiserver-etcd-client-key.pem -X POST "
                       f"https://127.0.0.1:2379/v3/kv/range -d '{{\"key\": \"{key}\"}}'")
    assert out.rc == 0 and GATEWAY_REFUSES_CN in out.stdout, out.stdout


def test_apiserver_still_works():
    kubectl = [str(mirror.k8s_binary("kubectl")), "--kubeconfig", str(KUBECONFIG)]
    nodes = subprocess.run([*kubectl, "get", "nodes", "-o", "name"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert nodes.returncode == 0 and all(f"node/{w}" in nodes.stdout for w in WORKERS), nodes.stderr
    ready = subprocess.run([*kubectl, "get", "--raw", "/readyz?verbose"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert ready.returncode == 0 and "[+]etcd ok" in ready.stdout, ready.stdout + ready.stderr
