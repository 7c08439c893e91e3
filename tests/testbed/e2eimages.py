"""Images for the Kubernetes conformance suite, built offline, and a lab registry.

The `[Conformance]` tests of e2e.test start pods from a fixed list of images
(k8s.io/kubernetes test/utils/image/manifest.go). This module builds each of
them here, with no registry to pull a base from: the Go programs with the
mirror's builder (mirror.py), everything else from Debian packages. Most
images share one Debian layer (tools, shell, nginx), so a node pulls it once.
It also builds a registry (distribution/distribution) as a FROM-scratch
image, runs it on a lab set's network and pushes the images into it under
their upstream names minus the registry host, so containerd on the lab hosts
can pull `registry.k8s.io/...` through a mirror entry.

    e2eimages.py build [--force]     build every image (cached)
    e2eimages.py list                refs and archive paths
    e2eimages.py registry --name SET start (or reuse) the registry of a lab set
    e2eimages.py push --name SET     build, start the registry, push everything

For a test runner:

    build_all() -> [(ref, archive)]  the docker-save archives
    ensure_registry(set) -> "172.29.N.5:5000"
    push_all(set) -> "172.29.N.5:5000"

Everything is cached under $HARDWAY_CACHE/conformance/images/.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402
import mirror  # noqa: E402

ROOT = mirror.CACHE / "conformance" / "images"
ARCHIVES = ROOT / "archives"
LAYERS = ROOT / "layers"
STAMPS = ROOT / ".stamps"
WORK = ROOT / "work"
BLOBS = ROOT / "blobs"  # gzip'd copies of uncompressed layers, for pushing
REGISTRY_DATA = mirror.CACHE / "conformance" / "registry"

# The Kubernetes release whose conformance suite these images serve; the
# refs below are checked against its manifest.go at build time.
K8S_VERSION = "1.37.1"
SAMPLE_APISERVER_VERSION = "0.37.1"  # k8s.io/sample-apiserver of that release
REGISTRY_MODULE = "github.com/distribution/distribution/v3"
REGISTRY_VERSION = "3.1.2"
REGISTRY_IMAGE = f"hardway.local/registry:{REGISTRY_VERSION}"
REGISTRY_PORT = 5000
REGISTRY_HOST_OCTET = 5  # 172.29.N.5: below the lab hosts (.11.., .21..)

DEBIAN_SUITE = "bookworm"
# busybox 1.37 is in Debian 13; its static build runs anywhere.
BUSYBOX_SUITE = "trixie"
# The shared Debian layer: what the tests run inside agnhost, nginx,
# glibc-dns-testing, nonroot, nonewprivs and sample-apiserver (a shell with
# busybox's extra applets, dig/nslookup, curl, nc, ip, ss, socat, iperf, ps,
# ping, getent, nginx). Upstream's agnhost and nginx are Alpine; the tools
# are the same programs or busybox's.
BASE_PACKAGES = ["busybox", "bind9-dnsutils", "curl", "ca-certificates", "iproute2",
                 "netcat-openbsd", "socat", "iperf", "procps", "iputils-ping", "netbase",
                 "nginx"]
# Bumped when the base customisation changes.
BASE_RECIPE = 3
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CREATED = "2026-01-01T00:00:00Z"

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def log(msg: str) -> None:
    print(f"e2eimages: {msg}", flush=True)


class ImageError(Exception):
    """An image could not be built or pushed."""


# ------------------------------------------------------------------ refs
def parse_ref(ref: str) -> tuple[str, str, str]:
    """(registry host, repository, tag) of an image reference.

    `registry.k8s.io/e2e-test-images/agnhost:2.66.1` ->
    ("registry.k8s.io", "e2e-test-images/agnhost", "2.66.1"); a name with no
    host is Docker Hub's (`busybox` -> docker.io, library/busybox, latest).
    """
    if "@" in ref:
        raise ValueError(f"digest references are not supported: {ref}")
    name, tag = ref, "latest"
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = "docker.io", name
        if "/" not in repo:
            repo = "library/" + repo
    if not repo or not tag or not re.fullmatch(r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*",
                                               repo) or not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
        raise ValueError(f"not an image reference: {ref!r}")
    return host, repo, tag


def registry_address(set_name: str) -> str:
    """host:port of a lab set's registry (172.29.N.5:5000)."""
    return f"{lab.network_of(set_name)[1]}.{REGISTRY_HOST_OCTET}:{REGISTRY_PORT}"


def registry_container(set_name: str) -> str:
    return f"{set_name}-registry"


# --------------------------------------------------------------- hashing
def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_stream(f: BinaryIO) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
        size += len(chunk)
    return "sha256:" + h.hexdigest(), size


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes to `out`."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


# ---------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layer:
    """A gzip'd layer tar: digest (of the gzip), diff_id (of the tar) and size."""
    path: Path
    digest: str
    diff_id: str
    size: int
    comment: str = ""


@dataclass
class Entry:
    """One member of a layer written from a list: a file, directory or link."""
    path: str
    kind: str = "file"  # file | dir | symlink
    src: Path | None = None
    data: bytes | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""


def write_layer(name: str, key: str, fill: Callable[[BinaryIO], None], comment: str = "") -> Layer:
    """A cached layer: `fill` writes the uncompressed tar stream; gzip and
    both digests are computed on the way to the file. Reused while `key`
    (what the layer is made from) is unchanged."""
    meta_path = LAYERS / f"{name}.json"
    path = LAYERS / f"{name}.tar.gz"
    if meta_path.exists() and path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return Layer(path, meta["digest"], meta["diff_id"], meta["size"], meta.get("comment", ""))
    LAYERS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as raw:
        outer = _Hashing(raw)
        with gzip.GzipFile(fileobj=outer, mode="wb", mtime=0, compresslevel=6) as gz:
            inner = _Hashing(gz)
            fill(inner)
    tmp.rename(path)
    layer = Layer(path, outer.digest(), inner.digest(), outer.size, comment)
    meta_path.write_text(json.dumps({"key": key, "digest": layer.digest, "diff_id": layer.diff_id,
                                     "size": layer.size, "comment": comment}, indent=1))
    return layer


def entries_tar(entries: list[Entry]) -> Callable[[BinaryIO], None]:
    """A tar of the given entries (parents first, fixed times and owners)."""
    def fill(out: BinaryIO) -> None:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for e in sorted(entries, key=lambda x: x.path):
                info = tarfile.TarInfo(e.path.strip("/"))
                info.mtime, info.uid, info.gid, info.mode = 0, e.uid, e.gid, e.mode
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "symlink":
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.target, 0o777
                    tar.addfile(info)
                else:
                    data = e.data if e.data is not None else e.src.read_bytes()
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return fill


def with_parents(entries: list[Entry]) -> list[Entry]:
    """Add directory entries for every parent not listed (0755, root)."""
    have = {e.path.strip("/") for e in entries}
    extra = []
    for e in entries:
        for parent in Path(e.path.strip("/")).parents:
            p = str(parent)
            if p not in (".", "") and p not in have:
                have.add(p)
                extra.append(Entry(p, "dir", mode=0o755))
    return entries + extra


def entries_key(entries: list[Entry]) -> str:
    h = hashlib.sha256()
    for e in sorted(entries, key=lambda x: x.path):
        h.update(json.dumps([e.path, e.kind, e.mode, e.uid, e.gid, e.target]).encode())
        if e.kind == "file":
            h.update(e.data if e.data is not None else e.src.read_bytes())
    return h.hexdigest()


def files_layer(name: str, entries: list[Entry], comment: str = "") -> Layer:
    entries = with_parents(entries)
    return write_layer(name, entries_key(entries), entries_tar(entries), comment)


# ---------------------------------------------------------------- images
@dataclass
class Image:
    """What an image is made of; `build` returns the archive path."""
    ref: str
    layers: Callable[[], list[Layer]]
    config: dict = field(default_factory=dict)
    note: str = ""


def image_config(layers: list[Layer], config: dict) -> bytes:
    cfg = {"Env": [PATH_ENV], "WorkingDir": "/"}
    cfg.update(config)
    doc = {
        "architecture": mirror.ARCH, "os": "linux", "created": CREATED,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
        "history": [{"created": CREATED, "created_by": x.comment or "hardway.kubernetes test bed"}
                    for x in layers],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def write_archive(dest: Path, ref: str, layers: list[Layer], config: dict) -> Path:
    """A docker-save archive whose layers are stored gzip'd (docker load and
    `ctr images import` both take compressed layers)."""
    config_bytes = image_config(layers, config)
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [x.digest.split(":")[1] + ".tar.gz" for x in layers]
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": layer_names}]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with tarfile.open(tmp, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        add(config_name, config_bytes)
        seen = set()
        for layer, name in zip(layers, layer_names):
            if name in seen:
                continue
            seen.add(name)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = layer.size, 0, 0o644
            with layer.path.open("rb") as f:
                tar.addfile(info, f)
        add("manifest.json", json.dumps(manifest).encode())
    tmp.rename(dest)
    return dest


# -------------------------------------------------------- build helpers
def run(cmd: list[str], logf: Path, env: dict | None = None, cwd: Path | None = None,
        stdout=None) -> None:
    logf.parent.mkdir(parents=True, exist_ok=True)
    with logf.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=stdout or out, stderr=out, env=env, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise ImageError(f"`{' '.join(cmd[:3])} ...` exited {proc.returncode}; see {logf}")


def mirror_asset(component: str, path: Path) -> Path:
    """An artifact of the mirror, built there first if it is missing."""
    if not path.exists():
        log(f"building {component} in the mirror first")
        if mirror.cmd_build([component], force=False) != 0 or not path.exists():
            raise ImageError(f"mirror.py could not build {component} ({path} missing)")
    return path


def member_bytes(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        f = tar.extractfile(name)
        if f is None:
            raise ImageError(f"{archive}: no file {name}")
        return f.read()


def k8s_source() -> Path:
    path = mirror.CACHE / "go" / "mod" / "k8s.io" / f"kubernetes@v{K8S_VERSION}"
    if not path.is_dir():
        b = mirror.Builder("e2eimages-k8s-src", K8S_VERSION)
        try:
            path = b.module_dir("k8s.io/kubernetes", f"v{K8S_VERSION}")
        finally:
            b.log.close()
    return path


def go_binary(name: str, version: str, build: Callable[[mirror.Builder], Path]) -> Path:
    """A Go program built once with the mirror's builder, kept under ROOT/bin."""
    dest = ROOT / "bin" / f"{name}-{version}"
    if dest.exists():
        return dest
    log(f"  go build {name} {version} (log: {mirror.LOGS / f'{name}-{version}.log'})")
    b = mirror.Builder(name, version)
    try:
        built = build(b)
    except mirror.BuildError as exc:
        raise ImageError(str(exc)) from exc
    finally:
        b.log.close()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, dest)
    return dest


# ------------------------------------------------------ the Debian layer
def base_key() -> str:
    return hashlib.sha256(json.dumps([DEBIAN_SUITE, BASE_PACKAGES, BASE_RECIPE]).encode()).hexdigest()[:12]


def base_layer() -> Layer:
    """debootstrap minbase + BASE_PACKAGES, trimmed, as one layer. Its
    /etc/passwd and friends are kept next to it for layers that add users."""
    name = f"debian-{DEBIAN_SUITE}-{base_key()}"
    meta = LAYERS / f"{name}.json"
    if meta.exists() and (LAYERS / f"{name}.tar.gz").exists() and (LAYERS / f"{name}.etc").is_dir():
        return write_layer(name, base_key(), lambda out: None)
    WORK.mkdir(parents=True, exist_ok=True)
    logf = mirror.LOGS / f"e2eimages-{name}.log"
    logf.unlink(missing_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=WORK))
    try:
        log(f"  debootstrap {DEBIAN_SUITE} with {len(BASE_PACKAGES)} packages (log: {logf})")
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
             DEBIAN_SUITE, str(root)], logf)
        customise_base(root)
        etc = LAYERS / f"{name}.etc"
        etc.mkdir(parents=True, exist_ok=True)
        for f in ("passwd", "group", "shadow", "gshadow"):
            shutil.copy2(root / "etc" / f, etc / f)

        def fill(out: BinaryIO) -> None:
            cmd = ["tar", "-C", str(root), "-c", "--sort=name", "--numeric-owner",
                   "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                   "--xattrs", "--xattrs-include=security.capability",
                   "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                   "--exclude=./tmp/*", "--exclude=./run/*", "."]
            with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
                for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
                    out.write(chunk)
            if proc.returncode != 0:
                raise ImageError(f"tar of {root} exited {proc.returncode}")

        meta.unlink(missing_ok=True)
        return write_layer(name, base_key(), fill,
                           f"debootstrap --variant=minbase {DEBIAN_SUITE} + {' '.join(BASE_PACKAGES)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def customise_base(root: Path) -> None:
    """Trim the rootfs and make it behave like the images it stands in for."""
    for pattern in ("usr/share/man/*", "usr/share/info/*", "var/lib/apt/lists/*",
                    "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                    "var/cache/debconf/*-old", "var/log/*.log", "var/log/apt/*"):
        for p in root.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    for p in (root / "usr/share/doc").glob("*/*"):
        if p.name != "copyright":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for p in (root / "usr/share/locale").glob("*"):
        if p.name != "locale.alias":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    # The runtime provides these; do not leak this machine's.
    (root / "etc/resolv.conf").write_text("")
    (root / "etc/resolv.conf").chmod(0o644)
    (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    (root / "etc/machine-id").unlink(missing_ok=True)
    # /bin/sh is bash: several tests rely on the [[ ]] of upstream's shell
    # (busybox's ash, which dash lacks), and on a shell that passes on
    # environment variables whose names are not shell identifiers (data-1),
    # which Debian's ash drops. Busybox applets with no program of their own
    # (wget, ifconfig, netstat, ...) go to /usr/local/bin, as on Alpine.
    usr_bin = root / "usr/bin"
    (usr_bin / "sh").unlink()
    (usr_bin / "sh").symlink_to("bash")
    out = subprocess.run(["chroot", str(root), "/usr/bin/busybox", "--list"], capture_output=True,
                         text=True, check=True).stdout.split()
    local = root / "usr/local/bin"
    dirs = [root / d for d in ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin")]
    for applet in out:
        if applet in ("busybox", "[", "[[") or any((d / applet).exists() or (d / applet).is_symlink()
                                                   for d in dirs):
            continue
        (local / applet).symlink_to("/usr/bin/busybox")
    # nginx as upstream's image runs it: IPv4 port 80, logs to the container's.
    (root / "etc/nginx/sites-enabled/default").unlink(missing_ok=True)
    (root / "etc/nginx/sites-enabled/default").write_text(
        "server {\n\tlisten 80 default_server;\n\tserver_name localhost;\n"
        "\troot /usr/share/nginx/html;\n\tindex index.html index.htm;\n"
        "\tlocation / {\n\t\ttry_files $uri $uri/ =404;\n\t}\n}\n")
    logs = root / "var/log/nginx"
    logs.mkdir(exist_ok=True)
    for f, target in (("access.log", "/dev/stdout"), ("error.log", "/dev/stderr")):
        (logs / f).unlink(missing_ok=True)
        (logs / f).symlink_to(target)


def with_user_lines(base: Layer, additions: dict[str, list[str]]) -> list[Entry]:
    """Copies of the base layer's /etc/passwd etc. with lines added."""
    etc = base.path.with_name(base.path.name.replace(".tar.gz", ".etc"))
    entries = []
    for f, lines in additions.items():
        text = (etc / f).read_text()
        if not text.endswith("\n"):
            text += "\n"
        mode = 0o640 if f in ("shadow", "gshadow") else 0o644
        gid = 42 if mode == 0o640 else 0  # shadow group
        entries.append(Entry(f"etc/{f}", data=(text + "".join(x + "\n" for x in lines)).encode(),
                             mode=mode, gid=gid))
    return entries


# ------------------------------------------------------------ programs
def agnhost_binary() -> Path:
    pins = mirror.load_versions()[0]
    archive = mirror_asset("agnhost", mirror.IMAGES / f"hardway-agnhost-{pins['agnhost']}.tar")
    manifest = json.loads(member_bytes(archive, "manifest.json"))
    layer = member_bytes(archive, manifest[0]["Layers"][0])
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        data = tar.extractfile("agnhost").read()
    dest = ROOT / "bin" / f"agnhost-{pins['agnhost']}"
    if not dest.exists() or dest.read_bytes() != data:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return dest


def coredns_binary() -> Path:
    version = mirror.load_versions()[0]["coredns"]
    tgz = mirror_asset("coredns", mirror.gh_dir("coredns/coredns", f"v{version}")
                       / f"coredns_{version}_linux_{mirror.ARCH}.tgz")
    dest = ROOT / "bin" / f"coredns-{version}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tgz) as tar:
            dest.write_bytes(tar.extractfile("coredns").read())
    return dest


def etcd_binaries() -> dict[str, bytes]:
    version = mirror.load_versions()[0]["etcd"]
    tgz = mirror_asset("etcd", mirror.gh_dir("etcd-io/etcd", f"v{version}")
                       / f"etcd-v{version}-linux-{mirror.ARCH}.tar.gz")
    out = {}
    with tarfile.open(tgz) as tar:
        for m in tar.getmembers():
            if m.isfile() and Path(m.name).name in ("etcd", "etcdctl", "etcdutl"):
                out[Path(m.name).name] = tar.extractfile(m).read()
    if len(out) != 3:
        raise ImageError(f"{tgz}: expected etcd, etcdctl and etcdutl, found {sorted(out)}")
    return out


def sample_apiserver_binary() -> Path:
    def build(b: mirror.Builder) -> Path:
        mod = "k8s.io/sample-apiserver"
        bindir = mirror.go_install_build(b, mod, f"v{SAMPLE_APISERVER_VERSION}", [mod],
                                         ldflags=mirror.k8s_ldflags(K8S_VERSION))
        return bindir / "sample-apiserver"
    return go_binary("sample-apiserver", SAMPLE_APISERVER_VERSION, build)


def nnp_binary() -> Path:
    src = k8s_source() / "test" / "images" / "nonewprivs" / "nnp.go"

    def build(b: mirror.Builder) -> Path:
        b.wrapper({})
        shutil.copy2(src, b.work / "nnp.go")
        (b.work / "nnp.go").chmod(0o644)
        b.build(["."], b.work / "bin")
        return b.work / "bin" / "build"
    return go_binary("nnp", K8S_VERSION, build)


def registry_binary() -> Path:
    def build(b: mirror.Builder) -> Path:
        tag = f"v{REGISTRY_VERSION}"
        info = b.module_info(REGISTRY_MODULE, tag)
        rev = info.get("Origin", {}).get("Hash", "")
        pkg = f"{REGISTRY_MODULE}/version"
        ld = (f"-s -w -X {pkg}.version={tag} -X {pkg}.revision={rev} "
              f"-X {pkg}.mainpkg={REGISTRY_MODULE}")
        bindir = mirror.go_install_build(b, REGISTRY_MODULE, tag, [f"{REGISTRY_MODULE}/cmd/registry"],
                                         ldflags=ld)
        return bindir / "registry"
    return go_binary("registry", REGISTRY_VERSION, build)


def debian_apt() -> list[str]:
    """apt-get options for Debian BUSYBOX_SUITE's source packages, with a
    private source list and state: this machine's apt configuration is
    untouched. The index is fetched the first time."""
    apt = WORK / f"apt-{BUSYBOX_SUITE}"
    apt.mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian "
        f"{BUSYBOX_SUITE} main\n")
    if not (apt / "status").exists():
        (apt / "status").write_text("")
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    opts = ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::State::status={apt / 'status'}",
            "-o", f"Dir::Cache={apt / 'cache'}", "-o", "Dir::Etc::Preferences=/nonexistent",
            "-o", "Dir::Etc::PreferencesParts=/nonexistent", "-o", "APT::Architecture=amd64", "-q"]
    if not any((apt / "lists").glob("*Sources*")):
        run(["apt-get", *opts, "update"], mirror.LOGS / "e2eimages-busybox.log")
    return opts


# ---------------------------------------------------------- the images
def busybox_upstream() -> tuple[Path, str]:
    """busybox as upstream releases it, built static with its defconfig (as the
    image upstream's busybox test image starts from is). The release tarball
    comes from Debian's source package (its .orig.tar, which apt checks
    against the signed .dsc); Debian's own patches are left out: one of them
    makes ash drop environment variables whose names are not shell
    identifiers (data-1), which Kubernetes allows and four conformance tests
    print with `sh -c env`."""
    src = WORK / "busybox-src"
    logf = mirror.LOGS / "e2eimages-busybox.log"
    tarballs = sorted(src.glob("busybox_*.orig.tar.bz2"))
    if not tarballs:
        src.mkdir(parents=True, exist_ok=True)
        opts = debian_apt()
        run(["apt-get", *opts, "source", "--download-only", "busybox"], logf, cwd=src)
        tarballs = sorted(src.glob("busybox_*.orig.tar.bz2"))
        if not tarballs:
            raise ImageError(f"apt did not download busybox's source from {BUSYBOX_SUITE}; see {logf}")
    version = tarballs[-1].name.split("_")[1].removesuffix(".orig.tar.bz2")
    binary = ROOT / "bin" / f"busybox-{version}"
    if binary.exists():
        return binary, version
    tree = src / f"busybox-{version}"
    shutil.rmtree(tree, ignore_errors=True)
    run(["tar", "-C", str(src), "-xjf", str(tarballs[-1])], logf)
    run(["make", "defconfig"], logf, cwd=tree)
    config = (tree / ".config").read_text()
    # Static, like upstream's image; tc does not build against current kernel headers.
    config = config.replace("# CONFIG_STATIC is not set", "CONFIG_STATIC=y")
    config = config.replace("CONFIG_TC=y", "# CONFIG_TC is not set")
    (tree / ".config").write_text(config)
    run(["make", f"-j{os.cpu_count() or 2}"], logf, cwd=tree)
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tree / "busybox", binary)
    return binary, version


def busybox_layers() -> list[Layer]:
    binary, version = busybox_upstream()
    applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    # Like upstream's busybox image: every applet in /bin, a few accounts, /tmp.
    entries = [Entry("bin/busybox", src=binary, mode=0o755)]
    entries += [Entry(f"bin/{a}", "symlink", target="busybox") for a in applets if a != "busybox"]
    entries += [
        Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
              b"bin:x:2:2:bin:/bin:/bin/false\nsys:x:3:3:sys:/dev:/bin/false\n"
              b"www-data:x:33:33:www-data:/var/www:/bin/false\n"
              b"nobody:x:65534:65534:nobody:/home:/bin/false\n"),
        Entry("etc/group", data=b"root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n"
              b"wheel:x:10:root\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n"),
        Entry("etc/shadow", data=b"root:*::0:::::\nnobody:*::0:::::\n", mode=0o600),
        Entry("etc/nsswitch.conf", data=b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
              b"networks: files\nprotocols: files\nservices: files\n"),
        Entry("tmp", "dir", mode=0o1777), Entry("root", "dir", mode=0o700),
        Entry("home", "dir", mode=0o755), Entry("var/www", "dir", mode=0o755),
        Entry("usr/sbin", "dir", mode=0o755), Entry("dev", "dir", mode=0o755),
        Entry("proc", "dir", mode=0o755), Entry("sys", "dir", mode=0o755),
    ]
    return [files_layer("busybox", entries, f"busybox {version}, upstream's release built static")]


def agnhost_layers() -> list[Layer]:
    base = base_layer()
    src = k8s_source() / "test" / "images" / "agnhost"
    entries = [
        Entry("agnhost", src=agnhost_binary(), mode=0o755),
        Entry("agnhost-2", "symlink", target="agnhost"),
        Entry("localhost.crt", src=src / "porter" / "localhost.crt"),
        Entry("localhost.key", src=src / "porter" / "localhost.key"),
        Entry("uploads", "dir", mode=0o755),
        Entry("usr/local/bin/iperf", "symlink", target="/usr/bin/iperf"),
        Entry("home/user-defined-in-image", "dir", mode=0o755, uid=1000, gid=1000),
    ]
    entries += with_user_lines(base, {
        "passwd": ["user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh"],
        "group": ["user-defined-in-image:x:1000:", "group-defined-in-image:x:50000:user-defined-in-image"],
        "shadow": ["user-defined-in-image:!:20000:0:99999:7:::"],
        "gshadow": ["user-defined-in-image:!::", "group-defined-in-image:!::user-defined-in-image"],
    })
    return [base, coredns_layer(), files_layer("agnhost", entries, "agnhost, porter's certificate, users")]


def coredns_layer() -> Layer:
    """/coredns, shared by agnhost and glibc-dns-testing (the DNS tests run it)."""
    version = mirror.load_versions()[0]["coredns"]
    return files_layer("coredns", [Entry("coredns", src=coredns_binary(), mode=0o755)],
                       f"coredns {version} (the collection's pin)")


def webserver_layers(name: str) -> list[Layer]:
    html = k8s_source() / "test" / "images" / name / "html"
    entries = [Entry(f"{name}.jpg", src=html / f"{name}.jpg"), Entry("data.json", src=html / "data.json")]
    return agnhost_layers() + [files_layer(name, entries, f"{name}'s test-webserver files")]


def layer_of(name: str, entries: Callable[[], list[Entry]], comment: str) -> Callable[[], list[Layer]]:
    return lambda: [base_layer(), files_layer(name, entries(), comment)]


def etcd_layers() -> list[Layer]:
    entries = [Entry(f"usr/local/bin/{n}", data=data, mode=0o755) for n, data in etcd_binaries().items()]
    entries += [Entry("tmp", "dir", mode=0o1777), Entry("var/etcd", "dir", mode=0o755),
                Entry("var/lib/etcd", "dir", mode=0o755)]
    version = mirror.load_versions()[0]["etcd"]
    return [files_layer("etcd", entries, f"etcd {version} (the collection's pin)")]


AGNHOST_CONFIG = {"Entrypoint": ["/agnhost"], "Cmd": ["pause"],
                  "ExposedPorts": {f"{p}/tcp": {} for p in (80, 8080, 8081, 9376, 5000)}}
E2E = "registry.k8s.io/e2e-test-images"


def images() -> list[Image]:
    """Every image the [Conformance] tests of K8S_VERSION start."""
    pause = mirror.load_versions()[0]["pause"]
    return [
        Image(f"{E2E}/agnhost:2.66.1", agnhost_layers, dict(AGNHOST_CONFIG)),
        Image(f"{E2E}/agnhost:2.55", agnhost_layers,
              dict(AGNHOST_CONFIG, Labels={"hardway.image": "agnhost 2.55 (same program as 2.66.1)"}),
              "the same agnhost as 2.66.1, with a config of its own so the image IDs differ"),
        Image(f"{E2E}/busybox:1.37.0-2", busybox_layers, {"Cmd": ["sh"]}),
        Image(f"registry.k8s.io/pause:{pause}", lambda: [], {}, "the mirror's pause image"),
        Image(f"{E2E}/nginx:1.27.0-2", lambda: [base_layer()],
              {"Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"},
              "Debian 12's nginx 1.22"),
        Image(f"{E2E}/glibc-dns-testing:2.1.1", lambda: [base_layer(), coredns_layer()], {"Cmd": ["bash"]}),
        Image(f"{E2E}/nonroot:1.5", lambda: [base_layer()], {"Cmd": ["/bin/sh"], "User": "1234"}),
        Image(f"{E2E}/nonewprivs:1.4",
              layer_of("nonewprivs", lambda: [Entry("usr/local/bin/nnp", src=nnp_binary(), mode=0o4755)],
                       "nnp, setuid root"), {"Cmd": ["nnp"]}),
        Image(f"{E2E}/kitten:1.8", lambda: webserver_layers("kitten"),
              dict(AGNHOST_CONFIG, Cmd=["test-webserver"])),
        Image(f"{E2E}/nautilus:1.8", lambda: webserver_layers("nautilus"),
              dict(AGNHOST_CONFIG, Cmd=["test-webserver"])),
        Image(f"{E2E}/sample-apiserver:1.29.2",
              layer_of("sample-apiserver",
                       lambda: [Entry("sample-apiserver", src=sample_apiserver_binary(), mode=0o755)],
                       f"k8s.io/sample-apiserver v{SAMPLE_APISERVER_VERSION}"),
              {"Entrypoint": ["/sample-apiserver"]}, f"k8s.io/sample-apiserver v{SAMPLE_APISERVER_VERSION}"),
        Image("registry.k8s.io/etcd:3.7.0-0", etcd_layers, {"Cmd": ["/usr/local/bin/etcd"]},
              "etcd " + mirror.load_versions()[0]["etcd"] + " (the collection's pin)"),
    ]


def archive_path(ref: str) -> Path:
    _host, repo, tag = parse_ref(ref)
    return ARCHIVES / f"{repo.rsplit('/', 1)[-1]}-{tag}.tar"


def upstream_refs() -> set[str]:
    """The refs manifest.go of K8S_VERSION defines (default registries)."""
    text = (k8s_source() / "test" / "utils" / "image" / "manifest.go").read_text()
    registries = dict(re.findall(r'(\w+Registry):\s+"([^"]+)"', text))
    refs = set()
    for field_name, name, tag in re.findall(r'Config\{list\.(\w+), "([^"]+)", "([^"]+)"\}', text):
        if field_name in registries:
            refs.add(f"{registries[field_name]}/{name}:{tag}")
    return refs


def recipe_key(img: Image) -> str:
    pins = mirror.load_versions()[0]
    return hashlib.sha256(json.dumps(
        [img.ref, img.config, img.note, base_key(), BUSYBOX_SUITE, SAMPLE_APISERVER_VERSION,
         {k: pins[k] for k in ("agnhost", "coredns", "etcd", "pause")}, 6], sort_keys=True).encode()).hexdigest()


def build_all(force: bool = False) -> list[tuple[str, Path]]:
    """Build (or reuse) every image; returns (ref, docker-save archive)."""
    known = upstream_refs()
    todo = images()
    missing = [i.ref for i in todo if i.ref not in known]
    if missing:
        raise ImageError(f"not in Kubernetes {K8S_VERSION}'s manifest.go: {', '.join(missing)}")
    STAMPS.mkdir(parents=True, exist_ok=True)
    result = []
    start_all = time.monotonic()
    for n, img in enumerate(todo, 1):
        prefix = f"[{n}/{len(todo)}] {img.ref}"
        if img.ref.startswith("registry.k8s.io/pause:"):
            version = img.ref.rsplit(":", 1)[1]
            path = mirror_asset("pause", mirror.IMAGES / f"pause-{version}.tar")
            log(f"{prefix}: from the mirror ({path})")
            result.append((img.ref, path))
            continue
        dest = archive_path(img.ref)
        stamp = STAMPS / (dest.name + ".json")
        key = recipe_key(img)
        if not force and dest.exists() and stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
            log(f"{prefix}: cached")
            result.append((img.ref, dest))
            continue
        log(f"{prefix}: building")
        start = time.monotonic()
        try:
            layers = img.layers()
            write_archive(dest, img.ref, layers, img.config)
        except (ImageError, OSError, subprocess.CalledProcessError) as exc:
            raise ImageError(f"{img.ref}: {exc}") from exc
        seconds = time.monotonic() - start
        stamp.write_text(json.dumps({"ref": img.ref, "key": key, "seconds": round(seconds, 1),
                                     "archive": str(dest), "bytes": dest.stat().st_size,
                                     "layers": [x.digest for x in layers]}, indent=1))
        log(f"{prefix}: built in {seconds:.0f}s ({dest.stat().st_size / 1e6:.1f} MB, {len(layers)} layers)")
        result.append((img.ref, dest))
    log(f"{len(result)} images ready in {time.monotonic() - start_all:.0f}s under {ROOT}")
    return result


# -------------------------------------------------------------- registry
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def registry_archive() -> Path:
    dest = ROOT / "registry" / f"registry-{REGISTRY_VERSION}.tar"
    entries = [
        Entry("bin/registry", src=registry_binary(), mode=0o755),
        Entry("etc/distribution/config.yml", data=REGISTRY_CONFIG.encode()),
        Entry("var/lib/registry", "dir", mode=0o755),
        Entry("tmp", "dir", mode=0o1777),
    ]
    layer = files_layer("registry", entries, f"distribution registry {REGISTRY_VERSION} and its config")
    config = {"Entrypoint": ["/bin/registry"], "Cmd": ["serve", "/etc/distribution/config.yml"],
              "Env": [PATH_ENV, "OTEL_TRACES_EXPORTER=none"], "ExposedPorts": {"5000/tcp": {}},
              "Volumes": {"/var/lib/registry": {}}}
    stamp = dest.with_suffix(".json")
    if dest.exists() and stamp.exists() and json.loads(stamp.read_text()).get("layer") == layer.digest:
        return dest
    write_archive(dest, REGISTRY_IMAGE, [layer], config)
    stamp.write_text(json.dumps({"layer": layer.digest}))
    return dest


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise ImageError(f"docker {' '.join(args[:3])}: {proc.stderr.strip()}")
    return proc


def ensure_registry(set_name: str, timeout: float = 60) -> str:
    """Start (or reuse) the registry container of a lab set; returns host:port.

    `<set>-registry` on network hardway-<set> at 172.29.N.5, labelled like the
    lab hosts so `lab.py down --name <set>` removes it before the network.
    Its storage is a directory of the cache, so it survives `down`."""
    address = registry_address(set_name)
    lab.ensure_docker()
    network = lab.ensure_network(set_name)
    name = registry_container(set_name)
    archive = registry_archive()
    image_id = json.loads(member_bytes(archive, "manifest.json"))[0]["Config"].removesuffix(".json")
    have = docker("image", "inspect", "--format", "{{.Id}}", REGISTRY_IMAGE, check=False)
    if have.returncode != 0 or have.stdout.strip() != f"sha256:{image_id}":
        log(f"docker load {archive.name}")
        docker("load", "-i", str(archive))
    state = docker("inspect", "--format", "{{.State.Running}} {{.Image}}", name, check=False)
    if state.returncode == 0 and state.stdout.split() != ["true", f"sha256:{image_id}"]:
        log(f"replacing {name} ({state.stdout.strip()})")
        docker("rm", "-f", name)
        state = docker("inspect", name, check=False)
    if state.returncode != 0:
        data = REGISTRY_DATA / set_name
        data.mkdir(parents=True, exist_ok=True)
        log(f"starting {name} at {address} (storage {data})")
        docker("run", "-d", "--name", name, "--hostname", name, "--network", network,
               "--ip", address.split(":", maxsplit=1)[0], "--label", "hardway.lab=1",
               "--label", "hardway.role=registry", "--restart", "unless-stopped",
               "-v", f"{data}:/var/lib/registry", REGISTRY_IMAGE)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            status, _h, _b = Registry(address).request("GET", "/v2/")
            if status == 200:
                return address
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    logs = docker("logs", "--tail", "20", name, check=False)
    raise ImageError(f"registry {name} at {address} did not answer /v2/ in {timeout:.0f}s "
                     f"({last}); its log:\n{logs.stdout}{logs.stderr}")


# ------------------------------------------------------------------ push
def schema2_manifest(config: tuple[str, int], layers: list[tuple[str, int]]) -> bytes:
    """A Docker image manifest (schema 2) for a config blob and gzip'd layers,
    each given as (digest, size)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "size": config[1], "digest": config[0]},
        "layers": [{"mediaType": MEDIA_LAYER_GZIP, "size": s, "digest": d} for d, s in layers],
    }
    return json.dumps(doc, indent=3).encode()


class Registry:
    """A plain-HTTP client of the Registry HTTP API v2 (no authentication)."""

    def __init__(self, address: str, timeout: float = 300):
        self.address = address
        self.timeout = timeout
        # digest -> a repository that has it, for cross-repository mounts
        self.known: dict[str, str] = {}

    def request(self, method: str, path: str, body=None, headers: dict | None = None
                ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection(self.address, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.headers, data
        finally:
            conn.close()

    def _location(self, headers: http.client.HTTPMessage) -> str:
        loc = headers.get("Location", "")
        parts = urllib.parse.urlsplit(loc)
        return urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))

    def has_blob(self, repo: str, digest: str) -> bool:
        status, _h, _b = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return status == 200

    def push_blob(self, repo: str, digest: str, size: int, opener: Callable[[], BinaryIO]) -> str:
        """Upload one blob unless the repository has it; 'exists', 'mounted' or 'uploaded'."""
        if self.has_blob(repo, digest):
            self.known.setdefault(digest, repo)
            return "exists"
        path = f"/v2/{repo}/blobs/uploads/"
        source = self.known.get(digest)
        if source and source != repo:
            path += "?" + urllib.parse.urlencode({"mount": digest, "from": source})
        status, headers, body = self.request("POST", path, headers={"Content-Length": "0"})
        if status == 201:
            return "mounted"
        if status != 202:
            raise ImageError(f"{self.address}: starting an upload to {repo}: HTTP {status} {body[:200]!r}")
        loc = self._location(headers)
        loc += ("&" if "?" in loc else "?") + urllib.parse.urlencode({"digest": digest})
        with opener() as f:
            status, _h, body = self.request("PUT", loc, body=f, headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(size)})
        if status != 201:
            raise ImageError(f"{self.address}: uploading {digest} to {repo}: HTTP {status} {body[:200]!r}")
        self.known[digest] = repo
        return "uploaded"

    def put_manifest(self, repo: str, tag: str, manifest: bytes, media_type: str = MEDIA_MANIFEST) -> str:
        status, headers, body = self.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                             headers={"Content-Type": media_type,
                                                      "Content-Length": str(len(manifest))})
        if status != 201:
            raise ImageError(f"{self.address}: manifest {repo}:{tag}: HTTP {status} {body[:300]!r}")
        got = headers.get("Docker-Content-Digest", "")
        if got and got != digest_bytes(manifest):
            raise ImageError(f"{self.address}: {repo}:{tag} stored as {got}, not {digest_bytes(manifest)}")
        return digest_bytes(manifest)

    def get_manifest(self, repo: str, tag: str) -> tuple[str, bytes]:
        status, headers, body = self.request("GET", f"/v2/{repo}/manifests/{tag}", headers={
            "Accept": f"{MEDIA_MANIFEST}, application/vnd.oci.image.manifest.v1+json"})
        if status != 200:
            raise ImageError(f"{self.address}: GET manifest {repo}:{tag}: HTTP {status}")
        return headers.get("Content-Type", ""), body

    def catalog(self) -> list[str]:
        status, _h, body = self.request("GET", "/v2/_catalog?n=1000")
        if status != 200:
            raise ImageError(f"{self.address}: catalog: HTTP {status}")
        return json.loads(body)["repositories"]


@contextlib.contextmanager
def open_member(archive: Path, name: str):
    with tarfile.open(archive) as tar:
        yield tar.extractfile(name)


def gzip_blob(archive: Path, member: str) -> Path:
    """A gzip'd copy of an uncompressed layer of an archive, cached by its digest."""
    with tarfile.open(archive) as tar:
        f = tar.extractfile(member)
        diff_id, _size = digest_stream(f)
    dest = BLOBS / (diff_id.split(":")[1] + ".tar.gz")
    if not dest.exists():
        BLOBS.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part")
        with tarfile.open(archive) as tar, tmp.open("wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(tar.extractfile(member), gz, 1 << 20)
        tmp.rename(dest)
    return dest


def push_archive(reg: Registry, ref: str, archive: Path) -> tuple[str, dict[str, int]]:
    """Push a docker-save archive under ref's repository and tag; returns the
    manifest digest and how many blobs were uploaded, mounted or present."""
    _host, repo, tag = parse_ref(ref)
    counts = {"uploaded": 0, "mounted": 0, "exists": 0}
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        entry = next((m for m in manifest if ref in (m.get("RepoTags") or [])), manifest[0])
        config = tar.extractfile(entry["Config"]).read()
        members = {m.name: m for m in tar.getmembers()}
        layers = []
        for name in entry["Layers"]:
            with tar.extractfile(members[name]) as f:
                compressed = f.read(2) == b"\x1f\x8b"
            if compressed:
                with tar.extractfile(members[name]) as f:
                    digest, size = digest_stream(f)

                def opener(name=name):
                    return open_member(archive, name)
            else:
                blob = gzip_blob(archive, name)
                with blob.open("rb") as f:
                    digest, size = digest_stream(f)

                def opener(blob=blob):
                    return blob.open("rb")
            counts[reg.push_blob(repo, digest, size, opener)] += 1
            layers.append((digest, size))
    config_digest = digest_bytes(config)
    counts[reg.push_blob(repo, config_digest, len(config), lambda: io.BytesIO(config))] += 1
    return reg.put_manifest(repo, tag, schema2_manifest((config_digest, len(config)), layers)), counts


def push_all(set_name: str) -> str:
    """Build every image if needed, start the lab set's registry, push them all."""
    built = build_all()
    address = ensure_registry(set_name)
    reg = Registry(address)
    start = time.monotonic()
    for ref, archive in built:
        t = time.monotonic()
        digest, counts = push_archive(reg, ref, archive)
        _h, repo, tag = parse_ref(ref)
        log(f"pushed {address}/{repo}:{tag} {digest[:19]} "
            f"({', '.join(f'{v} {k}' for k, v in counts.items() if v)}) in {time.monotonic() - t:.1f}s")
    log(f"{len(built)} images in {address} in {time.monotonic() - start:.0f}s")
    return address


# ------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help="build every image (cached)")
    p.add_argument("--force", action="store_true", help="rebuild the archives")
    sub.add_parser("list", help="refs and archive paths")
    for name in ("registry", "push"):
        p = sub.add_parser(name, help="start the registry of a lab set" if name == "registry"
                           else "build, start the registry, push every image")
        p.add_argument("--name", required=True, help="lab set (see lab.py)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            build_all(args.force)
        elif args.cmd == "list":
            for img in images():
                ref = img.ref
                path = mirror.IMAGES / f"pause-{ref.rsplit(':', 1)[1]}.tar" \
                    if ref.startswith("registry.k8s.io/pause:") else archive_path(ref)
                print(f"{ref} {path}{'' if path.exists() else ' (not built)'}")
        elif args.cmd == "registry":
            print(ensure_registry(args.name))
        else:
            push_all(args.name)
    except ImageError as exc:
        print(f"e2eimages: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
