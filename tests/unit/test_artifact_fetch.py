"""artifact_fetch: checksum files, download and verification, the sidecar cache, unpacking, check mode,
the lock file and pinned digests."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import stat
import tarfile
import threading

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import artifact_lock as L
from ansible_collections.hardway.kubernetes.plugins.module_utils import install as I
from ansible_collections.hardway.kubernetes.plugins.modules import artifact_fetch as AF
from hardway_testlib import run_adhoc, run_module_subprocess

BIG = I.SIDECAR_MIN_SIZE + 4096  # big enough to get a sidecar


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_tgz(members):
    """A .tar.gz in memory with ``members``: {name: bytes}; names ending in / are directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name.rstrip('/'))
            if name.endswith('/'):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Mirror:
    """A directory laid out like a download site, with its checksum files."""

    def __init__(self, root):
        self.root = root
        self.tool = os.urandom(BIG)
        self.app_member = os.urandom(BIG)
        self.app = make_tgz({'app-1.0/': b'', 'app-1.0/bin/app': self.app_member, 'app-1.0/README': b'hi\n'})
        self.image = os.urandom(2048)  # small: hashed directly, no sidecar
        self.write('bin/tool', self.tool)
        self.write('bin/tool.sha256', sha(self.tool) + '\n')
        self.write('rel/app-1.0.tar.gz', self.app)
        # SHA256SUMS style: several files, binary-mode marker, "./" prefix.
        self.write('rel/SHA256SUMS', f'{sha(b"other")}  app-1.0.zip\n{sha(self.app)} *./app-1.0.tar.gz\n'
                                     f'{sha(b"x")}  app-1.0-arm64.tar.gz\n')
        self.write('images/img.tar', self.image)
        self.write('images/img.tar.sha256', f'{sha(self.image)}  img.tar\n')

    def write(self, rel, data):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    def url(self, rel):
        return (self.root / rel).as_uri()


@pytest.fixture
def mirror(tmp_path):
    return Mirror(tmp_path / 'mirror')


KEYS = {'tool': 'site/bin/tool', 'app': 'site/rel/app-1.0.tar.gz', 'image': 'images/img.tar'}


def items(mirror, cache, base=None, keys=True):
    """The three items of ``mirror``; with ``keys``, each has its key (its path below the mirror)."""
    base = base or mirror.url('')
    base = base.rstrip('/')
    out = [
        {'name': 'tool', 'url': f'{base}/bin/tool', 'checksum_url': f'{base}/bin/tool.sha256',
         'dest': str(cache / 'site/bin/tool')},
        {'name': 'app', 'url': f'{base}/rel/app-1.0.tar.gz', 'checksum_url': f'{base}/rel/SHA256SUMS',
         'dest': str(cache / 'site/rel/app-1.0.tar.gz'), 'extract_dir': str(cache / 'extracted/app')},
        {'name': 'image', 'url': f'{base}/images/img.tar', 'checksum_url': f'{base}/images/img.tar.sha256',
         'dest': str(cache / 'images/img.tar')},
    ]
    if keys:
        for item in out:
            item['key'] = KEYS[item['name']]
    return out


@pytest.fixture
def hash_calls(monkeypatch):
    """Every file install.sha256_file hashes (the only way source_sha256 reads a file)."""
    calls = []
    original = I.sha256_file

    def counting(path_or_handle):
        calls.append(getattr(path_or_handle, 'name', path_or_handle))
        return original(path_or_handle)

    monkeypatch.setattr(I, 'sha256_file', counting)
    return calls


def tree(directory, dirs=True):
    """{relative path: (mtime_ns, size)} of everything (or every file) below ``directory``."""
    out = {}
    for root, subdirs, files in os.walk(directory):
        for name in (subdirs if dirs else []) + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            out[os.path.relpath(path, directory)] = (st.st_mtime_ns, st.st_size)
    return out


# ---------------------------------------------------------------- checksum files


@pytest.mark.parametrize(
    'text',
    [
        'A' * 64 + '\n',
        'a' * 64,
        f'{"b" * 64}  other.tar.gz\n{"a" * 64}  file.tgz\n',
        f'{"a" * 64} *file.tgz\n',
        f'# comment\n\n{"b" * 64}  ./sub/other\n{"a" * 64}  ./file.tgz\n',
        f'{"a" * 64}  release/v1/file.tgz\n',
    ],
)
def test_parse_checksum(text):
    assert AF.parse_checksum(text, 'file.tgz') == 'a' * 64


@pytest.mark.parametrize(
    'text, message',
    [
        (f'{"a" * 64}  other.tgz\n', 'no line for file.tgz'),
        (f'{"a" * 64}  other.tgz\n{"b" * 64}  file.tgz.sig\n', 'no line for file.tgz'),
        ('<html>Not-Found</html>\n', 'not a sha256 digest'),
        ('<html>not found</html>\n', 'no line for file.tgz'),
        ('', 'no line for file.tgz'),
        (f'{"a" * 40}  file.tgz\n', 'not a sha256 digest'),
    ],
)
def test_parse_checksum_errors(text, message):
    with pytest.raises(ValueError, match=message):
        AF.parse_checksum(text, 'file.tgz')


def test_url_filename():
    assert AF.url_filename('https://x/a/b/c%2B1.tgz?x=1') == 'c+1.tgz'
    assert AF.url_filename('file:///srv/m/kubelet') == 'kubelet'


# ---------------------------------------------------------------- the module


def test_first_run_downloads_verifies_and_unpacks(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    result = run_module('artifact_fetch', {'items': items(mirror, cache)}, diff=True)
    assert result['rc'] == 0 and result['changed'] is True, result
    got = result['items']
    assert got['tool'] == {
        'action': 'downloaded', 'reason': 'dest missing', 'changed': True, 'sha256': sha(mirror.tool),
        'key': 'site/bin/tool', 'expected_from': 'checksum file',
        'dest': str(cache / 'site/bin/tool'), 'extract_dir': None,
    }
    assert 'lock' not in result  # no lock_file, nothing locked
    assert got['app']['action'] == 'downloaded and unpacked'
    assert got['app']['reason'] == 'dest missing; archive downloaded'
    assert got['image']['action'] == 'downloaded'
    assert (cache / 'site/bin/tool').read_bytes() == mirror.tool
    assert (cache / 'images/img.tar').read_bytes() == mirror.image
    assert stat.S_IMODE(os.stat(cache / 'site/bin/tool').st_mode) == 0o644
    extracted = cache / 'extracted/app'
    assert (extracted / 'app-1.0/bin/app').read_bytes() == mirror.app_member
    assert (extracted / 'app-1.0/bin/app').stat().st_mode & 0o111  # executable bits kept
    assert (extracted / '.hardway-unpacked').read_text() == sha(mirror.app) + '\n'
    assert stat.S_IMODE(os.stat(extracted).st_mode) == 0o755
    # The sidecar is the one install_files reads: the digest is trusted without reading the file.
    st = os.stat(cache / 'site/bin/tool')
    assert (cache / 'site/bin/tool.sha256cache').read_text() == f'{st.st_mtime_ns} {st.st_size} {sha(mirror.tool)}\n'
    assert not (cache / 'images/img.tar.sha256cache').exists()  # small files are simply hashed
    # No temporary file or directory left anywhere.
    assert [p for p in tree(cache) if os.path.basename(p).startswith('.') and 'hardway-unpacked' not in p] == []
    diff = result['diff']
    assert f'tool: {cache}/site/bin/tool: absent' in diff['before']
    assert f'tool: {cache}/site/bin/tool: sha256 {sha(mirror.tool)} from {mirror.url("bin/tool")}' in diff['after']
    assert f'app: {cache}/extracted/app: unpacked from sha256 {sha(mirror.app)}' in diff['after']


def test_second_run_is_unchanged_and_hashes_nothing_big(mirror, tmp_path, run_module, hash_calls):
    cache = tmp_path / 'cache'
    assert run_module('artifact_fetch', {'items': items(mirror, cache)})['changed'] is True
    before = tree(cache)
    hash_calls.clear()
    result = run_module('artifact_fetch', {'items': items(mirror, cache)}, diff=True)
    assert result['rc'] == 0 and result['changed'] is False and 'diff' not in result, result
    assert {r['action'] for r in result['items'].values()} == {'unchanged'}
    assert {r['reason'] for r in result['items'].values()} == {'up to date'}
    # Only the small image archive was read; the big files' digests came from their sidecars.
    assert hash_calls == [str(cache / 'images/img.tar')]
    assert tree(cache) == before  # nothing rewritten, not even touched


def test_sidecar_is_trusted_while_mtime_and_size_match(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    run_module('artifact_fetch', {'items': items(mirror, cache)})
    sidecar = cache / 'site/bin/tool.sha256cache'
    st = os.stat(cache / 'site/bin/tool')
    sidecar.write_text(f'{st.st_mtime_ns} {st.st_size} {"0" * 64}\n')  # a planted, wrong digest
    result = run_module('artifact_fetch', {'items': items(mirror, cache)})
    assert result['items']['tool']['reason'] == f'dest has sha256 {"0" * 64}'
    assert result['items']['tool']['action'] == 'downloaded'


def test_changed_dest_is_downloaded_again(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    run_module('artifact_fetch', {'items': items(mirror, cache)})
    (cache / 'images/img.tar').write_bytes(b'tampered')
    result = run_module('artifact_fetch', {'items': items(mirror, cache)})
    assert result['changed'] and result['items']['image']['reason'] == f'dest has sha256 {sha(b"tampered")}'
    assert [name for name, r in result['items'].items() if r['changed']] == ['image']
    assert (cache / 'images/img.tar').read_bytes() == mirror.image


def test_corrupted_mirror_file_fails_and_leaves_dest_alone(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    run_module('artifact_fetch', {'items': items(mirror, cache)})
    dest = cache / 'site/bin/tool'
    before = tree(cache, dirs=False)  # a directory's mtime changes as a temporary file comes and goes
    # A new release is published, but the file on the mirror is corrupted.
    new = os.urandom(BIG)
    corrupted = new[:-1] + b'\0'
    mirror.write('bin/tool', corrupted)
    mirror.write('bin/tool.sha256', sha(new) + '\n')
    result = run_module('artifact_fetch', {'items': items(mirror, cache)})
    assert result['rc'] == 1 and result['failed']
    msg = result['msg']
    assert msg.startswith('tool: ') and mirror.url('bin/tool') in msg, msg
    assert sha(corrupted) in msg and f'expected {sha(new)}' in msg and mirror.url('bin/tool.sha256') in msg
    assert f'dest {dest} left as it was' in msg
    assert tree(cache, dirs=False) == before  # old file, its sidecar, no temporary file
    assert 'tool' not in result['items'] and result['items']['image']['action'] == 'unchanged'


def test_corrupted_download_into_empty_cache_leaves_nothing(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    mirror.write('images/img.tar', b'truncated')
    result = run_module('artifact_fetch', {'items': items(mirror, cache)})
    assert result['failed'] and result['msg'].startswith('image: ') and 'expected ' + sha(mirror.image) in result['msg']
    assert not (cache / 'images/img.tar').exists()
    assert os.listdir(cache / 'images') == []
    # The other items were processed: one bad item does not spoil the rest.
    assert (cache / 'site/bin/tool').read_bytes() == mirror.tool


def test_several_failures_are_all_reported(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    (mirror.root / 'bin/tool.sha256').unlink()
    mirror.write('rel/SHA256SUMS', f'{sha(b"x")}  something-else.tgz\n')
    result = run_module('artifact_fetch', {'items': items(mirror, cache)})
    assert result['failed'] and result['msg'].startswith('2 of 3 items failed: ')
    assert f'tool: cannot read the checksum file {mirror.url("bin/tool.sha256")}: ' in result['msg']
    assert 'No such file or directory' in result['msg']
    assert 'app: no sha256 for app-1.0.tar.gz in the checksum file' in result['msg']
    assert not (cache / 'site').exists()


def test_missing_marker_or_other_archive_unpacks_again(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    run_module('artifact_fetch', {'items': items(mirror, cache)})
    extracted = cache / 'extracted/app'
    (extracted / 'stale-file').write_text('from an older archive')
    (extracted / '.hardway-unpacked').unlink()
    result = run_module('artifact_fetch', {'items': items(mirror, cache)}, diff=True)
    assert result['items']['app']['action'] == 'unpacked'
    assert result['items']['app']['reason'] == 'no marker in extract_dir'
    assert f'app: {extracted}: no marker' in result['diff']['before']
    assert not (extracted / 'stale-file').exists()  # the directory is replaced as a whole
    assert (extracted / 'app-1.0/bin/app').read_bytes() == mirror.app_member
    (extracted / '.hardway-unpacked').write_text('f' * 64 + '\n')
    result = run_module('artifact_fetch', {'items': items(mirror, cache)})
    assert result['items']['app']['reason'] == 'extract_dir holds sha256 ' + 'f' * 64
    assert (extracted / '.hardway-unpacked').read_text() == sha(mirror.app) + '\n'
    assert [p for p in os.listdir(cache / 'extracted') if p != 'app'] == []


def test_check_mode_writes_nothing(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    result = run_module('artifact_fetch', {'items': items(mirror, cache)}, check=True, diff=True)
    assert result['rc'] == 0 and result['changed'] is True
    assert result['items']['app']['action'] == 'downloaded and unpacked'
    assert result['items']['tool']['sha256'] == sha(mirror.tool)
    assert 'tool: ' in result['diff']['after']
    assert not cache.exists()
    # An existing cache without sidecars and markers: reported, not touched.
    run_module('artifact_fetch', {'items': items(mirror, cache)})
    for leftover in ('site/bin/tool.sha256cache', 'site/rel/app-1.0.tar.gz.sha256cache',
                     'extracted/app/.hardway-unpacked'):
        (cache / leftover).unlink()
    (cache / 'images/img.tar').unlink()
    before = tree(cache)
    result = run_module('artifact_fetch', {'items': items(mirror, cache)}, check=True)
    assert {n: r['action'] for n, r in result['items'].items()} == {
        'tool': 'unchanged', 'app': 'unpacked', 'image': 'downloaded'}
    assert tree(cache) == before


def test_unsafe_archive_is_refused(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    evil = make_tgz({'ok': b'fine', '../escaped': b'evil'})
    mirror.write('rel/app-1.0.tar.gz', evil)
    mirror.write('rel/SHA256SUMS', f'{sha(evil)}  app-1.0.tar.gz\n')
    result = run_module('artifact_fetch', {'items': items(mirror, cache)[1:2]})
    assert result['failed'] and result['msg'].startswith('app: cannot unpack '), result['msg']
    assert not (cache / 'extracted/escaped').exists() and not (cache / 'escaped').exists()
    assert os.listdir(cache / 'extracted') == []  # neither the directory nor a temporary one
    # The download itself was verified and kept: the next run only tries to unpack again.
    assert (cache / 'site/rel/app-1.0.tar.gz').read_bytes() == evil


def test_fallback_without_data_filter_is_safe(tmp_path):
    for members, message in (({'../x': b''}, 'outside'), ({'/abs': b''}, 'outside')):
        archive = tmp_path / 'a.tgz'
        archive.write_bytes(make_tgz(members))
        with tarfile.open(archive) as tar, pytest.raises(tarfile.TarError, match=message):
            list(AF._safe_members(tar, str(tmp_path / 'out')))
    archive.write_bytes(make_tgz({'d/': b'', 'd/f': b'data'}))
    with tarfile.open(archive) as tar:
        members = list(AF._safe_members(tar, str(tmp_path / 'out')))
    assert [m.name for m in members] == ['d', 'd/f'] and all(m.mode & 0o7000 == 0 for m in members)


@pytest.mark.parametrize(
    'change, message',
    [
        (lambda its: its.append(dict(its[0], dest='/tmp/x')), 'another item has the same name'),
        (lambda its: its[1].update(dest=its[0]['dest']), 'dest is also the dest of items[0] (tool)'),
        (lambda its: its[0].update(url='ftp://x/tool'), 'url must be an https://, http:// or file:// URL'),
        (lambda its: its[0].update(checksum_url='/srv/x.sha256'), 'checksum_url must be an https://'),
        (lambda its: its[1].update(extract_dir=os.path.dirname(its[0]['dest'])), 'extract_dir contains the dest'),
        (lambda its: its[0].update(name=''), 'items[0]: name must not be empty'),
    ],
)
def test_bad_items(mirror, tmp_path, run_module, change, message):
    its = items(mirror, tmp_path / 'cache')
    change(its)
    result = run_module('artifact_fetch', {'items': its})
    assert result['failed'] and message in result['msg'], result['msg']
    assert not (tmp_path / 'cache').exists()


def test_over_http_one_after_the_other(mirror, tmp_path, run_module):
    handler = functools.partial(QuietHandler, directory=str(mirror.root))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f'http://127.0.0.1:{server.server_address[1]}'
        cache = tmp_path / 'cache'
        result = run_module('artifact_fetch', {'items': items(mirror, cache, base), 'parallel': 1, 'timeout': 10})
        assert result['rc'] == 0 and result['changed'], result
        assert (cache / 'extracted/app/app-1.0/README').read_text() == 'hi\n'
        its = items(mirror, cache, base)
        its[0]['checksum_url'] = base + '/bin/missing.sha256'
        result = run_module('artifact_fetch', {'items': its})
        assert result['failed'] and 'HTTP Error 404' in result['msg'] and 'missing.sha256' in result['msg']
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_through_ansible(mirror, tmp_path):
    cache = tmp_path / 'cache'
    rc, result, output = run_adhoc('artifact_fetch', {'items': items(mirror, cache)}, tmp_path)
    assert rc == 0 and result['changed'] is True, output
    rc, result, output = run_adhoc('artifact_fetch', {'items': items(mirror, cache)}, tmp_path, check=True)
    assert rc == 0 and result['changed'] is False, output


def test_concurrent_unpacks_of_one_archive(mirror, tmp_path, run_module):
    cache = tmp_path / 'cache'
    run_module('artifact_fetch', {'items': items(mirror, cache)})
    item = AF.normalize_items([items(mirror, cache)[1]])[0]
    (cache / 'extracted/app/.hardway-unpacked').unlink()
    errors = []

    def unpack():
        try:
            AF.unpack_archive(item, sha(mirror.app))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=unpack) for count in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (cache / 'extracted/app/app-1.0/bin/app').read_bytes() == mirror.app_member
    assert os.listdir(cache / 'extracted') == ['app']


# ---------------------------------------------------------------- the lock file and pinned digests


def lock_args(mirror, cache, lock, **extra):
    return dict({'items': items(mirror, cache), 'lock_file': str(lock)}, **extra)


def lock_entries(lock):
    return json.loads(lock.read_text())['sha256']


def tamper(mirror, rel, checksum_rel, line=None):
    """Change one byte of a mirrored file and publish the new digest; returns (old, new) digest."""
    path = mirror.root / rel
    data = path.read_bytes()
    bad = data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
    path.write_bytes(bad)
    mirror.write(checksum_rel, (line or '{digest}\n').format(digest=sha(bad)))
    return sha(data), sha(bad)


def test_default_key():
    assert L.default_key('https://dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet?x=1') == \
        'dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet'
    assert L.default_key('https://user@mirror.example:8443/k%2Bs/kubelet') == 'mirror.example:8443/k+s/kubelet'
    assert L.default_key('file:///srv/mirror/images/pause.tar') == 'srv/mirror/images/pause.tar'
    assert L.default_key('file://localhost/srv/x') == 'srv/x'


def test_lock_text_is_sorted_stable_and_one_entry_a_line():
    entries = {'b/file': 'B' * 64, 'a/file': 'a' * 64}
    text = L.render_lock(L.normalize_digests(entries, 'x'))
    assert text == L.render_lock(L.parse_lock(text, 'lock'))  # a round trip changes nothing
    assert text.endswith('}\n') and f'    "a/file": "{"a" * 64}",\n    "b/file": "{"b" * 64}"\n' in text
    assert list(json.loads(text)) == ['about', 'sha256']
    assert L.parse_lock('', 'lock') == {} and L.parse_lock('\n', 'lock') == {}


@pytest.mark.parametrize('text, message', [
    ('{', 'the lock file lock is not valid JSON'),
    ('[]', 'must be a JSON object with a "sha256" object'),
    ('{"sha256": []}', 'must be a JSON object with a "sha256" object'),
    ('{"sha256": {"a/file": "abc"}}', "the lock file lock: a/file: 'abc' is not a sha256 digest"),
    ('{"sha256": {"a/file": 1}}', 'a/file: \'1\' is not a sha256 digest'),
])
def test_parse_lock_errors(text, message):
    with pytest.raises(L.LockError, match=re.escape(message)):
        L.parse_lock(text, 'lock')


def test_merge_adds_replaces_pins_and_never_drops():
    current = {'old': 'a' * 64, 'same': 'b' * 64, 'pinned': 'c' * 64, 'other': 'd' * 64}
    verified = {'same': 'b' * 64, 'new': 'e' * 64, 'pinned': 'f' * 64, 'other': '0' * 64}
    entries, added, replaced, conflicts = L.merge(current, verified, {'pinned'})
    assert added == {'new': 'e' * 64} and replaced == {'pinned': 'f' * 64}
    assert conflicts == {'other': ('d' * 64, '0' * 64)}
    assert entries == {'old': 'a' * 64, 'same': 'b' * 64, 'pinned': 'f' * 64, 'other': 'd' * 64, 'new': 'e' * 64}


def test_a_lock_entry_recorded_meanwhile_by_another_run_is_kept_and_reported(tmp_path):
    lock = tmp_path / 'artifacts.lock'
    lock.write_text(L.render_lock({'a/tool': 'a' * 64}))
    items_ = [{'key': 'a/tool', 'name': 'tool'}, {'key': 'b/app', 'name': 'app'}]
    recorded = L.record_verified(str(lock), items_, [{'key': 'a/tool', 'sha256': 'b' * 64},
                                                     {'key': 'b/app', 'sha256': 'c' * 64}], set())
    assert recorded['errors'] == [f'tool: a/tool: sha256 mismatch: expected {"a" * 64} from the lock file {lock} '
                                  f'(recorded meanwhile by another run), but this run verified {"b" * 64}']
    assert recorded['lock'] == {'path': str(lock), 'added': {'b/app': 'c' * 64}, 'replaced': {}, 'changed': True}
    assert lock_entries(lock) == {'a/tool': 'a' * 64, 'b/app': 'c' * 64} and recorded['error'] is None
    lock.write_text('garbage')
    recorded = L.record_verified(str(lock), items_, [], set())
    assert recorded['error'].startswith(f'the lock file {lock} is not valid JSON')


def test_first_fetch_records_the_lock(mirror, tmp_path, run_module):
    cache, lock = tmp_path / 'cache', tmp_path / 'state/artifacts.lock'
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock), diff=True)
    assert result['rc'] == 0 and result['changed'], result
    digests = {'site/bin/tool': sha(mirror.tool), 'site/rel/app-1.0.tar.gz': sha(mirror.app),
               'images/img.tar': sha(mirror.image)}
    assert lock_entries(lock) == digests
    assert lock.read_text() == L.render_lock(digests)
    assert stat.S_IMODE(os.stat(lock.parent).st_mode) == 0o700  # the state dir, created for it
    assert stat.S_IMODE(os.stat(lock).st_mode) == 0o644
    assert result['lock'] == {'path': str(lock), 'added': digests, 'replaced': {}, 'changed': True}
    assert {r['expected_from'] for r in result['items'].values()} == {'checksum file'}
    cache_diff, lock_diff = result['diff']
    assert cache_diff['before_header'] == 'artifact cache'
    assert lock_diff == {'before': '', 'after': lock.read_text(), 'before_header': str(lock), 'after_header': str(lock)}
    # The next run (same cache, mirror, lock) changes nothing and checks against the lock.
    before = lock.stat().st_mtime_ns
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock), diff=True)
    assert result['rc'] == 0 and result['changed'] is False and 'diff' not in result, result
    assert {r['expected_from'] for r in result['items'].values()} == {'lock file'}
    assert result['lock'] == {'path': str(lock), 'added': {}, 'replaced': {}, 'changed': False}
    assert lock.stat().st_mtime_ns == before


def test_tampered_mirror_is_refused_with_the_cache(mirror, tmp_path, run_module):
    """One byte of a mirrored file changed and its checksum file regenerated: the lock refuses it."""
    cache, lock = tmp_path / 'cache', tmp_path / 'state/artifacts.lock'
    run_module('artifact_fetch', lock_args(mirror, cache, lock))
    locked = lock.read_text()
    before = tree(cache, dirs=False)
    good, bad = tamper(mirror, 'bin/tool', 'bin/tool.sha256')
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock))
    assert result['rc'] == 1 and result['failed']
    msg = result['msg']
    assert msg.startswith(f'tool: site/bin/tool ({mirror.url("bin/tool")}): sha256 mismatch: '), msg
    assert f'expected {good} from the lock file {lock}' in msg
    assert f'the checksum file {mirror.url("bin/tool.sha256")} now publishes {bad}' in msg
    assert 'Nothing was downloaded' in msg
    assert tree(cache, dirs=False) == before and lock.read_text() == locked
    assert 'tool' not in result['items'] and result['items']['image']['action'] == 'unchanged'


def test_tampered_mirror_is_refused_with_a_lost_cache(mirror, tmp_path, run_module):
    """A new controller (empty cache) with the committed lock: nothing of the tampered file lands."""
    lock = tmp_path / 'state/artifacts.lock'
    run_module('artifact_fetch', lock_args(mirror, tmp_path / 'cache', lock))
    good, bad = tamper(mirror, 'rel/app-1.0.tar.gz', 'rel/SHA256SUMS', '{digest}  app-1.0.tar.gz\n')
    cache = tmp_path / 'other-cache'
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock))
    assert result['failed'] and result['msg'].startswith('app: site/rel/app-1.0.tar.gz ('), result['msg']
    assert f'expected {good} from the lock file {lock}' in result['msg'] and bad in result['msg']
    assert not (cache / 'site/rel').exists() and not (cache / 'extracted').exists()


def test_tampered_file_behind_an_unchanged_checksum_file_names_both_digests(mirror, tmp_path, run_module):
    lock = tmp_path / 'state/artifacts.lock'
    run_module('artifact_fetch', lock_args(mirror, tmp_path / 'cache', lock))
    data = mirror.tool[:-1] + bytes([mirror.tool[-1] ^ 0xFF])
    mirror.write('bin/tool', data)  # the checksum file still says the locked digest
    cache = tmp_path / 'other-cache'
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock))
    msg = result['msg']
    assert result['failed'] and msg.startswith(f'tool: site/bin/tool ({mirror.url("bin/tool")}): '), msg
    assert f'the transferred copy has sha256 {sha(data)}, expected {sha(mirror.tool)}' in msg
    assert f'(from the lock file {lock})' in msg
    assert not (cache / 'site/bin/tool').exists()


def test_cache_that_matches_the_published_digest_but_not_the_lock_is_refused(mirror, tmp_path, run_module):
    """A cache filled without the lock (its sidecar says the tampered digest) is not trusted."""
    cache, lock = tmp_path / 'cache', tmp_path / 'state/artifacts.lock'
    run_module('artifact_fetch', lock_args(mirror, tmp_path / 'first-cache', lock))
    good = mirror.tool
    good_sum, bad_sum = tamper(mirror, 'bin/tool', 'bin/tool.sha256')
    # A run without the lock trusts the site: the cache now holds the tampered file and its sidecar.
    assert run_module('artifact_fetch', {'items': items(mirror, cache)})['rc'] == 0
    assert (cache / 'site/bin/tool.sha256cache').read_text().split()[2] == bad_sum
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock))
    assert result['failed'] and f'expected {good_sum} from the lock file' in result['msg']
    # The mirror is repaired: the cached tampered file is replaced, not used.
    mirror.write('bin/tool', good)
    mirror.write('bin/tool.sha256', good_sum + '\n')
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock))
    assert result['rc'] == 0, result
    assert result['items']['tool']['action'] == 'downloaded'
    assert result['items']['tool']['reason'] == f'dest has sha256 {bad_sum}'
    assert (cache / 'site/bin/tool').read_bytes() == good


def test_another_mirror_matches_the_same_lock(mirror, tmp_path, run_module):
    lock = tmp_path / 'state/artifacts.lock'
    run_module('artifact_fetch', lock_args(mirror, tmp_path / 'cache', lock))
    locked = lock.read_text()
    other = tmp_path / 'other-mirror' / 'deep'
    shutil.copytree(mirror.root, other)
    cache = tmp_path / 'other-cache'
    result = run_module('artifact_fetch', {'items': items(mirror, cache, base=other.as_uri()), 'lock_file': str(lock)})
    assert result['rc'] == 0 and result['changed'], result
    assert {r['expected_from'] for r in result['items'].values()} == {'lock file'}
    assert result['lock']['changed'] is False and lock.read_text() == locked


def test_version_bump_adds_entries_and_keeps_the_old_ones(mirror, tmp_path, run_module):
    cache, lock = tmp_path / 'cache', tmp_path / 'state/artifacts.lock'
    run_module('artifact_fetch', lock_args(mirror, cache, lock))
    tool2 = os.urandom(4096)
    mirror.write('v2/bin/tool', tool2)
    mirror.write('v2/bin/tool.sha256', sha(tool2) + '\n')
    its = items(mirror, cache)
    its[0].update(url=mirror.url('v2/bin/tool'), checksum_url=mirror.url('v2/bin/tool.sha256'),
                  key='site/v2/bin/tool', dest=str(cache / 'site/v2/bin/tool'))
    result = run_module('artifact_fetch', {'items': its, 'lock_file': str(lock)}, diff=True)
    assert result['rc'] == 0 and result['lock']['added'] == {'site/v2/bin/tool': sha(tool2)}
    assert lock_entries(lock) == {'site/bin/tool': sha(mirror.tool), 'site/v2/bin/tool': sha(tool2),
                                  'site/rel/app-1.0.tar.gz': sha(mirror.app), 'images/img.tar': sha(mirror.image)}
    lock_diff = result['diff'][-1]
    assert f'"site/v2/bin/tool": "{sha(tool2)}"' in lock_diff['after']
    assert '"site/v2/bin/tool"' not in lock_diff['before'] and '"site/bin/tool"' in lock_diff['before']


def test_failed_item_records_nothing_the_others_are_recorded(mirror, tmp_path, run_module):
    lock = tmp_path / 'state/artifacts.lock'
    mirror.write('images/img.tar', b'truncated')
    result = run_module('artifact_fetch', lock_args(mirror, tmp_path / 'cache', lock))
    assert result['failed'] and result['msg'].startswith('image: images/img.tar (')
    assert set(lock_entries(lock)) == {'site/bin/tool', 'site/rel/app-1.0.tar.gz'}


def test_check_mode_never_writes_the_lock(mirror, tmp_path, run_module):
    cache, lock = tmp_path / 'cache', tmp_path / 'state/artifacts.lock'
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock), check=True, diff=True)
    assert result['rc'] == 0 and result['changed'] is True
    assert result['lock']['changed'] is True and set(result['lock']['added']) == set(KEYS.values())
    assert result['diff'][1]['after'] == L.render_lock(result['lock']['added'])
    assert not (tmp_path / 'state').exists() and not cache.exists()
    # Converged: nothing to report. A cache filled without a lock: only the lock would change.
    run_module('artifact_fetch', {'items': items(mirror, cache)})
    before = tree(cache)
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock), check=True, diff=True)
    assert result['changed'] is True and {r['action'] for r in result['items'].values()} == {'unchanged'}
    assert result['diff']['before_header'] == str(lock)  # only the lock's diff
    assert not (tmp_path / 'state').exists() and tree(cache) == before
    run_module('artifact_fetch', lock_args(mirror, cache, lock))
    result = run_module('artifact_fetch', lock_args(mirror, cache, lock), check=True, diff=True)
    assert result['changed'] is False and result['lock']['changed'] is False and 'diff' not in result


def test_pinned_digest_takes_precedence_over_lock_and_checksum_file(mirror, tmp_path, run_module):
    cache, lock = tmp_path / 'cache', tmp_path / 'state/artifacts.lock'
    run_module('artifact_fetch', lock_args(mirror, cache, lock))
    # A new file under the same name; its checksum file is gone: a pin needs none.
    new = os.urandom(BIG)
    mirror.write('bin/tool', new)
    (mirror.root / 'bin/tool.sha256').unlink()
    args = lock_args(mirror, cache, lock, checksums={'site/bin/tool': sha(new).upper()},
                     checksums_label='artifacts_checksums')
    result = run_module('artifact_fetch', args, diff=True)
    assert result['rc'] == 0, result
    tool = result['items']['tool']
    assert tool['expected_from'] == 'checksums' and tool['sha256'] == sha(new) and tool['action'] == 'downloaded'
    assert result['lock']['replaced'] == {'site/bin/tool': sha(new)} and result['lock']['added'] == {}
    assert lock_entries(lock)['site/bin/tool'] == sha(new)
    assert (cache / 'site/bin/tool').read_bytes() == new
    # A pin the mirror's file does not match: refused, naming both digests and the pin.
    args['checksums'] = {'site/bin/tool': '0' * 64}
    result = run_module('artifact_fetch', args)
    assert result['failed'] and f'the transferred copy has sha256 {sha(new)}, expected {"0" * 64}' in result['msg']
    assert '(pinned in artifacts_checksums)' in result['msg']
    assert (cache / 'site/bin/tool').read_bytes() == new and lock_entries(lock)['site/bin/tool'] == sha(new)


def test_pins_without_lock_file_and_unknown_pins(mirror, tmp_path):
    # In a process of its own: Ansible keeps warnings process-wide, and a
    # module run earlier in the same process can take them.
    cache = tmp_path / 'cache'
    pins = {'site/bin/tool': sha(mirror.tool), 'site/bin/tool-1.0': 'a' * 64}
    result = run_module_subprocess('artifact_fetch', {'items': items(mirror, cache), 'checksums': pins,
                                                      'checksums_label': 'artifacts_checksums'})
    assert result['rc'] == 0 and result['items']['tool']['expected_from'] == 'checksums'
    assert 'lock' not in result
    assert 'artifacts_checksums pins a digest for site/bin/tool-1.0, which no item fetches' \
        in str(result.get('warnings')), result.get('warnings')


@pytest.mark.parametrize('lock_text, pins, message', [
    ('not json', {}, 'is not valid JSON'),
    ('{"sha256": {"site/bin/tool": "xyz"}}', {}, "site/bin/tool: 'xyz' is not a sha256 digest"),
    (None, {'site/bin/tool': 'sha256:abc'}, "checksums: site/bin/tool: 'sha256:abc' is not a sha256 digest"),
])
def test_bad_lock_or_pins_fail_before_anything(mirror, tmp_path, run_module, lock_text, pins, message):
    lock = tmp_path / 'state/artifacts.lock'
    if lock_text is not None:
        lock.parent.mkdir()
        lock.write_text(lock_text)
    result = run_module('artifact_fetch', lock_args(mirror, tmp_path / 'cache', lock, checksums=pins))
    assert result['failed'] and message in result['msg'], result['msg']
    assert not (tmp_path / 'cache').exists()
    assert lock_text is None or lock.read_text() == lock_text


def test_default_keys_and_duplicate_keys(mirror, tmp_path, run_module):
    cache, lock = tmp_path / 'cache', tmp_path / 'artifacts.lock'
    result = run_module('artifact_fetch', {'items': items(mirror, cache, keys=False), 'lock_file': str(lock)})
    assert result['rc'] == 0
    assert set(lock_entries(lock)) == {str(mirror.root / rel).lstrip('/') for rel in
                                       ('bin/tool', 'rel/app-1.0.tar.gz', 'images/img.tar')}
    its = items(mirror, cache)
    its[1]['key'] = its[0]['key']
    result = run_module('artifact_fetch', {'items': its})
    assert result['failed'] and 'items[1] (app): key site/bin/tool is also the key of items[0] (tool)' in result['msg']


def test_lock_through_ansible(mirror, tmp_path):
    cache, lock = tmp_path / 'cache', tmp_path / 'state/artifacts.lock'
    rc, result, output = run_adhoc('artifact_fetch', lock_args(mirror, cache, lock), tmp_path, check=True)
    assert rc == 0 and result['changed'] is True and not lock.exists(), output
    rc, result, output = run_adhoc('artifact_fetch', lock_args(mirror, cache, lock), tmp_path)
    assert rc == 0 and result['lock']['changed'] is True and lock.exists(), output
    tamper(mirror, 'bin/tool', 'bin/tool.sha256')
    rc, result, output = run_adhoc('artifact_fetch', lock_args(mirror, cache, lock), tmp_path)
    assert rc != 0 and 'sha256 mismatch' in result['msg'], output


def test_digests_only_for_hosts_that_download_themselves(mirror, tmp_path, run_module):
    """download: false reads the checksum files, records the lock, and touches no cache file; a locked digest
    that the mirror no longer publishes still stops the run."""
    cache, lock = tmp_path / 'cache', tmp_path / 'state' / 'artifacts.lock'
    result = run_module('artifact_fetch', {'items': items(mirror, cache), 'lock_file': str(lock), 'download': False})
    assert result['rc'] == 0, result
    assert {name: item['sha256'] for name, item in result['items'].items()} == {
        'tool': sha(mirror.tool), 'app': sha(mirror.app), 'image': sha(mirror.image)}
    assert {item['action'] for item in result['items'].values()} == {'resolved'}
    assert not cache.exists()
    assert L.read_lock(str(lock)) == {KEYS['tool']: sha(mirror.tool), KEYS['app']: sha(mirror.app),
                                      KEYS['image']: sha(mirror.image)}
    assert result['changed']  # the lock file got its entries
    again = run_module('artifact_fetch', {'items': items(mirror, cache), 'lock_file': str(lock), 'download': False})
    assert again['rc'] == 0 and not again['changed']
    mirror.write('bin/tool', b'evil')
    mirror.write('bin/tool.sha256', sha(b'evil') + '\n')
    failed = run_module('artifact_fetch', {'items': items(mirror, cache), 'lock_file': str(lock), 'download': False})
    assert failed.failed and 'sha256 mismatch' in failed['msg'], failed
