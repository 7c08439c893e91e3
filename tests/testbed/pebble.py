"""The lab's stand-in for Let's Encrypt: Pebble and its DNS server as services on a lab host.

    pebble.py up --host mol-cp1 --address 172.29.1.11 --answer 172.29.1.21 --out DIR
    pebble.py a-record --address 172.29.1.11 NAME IP   (what the DNS server answers for NAME)
    pebble.py root --address 172.29.1.11 --out DIR     (Pebble's issuing root, PEM)

Pebble (github.com/letsencrypt/pebble, built by mirror.py) is an ACME server like Let's Encrypt's,
made for tests: it validates HTTP-01 challenges for real, connecting to port 80 of the address
its DNS server gives for the name. pebble-challtestsrv is that DNS server: every name resolves
to --answer (a worker, where Traefik listens) unless a-record says otherwise. Both run as
transient systemd units on the lab host, outside the cluster, as an ACME server on the internet
would be. Their binaries come from the test bed's image archives; Pebble's own TLS certificate
(for its ACME directory on port 14000) is made here, for the host's address, by a throwaway CA
written to DIR/pebble-tls-ca.pem, the bundle an ACME ClusterIssuer names as caBundle.
"""

from __future__ import annotations

import argparse
import datetime
import io
import ipaddress
import json
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mirror  # noqa: E402

ACME_PORT, MANAGEMENT_PORT, DNS_PORT, DNS_MANAGEMENT_PORT = 14000, 15000, 8053, 8055
REMOTE = "/usr/local/lib/pebble"
# How long Pebble's certificates are valid: one hour, so that a test sees a renewal soon.
VALIDITY_SECONDS = 3600
# Names Pebble refuses to issue for (an ACME error the tests look for).
BLOCKED = ["blocked.example.test"]


def binary_from_archive(archive: Path) -> bytes:
    """The /app binary of a one-layer image archive the test bed wrote."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        layer = outer.extractfile(manifest[0]["Layers"][0]).read()
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        return inner.extractfile("app").read()


def tls_files(address: str) -> tuple[bytes, bytes, bytes]:
    """(CA cert, server cert, server key) in PEM for Pebble's HTTPS endpoints."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hardway lab ACME server CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("pebble"), x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def docker(*args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pebble: docker {' '.join(args[:3])} failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode()


def put(host: str, path: str, data: bytes, mode: str) -> None:
    docker("exec", "-i", host, "sh", "-c", f"cat > {path} && chmod {mode} {path}", stdin=data)


def config(address: str) -> dict:
    return {"pebble": {
        "listenAddress": f"0.0.0.0:{ACME_PORT}", "managementListenAddress": f"0.0.0.0:{MANAGEMENT_PORT}",
        "certificate": f"{REMOTE}/cert.pem", "privateKey": f"{REMOTE}/key.pem",
        # Validation connects where a real ACME server would: ports 80 and 443.
        "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": False,
        "domainBlocklist": BLOCKED, "retryAfter": {"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa",
        "profiles": {"default": {"description": "one hour", "validityPeriod": VALIDITY_SECONDS}}}}


def up(host: str, address: str, answer: str, out: Path) -> Path:
    images = mirror.IMAGES
    version = mirror.load_versions()[0]["pebble"]
    ca, cert, key = tls_files(address)
    docker("exec", host, "mkdir", "-p", REMOTE)
    for unit in ("pebble", "pebble-dns"):
        subprocess.run(["docker", "exec", host, "systemctl", "stop", unit], capture_output=True, check=False)
        subprocess.run(["docker", "exec", host, "systemctl", "reset-failed", unit], capture_output=True, check=False)
    put(host, f"{REMOTE}/pebble", binary_from_archive(images / f"pebble-{version}.tar"), "0755")
    put(host, f"{REMOTE}/pebble-challtestsrv",
        binary_from_archive(images / f"pebble-challtestsrv-{version}.tar"), "0755")
    put(host, f"{REMOTE}/cert.pem", cert, "0644")
    put(host, f"{REMOTE}/key.pem", key, "0600")
    put(host, f"{REMOTE}/config.json", json.dumps(config(address), indent=1).encode(), "0644")
    docker("exec", host, "systemd-run", "--unit=pebble-dns", "--description=ACME test DNS server",
           f"{REMOTE}/pebble-challtestsrv", "-defaultIPv4", answer, "-defaultIPv6", "",
           "-dnsserver", f":{DNS_PORT}", "-management", f":{DNS_MANAGEMENT_PORT}",
           "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
    # No random nonce rejections or validation delays: the tests time the flow.
    docker("exec", host, "systemd-run", "--unit=pebble", "--description=ACME test server",
           "--setenv=PEBBLE_VA_NOSLEEP=1", "--setenv=PEBBLE_WFE_NONCEREJECT=0",
           f"{REMOTE}/pebble", "-config", f"{REMOTE}/config.json",
           "-dnsserver", f"127.0.0.1:{DNS_PORT}")
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / "pebble-tls-ca.pem"
    bundle.write_bytes(ca)
    context = ssl.create_default_context(cafile=str(bundle))
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"https://{address}:{ACME_PORT}/dir", context=context, timeout=3) as r:
                json.load(r)
            # The DNS server's management interface: it answers once its DNS server does.
            a_record(address, "pebble.example.test", address)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                states = subprocess.run(["docker", "exec", host, "systemctl", "is-active", "pebble", "pebble-dns"],
                                        capture_output=True, text=True, check=False).stdout.split()
                raise SystemExit(f"pebble: not answering on {address} ({exc}); units pebble, pebble-dns: "
                                 f"{', '.join(states)} (journalctl -u pebble-dns on {host})") from exc
            time.sleep(0.5)
    print(f"pebble: ACME directory https://{address}:{ACME_PORT}/dir (CA bundle {bundle}); "
          f"names resolve to {answer} (DNS {address}:{DNS_PORT})")
    return bundle


def a_record(address: str, name: str, ip: str) -> None:
    body = json.dumps({"host": name, "addresses": [ip]}).encode()
    req = urllib.request.Request(f"http://{address}:{DNS_MANAGEMENT_PORT}/add-a", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5):
        pass


def issuing_root(address: str, bundle: Path) -> str:
    context = ssl.create_default_context(cafile=str(bundle))
    with urllib.request.urlopen(f"https://{address}:{MANAGEMENT_PORT}/roots/0", context=context, timeout=5) as r:
        return r.read().decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up")
    p.add_argument("--host", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--answer", required=True)
    p.add_argument("--out", required=True, type=Path)
    p = sub.add_parser("a-record")
    p.add_argument("--address", required=True)
    p.add_argument("name")
    p.add_argument("ip")
    p = sub.add_parser("root")
    p.add_argument("--address", required=True)
    p.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "up":
        up(args.host, args.address, args.answer, args.out)
    elif args.cmd == "a-record":
        a_record(args.address, args.name, args.ip)
    else:
        sys.stdout.write(issuing_root(args.address, args.out / "pebble-tls-ca.pem"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
