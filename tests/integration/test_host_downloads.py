"""Hosts that download their own files (artifacts_download_on: hosts, the default), on the bare
hosts of the lab set "itest".

1. A mirror the hosts cannot reach: preflight names the URL and every host, and nothing changes.
2. A mirror that serves a kubelet changed by one byte while its checksum file still publishes the
   real digest (a corrupted or replaced file, as a broken mirror or a man in the middle would
   serve): the controller resolves and locks the published digest, the worker downloads kubelet
   itself, refuses it naming the URL and both digests, and installs no kubelet.

The tampered copy of the test bed's mirror is served by a second mirror server on the set's
network (its .6 address), from hard links to the real files: the real mirror is never written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from lab_sets import REPO
from test_checksum_lock import MIRROR, playbook, sha256, tampered_copy

sys.path.insert(0, str(REPO / 'tests' / 'testbed'))
import lab  # noqa: E402

TAMPERED_OCTET = 6


@pytest.fixture
def tampered_server(tmp_path):
    """A copy of the mirror with kubelet changed by one byte (its checksum file left as published),
    served at the itest network's .6 address; removed afterwards."""
    k8s = yaml.safe_load((REPO / 'roles/cluster/defaults/main/versions.yml').read_text())['cluster_default_versions']
    rel = f'dl.k8s.io/release/v{k8s["kubernetes"]}/bin/linux/amd64/kubelet'
    if not (MIRROR / rel).exists():
        pytest.fail(f'{MIRROR / rel} is missing: build the mirror first (make mirror)', pytrace=False)
    copy = tmp_path / 'mirror'
    tampered_copy(MIRROR, copy, rel)
    good = (MIRROR / (rel + '.sha256')).read_text().split()[0]
    (copy / (rel + '.sha256')).write_text(good + '\n')  # the mirror still publishes the real digest
    copy.chmod(0o755)
    name = 'itest-mirror-tampered'
    url = lab.ensure_mirror_server('itest', directory=copy, octet=TAMPERED_OCTET, name=name)
    try:
        yield {'url': url, 'rel': rel, 'good': good, 'bad': sha256(copy / rel)}
    finally:
        subprocess.run(['docker', 'rm', '-f', name], capture_output=True, check=False)
        shutil.rmtree(copy, ignore_errors=True)


def test_an_unreachable_mirror_is_named_in_preflight(itest_lab, tmp_path):
    net = lab.network_of('itest')[1]
    nowhere = f'http://{net}.99:8080'
    inventory = itest_lab.write_inventory(tmp_path / 'inventory', {
        'cluster_state_dir': tmp_path / 'state', 'artifacts_mirror': nowhere})
    before = itest_lab.snapshot()
    proc, out = playbook(inventory, REPO / 'playbooks' / 'site.yml')
    assert proc.returncode != 0, out[-4000:]
    assert 'preflight found' in out and 'nothing has been changed' in out, out[-4000:]
    k8s = f'{nowhere}/dl.k8s.io/release/v'
    lines = [line for line in out.splitlines() if line.startswith('- host') and 'cannot fetch ' + k8s in line]
    named = ' '.join(lines)
    for host in itest_lab.hosts:
        assert host in named, out[-4000:]
    assert f'artifacts_mirror = "{nowhere}"' in named and 'artifacts_download_on: hosts' in named, named
    assert 'TASK [hardway.kubernetes.artifacts : Download, verify and unpack artifacts]' not in out
    assert itest_lab.snapshot() == before


def test_a_host_refuses_a_download_that_is_not_the_locked_file(itest_lab, tmp_path, tampered_server):
    worker = 'itest-w1'
    state = tmp_path / 'state'
    inventory = itest_lab.write_inventory(tmp_path / 'inventory', {
        'cluster_state_dir': state, 'artifacts_mirror': tampered_server['url']})
    before = itest_lab.snapshot()
    try:
        proc, out = playbook(inventory, REPO / 'playbooks' / 'site.yml', extra=['--limit', worker])
        assert proc.returncode != 0, out[-4000:]
        url = f"{tampered_server['url']}/{tampered_server['rel']}"
        failed = [line for line in out.splitlines() if line.startswith('fatal: [') and 'the download ' + url in line]
        assert failed and worker in failed[0], out[-4000:]
        assert f"sha256 {tampered_server['bad']}, expected {tampered_server['good']}" in failed[0], failed[0]
        # The controller locked the published digest; the host installed no kubelet, nor anything after it.
        assert tampered_server['rel'] in (state / 'artifacts.lock').read_text()
        assert not itest_lab.exists(worker, '/usr/local/bin/kubelet')
        assert 'TASK [hardway.kubernetes.pki' not in out
    finally:
        # what the failed install step leaves: the host's digest cache and its (empty) download directory
        itest_lab.exec(worker, 'rm', '-rf', '/var/cache/hardway')
    assert without_cache_dir(itest_lab.snapshot()) == without_cache_dir(before)


def without_cache_dir(snapshot):
    """A snapshot without the change times of /var/cache (its hardway directory came and went) and of
    /usr/local/bin (the refused download was written to a temporary file there, then deleted)."""
    return {host: {'diff': [line for line in data['diff'] if line != 'C /var/cache'],
                   'listing': [line for line in data['listing'] if not line.startswith('/usr/local/bin ')]}
            for host, data in snapshot.items()}
