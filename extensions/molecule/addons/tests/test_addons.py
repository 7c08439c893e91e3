"""Traffic from outside: the seed's last step, replayed from this machine against the lab.

An app (agnhost netexec) behind an Ingress for app.example.test whose certificate cert-manager
obtains from Pebble, the lab's ACME server, over HTTP-01 answered through Traefik; the same app
through an HTTPRoute on the Gateway; HTTP redirected to HTTPS; a second Ingress with the CA
issuer; a renewal while requests keep flowing; and two certificates that cannot be issued (a
name whose DNS points away from the cluster, a name the ACME server refuses), which must stay
not Ready with the reason readable in `kubectl describe`, breaking nothing else.

Every request goes from this machine to a worker's address with the name in SNI and Host, as a
client would after DNS pointed the name at the workers; certificates are checked against
Pebble's issuing root (or the CA issuer's CA), with the right name.

Runs in the addons scenario's verify step, and by hand against another lab set:

    HARDWAY_LAB_SET=dev1 HARDWAY_LAB_STATE=/tmp/dev1/state HARDWAY_PEBBLE_DIR=/tmp/dev1/pebble \
    pytest extensions/molecule/addons/tests/test_addons.py
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import pytest

# The lab set and kubectl as the default scenario's tests have them, and the test bed's pebble.py.
REPO = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(REPO / "extensions" / "molecule" / "default" / "tests"), str(REPO / "tests" / "testbed")]
import pebble  # noqa: E402
from labcluster import AGNHOST, LAB_SET, NET, kubectl  # noqa: E402

PEBBLE_DIR = Path(os.environ["HARDWAY_PEBBLE_DIR"])
CP_ADDRESS = f"{NET}.11"
WORKER_ADDRESSES = [f"{NET}.21", f"{NET}.22"]
NS = "hardway-addons"
ACME_ISSUER, CA_ISSUER = "pebble", "lab-ca"
CERT_TIMEOUT = 240


def apply(objects: list[dict]) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def ingress(name: str, host: str, issuer: str | None, secret: str) -> dict:
    annotations = {"cert-manager.io/cluster-issuer": issuer} if issuer else {}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": NS, "annotations": annotations},
            "spec": {"ingressClassName": "traefik",
                     "tls": [{"hosts": [host], "secretName": secret}],
                     "rules": [{"host": host, "http": {"paths": [{
                         "path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}}


def certificate_ready(name: str) -> bool:
    out = kubectl("-n", NS, "get", "certificate", name, "-o", "json", check=False)
    if not out:
        return False
    conditions = json.loads(out).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def wait_certificate(name: str, timeout: float = CERT_TIMEOUT) -> float:
    """Seconds until the Certificate is Ready; fails at once when an attempt has failed (cert-manager
    would only retry it after a back-off far longer than a test)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if certificate_ready(name):
            return time.monotonic() - start
        out = kubectl("-n", NS, "get", "certificate", name, "-o", "json", check=False)
        if out and json.loads(out).get("status", {}).get("lastFailureTime"):
            break
        time.sleep(2)
    raise AssertionError(f"certificate {name} not Ready after {time.monotonic() - start:.0f}s:\n"
                         + kubectl("-n", NS, "describe", "certificate,certificaterequest,order,challenge",
                                   check=False))


def https_get(address: str, host: str, cafile: Path, path: str = "/hostname", timeout: float = 5):
    """(status, body, peer certificate) of GET https://<host><path>, connecting to address:443."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((address, 443), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            peer = tls.getpeercert()
    head, _sep, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace"), peer


def https_get_served(address: str, host: str, cafile: Path, wait: float = 30):
    """https_get once Traefik serves the new certificate: it loads a Secret a moment after
    cert-manager writes it, and answers with its default certificate meanwhile."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return https_get(address, host, cafile)
        except ssl.SSLCertVerificationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def http_get(address: str, host: str, path: str = "/") -> tuple[int, str]:
    with socket.create_connection((address, 80), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _s, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers.get("location", "")


def subject_names(peer: dict) -> list[str]:
    return [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]


@pytest.fixture(scope="module")
def pebble_root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(pebble.issuing_root(CP_ADDRESS, PEBBLE_DIR / "pebble-tls-ca.pem"))
    return path


@pytest.fixture(scope="module")
def app():
    """The app: agnhost netexec (answers /hostname with the pod's name) behind a Service."""
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=180)
    apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
           {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": NS},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "app"}},
                     "template": {"metadata": {"labels": {"app": "app"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "app", "image": AGNHOST, "imagePullPolicy": "Never",
                                         "args": ["netexec", "--http-port=8080"],
                                         "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                                            "periodSeconds": 1}}]}}}},
           {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": NS},
            "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": 8080}]}}])
    kubectl("-n", NS, "rollout", "status", "deployment/app", "--timeout=180s", timeout=200)
    yield
    if os.environ.get("HARDWAY_KEEP") is None:
        kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false")


def test_traefik_runs_on_every_worker():
    # By label: cert-manager's HTTP-01 solver pods for the Gateway's certificate run in this namespace too.
    pods = json.loads(kubectl("-n", "traefik", "get", "pods", "-l", "app.kubernetes.io/name=traefik",
                              "-o", "json"))["items"]
    nodes = sorted(p["spec"]["nodeName"] for p in pods
                   if all(c["ready"] for c in p["status"].get("containerStatuses", [])))
    assert nodes == [f"{LAB_SET}-w1", f"{LAB_SET}-w2"]


def test_cluster_issuers_ready():
    issuers = json.loads(kubectl("get", "clusterissuers", "-o", "json"))["items"]
    ready = {i["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in i.get("status", {}).get("conditions", []))
             for i in issuers}
    assert ready == {ACME_ISSUER: True, CA_ISSUER: True}


def test_app_over_https_with_a_pebble_certificate_on_each_worker(app, pebble_root):
    apply([ingress("app", "app.example.test", ACME_ISSUER, "app-example-test-tls")])
    seconds = wait_certificate("app-example-test-tls")
    print(f"certificate for app.example.test Ready after {seconds:.0f}s")
    for address in WORKER_ADDRESSES:
        status, body, peer = https_get_served(address, "app.example.test", pebble_root)
        assert status == 200 and body.startswith("app-"), (address, status, body)
        assert subject_names(peer) == ["app.example.test"]


def test_plain_http_is_redirected_to_https(app):
    for address in WORKER_ADDRESSES:
        assert http_get(address, "app.example.test", "/hostname") == (301, "https://app.example.test/hostname")


def test_same_app_through_an_httproute_on_the_gateway(app, pebble_root):
    """The Gateway's HTTPS listener for gw.example.test gets its certificate through cert-manager's
    Gateway support (the Gateway carries the issuer annotation, set in the scenario's group_vars)."""
    apply([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "app", "namespace": NS},
            "spec": {"parentRefs": [{"name": "traefik", "namespace": "traefik"}],
                     "hostnames": ["gw.example.test"],
                     "rules": [{"backendRefs": [{"name": "app", "port": 80}]}]}}])
    deadline = time.monotonic() + CERT_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        try:
            results = [https_get(a, "gw.example.test", pebble_root) for a in WORKER_ADDRESSES]
            if all(status == 200 and body.startswith("app-") for status, body, _peer in results):
                assert all(subject_names(peer) == ["gw.example.test"] for _s, _b, peer in results)
                return
            last = [(s, b[:80]) for s, b, _p in results]
        except (OSError, ssl.SSLError) as exc:
            last = exc
        time.sleep(2)
    raise AssertionError(f"gw.example.test never answered 200 with a Pebble certificate: {last}\n"
                         + kubectl("-n", "traefik", "describe", "gateway,certificate", check=False))


def test_a_second_ingress_with_the_ca_issuer(app, tmp_path):
    apply([ingress("internal", "internal.example.test", CA_ISSUER, "internal-example-test-tls")])
    wait_certificate("internal-example-test-tls", timeout=60)
    secret = json.loads(kubectl("-n", NS, "get", "secret", "internal-example-test-tls", "-o", "json"))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    for address in WORKER_ADDRESSES:
        status, body, peer = https_get_served(address, "internal.example.test", ca)
        assert status == 200 and body.startswith("app-")
        assert subject_names(peer) == ["internal.example.test"]


def test_renewal_while_serving_without_a_failed_request(app, pebble_root):
    """Pebble's certificates last an hour; renewing at 98% of the lifetime remaining makes
    cert-manager renew about 72 s after issuance, while requests keep going to both workers."""
    name = "renew-example-test-tls"
    apply([{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"secretName": name, "dnsNames": ["renew.example.test"], "renewBeforePercentage": 98,
                     "issuerRef": {"kind": "ClusterIssuer", "name": ACME_ISSUER}}},
           ingress("renew", "renew.example.test", None, name)])
    wait_certificate(name)
    for address in WORKER_ADDRESSES:
        https_get_served(address, "renew.example.test", pebble_root)

    def stored() -> str:
        return json.loads(kubectl("-n", NS, "get", "secret", name, "-o", "json"))["data"]["tls.crt"]

    first = stored()
    results: list[tuple[str, object]] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            for address in WORKER_ADDRESSES:
                try:
                    status, _body, peer = https_get(address, "renew.example.test", pebble_root, timeout=3)
                    results.append(("ok" if status == 200 else f"status {status}", peer.get("serialNumber")))
                except (OSError, ssl.SSLError) as exc:
                    results.append((f"error {exc}", None))
            time.sleep(0.2)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 240
        while stored() == first and time.monotonic() < deadline:
            time.sleep(2)
        assert stored() != first, "cert-manager did not renew within 240 s"
        time.sleep(5)  # Traefik picks up the new Secret; keep asking meanwhile
    finally:
        stop.set()
        thread.join(10)
    failures = [r for r in results if r[0] != "ok"]
    served = {s for _r, s in results if s}
    print(f"renewal: {len(results)} requests, {len(failures)} failed, {len(served)} certificates served")
    assert not failures, failures[:5]
    assert len(served) >= 2, "the renewed certificate was never served"


def test_a_name_whose_dns_points_away_stays_not_ready_with_the_reason(app, pebble_root):
    """broken.example.test resolves (in the ACME server's DNS, which cert-manager's self check
    uses too) to the control plane, where nothing listens on port 80."""
    pebble.a_record(CP_ADDRESS, "broken.example.test", CP_ADDRESS)
    apply([ingress("broken", "broken.example.test", ACME_ISSUER, "broken-example-test-tls")])
    deadline = time.monotonic() + 90
    described = ""
    while time.monotonic() < deadline:
        described = kubectl("-n", NS, "describe", "challenge", check=False)
        if "broken.example.test" in described and "connect" in described:
            break
        time.sleep(3)
    assert "broken.example.test" in described and "connect" in described, described
    assert not certificate_ready("broken-example-test-tls")
    status, body, _peer = https_get(WORKER_ADDRESSES[1], "app.example.test", pebble_root)
    assert status == 200 and body.startswith("app-")


def test_a_name_the_acme_server_refuses_shows_the_acme_error(app, pebble_root):
    apply([ingress("blocked", "blocked.example.test", ACME_ISSUER, "blocked-example-test-tls")])
    deadline = time.monotonic() + 90
    described = ""
    while time.monotonic() < deadline:
        described = kubectl("-n", NS, "describe", "certificaterequest,order", check=False)
        if "rejectedIdentifier" in described:
            break
        time.sleep(3)
    assert "urn:ietf:params:acme:error:rejectedIdentifier" in described, described
    assert not certificate_ready("blocked-example-test-tls")
    status, _body, _peer = https_get(WORKER_ADDRESSES[0], "app.example.test", pebble_root)
    assert status == 200
