"""artifact_fetch: checksum files, download and verification, the sidecar cache, unpacking, check mode."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import install as I
from ansible_collections.hardway.kubernetes.plugins.modules import artifact_fetch as AF
from hardway_testlib import run_adhoc

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


def items(mirror, cache, base=None):
    base = base or mirror.url('')
    base = base.rstrip('/')
    return [
        {'name': 'tool', 'url': f'{base}/bin/tool', 'checksum_url': f'{base}/bin/tool.sha256',
         'dest': str(cache / 'site/bin/tool')},
        {'name': 'app', 'url': f'{base}/rel/app-1.0.tar.gz', 'checksum_url': f'{base}/rel/SHA256SUMS',
         'dest': str(cache / 'site/rel/app-1.0.tar.gz'), 'extract_dir': str(cache / 'extracted/app')},
        {'name': 'image', 'url': f'{base}/images/img.tar', 'checksum_url': f'{base}/images/img.tar.sha256',
         'dest': str(cache / 'images/img.tar')},
    ]


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
        'dest': str(cache / 'site/bin/tool'), 'extract_dir': None,
    }
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
