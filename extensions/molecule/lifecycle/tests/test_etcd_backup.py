"""etcd backup and restore on the lab cluster (playbooks/etcd_backup.yml, playbooks/etcd_restore.yml).

1. A namespace with a ConfigMap and a Secret; etcd_backup.yml writes a snapshot into
   <state>/backups with its sha256 beside it, leaves nothing on the member, and keeps only the
   newest etcd_backup_keep snapshots of its own naming (other files stay).
2. Bad input changes nothing (every service keeps its main PID and start time, nothing is left on
   the members): etcd_restore.yml without the confirmation (refused, saying what would be lost), with
   a missing file, with a copy that has one byte changed (with and without the .sha256 beside it).
3. The namespace is deleted, etcd_restore.yml brings the snapshot back: the namespace, the ConfigMap
   and the Secret are there, the Secret still encrypted at rest, the old data directory kept aside,
   every node Ready, a pod on one worker reaches a pod on the other, and site.yml afterwards changes
   nothing.

The backup's and the restore's durations are printed (run pytest with -s to see them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
from labcluster import (  # noqa: E402
    AGNHOST,
    ANSI,
    BUSYBOX,
    CONTROL_PLANES,
    HOSTS,
    RECAP,
    REPO,
    STATE,
    WORKERS,
    ansible_playbook,
    etcdctl,
    host,
    inventory,
    kubectl,
    units,
)

NS = "hardway-backup"
NET_NS = "hardway-backup-net"
BACKUPS = STATE / "backups"
SNAPSHOT_NAME = re.compile(r"^etcd-snapshot-\d{8}T\d{6}Z\.db$")
# Left on a member only while a backup or restore runs.
SCRATCH = ["/var/lib/etcd.snapshot", "/var/lib/etcd.restore"]
SECRET_VALUE = "backup-hunter2"


def playbook(name: str, *extra: str, timeout: int = 900) -> dict:
    """Runs playbooks/<name>.yml against the lab set; rc, output (without colours), seconds."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    started = time.monotonic()
    proc = subprocess.run([ansible_playbook(), "-i", inventory(), str(REPO / "playbooks" / f"{name}.yml"), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = ANSI.sub("", proc.stdout + proc.stderr)
    return {"rc": proc.returncode, "output": output, "seconds": time.monotonic() - started,
            "changed": {m[0]: int(m[2]) for m in RECAP.findall(output)}}


def snapshots() -> list[Path]:
    return sorted(p for p in BACKUPS.glob("etcd-snapshot-*.db") if SNAPSHOT_NAME.match(p.name))


def services() -> dict:
    """Every collection service on every lab host: (MainPID, ExecMainStartTimestampMonotonic)."""
    out = {}
    for name in HOSTS:
        names = units(name)
        text = host(name).check_output("systemctl show -p Id -p MainPID -p ExecMainStartTimestampMonotonic "
                                       + " ".join(f"{u}.service" for u in names))
        for block in text.strip().split("\n\n"):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            out[(name, props["Id"])] = (props["MainPID"], props["ExecMainStartTimestampMonotonic"])
    return out


def scratch_left() -> list[str]:
    return [f"{name}:{path}" for name in CONTROL_PLANES for path in SCRATCH + ["/var/lib/etcd.before-restore-*"]
            if host(name).run(f"ls -d {path}").rc == 0]


def refused(result: dict, *expected: str) -> None:
    assert result["rc"] != 0, result["output"][-3000:]
    for text in expected:
        assert text in result["output"], f"{text!r} not in the output:\n{result['output'][-4000:]}"
    # stopped in the first play: no service was touched
    assert "Stop kube-scheduler and kube-controller-manager" not in result["output"]


@pytest.fixture(scope="module")
def backup():
    """The namespace with its two objects, then a backup."""
    kubectl("delete", "namespace", NS, NET_NS, "--ignore-not-found", "--wait=true", timeout=180)
    for name in CONTROL_PLANES:  # kept aside by an earlier restore of the lab cluster
        host(name).run("rm -rf /var/lib/etcd.before-restore-*")
    kubectl("create", "namespace", NS)
    kubectl("-n", NS, "create", "configmap", "settings", "--from-literal=colour=blue")
    kubectl("-n", NS, "create", "secret", "generic", "login", f"--from-literal=password={SECRET_VALUE}")
    before = set(snapshots())
    result = playbook("etcd_backup")
    assert result["rc"] == 0, result["output"][-3000:]
    made = sorted(set(snapshots()) - before)
    assert len(made) == 1, f"expected one new snapshot in {BACKUPS}, got {made}"
    print(f"\netcd backup: {result['seconds']:.1f} s, {made[0]} ({made[0].stat().st_size} bytes)")
    return {"file": made[0], "result": result}


def test_backup_writes_snapshot_and_sha256(backup):
    snapshot = backup["file"]
    digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    assert (BACKUPS / (snapshot.name + ".sha256")).read_text() == f"{digest}  {snapshot.name}\n"
    assert snapshot.stat().st_mode & 0o777 == 0o600
    output = backup["result"]["output"]
    assert f"snapshot: {snapshot}" in output
    assert re.search(r"revision: \d+, keys: \d+", output), output[-2000:]
    assert f"taken from member {CONTROL_PLANES[0]}" in output


def test_backup_leaves_nothing_on_the_members(backup):
    assert scratch_left() == []


def test_backup_keeps_the_newest_of_its_own_files(backup):
    old = [BACKUPS / f"etcd-snapshot-2020010{i}T000000Z.db" for i in range(1, 4)]
    other = [BACKUPS / "keep-me.db", BACKUPS / "etcd-snapshot-manual.db"]
    for path in old + other:
        path.write_bytes(b"old")
    for path in old:
        Path(str(path) + ".sha256").write_text("0" * 64 + f"  {path.name}\n")
    newest = snapshots()[-1]
    result = playbook("etcd_backup", "-e", "etcd_backup_keep=2")
    assert result["rc"] == 0, result["output"][-3000:]
    kept = snapshots()
    assert len(kept) == 2 and kept[0] == newest, kept  # the one before and the one just taken
    assert not any(p.exists() or Path(str(p) + ".sha256").exists() for p in old)
    assert all(p.exists() for p in other)
    for path in other:
        path.unlink()


def test_restore_without_confirmation_is_refused_and_changes_nothing(backup):
    before = services()
    result = playbook("etcd_restore", "-e", f"etcd_restore_snapshot={backup['file']}")
    refused(result, "refusing to restore etcd without etcd_restore_confirm=true",
            f"The snapshot {backup['file']} (taken ", "etcd is now at revision", "Nothing has been changed")
    assert services() == before
    assert scratch_left() == []


def test_restore_of_a_missing_file_is_refused(backup):
    before = services()
    missing = BACKUPS / "etcd-snapshot-19990101T000000Z.db"
    result = playbook("etcd_restore", "-e", f"etcd_restore_snapshot={missing}", "-e", "etcd_restore_confirm=true")
    refused(result, f"etcd_restore_snapshot: {missing} does not exist")
    assert services() == before


@pytest.mark.parametrize("with_checksum", [True, False])
def test_restore_of_a_corrupt_copy_is_refused(backup, tmp_path, with_checksum):
    copy = tmp_path / backup["file"].name
    data = bytearray(backup["file"].read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    if with_checksum:
        shutil.copy(str(backup["file"]) + ".sha256", str(copy) + ".sha256")
    before = services()
    result = playbook("etcd_restore", "-e", f"etcd_restore_snapshot={copy}", "-e", "etcd_restore_confirm=true")
    if with_checksum:
        refused(result, f"etcd_restore_snapshot: {copy} has sha256", "the file changed since it was written")
    else:
        refused(result, f"etcd_restore_snapshot: {copy} cannot be restored")
    assert services() == before
    assert scratch_left() == []


@pytest.fixture(scope="module")
def restored(backup):
    kubectl("delete", "namespace", NS, "--wait=true", timeout=180)
    assert NS not in kubectl("get", "namespaces", "-o", "name")
    result = playbook("etcd_restore", "-e", f"etcd_restore_snapshot={backup['file']}", "-e",
                      "etcd_restore_confirm=true")
    assert result["rc"] == 0, result["output"][-4000:]
    print(f"\netcd restore: {result['seconds']:.1f} s from {backup['file']}")
    return result


def test_restore_brings_back_the_namespace_and_its_objects(restored):
    assert kubectl("-n", NS, "get", "configmap", "settings", "-o", "jsonpath={.data.colour}") == "blue"
    value = kubectl("-n", NS, "get", "secret", "login", "-o", "jsonpath={.data.password}")
    assert base64.b64decode(value).decode() == SECRET_VALUE


def test_restored_secret_is_encrypted_at_rest(restored):
    raw = etcdctl(f"get /registry/secrets/{NS}/login --print-value-only | head -c 18")
    assert raw.startswith("k8s:enc:aescbc:v1:")
    assert SECRET_VALUE not in etcdctl(f"get /registry/secrets/{NS}/login --print-value-only | tr -c '[:print:]' '.'")


def test_old_data_is_kept_aside_and_nothing_else_left(restored):
    for name in CONTROL_PLANES:
        aside = host(name).run("ls -d /var/lib/etcd.before-restore-*").stdout.split()
        assert len(aside) == 1 and host(name).file(f"{aside[0]}/member").is_directory, (name, aside)
        assert f"etcd's data before the restore is in {aside[0]}" in restored["output"]
        for path in SCRATCH:
            assert not host(name).file(path).exists, (name, path)


def test_every_node_ready_after_restore(restored):
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    ready = {n["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in n["status"]["conditions"]) for n in nodes}
    assert ready and all(ready.values()), ready


def test_pod_reaches_pod_on_another_worker_after_restore(restored):
    kubectl("create", "namespace", NET_NS)
    for _attempt in range(60):  # the controller-manager, started again by the restore, makes it
        if kubectl("-n", NET_NS, "get", "serviceaccount", "default", check=False):
            break
        time.sleep(1)
    pods = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": NET_NS},
         "spec": {"nodeName": WORKERS[1], "terminationGracePeriodSeconds": 1, "containers": [
             {"name": "main", "image": AGNHOST, "imagePullPolicy": "Never", "args": ["netexec", "--http-port=8080"]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell", "namespace": NET_NS},
         "spec": {"nodeName": WORKERS[0], "terminationGracePeriodSeconds": 1, "containers": [
             {"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}},
    ]
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    kubectl("-n", NET_NS, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=200)
    ip = kubectl("-n", NET_NS, "get", "pod", "web", "-o", "jsonpath={.status.podIP}")
    out = kubectl("-n", NET_NS, "exec", "shell", "--", "wget", "-q", "-O", "-", f"http://{ip}:8080/hostname")
    assert out.strip() == "web"
    kubectl("delete", "namespace", NET_NS, "--wait=false", check=False)


def test_site_changes_nothing_after_restore(restored):
    result = playbook("site")
    assert result["rc"] == 0, result["output"][-3000:]
    assert result["changed"] and not any(result["changed"].values()), result["changed"]
    kubectl("delete", "namespace", NS, "--wait=false", check=False)
