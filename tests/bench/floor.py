"""The benchmark's floor: fresh lab hosts to all nodes Ready with no Ansible at all.

    floor.py capture --name SET [--control-planes C] --workers N --out DIR [--state DIR]
        from a converged lab set, save per host a tar of every file the
        converge left (docker diff against the host's image, runtime state
        left out), the users it created, the units it runs in the order the
        converge starts them, the image archives to import; and from the
        cluster the etcd writes that are not files (users, roles, flannel's
        network config) and the API objects the converge applied.
    floor.py replay --name SET [--control-planes C] --workers N --capture DIR [--up] [--output JSON]
        on fresh hosts of the same set, the same work in the same order with
        plain tools: files onto every host at once, then per host (in
        parallel, as site.yml's free-strategy play) etcd, the etcd writes, the
        control plane and the node chain, then the API objects; timed until
        every node is Ready and every applied Deployment rolled out (what the
        converge waits for). --up takes the set down and up first; the clock
        starts once the hosts have booted, as bench.py's does.

The figure is what this machine cannot beat: the benchmark reports a
converge's seconds divided by it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "testbed"))
import lab  # noqa: E402

# The collection's services, in the order a host starts them (site.yml: etcd,
# the control plane, a control plane's own flanneld, then the node chain in
# the order of cluster_host_services).
START_ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-apiserver-lb",
               "containerd", "flanneld", "kubelet", "kube-proxy", "coredns"]
# What a converged host holds that is runtime state or a tool's leftovers, not
# the converge's result: left out of the capture (with everything below them).
EXCLUDED = ["/etc/machine-id", "/etc/mtab", "/root", "/tmp", "/run", "/proc", "/sys", "/dev",
            "/var/log", "/var/tmp", "/var/cache/apt", "/var/lib/systemd", "/var/lib/haproxy/dev",
            "/var/lib/cni", "/var/lib/containerd", "/opt/containerd", "/usr/libexec/kubernetes",
            "/var/lib/etcd/", "/var/lib/kubelet/"]
# Kept below an excluded directory: files the converge writes there.
KEPT = ["/var/lib/kubelet/config.yaml"]
# The account files: the replay creates the converge's users with useradd instead.
ACCOUNT_FILES = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"]
ETCD_ADMIN = "etcd-admin"
PKI = "/etc/kubernetes/pki"
ADMIN_KUBECONFIG = "/etc/kubernetes/admin-local.kubeconfig"
IMAGE_DIR = "/var/lib/hardway/images"
PINNED_LABEL = "io.cri-containerd.pinned=pinned"
APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# The kinds of API objects whose kubectl-applied ones the capture reads back.
API_KINDS = ["namespaces", "clusterroles", "clusterrolebindings", "roles", "rolebindings", "serviceaccounts",
             "configmaps", "services", "deployments", "daemonsets", "statefulsets", "ingressclasses"]
TIMEOUT = 300


def log(msg: str) -> None:
    print(f"floor: {msg}", flush=True)


def dexec(host: str, script: str, *, stdin: bytes | None = None, env: dict | None = None,
          stdout: object = subprocess.PIPE) -> bytes:
    """Run a bash script on a lab host with docker exec; its stdout, or SystemExit when it fails."""
    cmd = ["docker", "exec", "-i"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd += [host, "bash", "-euo", "pipefail", "-c", script]
    proc = subprocess.run(cmd, input=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise SystemExit(f"floor: {host}: `{script.strip().splitlines()[0][:80]}` failed ({proc.returncode}): {err}")
    return proc.stdout or b""


def wait_script(check: str, timeout: float = TIMEOUT, interval: float = 0.2) -> str:
    """A shell loop that runs `check` until it succeeds, and fails after `timeout` seconds."""
    tries = int(timeout / interval)
    return (f"ok=; for _try in $(seq {tries}); do if {check}; then ok=1; break; fi; sleep {interval}; done\n"
            f"[ -n \"$ok\" ] || {{ echo 'not within {timeout:.0f} s: {check[:60]}' >&2; exit 1; }}\n")


# ------------------------------------------------------------------ capture
def kept(path: str) -> bool:
    """Whether a path docker diff lists belongs in the capture."""
    if path in KEPT:
        return True
    if path in ACCOUNT_FILES or path.rstrip("-") in ACCOUNT_FILES:
        return False
    for excluded in EXCLUDED:
        # "/dir/" leaves out what is below the directory, "/dir" the directory too
        if path.startswith(excluded.rstrip("/") + "/") or (path == excluded and not excluded.endswith("/")):
            return False
    return True


def changed_paths(host: str) -> tuple[list[str], list[str]]:
    """The paths `docker diff` reports added or changed, and deleted, that the capture keeps."""
    out = subprocess.run(["docker", "diff", host], capture_output=True, text=True, check=True).stdout
    present, deleted = [], []
    for line in out.splitlines():
        kind, path = line[:1], line[2:]
        if kept(path):
            (deleted if kind == "D" else present).append(path)
    return sorted(present), sorted(deleted)


def accounts(text: str) -> dict[str, list[str]]:
    """passwd- or group-style lines by name."""
    return {line.split(":")[0]: line.split(":") for line in text.splitlines() if line.strip()}


def added_users(host: str) -> list[dict]:
    """The users (with their primary groups) a host has that its image lacks."""
    image = subprocess.run(["docker", "inspect", "-f", "{{.Image}}", host], capture_output=True, text=True,
                           check=True).stdout.strip()
    before = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat", image,
                             "/etc/passwd", "/etc/group"], capture_output=True, text=True, check=True).stdout
    now = dexec(host, "cat /etc/passwd; echo ---; cat /etc/group").decode()
    passwd, group = now.split("---\n", 1)
    old = accounts(before)
    groups = {fields[2]: fields[0] for fields in accounts(group).values()}
    users = []
    for name, fields in accounts(passwd).items():
        if name not in old:
            users.append({"name": name, "uid": fields[2], "gid": fields[3], "group": groups.get(fields[3], name),
                          "comment": fields[4], "home": fields[5], "shell": fields[6]})
    return users


def running_units(host: str, unit_files: list[str]) -> list[str]:
    """The collection's services running on a host (those whose unit files the converge wrote), in start order."""
    out = dexec(host, "systemctl list-units --type=service --state=running --no-legend --plain").decode()
    ours = {Path(p).stem for p in unit_files}
    running = [line.split()[0].removesuffix(".service") for line in out.splitlines() if line.strip()]
    found = [u for u in running if u in ours]
    return sorted(found, key=lambda u: (START_ORDER.index(u) if u in START_ORDER else len(START_ORDER), u))


def pinned_images(host: str) -> list[str]:
    out = dexec(host, "ctr --namespace k8s.io images list").decode()
    return sorted(line.split()[0] for line in out.splitlines()[1:]
                  if PINNED_LABEL in line and not line.startswith("sha256:"))


def capture_host(host: str, out: Path) -> dict:
    """One host's tar of the converge's files, and what its replay needs beside them."""
    present, deleted = changed_paths(host)
    (out / host).mkdir(parents=True, exist_ok=True)
    listing = "".join(p.lstrip("/") + "\n" for p in present).encode()
    with (out / host / "files.tar").open("wb") as tar:
        dexec(host, "tar c --no-recursion -C / -T -", stdin=listing, stdout=tar)
    unit_files = [p for p in present if p.startswith("/etc/systemd/system/") and p.count("/") == 4
                  and p.endswith(".service")]
    archives = [p for p in present if p.startswith(IMAGE_DIR + "/") and p.endswith(".tar")]
    units = running_units(host, unit_files)
    return {"paths": len(present), "deleted": deleted, "users": added_users(host), "units": units,
            "sysctl_files": [p for p in present if p.startswith("/etc/sysctl.d/")],
            "modules_files": [p for p in present if p.startswith("/etc/modules-load.d/")],
            "images": archives, "pinned": pinned_images(host) if "containerd" in units else [],
            "tar_bytes": (out / host / "files.tar").stat().st_size}


def etcdctl(host: str) -> str:
    """etcdctl on a member over loopback with the member's own certificate (as roles/etcd does)."""
    return (f"etcdctl --endpoints=https://127.0.0.1:2379 --cacert={PKI}/etcd-ca.pem "
            f"--cert={PKI}/etcd-server-{host}.pem --key={PKI}/etcd-server-{host}-key.pem --dial-timeout=5s")


def capture_etcd(host: str, password: str) -> dict:
    """Users, roles and the keys outside the API server's and flannel's leases, read back from etcd."""
    env = {"ETCDCTL_USER": ETCD_ADMIN, "ETCDCTL_PASSWORD": password}
    ctl = etcdctl(host)

    def get(args: str) -> dict:
        return json.loads(dexec(host, f"{ctl} -w json {args}", env=env))

    users = {name: get(f"user get {shlex.quote(name)}").get("roles", []) for name in get("user list")["users"]}
    roles = {}
    for name in get("role list").get("roles", []):
        roles[name] = [{"type": {0: "read", 1: "write", 2: "readwrite"}[p.get("permType", 0)],
                        "key": base64.b64decode(p["key"]).decode(),
                        "range_end": base64.b64decode(p.get("range_end", "")).decode()}
                       for p in get(f"role get {shlex.quote(name)}").get("perm", [])]
    keys = {}
    for kv in get('get "" --prefix --keys-only=false').get("kvs", []):
        key = base64.b64decode(kv["key"]).decode()
        if key.startswith("/registry/") or "/subnets/" in key:
            continue
        keys[key] = base64.b64decode(kv.get("value", "")).decode()
    auth = "true" in dexec(host, f"{ctl} auth status", env=env).decode().splitlines()[0].lower()
    return {"users": users, "roles": roles, "keys": keys, "auth": auth}


def capture_objects(host: str) -> list[dict]:
    """The API objects applied with kubectl, as they were applied (their last-applied annotation)."""
    out = dexec(host, f"kubectl --kubeconfig={ADMIN_KUBECONFIG} get {','.join(API_KINDS)} -A -o json")
    objects = []
    for item in json.loads(out)["items"]:
        applied = (item["metadata"].get("annotations") or {}).get(APPLIED)
        if applied:
            objects.append(json.loads(applied))
    return objects


def capture(prefix: str, out: Path, control_planes: int, workers: int, state: Path | None = None) -> dict:
    """Save what a converge left on a lab set's hosts and in its cluster; returns (and writes) the manifest."""
    state = state or Path(os.environ.get("HARDWAY_LAB_STATE", lab.CACHE / "lab" / "state"))
    password_file = state / "etcd-admin-password"
    if not password_file.exists():
        raise SystemExit(f"floor: {password_file} is missing: pass the converge's state dir (--state)")
    password = password_file.read_text().strip()
    hosts = lab.host_names(workers, prefix, control_planes)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(len(hosts)) as pool:
        found = dict(zip([h for h, _ip in hosts], pool.map(lambda h: capture_host(h[0], out), hosts)))
    first = hosts[0][0]
    manifest = {"prefix": prefix, "control_planes": control_planes, "workers": workers,
                "hosts": found, "etcd": capture_etcd(first, password)}
    objects = capture_objects(first)
    (out / "objects.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=1))
    secret = out / "etcd-admin-password"
    secret.write_text(password)
    secret.chmod(0o600)
    manifest["objects"] = [f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
                           for o in objects]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ------------------------------------------------------------------- replay
class Clock:
    """Seconds since the replay started, and when each step of each host ended."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.marks: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def mark(self, host: str, step: str) -> float:
        now = round(time.monotonic() - self.start, 2)
        with self._lock:
            self.marks.append((now, host, step))
        log(f"{now:6.1f} s  {host}: {step}")
        return now


def put_files(host: str, info: dict, capture_dir: Path) -> None:
    """The converge's users, then its files, kernel settings and a daemon-reload, on one host."""
    script = []
    for user in info["users"]:
        group = shlex.quote(user["group"])
        script.append(f"getent group {group} >/dev/null || groupadd --system --gid {user['gid']} {group}")
        script.append(f"useradd --system --uid {user['uid']} --gid {user['gid']} --no-create-home "
                      f"--home-dir {shlex.quote(user['home'])} --shell {shlex.quote(user['shell'])} "
                      f"--comment {shlex.quote(user['comment'])} {shlex.quote(user['name'])}")
    for path in info["deleted"]:
        script.append(f"rm -rf {shlex.quote(path)}")
    script.append("tar x -C / --same-owner --same-permissions")
    for path in info["modules_files"]:  # only modules the kernel lacks (roles/node: node_kernel_modules)
        script.append(f"for m in $(grep -v '^#' {path}); do case $m in "
                      "br_netfilter) p=/proc/sys/net/bridge/bridge-nf-call-iptables;; *) p=/sys/module/$m;; esac; "
                      "[ -e $p ] || modprobe $m; done")
    for path in info["sysctl_files"]:
        script.append(f"sysctl -q -p {path}")
    script.append("systemctl daemon-reload")
    dexec(host, "\n".join(script), stdin=(capture_dir / host / "files.tar").read_bytes())


def etcd_writes(host: str, etcd: dict, password: str) -> None:
    """The etcd_auth and flannel_network work with plain etcdctl: roles, users, keys, then auth on."""
    ctl = etcdctl(host)
    lines = []
    for role, perms in etcd["roles"].items():
        lines.append(f"{ctl} role add {shlex.quote(role)} >/dev/null")
        for p in perms:
            lines.append(f"{ctl} role grant-permission {shlex.quote(role)} {p['type']} {shlex.quote(p['key'])} "
                         f"{shlex.quote(p['range_end'])} >/dev/null")
    for user, roles in etcd["users"].items():
        how = '--new-user-password="$ADMIN_PASSWORD"' if user == ETCD_ADMIN else "--no-password"
        lines.append(f"{ctl} user add {shlex.quote(user)} {how} >/dev/null")
        lines += [f"{ctl} user grant-role {shlex.quote(user)} {shlex.quote(r)} >/dev/null" for r in roles]
    for key, value in etcd["keys"].items():
        lines.append(f"{ctl} put {shlex.quote(key)} {shlex.quote(value)} >/dev/null")
    if etcd["auth"]:
        lines.append(f"{ctl} auth enable >/dev/null")
    dexec(host, "\n".join(lines), env={"ADMIN_PASSWORD": password})


def import_images(host: str, info: dict) -> None:
    """What roles/artifacts/tasks/images.yml does: each archive into namespace k8s.io, the sandbox pinned."""
    lines = [wait_script("ctr --namespace k8s.io version >/dev/null 2>&1")]
    lines += [f"ctr --namespace k8s.io images import --platform linux/amd64 {shlex.quote(a)} >/dev/null"
              for a in info["images"]]
    lines += [f"ctr --namespace k8s.io images label {shlex.quote(ref)} {PINNED_LABEL} >/dev/null"
              for ref in info["pinned"]]
    dexec(host, "\n".join(lines))


def start(host: str, units: list[str]) -> None:
    """Start units one after the other (as the services module does), each enabled by the files already."""
    if units:
        dexec(host, "\n".join(f"systemctl start {u}.service" for u in units))


class Replay:
    """The per-host chains of one replay, and what they wait for from each other."""

    def __init__(self, manifest: dict, capture_dir: Path, clock: Clock) -> None:
        self.manifest = manifest
        self.capture_dir = capture_dir
        self.clock = clock
        self.hosts = list(manifest["hosts"])
        self.first = self.hosts[0]
        self.password = (capture_dir / "etcd-admin-password").read_text().strip()
        self.etcd_written = threading.Event()
        self.objects_applied = threading.Event()

    def chain(self, host: str) -> None:
        """A host's services in order, with the waits the roles do after etcd, kube-apiserver and containerd."""
        info = self.manifest["hosts"][host]
        pending: list[str] = []
        for unit in info["units"]:
            pending.append(unit)
            if unit == "kube-apiserver":
                self.etcd_written.wait(TIMEOUT)
            if unit not in ("etcd", "kube-apiserver", "containerd"):
                continue
            start(host, pending)
            pending = []
            self.after(host, unit, info)
        start(host, pending)
        self.clock.mark(host, "all services started")

    def after(self, host: str, unit: str, info: dict) -> None:
        if unit == "etcd":
            dexec(host, wait_script(f"{etcdctl(host)} endpoint health >/dev/null 2>&1"))
            self.clock.mark(host, "etcd healthy")
            if host == self.first:
                etcd_writes(host, self.manifest["etcd"], self.password)
                self.clock.mark(host, "etcd users, roles, flannel network config, auth on")
                self.etcd_written.set()
        elif unit == "kube-apiserver":
            dexec(host, wait_script(f"curl -fsS --cacert {PKI}/kubernetes-ca.pem "
                                    "https://127.0.0.1:6443/readyz >/dev/null 2>&1"))
            self.clock.mark(host, "API server ready")
            if host == self.first:
                dexec(host, f"kubectl --kubeconfig={ADMIN_KUBECONFIG} apply -f - >/dev/null",
                      stdin=(self.capture_dir / "objects.json").read_bytes())
                self.clock.mark(host, "API objects applied")
                self.objects_applied.set()
        elif unit == "containerd":
            import_images(host, info)
            self.clock.mark(host, "images imported")

    def wait_ready(self) -> None:
        """Every node Ready, then every applied Deployment rolled out: what the converge waits for."""
        nodes = [h for h, info in self.manifest["hosts"].items() if "kubelet" in info["units"]]
        kubectl = f"kubectl --kubeconfig={ADMIN_KUBECONFIG}"
        ready = (f"out=$({kubectl} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}}="
                 "{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}' 2>/dev/null) && "
                 + " && ".join(f"grep -qx '{n}=True' <<<\"$out\"" for n in nodes))
        dexec(self.first, wait_script(f"{{ {ready}; }}", interval=0.5))
        self.clock.mark(self.first, f"{len(nodes)} nodes Ready")
        objects = json.loads((self.capture_dir / "objects.json").read_text())["items"]
        for obj in objects:
            if obj["kind"] == "Deployment":
                meta = obj["metadata"]
                dexec(self.first, f"{kubectl} -n {meta.get('namespace', 'default')} rollout status "
                                  f"deployment/{meta['name']} --timeout={TIMEOUT}s >/dev/null")
                self.clock.mark(self.first, f"deployment {meta['name']} rolled out")


def replay(prefix: str, capture_dir: Path, control_planes: int, workers: int) -> dict:
    """On fresh hosts of a lab set: the captured converge's end state with plain tools; returns the timings."""
    manifest = json.loads((capture_dir / "manifest.json").read_text())
    hosts = [h for h, _ip in lab.host_names(workers, prefix, control_planes)]
    if hosts != list(manifest["hosts"]):
        raise SystemExit(f"floor: the capture holds {', '.join(manifest['hosts'])}, not {', '.join(hosts)}")
    clock = Clock()
    run = Replay(manifest, capture_dir, clock)
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(lambda h: put_files(h, manifest["hosts"][h], capture_dir), hosts))
    files = clock.mark("all", "files, users, kernel settings, daemon-reload")
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(run.chain, hosts))
    chains = clock.mark("all", "every host's services started")
    run.wait_ready()
    total = round(time.monotonic() - clock.start, 1)

    def first(step: str) -> float | None:
        return next((t for t, _h, s in clock.marks if s == step), None)

    return {"seconds": total,
            "phases": {"files": files, "etcd_written": first("etcd users, roles, flannel network config, auth on"),
                       "api_ready": first("API server ready"), "services_started": chains,
                       "nodes_ready": next(t for t, _h, s in clock.marks if s.endswith("nodes Ready"))},
            "timeline": [{"seconds": t, "host": h, "step": s} for t, h, s in clock.marks]}


# --------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("capture", "replay"):
        p = sub.add_parser(name)
        p.add_argument("--name", required=True, help="the lab set (host name prefix)")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--control-planes", type=int, default=1)
    p = sub.choices["capture"]
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--state", type=Path, help="the converge's state dir (default: $HARDWAY_LAB_STATE)")
    p = sub.choices["replay"]
    p.add_argument("--capture", required=True, type=Path)
    p.add_argument("--up", action="store_true", help="take the set down and start fresh hosts first")
    p.add_argument("--output", type=Path, help="write the timings here as JSON")
    args = parser.parse_args(argv)
    if args.cmd == "capture":
        manifest = capture(args.name, args.out, args.control_planes, args.workers, args.state)
        for host, info in manifest["hosts"].items():
            log(f"{host}: {info['paths']} paths ({info['tar_bytes'] / 1e6:.0f} MB), units {', '.join(info['units'])}")
        log(f"etcd: {len(manifest['etcd']['users'])} users, keys {', '.join(manifest['etcd']['keys'])}; "
            f"{len(manifest['objects'])} API objects; written to {args.out}")
        return 0
    if args.up:
        lab.down(args.name)
        lab.up(args.workers, args.name, control_planes=args.control_planes)
    result = replay(args.name, args.capture, args.control_planes, args.workers)
    if args.output:
        args.output.write_text(json.dumps(result, indent=1))
    log(f"{result['seconds']} s to every node Ready and every Deployment rolled out; phases (s since start): "
        + ", ".join(f"{k} {v}" for k, v in result["phases"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
