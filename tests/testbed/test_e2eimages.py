"""The pure-Python parts of e2eimages.py: references, layers, archives,
manifests and the registry client (against an in-process fake registry on
the loopback interface). No Docker, no Go, nothing off this machine."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import sys
import tarfile
import threading
import urllib.parse
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import e2eimages  # noqa: E402


@pytest.mark.parametrize("ref, want", [
    ("registry.k8s.io/e2e-test-images/agnhost:2.66.1",
     ("registry.k8s.io", "e2e-test-images/agnhost", "2.66.1")),
    ("registry.k8s.io/pause:3.10.2", ("registry.k8s.io", "pause", "3.10.2")),
    ("registry.k8s.io/etcd:3.7.0-0", ("registry.k8s.io", "etcd", "3.7.0-0")),
    ("registry.k8s.io/e2e-test-images/node-perf/npb-ep:1.6.0",
     ("registry.k8s.io", "e2e-test-images/node-perf/npb-ep", "1.6.0")),
    ("172.29.6.5:5000/e2e-test-images/busybox:1.37.0-2",
     ("172.29.6.5:5000", "e2e-test-images/busybox", "1.37.0-2")),
    ("localhost:5000/x", ("localhost:5000", "x", "latest")),
    ("busybox", ("docker.io", "library/busybox", "latest")),
    ("docker.io/library/nginx:1.27", ("docker.io", "library/nginx", "1.27")),
    ("someone/tool:v1", ("docker.io", "someone/tool", "v1")),
])
def test_parse_ref(ref, want):
    assert e2eimages.parse_ref(ref) == want


@pytest.mark.parametrize("ref", ["", "registry.k8s.io/", "Upper/Case:1", "a@sha256:00", "x:bad tag"])
def test_parse_ref_rejects(ref):
    with pytest.raises(ValueError):
        e2eimages.parse_ref(ref)


def test_registry_address():
    assert e2eimages.registry_address("dev2") == "172.29.6.5:5000"
    assert e2eimages.registry_address("lab") == "172.29.0.5:5000"
    assert e2eimages.registry_container("dev2") == "dev2-registry"


def test_every_ref_has_its_own_archive_name():
    refs = [i.ref for i in e2eimages.images()]
    assert len(refs) == len(set(refs)) == 12
    names = [e2eimages.archive_path(r).name for r in refs]
    assert len(names) == len(set(names))
    assert "registry.k8s.io/e2e-test-images/agnhost:2.55" in refs


def test_refs_are_upstreams():
    if not (e2eimages.mirror.CACHE / "go" / "mod" / "k8s.io"
            / f"kubernetes@v{e2eimages.K8S_VERSION}").is_dir():
        pytest.skip("k8s.io/kubernetes is not in the module cache")
    known = e2eimages.upstream_refs()
    assert {i.ref for i in e2eimages.images()} <= known


def test_digests():
    assert e2eimages.digest_bytes(b"") == \
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert e2eimages.digest_stream(io.BytesIO(b"abc" * 1000000)) == (
        "sha256:" + hashlib.sha256(b"abc" * 1000000).hexdigest(), 3000000)


def test_schema2_manifest():
    body = e2eimages.schema2_manifest(("sha256:" + "a" * 64, 12),
                                      [("sha256:" + "b" * 64, 34), ("sha256:" + "c" * 64, 56)])
    doc = json.loads(body)
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert doc["config"] == {"mediaType": "application/vnd.docker.container.image.v1+json",
                             "size": 12, "digest": "sha256:" + "a" * 64}
    assert [x["mediaType"] for x in doc["layers"]] == \
        ["application/vnd.docker.image.rootfs.diff.tar.gzip"] * 2
    assert [(x["digest"][-1], x["size"]) for x in doc["layers"]] == [("b", 34), ("c", 56)]


@pytest.fixture
def store(tmp_path, monkeypatch):
    for name in ("ROOT", "LAYERS", "ARCHIVES", "BLOBS", "WORK", "STAMPS"):
        monkeypatch.setattr(e2eimages, name, tmp_path / name.lower())
    return tmp_path


def small_layer(name="one", text=b"hello\n"):
    return e2eimages.files_layer(name, [
        e2eimages.Entry("usr/local/bin/tool", data=text, mode=0o4755),
        e2eimages.Entry("tool", "symlink", target="usr/local/bin/tool"),
        e2eimages.Entry("tmp", "dir", mode=0o1777),
    ], "a test layer")


def test_layer_digests_and_contents(store):
    layer = small_layer()
    raw = layer.path.read_bytes()
    assert layer.digest == e2eimages.digest_bytes(raw)
    assert layer.size == len(raw)
    plain = gzip.decompress(raw)
    assert layer.diff_id == e2eimages.digest_bytes(plain)
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"usr", "usr/local", "usr/local/bin", "usr/local/bin/tool", "tool", "tmp"}
    assert members["usr/local/bin/tool"].mode == 0o4755
    assert members["tmp"].mode == 0o1777
    assert members["tool"].issym() and members["tool"].linkname == "usr/local/bin/tool"
    # Same inputs: the cached layer, byte for byte; other inputs: a new one.
    assert small_layer() == layer
    assert small_layer(text=b"other\n").digest != layer.digest


def test_archive_is_docker_save(store):
    layers = [small_layer("a"), small_layer("b", b"b\n")]
    ref = "registry.k8s.io/e2e-test-images/thing:1.0"
    dest = e2eimages.write_archive(store / "thing.tar", ref, layers, {"Cmd": ["tool"], "User": "1234"})
    with tarfile.open(dest) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        config_bytes = tar.extractfile(manifest[0]["Config"]).read()
        blobs = [tar.extractfile(n).read() for n in manifest[0]["Layers"]]
    assert manifest[0]["RepoTags"] == [ref]
    assert manifest[0]["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
    config = json.loads(config_bytes)
    assert config["rootfs"]["diff_ids"] == [x.diff_id for x in layers]
    assert config["config"]["User"] == "1234" and config["config"]["Cmd"] == ["tool"]
    assert config["config"]["Env"] == [e2eimages.PATH_ENV]
    assert len(config["history"]) == 2
    assert [e2eimages.digest_bytes(b) for b in blobs] == [x.digest for x in layers]


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Enough of the Registry API v2 for the client: blobs, uploads, mounts, manifests."""
    blobs: dict = {}
    manifests: dict = {}
    log: list = []

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        parts = self.path.split("/blobs/")
        repo = parts[0][len("/v2/"):]
        self.log.append(("HEAD", repo))
        self.reply(200 if (repo, parts[1]) in self.blobs else 404)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        repo = url.path[len("/v2/"):-len("/blobs/uploads/")]
        q = urllib.parse.parse_qs(url.query)
        if "mount" in q and (q["from"][0], q["mount"][0]) in self.blobs:
            self.blobs[(repo, q["mount"][0])] = self.blobs[(q["from"][0], q["mount"][0])]
            self.log.append(("MOUNT", repo))
            return self.reply(201)
        self.reply(202, headers={"Location": f"http://elsewhere/v2/{repo}/blobs/uploads/u1?_state=x"})

    def do_PUT(self):
        url = urllib.parse.urlsplit(self.path)
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if "/manifests/" in url.path:
            repo, tag = url.path[len("/v2/"):].split("/manifests/")
            self.manifests[(repo, tag)] = (self.headers["Content-Type"], data)
            return self.reply(201, headers={"Docker-Content-Digest": e2eimages.digest_bytes(data)})
        repo = url.path[len("/v2/"):].split("/blobs/uploads/")[0]
        q = urllib.parse.parse_qs(url.query)
        assert q["_state"] == ["x"]
        if e2eimages.digest_bytes(data) != q["digest"][0]:
            return self.reply(400)
        self.blobs[(repo, q["digest"][0])] = data
        self.log.append(("UPLOAD", repo))
        self.reply(201)


@pytest.fixture
def fake_registry():
    FakeRegistry.blobs, FakeRegistry.manifests, FakeRegistry.log = {}, {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_push_uploads_mounts_and_skips(store, fake_registry):
    base = small_layer("base")
    top = small_layer("top", b"top\n")
    a = e2eimages.write_archive(store / "a.tar", "registry.k8s.io/e2e-test-images/a:1", [base, top], {})
    b = e2eimages.write_archive(store / "b.tar", "registry.k8s.io/b:2", [base], {"User": "1234"})
    reg = e2eimages.Registry(fake_registry)
    digest, counts = e2eimages.push_archive(reg, "registry.k8s.io/e2e-test-images/a:1", a)
    assert counts == {"uploaded": 3, "mounted": 0, "exists": 0}
    media, body = FakeRegistry.manifests[("e2e-test-images/a", "1")]
    assert media == e2eimages.MEDIA_MANIFEST and digest == e2eimages.digest_bytes(body)
    assert [x["digest"] for x in json.loads(body)["layers"]] == [base.digest, top.digest]
    # The shared layer goes to another repository by a mount, not an upload.
    _d, counts = e2eimages.push_archive(reg, "registry.k8s.io/b:2", b)
    assert counts == {"uploaded": 1, "mounted": 1, "exists": 0}
    # Pushing again sends manifests only.
    _d, counts = e2eimages.push_archive(e2eimages.Registry(fake_registry), "registry.k8s.io/b:2", b)
    assert counts == {"uploaded": 0, "mounted": 0, "exists": 2}


def test_push_compresses_plain_layers(store, fake_registry):
    """Archives with uncompressed layers (like the mirror's) are pushed gzip'd."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        info = tarfile.TarInfo("pause")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x7fELF"))
    plain = layer_tar.getvalue()
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [e2eimages.digest_bytes(plain)]}}).encode()
    archive = store / "pause.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("c.json", config), ("x/layer.tar", plain), ("manifest.json", json.dumps(
                [{"Config": "c.json", "RepoTags": ["registry.k8s.io/pause:9"], "Layers": ["x/layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    e2eimages.push_archive(e2eimages.Registry(fake_registry), "registry.k8s.io/pause:9", archive)
    _media, body = FakeRegistry.manifests[("pause", "9")]
    layer = json.loads(body)["layers"][0]
    assert gzip.decompress(FakeRegistry.blobs[("pause", layer["digest"])]) == plain
