"""Offline artifact mirror for hardway.kubernetes.

Builds every component the collection deploys from source, with the ordinary
Go toolchain and the Go module proxy, at the versions pinned in
roles/cluster/defaults/main/versions.yml, and lays the results out with the
same paths, file names and archive formats as the upstream downloads, each
with its checksum file. The collection then downloads from upstream or from
this mirror with the same code: only the base differs.

Everything slow is cached outside the clone (``$HARDWAY_CACHE``, default
``~/.cache/hardway``), keyed by component and version. The few upstream
sources the proxy does not serve (Traefik's nested dynamic/ext module,
cert-manager's binaries' main modules) come from ``../shared/vendor`` next to
the repository, as published at their tags.

    mirror.py build [COMPONENT[@VERSION] ...]   build (default: every pin)
    mirror.py verify                            check every checksum
    mirror.py list                              components and pinned versions
    mirror.py path                              print the mirror directory
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO / "roles" / "cluster" / "defaults" / "main" / "versions.yml"
CACHE = Path(os.environ.get("HARDWAY_CACHE", Path.home() / ".cache" / "hardway"))
MIRROR = CACHE / "mirror"
STAMPS = MIRROR / ".stamps"
LOGS = CACHE / "logs"
WORK = CACHE / "work"
ARCH = "amd64"
# Upstream sources the Go module proxy does not serve, as published at their
# tags (see its README); next to the repository, never copied into it.
VENDOR = REPO.parent / "shared" / "vendor"
# The build machine's CA bundle, for images whose programs make HTTPS requests.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class BuildError(Exception):
    """A component failed to build; the message names it and its log."""


def load_versions() -> tuple[dict, dict]:
    """Read the collection's pins and known versions from the one versions file.

    These are the defaults (cluster_default_versions, cluster_default_known_versions):
    an inventory's cluster_versions may move a component to another known version,
    which ``mirror.py build <component>@<version>`` builds.
    """
    import yaml  # PyYAML ships with ansible-core

    data = yaml.safe_load(VERSIONS_FILE.read_text())
    pins = {k: str(v) for k, v in data["cluster_default_versions"].items()}
    known = {k: [str(x) for x in v] for k, v in data["cluster_default_known_versions"].items()}
    return pins, known


def go_env() -> dict:
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(CACHE / "go" / "mod"),
        GOCACHE=str(CACHE / "go" / "build"),
        GOTOOLCHAIN="auto",
        GOFLAGS="-mod=mod",
        CGO_ENABLED="0",
        GOOS="linux",
        GOARCH=ARCH,
    )
    return env


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Builder:
    """Runs the commands of one component, logging to its own file."""

    def __init__(self, name: str, version: str):
        self.name = name
        self.version = version
        self.work = WORK / f"{name}-{version}"
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}-{version}.log"
        self.log = self.log_path.open("w")

    def run(self, cmd: list[str], cwd: Path | None = None, env: dict | None = None,
            capture: bool = False) -> str:
        self.log.write(f"$ {' '.join(cmd)}\n")
        self.log.flush()
        proc = subprocess.run(
            cmd, cwd=cwd or self.work, env=env or go_env(), text=True,
            stdout=subprocess.PIPE if capture else self.log, stderr=self.log, check=False,
        )
        if proc.returncode != 0:
            raise BuildError(
                f"{self.name} {self.version}: `{' '.join(cmd[:3])} ...` exited "
                f"{proc.returncode}; log kept at {self.log_path}")
        return proc.stdout if capture else ""

    def module_info(self, module: str, version: str) -> dict:
        """`go mod download -json`: the module's Dir, GoMod, Info (and Origin)."""
        out = self.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                       cwd=CACHE, capture=True)
        info = json.loads(out)
        if "Dir" not in info:
            raise BuildError(f"{self.name}: {module}@{version} is not served by the "
                             f"Go module proxy: {info.get('Error', 'no source')}")
        return info

    def module_dir(self, module: str, version: str) -> Path:
        return Path(self.module_info(module, version)["Dir"])

    def wrapper(self, requires: dict[str, str], replaces: dict[str, str] | None = None,
                go_line: str | None = None, extra: str = "") -> Path:
        """A throwaway module that requires the real ones, so their commands build."""
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        lines = ["module hardway.local/build", "", f"go {go_line or '1.26'}", extra, ""]
        lines.append("require (")
        lines += [f"\t{m} {v}" for m, v in requires.items()]
        lines.append(")")
        if replaces:
            lines.append("replace (")
            lines += [f"\t{m} => {r}" for m, r in replaces.items()]
            lines.append(")")
        (self.work / "go.mod").write_text("\n".join(lines) + "\n")
        # A blank-importing file keeps `go mod tidy` from dropping the requires.
        return self.work

    def require_packages(self, packages: list[str]) -> None:
        """A tools.go that imports the packages to build, then `go mod tidy`:
        the wrapper module then requires exactly what they need."""
        (self.work / "tools.go").write_text(
            "//go:build tools\n\npackage tools\n\nimport (\n"
            + "".join(f'\t_ "{p}"\n' for p in packages) + ")\n")
        self.run(["go", "mod", "tidy"])

    def build(self, packages: list[str], out: Path, ldflags: str = "-s -w",
              tags: str = "", cgo: bool = False, cwd: Path | None = None) -> None:
        env = go_env()
        if cgo:
            env["CGO_ENABLED"] = "1"
        out.mkdir(parents=True, exist_ok=True)
        cmd = ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(out) + "/"]
        if tags:
            cmd += ["-tags", tags]
        self.run(cmd + packages, cwd=cwd, env=env)


@dataclass
class Component:
    name: str
    build: Callable[[Builder, str], list[Path]]
    binaries: list[str] = field(default_factory=list)  # name -> runs `--version`
    version_args: dict[str, list[str]] = field(default_factory=dict)


# ---------------------------------------------------------------- layout helpers
def gh_dir(repo: str, tag: str) -> Path:
    """Where a GitHub release asset lives: github.com/<repo>/releases/download/<tag>/."""
    return MIRROR / "github.com" / repo / "releases" / "download" / tag


def write_tgz(dest: Path, files: dict[str, Path], prefix: str = "") -> None:
    """A gzipped tar with fixed mtimes and owners, like the release archives."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        if prefix:
            info = tarfile.TarInfo(prefix.rstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for arcname, src in sorted(files.items()):
            info = tar.gettarinfo(str(src), arcname=prefix + arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755
            with src.open("rb") as f:
                tar.addfile(info, f)
    tmp.rename(dest)


def write_sum(asset: Path, style: str = "sha256") -> Path:
    """The checksum file next to an asset: `.sha256` (digest only, dl.k8s.io)
    or `.sha256sum` (digest and name, GitHub releases)."""
    digest = sha256(asset)
    if style == "sha256":
        path = asset.with_name(asset.name + ".sha256")
        path.write_text(digest + "\n")
    else:
        path = asset.with_name(asset.name + ".sha256sum")
        path.write_text(f"{digest}  {asset.name}\n")
    return path


def place(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
    dest.chmod(0o755)
    return dest


# ------------------------------------------------------------------- components
K8S_CMDS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler",
            "kubelet", "kube-proxy", "kubectl"]


def k8s_wrapper(b: Builder, version: str) -> Path:
    tag = f"v{version}"
    out = b.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{tag}"],
                cwd=CACHE, capture=True)
    info = json.loads(out)
    if "Dir" not in info:
        raise BuildError(f"kubernetes: k8s.io/kubernetes@{tag} is not served by the "
                         f"proxy: {info.get('Error')}")
    gomod = Path(info["GoMod"]).read_text().splitlines()
    go_line = next(x.split()[1] for x in gomod if x.startswith("go "))
    godebug = "\n".join(x for x in gomod if x.startswith("godebug"))
    minor = version.split(".", 1)[1]
    replaces = {}
    for line in gomod:
        parts = line.split()
        if len(parts) == 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            replaces[parts[0]] = f"{parts[0]} v0.{minor}"
    b.wrapper({"k8s.io/kubernetes": tag}, replaces, go_line, godebug)
    b.require_packages(["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/test/images/agnhost"])
    return Path(info["Dir"])


def k8s_ldflags(version: str) -> str:
    major, minor, _patch = version.split(".")
    stamp = {
        "gitVersion": f"v{version}", "gitMajor": major, "gitMinor": minor,
        "gitCommit": "0" * 40, "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in stamp.items()]
    return "all=" + " ".join(flags)


def build_kubernetes(b: Builder, version: str) -> list[Path]:
    k8s_wrapper(b, version)
    bindir = b.work / "bin"
    b.build([f"k8s.io/kubernetes/cmd/{c}" for c in K8S_CMDS], bindir,
            ldflags=k8s_ldflags(version), tags="selinux,notest,grpcnotrace")
    dest = MIRROR / "dl.k8s.io" / "release" / f"v{version}" / "bin" / "linux" / ARCH
    assets = []
    for c in K8S_CMDS:
        assets.append(place(bindir / c, dest / c))
        write_sum(dest / c)
    return assets


def build_etcd(b: Builder, version: str) -> list[Path]:
    tag = f"v{version}"
    b.wrapper({"go.etcd.io/etcd/server/v3": tag, "go.etcd.io/etcd/etcdctl/v3": tag,
               "go.etcd.io/etcd/etcdutl/v3": tag})
    b.require_packages(["go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"])
    bindir = b.work / "bin"
    b.build(["go.etcd.io/etcd/server/v3"], bindir / "s")
    b.build(["go.etcd.io/etcd/etcdctl/v3"], bindir / "c")
    b.build(["go.etcd.io/etcd/etcdutl/v3"], bindir / "u")
    base = f"etcd-{tag}-linux-{ARCH}"
    asset = gh_dir("etcd-io/etcd", tag) / f"{base}.tar.gz"
    write_tgz(asset, {"etcd": bindir / "s" / "server", "etcdctl": bindir / "c" / "etcdctl",
                      "etcdutl": bindir / "u" / "etcdutl"}, prefix=base + "/")
    sums = asset.parent / "SHA256SUMS"
    sums.write_text(f"{sha256(asset)}  {asset.name}\n")
    return [asset]


def go_install_build(b: Builder, module: str, version: str, pkgs: list[str],
                     also_require: dict[str, str] | None = None, **kw) -> Path:
    """Build packages of a module that builds as a plain dependency.

    also_require raises a dependency to a newer version (minimal version
    selection keeps the higher one), for a version the proxy does not serve.
    """
    b.wrapper({module: version, **(also_require or {})})
    b.require_packages(pkgs)
    bindir = b.work / "bin"
    b.build(pkgs, bindir, **kw)
    return bindir


def build_containerd(b: Builder, version: str) -> list[Path]:
    mod = "github.com/containerd/containerd/v2"
    ld = f"-s -w -X {mod}/version.Version=v{version} -X {mod}/version.Revision=hardway"
    bindir = go_install_build(
        b, mod, f"v{version}",
        [f"{mod}/cmd/{c}" for c in ("containerd", "containerd-shim-runc-v2", "ctr")],
        ldflags=ld, tags="no_btrfs no_devmapper no_zfs")
    asset = gh_dir("containerd/containerd", f"v{version}") / \
        f"containerd-{version}-linux-{ARCH}.tar.gz"
    write_tgz(asset, {f"bin/{c}": bindir / c
                      for c in ("containerd", "containerd-shim-runc-v2", "ctr")})
    write_sum(asset, "sha256sum")
    return [asset]


def build_runc(b: Builder, version: str) -> list[Path]:
    mod = "github.com/opencontainers/runc"
    ld = f"-s -w -X main.version={version} -X main.gitCommit=hardway -extldflags -static"
    bindir = go_install_build(b, mod, f"v{version}", [mod], ldflags=ld,
                              tags="seccomp netgo osusergo", cgo=True)
    asset = place(bindir / "runc", gh_dir("opencontainers/runc", f"v{version}") / f"runc.{ARCH}")
    (asset.parent / "runc.sha256sum").write_text(f"{sha256(asset)}  runc.{ARCH}\n")
    return [asset]


CNI_PLUGINS = {"bridge": "main/bridge", "loopback": "main/loopback",
               "host-local": "ipam/host-local", "portmap": "meta/portmap"}


def build_cni_plugins(b: Builder, version: str) -> list[Path]:
    mod = "github.com/containernetworking/plugins"
    ld = f"-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v{version}"
    bindir = go_install_build(b, mod, f"v{version}",
                              [f"{mod}/plugins/{p}" for p in CNI_PLUGINS.values()], ldflags=ld)
    asset = gh_dir("containernetworking/plugins", f"v{version}") / \
        f"cni-plugins-linux-{ARCH}-v{version}.tgz"
    write_tgz(asset, {f"./{n}": bindir / n for n in CNI_PLUGINS})
    write_sum(asset)
    return [asset]


def build_flannel(b: Builder, version: str) -> list[Path]:
    mod = "github.com/flannel-io/flannel"
    # The Go module proxy does not serve the tencentcloud SDK's "common" module
    # at the version flannel asks for (it is only used by the tencentvpc
    # backend, never by vxlan); a newer, served release stands in.
    newer = {"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common": "v1.3.209"}
    bindir = go_install_build(b, mod, f"v{version}", [mod], also_require=newer,
                              ldflags=f"-s -w -X {mod}/pkg/version.Version=v{version} "
                                      "-extldflags -static",
                              tags="netgo osusergo", cgo=True)
    asset = place(bindir / "flannel", gh_dir("flannel-io/flannel", f"v{version}") / f"flanneld-{ARCH}")
    write_sum(asset, "sha256sum")
    return [asset]


def build_flannel_cni(b: Builder, version: str) -> list[Path]:
    mod = "github.com/containernetworking/plugins"
    bindir = go_install_build(b, mod, f"v{version}", [f"{mod}/plugins/meta/flannel"],
                              ldflags="-s -w")
    tag = f"v{version}"
    asset = gh_dir("flannel-io/cni-plugin", tag) / \
        f"cni-plugin-flannel-linux-{ARCH}-{tag}.tgz"
    write_tgz(asset, {f"flannel-{ARCH}": bindir / "flannel"})
    write_sum(asset)
    return [asset]


def build_coredns(b: Builder, version: str) -> list[Path]:
    mod = "github.com/coredns/coredns"
    bindir = go_install_build(b, mod, f"v{version}", [mod],
                              ldflags=f"-s -w -X {mod}/coremain.GitCommit=v{version}")
    asset = gh_dir("coredns/coredns", f"v{version}") / f"coredns_{version}_linux_{ARCH}.tgz"
    write_tgz(asset, {"coredns": bindir / "coredns"})
    write_sum(asset)
    return [asset]


def build_crictl(b: Builder, version: str) -> list[Path]:
    mod = "sigs.k8s.io/cri-tools"
    bindir = go_install_build(b, mod, f"v{version}", [f"{mod}/cmd/crictl"],
                              ldflags=f"-s -w -X {mod}/pkg/version.Version=v{version}")
    asset = gh_dir("kubernetes-sigs/cri-tools", f"v{version}") / \
        f"crictl-v{version}-linux-{ARCH}.tar.gz"
    write_tgz(asset, {"crictl": bindir / "crictl"})
    write_sum(asset)
    return [asset]


# ----------------------------------------------------------------------- images
IMAGES = MIRROR / "images"


def image_archive(dest: Path, ref: str, files: dict[str, tuple[Path, int]],
                  entrypoint: list[str], cmd: list[str] | None = None,
                  links: dict[str, str] | None = None, user: str | None = None) -> Path:
    """Write a `docker save`-format archive of a one-layer FROM-scratch image.

    `ctr -n k8s.io images import` takes it as it is: no registry, no daemon.
    `user` is the image's User (default: root, or 65535 for pause).
    """
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        dirs = sorted({str(d) for p in files for d in Path(p).parents if str(d) != "."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for arcname, (src, mode) in sorted(files.items()):
            info = tar.gettarinfo(str(src), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = mode
            with src.open("rb") as f:
                tar.addfile(info, f)
        for arcname, target in sorted((links or {}).items()):
            info = tarfile.TarInfo(arcname)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": ARCH, "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd, "User": user or (
            "65535:65535" if "pause" in ref else "0:0"), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-01-01T00:00:00Z",
                     "created_by": "hardway.kubernetes test bed"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with tarfile.open(tmp, "w") as tar:
        for name, data in ((config_name, config_bytes), (layer_name, layer_bytes),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(dest)
    write_sum(dest)
    return dest


def build_pause(b: Builder, version: str) -> list[Path]:
    pins = load_versions()[0]
    k8s = b.module_dir("k8s.io/kubernetes", f"v{pins['kubernetes']}")
    b.work.mkdir(parents=True, exist_ok=True)
    src = k8s / "build" / "pause" / "linux" / "pause.c"
    out = b.work / "pause"
    b.run(["gcc", "-Os", "-static", "-Wall", "-Werror",
           f'-DVERSION=v{version}-hardway', "-o", str(out), str(src)])
    b.run(["strip", str(out)])
    return [image_archive(IMAGES / f"pause-{version}.tar", f"registry.k8s.io/pause:{version}",
                          {"pause": (out, 0o755)}, ["/pause"])]


def build_agnhost(b: Builder, version: str) -> list[Path]:
    """The lab's test server: agnhost alone, under a name of the lab's own. The
    conformance suite's agnhost (registry.k8s.io/e2e-test-images/agnhost, with a
    shell and tools beside it) is tests/testbed/e2eimages.py's."""
    pins = load_versions()[0]
    k8s_wrapper(b, pins["kubernetes"])
    bindir = b.work / "bin"
    b.build(["k8s.io/kubernetes/test/images/agnhost"], bindir)
    return [image_archive(IMAGES / f"hardway-agnhost-{version}.tar",
                          f"hardway.local/agnhost:{version}",
                          {"agnhost": (bindir / "agnhost", 0o755)}, ["/agnhost"])]


def build_coredns_image(b: Builder, version: str) -> list[Path]:
    tgz = gh_dir("coredns/coredns", f"v{version}") / f"coredns_{version}_linux_{ARCH}.tgz"
    if not tgz.exists():
        build_coredns(b, version)
    b.work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tar:
        tar.extract("coredns", b.work, filter="data")
    return [image_archive(IMAGES / f"coredns-{version}.tar",
                          f"registry.k8s.io/coredns/coredns:v{version}",
                          {"coredns": (b.work / "coredns", 0o755)}, ["/coredns"])]


BUSYBOX_APPLETS = ["sh", "nslookup", "wget", "cat", "echo", "sleep", "ls", "hostname",
                   "ip", "ping", "nc", "test", "grep", "head", "env", "true"]


def build_busybox(b: Builder, version: str) -> list[Path]:
    """A shell-and-tools test image from Debian's static busybox (not a Go build)."""
    if b.work.exists():
        shutil.rmtree(b.work)
    b.work.mkdir(parents=True)
    policy = b.run(["apt-cache", "policy", "busybox-static"], capture=True, env=dict(os.environ))
    if f":{version}-" not in policy:
        b.run(["apt-get", "update", "-q"], env=dict(os.environ))
        policy = b.run(["apt-cache", "policy", "busybox-static"], capture=True, env=dict(os.environ))
    if f":{version}-" not in policy:
        raise BuildError(f"busybox: apt does not offer busybox-static {version}:\n{policy}")
    b.run(["apt-get", "download", "-q", "busybox-static"], env=dict(os.environ))
    deb = next(b.work.glob("busybox-static_*.deb"))
    b.run(["dpkg-deb", "-x", str(deb), "root"], env=dict(os.environ))
    links = {f"bin/{a}": "busybox" for a in BUSYBOX_APPLETS}
    return [image_archive(IMAGES / f"busybox-{version}.tar", f"hardway.local/busybox:{version}",
                          {"bin/busybox": (b.work / "root" / "bin" / "busybox", 0o755)},
                          ["/bin/sh"], links=links)]


# ------------------------------------------------------- ingress and TLS addons
def build_traefik(b: Builder, version: str) -> list[Path]:
    """Traefik through a wrapper module: its go.mod replaces a nested module
    with a path its zip lacks (taken from ../shared/vendor)."""
    mod = "github.com/traefik/traefik/v3"
    tag = f"v{version}"
    info = b.module_info(mod, tag)
    src = Path(info["Dir"])
    upstream = json.loads(b.run(["go", "mod", "edit", "-json", str(src / "go.mod")],
                                cwd=CACHE, capture=True))
    replaces = {}
    for r in upstream.get("Replace") or []:
        old, new = r["Old"]["Path"], r["New"]["Path"]
        if new.startswith(("./", "../")):
            local = VENDOR / f"traefik-{tag}" / new
            if not (local / "go.mod").exists():
                raise BuildError(f"traefik: {old} is replaced with {new}, which the module "
                                 f"zip lacks; expected it at {local}")
            replaces[old] = str(local)
        else:
            replaces[old] = f"{new} {r['New']['Version']}"
    godebug = "\n".join(f"godebug {g['Key']}={g['Value']}" for g in upstream.get("Godebug") or [])
    b.wrapper({mod: tag}, replaces, upstream["Go"], godebug)
    (b.work / "go.sum").write_bytes((src / "go.sum").read_bytes())
    b.require_packages([f"{mod}/cmd/traefik"])
    # The release's codename and ldflags (.goreleaser.yml.tmpl): the version without "v".
    release = src / ".github" / "workflows" / "release.yaml"
    codename = next((line.split(":", 1)[1].strip() for line in release.read_text().splitlines()
                     if line.strip().startswith("CODENAME:")), "cheddar") \
        if release.exists() else "cheddar"
    pkg = f"{mod}/pkg/version"
    ld = (f"-s -w -X {pkg}.Version={version} -X {pkg}.Codename={codename} "
          f"-X {pkg}.BuildDate={json.loads(Path(info['Info']).read_text())['Time']}")
    bindir = b.work / "bin"
    b.build([f"{mod}/cmd/traefik"], bindir, ldflags=ld)
    return [image_archive(IMAGES / f"traefik-{version}.tar", f"docker.io/library/traefik:{tag}",
                          {"traefik": (bindir / "traefik", 0o755),
                           str(CA_BUNDLE)[1:]: (CA_BUNDLE, 0o644)}, ["/traefik"])]


CERT_MANAGER_CMDS = ["controller", "webhook", "cainjector", "acmesolver"]
# The distroless static-debian12 "nonroot" base of upstream's images runs as 65532.
CERT_MANAGER_USER = "65532"
# The one helper the chart's CRD templates include (templates/_helpers.tpl),
# rendered below as `helm template --set crds.enabled=true --set creator=static`
# renders it; the build stops if the chart's definition differs.
CERT_MANAGER_CRD_LABELS_TPL = """{{- define "cert-manager.crd-labels" -}}
app: "{{ template "cert-manager.name" . }}"
app.kubernetes.io/name: "{{ template "cert-manager.name" . }}"
app.kubernetes.io/instance: "{{ .Release.Name }}"
app.kubernetes.io/component: "crds"
{{ include "labels" . }}
{{- end -}}"""


def render_crd_template(text: str, labels: str, where: str) -> str:
    """Render one of cert-manager's chart CRD templates: the few actions they
    use, with Go template whitespace trimming; anything else stops the build."""
    values = {".Values.crds.enabled": True, ".Values.installCRDs": False,
              ".Values.crds.keep": True}
    out: list[str] = []
    keep = [True]
    pos = 0
    trim_next = False
    for m in re.finditer(r"\{\{(- )?(.*?)( -)?\}\}", text, re.S):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        if all(keep):
            out.append(chunk)
        action = m.group(2).strip()
        words = action.split()
        if words[0] == "if" and all(w in values for w in words[1:] if w != "or") \
                and (len(words) == 2 or words[1] == "or"):
            keep.append(any(values[w] for w in words[1:] if w != "or"))
        elif action == "end" and len(keep) > 1:
            keep.pop()
        elif (include := re.fullmatch(r'include "cert-manager.crd-labels" \. \| nindent (\d+)',
                                      action)):
            if all(keep):
                pad = " " * int(include.group(1))
                out.append("\n" + "\n".join(pad + line for line in labels.splitlines()))
        else:
            raise BuildError(f"cert_manager: {where}: unexpected template action {{{{{action}}}}}")
        trim_next = bool(m.group(3))
        pos = m.end()
    chunk = text[pos:]
    out.append(chunk.lstrip() if trim_next else chunk)
    return "".join(out)


def cert_manager_crds(b: Builder, root: Path, tag: str) -> Path:
    """cert-manager.crds.yaml as the release makes it (make/manifests.mk): the
    chart's CRD templates through `helm template`, the CRDs picked out
    (hack/extractcrd) and the YAML license header in front."""
    chart = root / "deploy" / "charts" / "cert-manager"
    if CERT_MANAGER_CRD_LABELS_TPL not in (chart / "templates" / "_helpers.tpl").read_text():
        raise BuildError("cert_manager: the chart's cert-manager.crd-labels helper changed; "
                         "update CERT_MANAGER_CRD_LABELS_TPL and its rendering in mirror.py")
    labels = "\n".join([
        'app: "cert-manager"', 'app.kubernetes.io/name: "cert-manager"',
        'app.kubernetes.io/instance: "cert-manager"', 'app.kubernetes.io/component: "crds"',
        f'app.kubernetes.io/version: "{tag}"'])
    docs = []
    for tpl in sorted((chart / "templates").glob("crd-*.yaml")):
        body = render_crd_template(tpl.read_text(), labels, tpl.name).strip()
        docs.append(f"# Source: cert-manager/templates/{tpl.name}\n{body}\n")
    licenses = (root / "make" / "licenses.mk").read_text()
    year = re.search(r"^LICENSE_YEAR\s*:?=\s*(\S+)", licenses, re.M).group(1)
    header = (root / "hack" / "boilerplate-yaml.txt").read_text().replace("YEAR", year)
    asset = gh_dir("cert-manager/cert-manager", tag) / "cert-manager.crds.yaml"
    asset.parent.mkdir(parents=True, exist_ok=True)
    asset.write_text(header + "---\n".join(docs))
    write_sum(asset)
    return asset


def build_cert_manager(b: Builder, version: str) -> list[Path]:
    """The four binaries from their own main modules (../shared/vendor), each
    with its `replace ... => ../../` pointed at the root module the proxy serves."""
    mod = "github.com/cert-manager/cert-manager"
    tag = f"v{version}"
    info = b.module_info(mod, tag)
    root = Path(info["Dir"])
    cmds = VENDOR / f"cert-manager-{tag}" / "cmd"
    if not cmds.is_dir():
        raise BuildError(f"cert_manager: the main modules are not at {cmds}")
    if b.work.exists():
        shutil.rmtree(b.work)
    b.work.mkdir(parents=True)
    ld = f"-s -w -X {mod}/pkg/util.AppVersion={tag}"
    if info.get("Origin", {}).get("Hash"):
        ld += f" -X {mod}/pkg/util.AppGitCommit={info['Origin']['Hash']}"
    bindir = b.work / "bin"
    for c in CERT_MANAGER_CMDS:
        shutil.copytree(cmds / c, b.work / c)
        b.run(["go", "mod", "edit", f"-replace={mod}={root}"], cwd=b.work / c)
        b.build(["."], bindir / c, ldflags=ld, cwd=b.work / c)
    assets = []
    for c in CERT_MANAGER_CMDS:
        binary = bindir / c / f"{c}-binary"
        assets.append(image_archive(
            IMAGES / f"cert-manager-{c}-{version}.tar", f"quay.io/jetstack/cert-manager-{c}:{tag}",
            {f"app/cmd/{c}/{c}": (binary, 0o755), str(CA_BUNDLE)[1:]: (CA_BUNDLE, 0o644)},
            [f"/app/cmd/{c}/{c}"], user=CERT_MANAGER_USER))
    assets.append(cert_manager_crds(b, root, tag))
    return assets


def build_pebble(b: Builder, version: str) -> list[Path]:
    """Pebble and pebble-challtestsrv as the release builds them, each image
    with the module's test/ (config and certificates) at /test, as upstream's."""
    mod = "github.com/letsencrypt/pebble/v2"
    tag = f"v{version}"
    info = b.module_info(mod, tag)
    commit = info.get("Origin", {}).get("Hash", "hardway")
    bindir = go_install_build(b, mod, tag, [f"{mod}/cmd/pebble", f"{mod}/cmd/pebble-challtestsrv"],
                              ldflags=f"-s -w -X 'main.version={tag} ({commit})'")
    test = Path(info["Dir"]) / "test"
    files = {f"test/{p.relative_to(test)}": (p, 0o644) for p in test.rglob("*") if p.is_file()}
    return [image_archive(IMAGES / f"{app}-{version}.tar", f"ghcr.io/letsencrypt/{app}:{version}",
                          {"app": (bindir / app, 0o755), **files}, ["/app"])
            for app in ("pebble", "pebble-challtestsrv")]


def build_gateway_api(b: Builder, version: str) -> list[Path]:
    """standard-install.yaml as hack/build-install-yaml.sh writes it."""
    tag = f"v{version}"
    info = b.module_info("sigs.k8s.io/gateway-api", tag)
    root = Path(info["Dir"])
    year = json.loads(Path(info["Info"]).read_text())["Time"][:4]
    text = (root / "hack" / "boilerplate" / "boilerplate.sh.txt").read_text().replace("YEAR", year)
    text += "#\n# Gateway API Standard channel install\n#\n"
    for f in sorted((root / "config" / "crd" / "standard").glob("gateway*.yaml")):
        text += f"---\n#\n# {f.relative_to(root)}\n#\n" + f.read_text()
    asset = gh_dir("kubernetes-sigs/gateway-api", tag) / "standard-install.yaml"
    asset.parent.mkdir(parents=True, exist_ok=True)
    asset.write_text(text)
    write_sum(asset)
    return [asset]


COMPONENTS: dict[str, Callable[[Builder, str], list[Path]]] = {
    "kubernetes": build_kubernetes,
    "etcd": build_etcd,
    "containerd": build_containerd,
    "runc": build_runc,
    "cni_plugins": build_cni_plugins,
    "flannel": build_flannel,
    "flannel_cni": build_flannel_cni,
    "coredns": build_coredns,
    "crictl": build_crictl,
    "pause": build_pause,
    "agnhost": build_agnhost,
    "busybox": build_busybox,
    "traefik": build_traefik,
    "cert_manager": build_cert_manager,
    "pebble": build_pebble,
    "gateway_api": build_gateway_api,
}
# A component's recipe revision: raised when what a build makes changes at the
# same version (a cached build of an older revision is built again).
# agnhost 2: the lab's agnhost is hardway.local/agnhost, hardway-agnhost-*.tar.
REVISIONS = {"agnhost": 2}
# Image components that reuse another component's pin.
DERIVED = {"coredns_image": ("coredns", build_coredns_image)}


def k8s_binary(name: str) -> Path:
    """Path of a Kubernetes binary of the pinned version in the mirror."""
    pins = load_versions()[0]
    return MIRROR / "dl.k8s.io" / "release" / f"v{pins['kubernetes']}" / "bin" / "linux" / ARCH / name


# ------------------------------------------------------------------------ CLI
def resolve(requests: list[str]) -> list[tuple[str, str, Callable]]:
    pins, known = load_versions()
    names = list(COMPONENTS) + list(DERIVED)
    if not requests:
        requests = names
    plan = []
    for req in requests:
        name, _sep, version = req.partition("@")
        if name in DERIVED:
            base, fn = DERIVED[name]
        elif name in COMPONENTS:
            base, fn = name, COMPONENTS[name]
        else:
            raise SystemExit(f"mirror: unknown component {name!r}; "
                             f"known components: {', '.join(names)}")
        version = version.lstrip("v") or pins[base]
        if version not in known.get(base, []):
            raise SystemExit(f"mirror: unknown version {version!r} for {name}; known "
                             f"versions (from {VERSIONS_FILE.relative_to(REPO)}): "
                             f"{', '.join(known.get(base, [])) or 'none'}")
        plan.append((name, version, fn))
    return plan


def cmd_build(requests: list[str], force: bool) -> int:
    plan = resolve(requests)
    STAMPS.mkdir(parents=True, exist_ok=True)
    failed = []
    start_all = time.monotonic()
    for i, (name, version, fn) in enumerate(plan, 1):
        stamp = STAMPS / f"{name}-{version}.json"
        prefix = f"[{i}/{len(plan)}] {name} {version}"
        if stamp.exists() and not force:
            recorded = json.loads(stamp.read_text())
            assets = recorded["assets"]
            if recorded.get("revision", 1) == REVISIONS.get(name, 1) \
                    and all((MIRROR / a).exists() for a in assets):
                print(f"{prefix}: cached", flush=True)
                continue
        print(f"{prefix}: building (log: {LOGS / f'{name}-{version}.log'})", flush=True)
        start = time.monotonic()
        b = Builder(name, version)
        try:
            assets = fn(b, version)
        except (BuildError, OSError, StopIteration) as exc:
            print(f"{prefix}: FAILED: {exc}", flush=True)
            failed.append(name)
            continue
        finally:
            b.log.close()
        stamp.write_text(json.dumps({
            "component": name, "version": version, "revision": REVISIONS.get(name, 1),
            "seconds": round(time.monotonic() - start, 1),
            "assets": [str(a.relative_to(MIRROR)) for a in assets]}, indent=1))
        print(f"{prefix}: built in {time.monotonic() - start:.0f}s", flush=True)
    print(f"mirror: {len(plan) - len(failed)}/{len(plan)} components ready in "
          f"{time.monotonic() - start_all:.0f}s at {MIRROR}", flush=True)
    if failed:
        print(f"mirror: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def checksum_files() -> list[Path]:
    return sorted(p for p in MIRROR.rglob("*")
                  if p.is_file() and (p.name.endswith((".sha256", ".sha256sum"))
                                      or p.name == "SHA256SUMS"))


def cmd_verify() -> int:
    bad = 0
    files = checksum_files()
    for f in files:
        for line in f.read_text().splitlines():
            parts = line.split()
            if f.name.endswith(".sha256"):
                asset = f.with_name(f.name[: -len(".sha256")])
            else:
                asset = f.parent / parts[1]
            ok = asset.exists() and sha256(asset) == parts[0]
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {asset.relative_to(MIRROR)}")
    print(f"mirror: {len(files) - bad} checksums verified, {bad} bad")
    return 1 if bad or not files else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help="build components (default: all pins)")
    p.add_argument("components", nargs="*", metavar="COMPONENT[@VERSION]")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    sub.add_parser("verify", help="verify every checksum in the mirror")
    sub.add_parser("list", help="list components and their pins")
    sub.add_parser("path", help="print the mirror directory")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        return cmd_build(args.components, args.force)
    if args.cmd == "verify":
        return cmd_verify()
    if args.cmd == "list":
        pins = load_versions()[0]
        for name in list(COMPONENTS) + list(DERIVED):
            base = DERIVED[name][0] if name in DERIVED else name
            print(f"{name} {pins[base]}")
        return 0
    print(MIRROR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
