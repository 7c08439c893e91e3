"""The offline test bed works: built binaries, checksums, images, lab hosts.

Runs after `mirror.py build` (the Makefile's `mirror` target). The lab hosts
these tests start are a set of their own ("tbed"), removed at the end.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lab  # noqa: E402
import mirror  # noqa: E402

PINS, KNOWN = mirror.load_versions()
G = mirror.gh_dir


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


def extract(archive: Path, member: str, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extract(member, dest, filter="data")
    return dest / member


# Every binary, where it lives in the mirror, and what `--version` must print.
def binaries(tmp: Path) -> list[tuple[str, Path, list[str], str]]:
    k8s = PINS["kubernetes"]
    etcd = G("etcd-io/etcd", f"v{PINS['etcd']}") / f"etcd-v{PINS['etcd']}-linux-amd64.tar.gz"
    ctd = G("containerd/containerd", f"v{PINS['containerd']}") / \
        f"containerd-{PINS['containerd']}-linux-amd64.tar.gz"
    cni = G("containernetworking/plugins", f"v{PINS['cni_plugins']}") / \
        f"cni-plugins-linux-amd64-v{PINS['cni_plugins']}.tgz"
    fcni = G("flannel-io/cni-plugin", f"v{PINS['flannel_cni']}") / \
        f"cni-plugin-flannel-linux-amd64-v{PINS['flannel_cni']}.tgz"
    crictl = G("kubernetes-sigs/cri-tools", f"v{PINS['crictl']}") / \
        f"crictl-v{PINS['crictl']}-linux-amd64.tar.gz"
    coredns = G("coredns/coredns", f"v{PINS['coredns']}") / f"coredns_{PINS['coredns']}_linux_amd64.tgz"
    root = f"etcd-v{PINS['etcd']}-linux-amd64/"
    out = [(c, mirror.k8s_binary(c), ["--version"], f"v{k8s}")
           for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")]
    out.append(("kubectl", mirror.k8s_binary("kubectl"), ["version", "--client"], f"v{k8s}"))
    out.append(("etcd", extract(etcd, root + "etcd", tmp), ["--version"], PINS["etcd"]))
    out.append(("etcdctl", extract(etcd, root + "etcdctl", tmp), ["version"], PINS["etcd"]))
    out.append(("containerd", extract(ctd, "bin/containerd", tmp), ["--version"], f"v{PINS['containerd']}"))
    out.append(("ctr", extract(ctd, "bin/ctr", tmp), ["--version"], f"v{PINS['containerd']}"))
    out.append(("runc", G("opencontainers/runc", f"v{PINS['runc']}") / "runc.amd64", ["--version"],
                f"runc version {PINS['runc']}"))
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        out.append((plugin, extract(cni, f"./{plugin}", tmp), [], f"v{PINS['cni_plugins']}"))
    out.append(("flannel (CNI)", extract(fcni, "flannel-amd64", tmp), [], "CNI flannel plugin"))
    out.append(("flanneld", G("flannel-io/flannel", f"v{PINS['flannel']}") / "flanneld-amd64", ["--version"],
                f"v{PINS['flannel']}"))
    out.append(("crictl", extract(crictl, "crictl", tmp), ["--version"], f"v{PINS['crictl']}"))
    out.append(("coredns", extract(coredns, "coredns", tmp), ["-version"], f"CoreDNS-{PINS['coredns']}"))
    return out


# The images of the ingress and TLS addons: archive, ref, entrypoint, user.
def addon_images() -> list[tuple[str, str, list[str], str]]:
    t, cm, pb = PINS["traefik"], PINS["cert_manager"], PINS["pebble"]
    out = [(f"traefik-{t}.tar", f"docker.io/library/traefik:v{t}", ["/traefik"], "0:0")]
    out += [(f"cert-manager-{c}-{cm}.tar", f"quay.io/jetstack/cert-manager-{c}:v{cm}",
             [f"/app/cmd/{c}/{c}"], "65532") for c in mirror.CERT_MANAGER_CMDS]
    out += [(f"{app}-{pb}.tar", f"ghcr.io/letsencrypt/{app}:{pb}", ["/app"], "0:0")
            for app in ("pebble", "pebble-challtestsrv")]
    return out


def image_parts(archive: Path) -> tuple[list, dict, dict[str, tarfile.TarInfo]]:
    """An image archive's manifest, its config and its layer's members."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest[0]["Config"]))
        with tarfile.open(fileobj=tar.extractfile(manifest[0]["Layers"][0])) as layer:
            members = {m.name: m for m in layer.getmembers()}
    return manifest, config, members


def from_image(archive: Path, dest: Path, members: list[str] | None = None) -> Path:
    """Unpack (some of) an image archive's one layer into dest."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        with tarfile.open(fileobj=tar.extractfile(manifest[0]["Layers"][0])) as layer:
            picked = [layer.getmember(m) for m in members] if members else None
            layer.extractall(dest, members=picked, filter="data")
    return dest


# The programs of the addon images, and what they must print.
def addon_binaries(tmp: Path) -> list[tuple[str, Path, list[str], str]]:
    images = mirror.IMAGES
    t, cm, pb = PINS["traefik"], PINS["cert_manager"], PINS["pebble"]
    out = [("traefik", from_image(images / f"traefik-{t}.tar", tmp / "traefik", ["traefik"]) / "traefik",
            ["version"], t)]
    for c in mirror.CERT_MANAGER_CMDS:
        root = from_image(images / f"cert-manager-{c}-{cm}.tar", tmp / c, [f"app/cmd/{c}/{c}"])
        path = root / "app" / "cmd" / c / c
        if c == "acmesolver":  # logs no version: its --help must answer
            out.append((c, path, ["--help"], "HTTP server used to solve ACME challenges"))
        else:  # the version is the first thing each logs, before the kubeconfig fails
            out.append((c, path, ["--kubeconfig=/nonexistent"], f'version="v{cm}"'))
    for app, args, expected in (("pebble", ["-version"], f"Pebble version: v{pb}"),
                                ("pebble-challtestsrv", ["-help"], "-dnsserver")):
        root = from_image(images / f"{app}-{pb}.tar", tmp / app, ["app"])
        out.append((app, root / "app", args, expected))
    return out


def test_every_binary_reports_its_pinned_version(tmp_path):
    for name, path, args, expected in binaries(tmp_path) + addon_binaries(tmp_path):
        assert path.exists(), f"{name}: {path} missing from the mirror"
        proc = run(str(path), *args)
        text = proc.stdout + proc.stderr
        assert expected in text, f"{name} printed {text!r}, expected {expected!r}"


def test_every_checksum_verifies():
    files = mirror.checksum_files()
    # for the pins: one per Kubernetes binary, one per release archive or
    # binary of the eight other components, one per image archive, one per
    # manifest (make test-extended adds older releases beside them)
    images = ["pause", "agnhost", "coredns", "busybox"] + [item[0] for item in addon_images()]
    manifests = ["cert-manager.crds.yaml", "standard-install.yaml"]
    pinned = [f for f in files if f.parent == mirror.k8s_binary("kubectl").parent]
    assert len(pinned) == len(mirror.K8S_CMDS)
    assert len(files) >= len(mirror.K8S_CMDS) + 8 + len(images) + len(manifests)
    assert mirror.cmd_verify() == 0


@pytest.mark.parametrize("archive,ref,entrypoint,user", addon_images())
def test_addon_images(archive, ref, entrypoint, user):
    path = mirror.IMAGES / archive
    assert (path.parent / f"{archive}.sha256").read_text().strip() == mirror.sha256(path)
    manifest, config, members = image_parts(path)
    assert manifest[0]["RepoTags"] == [ref]
    assert config["config"]["Entrypoint"] == entrypoint
    assert config["config"]["User"] == user
    program = members[entrypoint[0].lstrip("/")]
    assert program.isfile() and program.mode == 0o755
    # HTTPS clients find the CA bundle where Go looks first; pebble's images
    # carry the module's test/ (config and certificates) at /test instead
    want = (["test/config/pebble-config.json", "test/certs/localhost/cert.pem",
             "test/certs/localhost/key.pem", "test/certs/pebble.minica.pem"]
            if "pebble" in archive else ["etc/ssl/certs/ca-certificates.crt"])
    for name in want:
        assert members[name].isfile(), name
    for name in members:  # every parent directory has its own entry
        parent = str(Path(name).parent)
        assert parent == "." or members[parent].isdir(), name


def test_pebble_starts_from_its_image_working_directory(tmp_path):
    """`pebble -config test/config/pebble-config.json` from the image's
    WorkingDir finds its config and certificates (ports moved to free ones)."""
    archive = mirror.IMAGES / f"pebble-{PINS['pebble']}.tar"
    root = from_image(archive, tmp_path / "root")
    workdir = root / image_parts(archive)[1]["config"]["WorkingDir"].lstrip("/")
    config = json.loads((workdir / "test/config/pebble-config.json").read_text())
    config["pebble"].update(listenAddress="127.0.0.1:0", managementListenAddress="127.0.0.1:0")
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen([str(root / "app"), "-config", str(tmp_path / "config.json")], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = proc.communicate(timeout=3)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
    assert "Listening on: 127.0.0.1:0" in out, out


def test_image_archive_user_is_optional(tmp_path):
    """Images without a user keep the root (pause: 65535) user, so their archives,
    and checksums, stay as they were."""
    (tmp_path / "x").write_bytes(b"x")
    files = {"x": (tmp_path / "x", 0o755)}
    users = {}
    for ref, user in (("a/x:1", None), ("a/pause:1", None), ("a/y:1", "1000")):
        dest = mirror.image_archive(tmp_path / f"{len(users)}.tar", ref, files, ["/x"], user=user)
        users[ref] = image_parts(dest)[1]["config"]["User"]
    assert users == {"a/x:1": "0:0", "a/pause:1": "65535:65535", "a/y:1": "1000"}


CERT_MANAGER_CRDS = {"certificaterequests.cert-manager.io", "certificates.cert-manager.io",
                     "challenges.acme.cert-manager.io", "clusterissuers.cert-manager.io",
                     "issuers.cert-manager.io", "orders.acme.cert-manager.io"}
GATEWAY_API_CRDS = {f"{p}.gateway.networking.k8s.io" for p in (
    "backendtlspolicies", "gatewayclasses", "gateways", "grpcroutes", "httproutes",
    "listenersets", "referencegrants", "tlsroutes")}


def manifest_docs(path: Path) -> list[dict]:
    assert (path.parent / f"{path.name}.sha256").read_text().strip() == mirror.sha256(path)
    text = path.read_text()
    assert "{{" not in text  # plain YAML, no template left
    return [d for d in yaml.safe_load_all(text) if d]


def test_cert_manager_crds_manifest():
    tag = f"v{PINS['cert_manager']}"
    docs = manifest_docs(G("cert-manager/cert-manager", tag) / "cert-manager.crds.yaml")
    assert {d["kind"] for d in docs} == {"CustomResourceDefinition"}
    assert {d["metadata"]["name"] for d in docs} == CERT_MANAGER_CRDS
    assert len(docs) == len(CERT_MANAGER_CRDS)
    for d in docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/version"] == tag
        assert d["metadata"]["labels"]["app.kubernetes.io/component"] == "crds"
        assert d["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_gateway_api_standard_install_manifest():
    tag = f"v{PINS['gateway_api']}"
    docs = manifest_docs(G("kubernetes-sigs/gateway-api", tag) / "standard-install.yaml")
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert {d["metadata"]["name"] for d in crds} == GATEWAY_API_CRDS
    assert len(crds) == len(GATEWAY_API_CRDS)
    for d in crds:
        assert d["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == tag
        assert d["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "standard"
    # and the policy that refuses experimental CRDs over standard ones
    assert sorted(d["kind"] for d in docs if d not in crds) == [
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]


def test_traefik_supports_the_pinned_gateway_api():
    """The Gateway API CRDs are the version Traefik's go.mod builds against."""
    out = run("go", "mod", "download", "-json", f"github.com/traefik/traefik/v3@v{PINS['traefik']}",
              cwd=mirror.CACHE, env=mirror.go_env())
    gomod = json.loads(run("go", "mod", "edit", "-json", json.loads(out.stdout)["GoMod"],
                           env=mirror.go_env()).stdout)
    required = {r["Path"]: r["Version"] for r in gomod["Require"]}
    assert required["sigs.k8s.io/gateway-api"] == f"v{PINS['gateway_api']}"


def test_checksum_verification_catches_a_changed_file(tmp_path, monkeypatch):
    asset = tmp_path / "x.bin"
    asset.write_bytes(b"one")
    mirror.write_sum(asset)
    monkeypatch.setattr(mirror, "MIRROR", tmp_path)
    assert mirror.cmd_verify() == 0
    asset.write_bytes(b"two")
    assert mirror.cmd_verify() == 1


def test_upstream_layout_paths():
    k8s = mirror.MIRROR / "dl.k8s.io" / "release" / f"v{PINS['kubernetes']}" / "bin" / "linux" / "amd64"
    assert (k8s / "kubelet.sha256").read_text().strip() == \
        hashlib.sha256((k8s / "kubelet").read_bytes()).hexdigest()
    sums = (G("etcd-io/etcd", f"v{PINS['etcd']}") / "SHA256SUMS").read_text()
    assert f"etcd-v{PINS['etcd']}-linux-amd64.tar.gz" in sums


@pytest.mark.parametrize("request_,message", [
    ("kube-nothing", "unknown component 'kube-nothing'"),
    ("etcd@9.9.9", "unknown version '9.9.9' for etcd"),
    ("kubernetes@v1.99.0", "unknown version '1.99.0' for kubernetes"),
])
def test_tool_refuses_unknown_component_or_version(request_, message):
    proc = run(sys.executable, str(HERE / "mirror.py"), "build", request_)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "known" in proc.stderr


def test_warm_cache_build_is_a_no_op():
    proc = run(sys.executable, str(HERE / "mirror.py"), "build", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "building" not in proc.stdout
    assert proc.stdout.count(": cached") == len(mirror.COMPONENTS) + len(mirror.DERIVED)


# ------------------------------------------------------------------ lab hosts
SET = "tbed"


@pytest.fixture(scope="module")
def hosts():
    lab.down(SET)
    started = lab.up(1, SET)
    yield dict(started)
    lab.down(SET)


def dexec(name: str, *cmd: str, check: bool = True) -> str:
    proc = run("docker", "exec", name, *cmd)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} on {name}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def test_lab_host_boots_to_running(hosts):
    for name in hosts:
        state = dexec(name, "systemctl", "is-system-running", check=False).strip()
        failed = dexec(name, "systemctl", "--failed", "--no-legend", check=False)
        assert state == "running", f"{name} is {state}; failed units: {failed}"
        assert dexec(name, "readlink", "/proc/1/exe").strip().endswith("systemd")


def test_lab_hosts_carry_what_the_roles_install_from_packages(hosts):
    """The lab network has no way out: the node role's packages and HAProxy (apiserver_lb) are in the image."""
    for name in hosts:
        for package in lab.NODE_PACKAGES:
            assert dexec(name, "dpkg-query", "-W", "-f", "${db:Status-Status}", package) == "installed", package
        assert "HAProxy version" in dexec(name, "haproxy", "-v")


def test_lab_layouts_name_control_planes_first():
    """1 or 3 control planes (also the etcd members) on .11, .12, .13, workers on .21, .22."""
    net = lab.network_of(SET)[1]
    assert lab.host_names(2, SET, 3) == [(f"{SET}-cp1", f"{net}.11"), (f"{SET}-cp2", f"{net}.12"),
                                         (f"{SET}-cp3", f"{net}.13"), (f"{SET}-w1", f"{net}.21"),
                                         (f"{SET}-w2", f"{net}.22")]
    inventory = yaml.safe_load(lab.inventory(2, SET, 3))["all"]["children"]
    assert list(inventory["control_plane"]["hosts"]) == list(inventory["etcd"]["hosts"]) == \
        [f"{SET}-cp{i}" for i in (1, 2, 3)]
    assert inventory["etcd"]["hosts"][f"{SET}-cp2"] is None  # host variables once, under control_plane
    assert inventory["control_plane"]["hosts"][f"{SET}-cp2"] == {"cluster_node_address": f"{net}.12"}
    assert [i["instance"] for i in yaml.safe_load(lab.instances(2, SET, 3))] == \
        [f"{SET}-cp1", f"{SET}-cp2", f"{SET}-cp3", f"{SET}-w1", f"{SET}-w2"]
    with pytest.raises(SystemExit, match="--control-planes must be 1 to 9"):
        lab.host_names(2, SET, 0)


def test_lab_network_is_internal():
    network = lab.network_of(SET)[0]
    out = run("docker", "network", "inspect", "-f", "{{.Internal}}", network).stdout.strip()
    assert out == "true"


def test_images_run_in_containerd_on_a_lab_host(hosts, tmp_path):
    """Install containerd + runc from the mirror on a lab host, import the
    pause and agnhost archives, run agnhost, and reach it from the other host."""
    first, second = sorted(hosts)
    ctd = G("containerd/containerd", f"v{PINS['containerd']}") / \
        f"containerd-{PINS['containerd']}-linux-amd64.tar.gz"
    for member in ("bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"):
        path = extract(ctd, member, tmp_path)
        run("docker", "cp", str(path), f"{first}:/usr/local/bin/")
    run("docker", "cp", str(G("opencontainers/runc", f"v{PINS['runc']}") / "runc.amd64"),
        f"{first}:/usr/local/bin/runc")
    images = mirror.MIRROR / "images"
    for archive in (f"pause-{PINS['pause']}.tar", f"hardway-agnhost-{PINS['agnhost']}.tar"):
        run("docker", "cp", str(images / archive), f"{first}:/root/")
    dexec(first, "sh", "-c", "chmod +x /usr/local/bin/* && "
          "(nohup containerd > /var/log/containerd.log 2>&1 &) && sleep 2")
    for archive in (f"pause-{PINS['pause']}.tar", f"hardway-agnhost-{PINS['agnhost']}.tar"):
        dexec(first, "ctr", "-n", "k8s.io", "images", "import", "--platform", "linux/amd64", f"/root/{archive}")
    refs = dexec(first, "ctr", "-n", "k8s.io", "images", "ls", "-q")
    assert f"registry.k8s.io/pause:{PINS['pause']}" in refs
    agnhost = f"hardway.local/agnhost:{PINS['agnhost']}"
    assert agnhost in refs
    # the pause image runs (and stays up) ...
    dexec(first, "ctr", "-n", "k8s.io", "run", "-d", "--runc-binary", "/usr/local/bin/runc",
          f"registry.k8s.io/pause:{PINS['pause']}", "pause1")
    # ... and agnhost serves on the host network, reached from the second host
    dexec(first, "ctr", "-n", "k8s.io", "run", "-d", "--net-host", "--runc-binary", "/usr/local/bin/runc",
          agnhost, "web", "/agnhost", "netexec", "--http-port=8080")
    address = hosts[first]
    out = ""
    for _attempt in range(30):
        out = dexec(second, "curl", "-s", "-m", "2", f"http://{address}:8080/hostname", check=False)
        if out:
            break
        subprocess.run(["sleep", "0.5"], check=False)
    assert out.strip() == first
    tasks = dexec(first, "ctr", "-n", "k8s.io", "tasks", "ls")
    assert "pause1" in tasks and "RUNNING" in tasks


def test_lab_down_restores_host_sysctls(hosts):
    # the record exists while lab hosts run; values are put back by `down`
    assert lab.SYSCTL_FILE.exists()
    saved = lab.json.loads(lab.SYSCTL_FILE.read_text())
    assert set(saved) == set(lab.GLOBAL_SYSCTLS)
