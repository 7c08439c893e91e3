"""Locked checksums: a tampered mirror is refused by site.yml before any host changes.

(With artifacts_download_on: controller, where the controller downloads every file; the hosts'
own downloads are tested in test_host_downloads.py.)

The lock is recorded from the test bed's mirror (the artifacts role's ``fetch`` entry point,
which fills a controller cache and the lock without touching any host). Then one byte of
kubelet changes in a copy of the mirror (hard links to the real files, the tampered file and
its checksum file replaced by new files: the real mirror is never written) and the copy's
checksum file is regenerated, as someone who controls the mirror would do. ``site.yml``
against the bare hosts of the lab set "itest", with that copy as artifacts_mirror and the
recorded lock, must stop: the message names the file, the locked and the published digest,
and no host changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from lab_sets import REPO, ansible_env

CACHE = Path(os.environ.get('HARDWAY_CACHE') or Path.home() / '.cache' / 'hardway')
MIRROR = CACHE / 'mirror'

RECORD_PLAYBOOK = """\
---
- name: Record the artifact lock (controller only)
  hosts: all
  gather_facts: false
  tasks:
    - name: Fetch and verify every artifact into the controller cache
      ansible.builtin.include_role:
        name: hardway.kubernetes.artifacts
        tasks_from: fetch
"""


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def playbook(inventory, path, timeout=900, extra=()):
    """Run a playbook; its output is kept next to the inventory (<playbook>.log)."""
    start = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', str(inventory), str(path), *extra], cwd=REPO, env=ansible_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    out = proc.stdout + proc.stderr
    log = Path(inventory).parent / f'{path.stem}.log'
    log.write_text(out)
    print(f'{path.name}: exit {proc.returncode} in {time.monotonic() - start:.1f}s (output: {log})')
    return proc, out


def tampered_copy(real, copy, rel):
    """``real`` copied to ``copy`` with hard links (symbolic ones across file systems); ``rel`` and its
    checksum file become new files there, one byte of ``rel`` changed and the checksum regenerated.
    Returns the new digest."""
    if subprocess.run(['cp', '-al', str(real), str(copy)], check=False, capture_output=True).returncode != 0:
        shutil.rmtree(copy, ignore_errors=True)
        subprocess.run(['cp', '-as', str(real.resolve()), str(copy)], check=True)
    target, checksum = copy / rel, copy / (rel + '.sha256')
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    for path in (target, checksum):
        path.unlink()  # a new inode: the hard-linked original is never written
    target.write_bytes(data)
    target.chmod(0o644)
    bad = hashlib.sha256(data).hexdigest()
    checksum.write_text(bad + '\n')
    assert os.stat(target).st_ino != os.stat(real / rel).st_ino
    return bad


@pytest.fixture
def work(tmp_path):
    """tmp_path; the controller cache and the mirror copy in it (over 1 GB) are removed afterwards."""
    yield tmp_path
    for name in ('cache', 'mirror'):
        shutil.rmtree(tmp_path / name, ignore_errors=True)


def test_tampered_mirror_is_refused_before_any_host_changes(itest_lab, work):
    tmp_path = work
    k8s = yaml.safe_load((REPO / 'roles/cluster/defaults/main/versions.yml').read_text())['cluster_default_versions']
    rel = f'dl.k8s.io/release/v{k8s["kubernetes"]}/bin/linux/amd64/kubelet'
    if not (MIRROR / rel).exists():
        pytest.fail(f'{MIRROR / rel} is missing: build the mirror first (make mirror)', pytrace=False)
    good = (MIRROR / (rel + '.sha256')).read_text().split()[0]
    real_stat = os.stat(MIRROR / rel)
    state, cache = tmp_path / 'state', tmp_path / 'cache'
    lock = state / 'artifacts.lock'
    timings = {}

    # 1. Record the lock from the good mirror, through the role, on the controller only.
    inventory = itest_lab.write_inventory(tmp_path / 'inventory-good', {
        'cluster_state_dir': state, 'artifacts_mirror': MIRROR, 'artifacts_cache_dir': cache,
        'artifacts_download_on': 'controller'})
    record = tmp_path / 'record.yml'
    record.write_text(RECORD_PLAYBOOK)
    start = time.monotonic()
    proc, out = playbook(inventory, record)
    timings['record'] = time.monotonic() - start
    assert proc.returncode == 0, out[-4000:]
    entries = json.loads(lock.read_text())['sha256']
    assert entries[rel] == good
    # Keyed by the path below the mirror (= below the download site): the same from any mirror.
    assert all((MIRROR / key).is_file() for key in entries), sorted(entries)
    assert len(entries) >= 14, sorted(entries)
    locked = lock.read_text()

    # 2. A mirror whose kubelet changed by one byte, with a regenerated checksum file.
    mirror = tmp_path / 'mirror'
    bad = tampered_copy(MIRROR, mirror, rel)

    # 3. site.yml against the bare hosts, with the tampered mirror: refused, nothing installed.
    inventory = itest_lab.write_inventory(tmp_path / 'inventory-tampered', {
        'cluster_state_dir': state, 'artifacts_mirror': mirror, 'artifacts_cache_dir': cache,
        'artifacts_download_on': 'controller'})
    before = itest_lab.snapshot()
    absent = {host: not itest_lab.exists(host, '/usr/local/bin/kubelet') for host in itest_lab.hosts}
    start = time.monotonic()
    proc, out = playbook(inventory, REPO / 'playbooks' / 'site.yml')
    timings['site.yml'] = time.monotonic() - start
    print('timings: ' + ', '.join(f'{k} {v:.1f}s' for k, v in timings.items()))
    assert proc.returncode != 0, out[-4000:]
    assert 'TASK [hardway.kubernetes.artifacts : Download, verify and unpack artifacts]' in out, out[-4000:]
    failed = [line for line in out.splitlines() if 'sha256 mismatch' in line]
    assert failed, out[-4000:]
    message = failed[0]
    print('refused: ' + message[message.find('sha256 mismatch') - 200:][:1000])
    for part in (rel, f'expected {good} from the lock file {lock}', f'now publishes {bad}',
                 (mirror / (rel + '.sha256')).as_uri()):
        assert part in message, f'{part!r} not in {message}'
    # Nothing past the fetch ran on any host; the hosts are as they were.
    assert 'Install the binaries this host runs' not in out, out[-4000:]
    assert 'TASK [hardway.kubernetes.pki' not in out
    assert itest_lab.snapshot() == before
    for host, was_absent in absent.items():
        assert not was_absent or not itest_lab.exists(host, '/usr/local/bin/kubelet'), host
    # The lock is as recorded, the cached kubelet is the good one, the real mirror untouched.
    assert lock.read_text() == locked
    assert sha256(cache / rel) == good
    after = os.stat(MIRROR / rel)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (real_stat.st_ino, real_stat.st_size,
                                                                real_stat.st_mtime_ns)
    assert sha256(MIRROR / rel) == good and (MIRROR / (rel + '.sha256')).read_text().split()[0] == good
