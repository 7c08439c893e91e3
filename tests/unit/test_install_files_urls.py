"""hardway.kubernetes.install_files with files the host downloads itself (url, url_sha256, member).

A local HTTP server stands in for the mirror; it counts what it serves, so the tests see when the
host downloads and when it does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import downloads as D
from ansible_collections.hardway.kubernetes.plugins.module_utils import install as I
from test_artifact_fetch import make_tgz
from test_install_files import Playbook

BIG = 2 * 1024 * 1024


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/mirror; ``served`` lists the paths it sent."""
    root = tmp_path / 'mirror'
    root.mkdir()
    served = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - the name http.server calls
            served.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(('127.0.0.1', 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}', served
    server.shutdown()
    server.server_close()


@pytest.fixture
def published(mirror):
    root, base, served = mirror
    kubelet = os.urandom(BIG)
    members = {'etcd-v1/etcd': os.urandom(BIG), 'etcd-v1/etcdctl': b'etcdctl ' * 10, './bridge': b'bridge'}
    archive = make_tgz(members)
    (root / 'kubelet').write_bytes(kubelet)
    (root / 'etcd.tar.gz').write_bytes(archive)
    return {'base': base, 'served': served, 'kubelet': kubelet, 'members': members, 'archive': archive,
            'root': root}


def items(pub, dest, owner=None, group=None):
    owner = owner or I.user_name(os.getuid())
    group = group or I.group_name(os.getgid())
    common = {'owner': owner, 'group': group, 'mode': '0755'}
    return [
        dict(common, url=pub['base'] + '/kubelet', url_sha256=sha(pub['kubelet']), dest=str(dest / 'kubelet')),
        dict(common, url=pub['base'] + '/etcd.tar.gz', url_sha256=sha(pub['archive']), member='etcd-v1/etcd',
             dest=str(dest / 'etcd')),
        dict(common, url=pub['base'] + '/etcd.tar.gz', url_sha256=sha(pub['archive']), member='etcd-v1/etcdctl',
             dest=str(dest / 'etcdctl')),
        dict(common, url=pub['base'] + '/etcd.tar.gz', url_sha256=sha(pub['archive']), member='bridge',
             dest=str(dest / 'cni' / 'bridge'), mode='0700'),
    ]


def test_host_downloads_verifies_and_installs(tmp_path, published):
    pub, dest = published, tmp_path / 'dest'
    files = items(pub, dest)
    play = Playbook(tmp_path)

    # Check mode on an empty host: all missing, nothing downloaded, nothing written.
    result = play.run(files, '--check', '--diff')
    assert [f['reason'] for f in result['files']] == ['missing'] * 4
    assert pub['served'] == [] and not dest.exists()

    # The first run downloads each URL once (the archive once for its three members).
    result = play.run(files)
    assert result['changed'] and all(f['changed'] for f in result['files'])
    assert sorted(pub['served']) == ['/etcd.tar.gz', '/kubelet']
    assert (dest / 'kubelet').read_bytes() == pub['kubelet']
    assert (dest / 'etcd').read_bytes() == pub['members']['etcd-v1/etcd']
    assert (dest / 'etcdctl').read_bytes() == pub['members']['etcd-v1/etcdctl']
    assert (dest / 'cni' / 'bridge').read_bytes() == b'bridge'  # stored as "./bridge" in the archive
    assert stat.S_IMODE(os.stat(dest / 'cni' / 'bridge').st_mode) == 0o700
    assert result['files'][1]['src'] == pub['base'] + '/etcd.tar.gz#etcd-v1/etcd'
    cache = json.loads(play.digest_cache.read_text())
    assert cache['members'][sha(pub['archive']) + '/etcd-v1/etcdctl'] == sha(pub['members']['etcd-v1/etcdctl'])
    assert os.listdir(play.digest_cache.parent / 'downloads') == []  # the archive is gone once installed

    # A re-run compares by digest and downloads nothing.
    pub['served'].clear()
    result = play.run(files)
    assert not result['changed'] and pub['served'] == []

    # A changed member is found (small files are hashed, big ones through the cache) and only it is repaired.
    (dest / 'etcdctl').write_bytes(b'tampered')
    result = play.run(files, '--check')
    assert [f['reason'] for f in result['files']] == ['up to date', 'up to date', 'content', 'up to date']
    assert pub['served'] == []
    result = play.run(files)
    assert [f['changed'] for f in result['files']] == [False, False, True, False]
    assert (dest / 'etcdctl').read_bytes() == pub['members']['etcd-v1/etcdctl']
    assert pub['served'] == ['/etcd.tar.gz']

    # A host that lost its digest cache downloads the archive once to learn the digests, and changes nothing.
    play.digest_cache.unlink()
    pub['served'].clear()
    before = {name: os.stat(dest / name).st_ino for name in ('kubelet', 'etcd', 'etcdctl')}
    result = play.run(files)
    assert not result['changed'] and pub['served'] == ['/etcd.tar.gz']
    assert before == {name: os.stat(dest / name).st_ino for name in ('kubelet', 'etcd', 'etcdctl')}


def test_a_download_with_another_digest_installs_nothing(tmp_path, published):
    pub, dest = published, tmp_path / 'dest'
    files = items(pub, dest)
    evil = {'etcd-v1/etcd': b'evil', 'etcd-v1/etcdctl': b'evil', './bridge': b'evil'}
    (pub['root'] / 'etcd.tar.gz').write_bytes(make_tgz(evil))
    (pub['root'] / 'kubelet').write_bytes(b'evil kubelet')
    play = Playbook(tmp_path)
    play.run(files, expect_rc=2)
    assert f"the download {pub['base']}/kubelet" in play.output, play.output
    assert f"expected {sha(pub['kubelet'])}" in play.output, play.output
    assert not (dest / 'kubelet').exists() and not (dest / 'etcd').exists()


def test_an_unreachable_url_names_itself(tmp_path, published):
    dest = tmp_path / 'dest'
    files = items(published, dest)[:1]
    files[0]['url'] = 'http://127.0.0.1:9/kubelet'  # the discard port: nothing listens
    play = Playbook(tmp_path)
    play.run(files, expect_rc=2)
    assert 'cannot download http://127.0.0.1:9/kubelet' in play.output, play.output
    assert not (dest / 'kubelet').exists()


@pytest.mark.parametrize('item, message', [
    ({'url': 'http://m/x', 'url_sha256': 'nope'}, 'url needs url_sha256'),
    ({'url': 'http://m/x.tgz', 'url_sha256': 'a' * 64, 'member': '../etc/passwd'}, 'relative path inside'),
    ({'url': 'http://m/x.tgz', 'url_sha256': 'a' * 64, 'member': '/etc/passwd'}, 'relative path inside'),
    ({'src': '/x', 'url_sha256': 'a' * 64, 'sha256': 'a' * 64}, 'member and url_sha256 go with url'),
])
def test_normalize_refuses_bad_url_items(item, message):
    with pytest.raises(I.InstallError, match=message):
        I.normalize_files([dict(item, dest='/d/f', mode='0644')], require_sha256=False)


def test_a_missing_member_is_named(tmp_path, published):
    spec = I.normalize_files([{'url': published['base'] + '/etcd.tar.gz', 'url_sha256': sha(published['archive']),
                               'member': 'etcd-v1/nothing', 'dest': str(tmp_path / 'x'), 'mode': '0755'}],
                             require_sha256=False)[0]
    downloader = D.Downloader(D_open, str(tmp_path / 'downloads'))
    with pytest.raises(I.InstallError, match='has no member etcd-v1/nothing'):
        downloader.install(spec, os.getuid(), os.getgid())
    downloader.cleanup()
    assert os.listdir(tmp_path / 'downloads') == []


def D_open(url):  # noqa: N802 - a plain opener, as the module's
    from urllib.request import urlopen

    return urlopen(url, timeout=10)  # noqa: S310 - a local test server
