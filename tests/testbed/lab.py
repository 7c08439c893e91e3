"""Lab hosts for hardway.kubernetes: Debian containers with systemd as PID 1.

    lab.py docker                  start dockerd if no engine answers
    lab.py image [--os SUITE]      build (or reuse) the lab host image
    lab.py up [--control-planes C] [--workers N] [--name PREFIX] [--os SUITE]
                                   start C control planes (1, 3 or 5; they
                                   are the etcd members too) and N workers
    lab.py down [--name PREFIX]    remove the hosts, restore host sysctls
    lab.py inventory [--control-planes C] [--workers N]
                                   print the lab inventory (YAML)
    lab.py instances [--control-planes C] [--workers N] [--name PREFIX]
                                   print the hosts as molecule's instance config
    lab.py status                  list lab hosts

The hosts live on an internal Docker network (no route out). The image holds
everything the roles would install from apt, so a converge needs no network.
SUITE is a Debian release the collection supports: bookworm (12, the default)
or trixie (13); the environment variable LAB_OS sets the default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CACHE = Path(os.environ.get("HARDWAY_CACHE", Path.home() / ".cache" / "hardway"))
LAB = CACHE / "lab"
# The Debian releases the lab can build hosts of (release name: version).
SUITES = {"bookworm": "12", "trixie": "13"}
DEFAULT_SUITE = os.environ.get("LAB_OS") or "bookworm"
# What debootstrap puts in the image. The node role installs the second group
# from apt on a real host; in the lab they are already there.
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "iproute2",
                 "kmod", "procps", "ca-certificates", "iputils-ping", "curl", "netbase",
                 "bind9-dnsutils"]
NODE_PACKAGES = ["conntrack", "iptables", "socat", "ipset", "haproxy"]
IMAGE_REPO = "hardway-lab"

# Each set of lab hosts has its own internal network and /24, so the README's
# lab, the molecule scenarios and the benchmark can exist side by side.
LAB_SETS = {"lab": 0, "mol": 1, "tbed": 2, "bench": 3, "itest": 4, "dev1": 5, "dev2": 6, "dev3": 7,
            "conf": 8}


def network_of(prefix: str) -> tuple[str, str]:
    """Docker network name and address prefix (first three octets) of a set."""
    if prefix not in LAB_SETS:
        raise SystemExit(f"lab: unknown lab set {prefix!r}; known: {', '.join(LAB_SETS)}")
    return f"hardway-{prefix}", f"172.29.{LAB_SETS[prefix]}"


# Kernel settings outside the network namespace are shared with this machine;
# kubelet writes these ones. They are recorded before the lab starts and put
# back when it is torn down.
GLOBAL_SYSCTLS = ["vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic",
                  "kernel.panic_on_oops", "kernel.keys.root_maxkeys",
                  "kernel.keys.root_maxbytes", "net.netfilter.nf_conntrack_max",
                  "fs.inotify.max_user_instances", "fs.inotify.max_user_watches"]
# All lab hosts' systemd, containerd and kubelet share this machine's inotify
# limits (one user: root). 128 instances run out at about eight nodes, so the
# lab raises them while it runs (restored by `down` with the rest).
LAB_MINIMUM_SYSCTLS = {"fs.inotify.max_user_instances": 1024, "fs.inotify.max_user_watches": 524288}
SYSCTL_FILE = LAB / "sysctl-saved.json"

RUN_OPTS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--device-cgroup-rule", "a *:* rwm",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
    "--device", "/dev/kmsg",
    # containerd cannot mount snapshots on the container's own overlay root.
    "-v", "/var/lib/containerd",
    "--stop-signal", "SIGRTMIN+3",
]


def log(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def sh(cmd: list[str], check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, text=True, capture_output=capture, check=False, **kw)
    if check and proc.returncode != 0:
        err = (proc.stderr or "").strip()
        raise SystemExit(f"lab: `{' '.join(cmd[:4])}` failed ({proc.returncode}): {err}")
    return proc


def docker_ok() -> bool:
    return shutil.which("docker") is not None and \
        sh(["docker", "info"], check=False).returncode == 0


def ensure_docker() -> None:
    """Install Debian's docker.io and start dockerd when no engine answers."""
    if docker_ok():
        return
    if shutil.which("dockerd") is None:
        log("installing docker.io from apt")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update", "-q"], env=env)
        sh(["apt-get", "install", "-y", "-q", "docker.io"], env=env)
    log("starting dockerd")
    LAB.mkdir(parents=True, exist_ok=True)
    with open(LAB / "dockerd.log", "ab") as out:
        subprocess.Popen(["dockerd"], stdout=out, stderr=out, start_new_session=True)
    for _attempt in range(60):
        if docker_ok():
            return
        time.sleep(1)
    raise SystemExit(f"lab: dockerd did not answer within 60 s; see {LAB / 'dockerd.log'}")


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise SystemExit(f"lab: unknown Debian release {suite!r} (LAB_OS or --os); "
                         f"known: {', '.join(f'{k} ({v})' for k, v in SUITES.items())}")
    return suite


def image_tag(suite: str) -> str:
    key = json.dumps([suite, BASE_PACKAGES, NODE_PACKAGES, 2]).encode()
    return f"{IMAGE_REPO}:{suite}-{hashlib.sha256(key).hexdigest()[:12]}"


def ensure_image(suite: str = DEFAULT_SUITE) -> str:
    """The lab image, keyed by suite and package list; its rootfs tar is cached."""
    ensure_docker()
    tag = image_tag(check_suite(suite))
    if sh(["docker", "image", "inspect", tag], check=False).returncode == 0:
        log(f"image {tag}: cached")
        return tag
    rootfs_tar = LAB / f"rootfs-{tag.split(':')[1]}.tar"
    if not rootfs_tar.exists():
        if shutil.which("debootstrap") is None:
            log("installing debootstrap from apt")
            sh(["apt-get", "install", "-y", "-q", "debootstrap"],
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        LAB.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=LAB))
        log(f"debootstrap {suite} into {root} (about a minute)")
        start = time.monotonic()
        sh(["debootstrap", "--variant=minbase",
            "--include=" + ",".join(BASE_PACKAGES + NODE_PACKAGES), suite, str(root)],
           capture=False, stdout=subprocess.DEVNULL)
        customise_rootfs(root)
        sh(["tar", "-C", str(root), "-cf", str(rootfs_tar) + ".part", "."])
        os.rename(str(rootfs_tar) + ".part", rootfs_tar)
        shutil.rmtree(root)
        log(f"rootfs ready in {time.monotonic() - start:.0f}s")
    log(f"importing {tag}")
    with open(rootfs_tar, "rb") as f:
        sh(["docker", "import", "-c", 'CMD ["/sbin/init"]', "-c", "ENV container=docker",
            "-", tag], stdin=f)
    return tag


def customise_rootfs(root: Path) -> None:
    """Small changes a container host needs; nothing Kubernetes-specific."""
    # No console getty and no units that cannot work in a container.
    for unit in ("getty@tty1.service", "console-getty.service"):
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    for unit in ("systemd-udevd.service", "systemd-udev-trigger.service",
                 "systemd-modules-load.service", "sys-kernel-config.mount",
                 "sys-kernel-debug.mount", "apt-daily.timer", "apt-daily-upgrade.timer",
                 "systemd-firstboot.service"):
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")
    # apt cannot reach anything from the internal network: make that quick.
    (root / "etc/apt/apt.conf.d/99lab").write_text(
        'Acquire::Retries "0";\nAcquire::http::Timeout "2";\n')
    (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)


def host_names(workers: int, prefix: str, control_planes: int = 1) -> list[tuple[str, str]]:
    """Control planes first (<prefix>-cp<i> on .1<i>), then workers (<prefix>-w<i> on .2<i>...)."""
    if not 1 <= control_planes <= 9:
        raise SystemExit(f"lab: --control-planes must be 1 to 9, not {control_planes}")
    net = network_of(prefix)[1]
    hosts = [(f"{prefix}-cp{i}", f"{net}.{10 + i}") for i in range(1, control_planes + 1)]
    hosts += [(f"{prefix}-w{i}", f"{net}.{20 + i}") for i in range(1, workers + 1)]
    return hosts


def read_sysctl(name: str) -> str | None:
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError:
        return None


def save_sysctls() -> None:
    if SYSCTL_FILE.exists():
        return
    LAB.mkdir(parents=True, exist_ok=True)
    saved = {k: read_sysctl(k) for k in GLOBAL_SYSCTLS}
    SYSCTL_FILE.write_text(json.dumps(saved, indent=1))
    log(f"recorded host sysctls in {SYSCTL_FILE}")


def raise_lab_limits() -> None:
    for key, minimum in LAB_MINIMUM_SYSCTLS.items():
        current = read_sysctl(key)
        if current is not None and int(current) < minimum:
            (Path("/proc/sys") / key.replace(".", "/")).write_text(str(minimum))
            log(f"raised {key} from {current} to {minimum} while the lab runs")


def restore_sysctls() -> None:
    if not SYSCTL_FILE.exists():
        return
    saved = json.loads(SYSCTL_FILE.read_text())
    changed = []
    for key, value in saved.items():
        if value is None or read_sysctl(key) == value:
            continue
        path = Path("/proc/sys") / key.replace(".", "/")
        try:
            path.write_text(value)
            changed.append(f"{key}={value}")
        except OSError as exc:
            log(f"could not restore {key}: {exc}")
    SYSCTL_FILE.unlink()
    log("restored host sysctls: " + (", ".join(changed) or "none had changed"))


def ensure_network(prefix: str) -> str:
    name, net = network_of(prefix)
    if sh(["docker", "network", "inspect", name], check=False).returncode != 0:
        sh(["docker", "network", "create", "--internal", "--subnet", f"{net}.0/24",
            "--label", "hardway.lab=1", name])
    return name


def running_hosts(prefix: str | None = None) -> list[str]:
    out = sh(["docker", "ps", "-a", "--filter", "label=hardway.lab=1",
              "--format", "{{.Names}}"]).stdout.split()
    return sorted(n for n in out if prefix is None or n.startswith(prefix + "-"))


def wait_booted(name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = sh(["docker", "exec", name, "systemctl", "is-system-running"], check=False)
        state = proc.stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise SystemExit(f"lab: {name} did not finish booting in {timeout:.0f}s (state: {state!r})")


# The set's artifact mirror: Python's HTTP server on the lab image, serving the
# test bed's mirror (tests/testbed/mirror.py) read-only at 172.29.N.4:8080. It
# stands in for upstream (dl.k8s.io, github.com): the hosts download from it
# (artifacts_download_on: hosts), the controller reads only checksum files.
MIRROR_DIR = CACHE / "mirror"
MIRROR_OCTET = 4
MIRROR_PORT = 8080


def mirror_url(prefix: str, octet: int = MIRROR_OCTET) -> str:
    return f"http://{network_of(prefix)[1]}.{octet}:{MIRROR_PORT}"


def ensure_mirror_server(prefix: str, tag: str | None = None, network: str | None = None, timeout: float = 30,
                         directory: Path = MIRROR_DIR, octet: int = MIRROR_OCTET, name: str | None = None) -> str:
    """Start (or keep) `<prefix>-mirror` serving ``directory``; returns its URL once it answers.

    The integration tests start a second one (another name, directory and address) to serve a
    tampered copy of the mirror."""
    name = name or f"{prefix}-mirror"
    url = mirror_url(prefix, octet)
    tag = tag or ensure_image()
    network = network or ensure_network(prefix)
    if sh(["docker", "inspect", "--format", "{{.State.Running}}", name], check=False).stdout.strip() != "true":
        sh(["docker", "rm", "-f", name], check=False)
        directory.mkdir(parents=True, exist_ok=True)
        log(f"starting {name} ({url}, serving {directory})")
        sh(["docker", "run", "-d", "--name", name, "--hostname", name, "--network", network,
            "--ip", url.split("//")[1].split(":")[0], "--label", "hardway.lab=1", "--label", "hardway.role=mirror",
            "-v", f"{directory}:/srv/mirror:ro", "--entrypoint", "python3", tag,
            "-m", "http.server", str(MIRROR_PORT), "--bind", "0.0.0.0", "--directory", "/srv/mirror"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as response:
                if response.status == 200:
                    return url
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"lab: {name} did not answer at {url} within {timeout:.0f}s")


def up(workers: int, prefix: str, suite: str = DEFAULT_SUITE, control_planes: int = 1) -> list[tuple[str, str]]:
    tag = ensure_image(suite)
    network = ensure_network(prefix)
    save_sysctls()
    raise_lab_limits()
    hosts = host_names(workers, prefix, control_planes)
    existing = set(running_hosts(prefix))
    ensure_mirror_server(prefix, tag, network)
    for name, ip in hosts:
        if name in existing:
            continue
        log(f"starting {name} ({ip})")
        sh(["docker", "run", "-d", "--name", name, "--hostname", name,
            "--network", network, "--ip", ip, "--label", "hardway.lab=1",
            *RUN_OPTS, tag])
    for name, _ip in hosts:
        state = wait_booted(name)
        log(f"{name}: {state}")
    return hosts


def down(prefix: str) -> None:
    if not docker_ok():
        restore_sysctls()
        return
    names = running_hosts(prefix)
    if names:
        log(f"removing {', '.join(names)}")
        sh(["docker", "rm", "-f", "-v", *names])
    sh(["docker", "network", "rm", network_of(prefix)[0]], check=False)
    if not running_hosts():
        restore_sysctls()


def inventory(workers: int, prefix: str, control_planes: int = 1) -> str:
    hosts = host_names(workers, prefix, control_planes)
    lines = ["---", "# Generated by tests/testbed/lab.py: the lab hosts as Ansible sees them.",
             "all:", "  vars:", "    ansible_connection: community.docker.docker",
             "    ansible_python_interpreter: /usr/bin/python3", "  children:"]
    groups = {"control_plane": hosts[:control_planes], "etcd": hosts[:control_planes],
              "workers": hosts[control_planes:]}
    seen = set()
    for group, members in groups.items():
        lines += [f"    {group}:", "      hosts:"]
        for name, ip in members:
            lines.append(f"        {name}:")
            if name not in seen:
                lines.append(f"          cluster_node_address: {ip}")
                seen.add(name)
    return "\n".join(lines) + "\n"


def write_inventory(where: Path, workers: int, prefix: str, control_planes: int = 1) -> Path:
    """An inventory directory for a lab set: its hosts.yml, and the lab's group_vars beside it
    (a fresh copy of inventories/lab/group_vars/all.yml). Returns the hosts.yml."""
    if where.exists():
        shutil.rmtree(where)
    (where / "group_vars").mkdir(parents=True)
    (where / "hosts.yml").write_text(inventory(workers, prefix, control_planes))
    repo = Path(__file__).resolve().parents[2]
    shutil.copy(repo / "inventories" / "lab" / "group_vars" / "all.yml", where / "group_vars" / "all.yml")
    return where / "hosts.yml"


def instances(workers: int, prefix: str, control_planes: int = 1) -> str:
    """Molecule's instance config for the hosts (reached with docker exec)."""
    return "".join(f"- {{instance: {name}, address: {name}, user: root, connection: community.docker.docker}}\n"
                   for name, _ip in host_names(workers, prefix, control_planes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("docker")
    p = sub.add_parser("image")
    p.add_argument("--os", default=DEFAULT_SUITE, choices=list(SUITES))
    for name in ("up", "inventory", "instances"):
        p = sub.add_parser(name)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--control-planes", type=int, default=1)
        p.add_argument("--name", default="lab")
        if name == "up":
            p.add_argument("--os", default=DEFAULT_SUITE, choices=list(SUITES))
    p = sub.add_parser("down")
    p.add_argument("--name", default="lab")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    if args.cmd == "docker":
        ensure_docker()
    elif args.cmd == "image":
        print(ensure_image(args.os))
    elif args.cmd == "up":
        up(args.workers, args.name, args.os, args.control_planes)
    elif args.cmd == "down":
        down(args.name)
    elif args.cmd == "inventory":
        sys.stdout.write(inventory(args.workers, args.name, args.control_planes))
    elif args.cmd == "instances":
        sys.stdout.write(instances(args.workers, args.name, args.control_planes))
    elif args.cmd == "status":
        ensure_docker()
        print(sh(["docker", "ps", "-a", "--filter", "label=hardway.lab=1"]).stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
