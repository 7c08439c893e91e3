"""install_files: source hashing and its sidecar cache, the module's decisions, and a playbook run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import files as F
from ansible_collections.hardway.kubernetes.plugins.module_utils import install as I
from hardway_testlib import ansible_cli, collections_path, run_module_subprocess

BIG = I.SIDECAR_MIN_SIZE + 1
HOUR_NS = 3600 * 10**9


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make(path, data, mode=0o644, age_ns=HOUR_NS):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    then = os.stat(path).st_mtime_ns - age_ns
    os.utime(path, ns=(then, then))
    return path


def spec(dest, data=b'', mode='0644', **extra):
    item = {'dest': str(dest), 'sha256': sha(data), 'mode': mode}
    item.update(extra)
    return I.normalize_files([item])[0]


def ids(path=None):
    if path is None:
        return os.getuid(), os.getgid()
    st = os.stat(path)
    return st.st_uid, st.st_gid


def leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith('.'))


# ---------------------------------------------------------------- controller: hashing


def test_small_source_is_hashed_without_sidecar(tmp_path):
    src = make(tmp_path / 'small', b'x' * I.SIDECAR_MIN_SIZE)
    assert I.source_sha256(str(src)) == sha(src.read_bytes())
    assert not os.path.exists(str(src) + '.sha256cache')


def test_big_source_gets_a_sidecar_that_is_then_trusted(tmp_path):
    data = os.urandom(BIG)
    src = make(tmp_path / 'big', data)
    sidecar = tmp_path / 'big.sha256cache'
    assert I.source_sha256(str(src)) == sha(data)
    st = os.stat(src)
    assert sidecar.read_text() == f'{st.st_mtime_ns} {st.st_size} {sha(data)}\n'
    assert leftovers(tmp_path) == []  # written atomically, no temporary file left
    # The sidecar is used as long as mtime and size match: prove it with a planted digest.
    sidecar.write_text(f'{st.st_mtime_ns} {st.st_size} {"a" * 64}\n')
    assert I.source_sha256(str(src)) == 'a' * 64


@pytest.mark.parametrize('change', ['mtime', 'size', 'garbage'])
def test_stale_or_broken_sidecar_is_recomputed(tmp_path, change):
    data = os.urandom(BIG)
    src = make(tmp_path / 'big', data)
    sidecar = tmp_path / 'big.sha256cache'
    st = os.stat(src)
    if change == 'mtime':
        sidecar.write_text(f'{st.st_mtime_ns - 1} {st.st_size} {"a" * 64}\n')
    elif change == 'size':
        sidecar.write_text(f'{st.st_mtime_ns} {st.st_size + 1} {"a" * 64}\n')
    else:
        sidecar.write_bytes(b'\xff\xfe nonsense')
    assert I.source_sha256(str(src)) == sha(data)
    assert sidecar.read_text().split()[2] == sha(data)


def test_source_rewritten_with_same_size_is_rehashed(tmp_path):
    src = make(tmp_path / 'big', b'a' * BIG)
    assert I.source_sha256(str(src)) == sha(b'a' * BIG)
    make(src, b'b' * BIG, age_ns=HOUR_NS // 2)
    assert I.source_sha256(str(src)) == sha(b'b' * BIG)


def test_recently_modified_source_is_not_cached(tmp_path):
    src = make(tmp_path / 'big', b'a' * BIG, age_ns=0)
    assert I.source_sha256(str(src)) == sha(b'a' * BIG)
    assert not (tmp_path / 'big.sha256cache').exists()
    st = os.stat(src)
    assert I.source_sha256(str(src), now_ns=st.st_mtime_ns + I.RACY_NS) == sha(b'a' * BIG)
    assert (tmp_path / 'big.sha256cache').exists()


def test_unwritable_sidecar_is_skipped(tmp_path, monkeypatch):
    src = make(tmp_path / 'big', b'a' * BIG)

    def refuse(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(I, 'write_atomic', refuse)
    assert I.source_sha256(str(src)) == sha(b'a' * BIG)
    assert not (tmp_path / 'big.sha256cache').exists()


def test_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        I.source_sha256(str(tmp_path / 'nope'))
    with pytest.raises(I.InstallError, match='not a regular file'):
        I.source_sha256(str(tmp_path))


def test_bundle_round_trip(tmp_path):
    make(tmp_path / 'a', b'first')
    make(tmp_path / 'b', b'')
    os.symlink(str(tmp_path / 'a'), str(tmp_path / 'link'))
    remote = tmp_path / 'remote'
    remote.mkdir()
    bundle = remote / 'bundle.tar'
    I.pack_bundle(str(bundle), [('file0', str(tmp_path / 'a')), ('file1', str(tmp_path / 'b')),
                                ('file2', str(tmp_path / 'link'))])
    I.unpack_bundle(str(bundle))
    assert sorted(os.listdir(remote)) == ['file0', 'file1', 'file2']
    assert (remote / 'file0').read_bytes() == b'first' and (remote / 'file1').read_bytes() == b''
    assert not (remote / 'file2').is_symlink() and (remote / 'file2').read_bytes() == b'first'


@pytest.mark.parametrize('name', ['../evil', 'dir/x', '.hidden'])
def test_bundle_with_unexpected_member_is_refused(tmp_path, name):
    make(tmp_path / 'a', b'x')
    bundle = tmp_path / 'remote' / 'bundle.tar'
    bundle.parent.mkdir()
    with tarfile.open(str(bundle), 'w') as tar:
        tar.add(str(tmp_path / 'a'), arcname=name)
    with pytest.raises(I.InstallError, match='unexpected member'):
        I.unpack_bundle(str(bundle))
    assert not (tmp_path / 'evil').exists()


def test_broken_bundle_is_refused(tmp_path):
    bundle = tmp_path / 'bundle.tar'
    bundle.write_bytes(b'not a tar archive' * 100)
    with pytest.raises(I.InstallError, match='no valid archive'):
        I.unpack_bundle(str(bundle))


# ---------------------------------------------------------------- module: options


@pytest.mark.parametrize(
    'items, message',
    [
        ([{'dest': 'rel/x', 'mode': '0644', 'sha256': 'a' * 64}], r'files\[0\] \(rel/x\): dest must be an absolute'),
        ([{'dest': '/x/', 'mode': '0644', 'sha256': 'a' * 64}], 'not a directory'),
        ([{'dest': '/x', 'mode': '0644', 'sha256': 'a' * 64}, {'dest': '/y/../x', 'mode': '0600', 'sha256': 'b' * 64}],
         r'files\[1\] .*also the destination of files\[0\]'),
        ([{'dest': '/x', 'mode': 'rw-r--r--', 'sha256': 'a' * 64}], r'files\[0\] \(/x\): mode must be an octal'),
        ([{'dest': '/x', 'mode': '0644', 'sha256': 'abc'}], '64 hexadecimal'),
        ([{'dest': '/x', 'mode': '0644'}], 'sha256 is missing.*action plugin'),
    ],
)
def test_normalize_refuses(items, message):
    with pytest.raises(I.InstallError, match=message):
        I.normalize_files(items)


def test_normalize_defaults():
    (item,) = I.normalize_files([{'dest': '/a//b', 'mode': 0o640, 'sha256': 'A' * 64}])
    assert item['dest'] == '/a/b' and item['mode'] == 0o640 and item['sha256'] == 'a' * 64
    assert (item['owner'], item['group'], item['tmp_src'], item['label']) == ('root', 'root', None, 'files[0] (/a//b)')


# ---------------------------------------------------------------- module: inspect


def test_inspect_reasons(tmp_path):
    dest = make(tmp_path / 'f', b'data', 0o644)
    uid, gid = ids(dest)
    assert I.inspect_file(spec(dest, b'data'), uid, gid)['reasons'] == []
    assert I.inspect_file(spec(dest, b'other'), uid, gid)['reasons'] == ['content']
    assert I.inspect_file(spec(dest, b'data', '0600'), uid, gid)['reasons'] == ['mode']
    assert I.inspect_file(spec(dest, b'data', '0600'), uid + 1, gid)['reasons'] == ['mode', 'owner']
    assert I.inspect_file(spec(dest, b'data'), uid, gid + 1)['reasons'] == ['owner']
    assert I.inspect_file(spec(dest, b'data'), None, None)['reasons'] == ['owner']  # unknown user (check mode)
    assert I.inspect_file(spec(dest, b'x', '0600'), uid + 1, gid)['reasons'] == ['content', 'mode', 'owner']
    result = I.inspect_file(spec(tmp_path / 'missing' / 'f'), uid, gid)
    assert result['reasons'] == ['missing'] and result['current']['state'] == 'absent'
    assert I.inspect_file(spec(dest / 'below-a-file'), uid, gid)['reasons'] == ['missing']
    current = I.inspect_file(spec(dest, b'data'), uid, gid)['current']
    assert current == {'state': 'file', 'mode': '0644', 'owner': I.user_name(uid), 'group': I.group_name(gid)}


def test_inspect_symlink_and_directory(tmp_path):
    target = make(tmp_path / 'target', b'data')
    os.symlink(str(target), str(tmp_path / 'link'))
    result = I.inspect_file(spec(tmp_path / 'link', b'data'), *ids(target))
    assert result['reasons'] == ['content'] and result['current']['state'] == 'symlink'
    with pytest.raises(I.InstallError, match='dest is a directory'):
        I.inspect_file(spec(tmp_path, b'data'), *ids())


# ---------------------------------------------------------------- module: apply


def test_install_creates_parents_and_sets_everything(tmp_path):
    old_umask = os.umask(0o077)
    try:
        tmp_src = make(tmp_path / 'remote-tmp' / 'file0', b'secret', 0o600)
        dest = tmp_path / 'a' / 'b' / 'key.pem'
        created = I.install_file(spec(dest, b'secret', '0640', tmp_src=str(tmp_src)), *ids())
    finally:
        os.umask(old_umask)
    assert created == [str(tmp_path / 'a'), str(tmp_path / 'a' / 'b')]
    assert [stat.S_IMODE(os.stat(d).st_mode) for d in created] == [0o755, 0o755]
    assert dest.read_bytes() == b'secret' and stat.S_IMODE(os.stat(dest).st_mode) == 0o640
    assert not tmp_src.exists()  # consumed
    assert leftovers(dest.parent) == []


def test_install_replaces_atomically_and_keeps_dest_on_mismatch(tmp_path):
    dest = make(tmp_path / 'bin' / 'tool', b'old', 0o755)
    inode = os.stat(dest).st_ino
    tmp_src = make(tmp_path / 'file0', b'corrupted in transit')
    with pytest.raises(I.InstallError, match=r'files\[0\] .*transferred copy has sha256'):
        I.install_file(spec(dest, b'new', '0755', tmp_src=str(tmp_src)), *ids())
    assert dest.read_bytes() == b'old' and os.stat(dest).st_ino == inode
    assert leftovers(dest.parent) == []
    make(tmp_path / 'file0', b'new')
    I.install_file(spec(dest, b'new', '0755', tmp_src=str(tmp_src)), *ids())
    assert dest.read_bytes() == b'new' and os.stat(dest).st_ino != inode  # renamed over, not rewritten


def test_install_replaces_a_symlink_not_its_target(tmp_path):
    target = make(tmp_path / 'target', b'keep me')
    os.symlink(str(target), str(tmp_path / 'link'))
    tmp_src = make(tmp_path / 'file0', b'new')
    I.install_file(spec(tmp_path / 'link', b'new', tmp_src=str(tmp_src)), *ids())
    assert not (tmp_path / 'link').is_symlink() and (tmp_path / 'link').read_bytes() == b'new'
    assert target.read_bytes() == b'keep me'


def test_install_under_a_file_names_it(tmp_path):
    blocker = make(tmp_path / 'etc', b'')
    tmp_src = make(tmp_path / 'file0', b'x')
    with pytest.raises(I.InstallError, match='etc exists and is not a directory'):
        I.install_file(spec(blocker / 'sub' / 'f', b'x', tmp_src=str(tmp_src)), *ids())


def test_fix_attributes(tmp_path):
    dest = make(tmp_path / 'f', b'data', 0o644)
    mtime = os.stat(dest).st_mtime_ns
    assert I.fix_attributes(spec(dest, b'data', '0600'), *ids()) == ['mode']
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert I.fix_attributes(spec(dest, b'data', '0600'), *ids()) == []
    assert os.stat(dest).st_mtime_ns == mtime  # content untouched
    os.unlink(dest)
    with pytest.raises(I.InstallError, match='dest is absent now'):
        I.fix_attributes(spec(dest, b'data'), *ids())


@pytest.mark.skipif(os.geteuid() != 0, reason='changing owners needs root')
def test_owner_changes_as_root(tmp_path):
    dest = make(tmp_path / 'f', b'data', 0o4755)
    assert I.fix_attributes(spec(dest, b'data', '4755'), 1, 1) == ['owner']
    st = os.stat(dest)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1, 1, 0o4755)  # set-uid restored after chown
    tmp_src = make(tmp_path / 'file0', b'new')
    I.install_file(spec(dest, b'new', '0600', tmp_src=str(tmp_src)), 2, 2)
    st = os.stat(dest)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (2, 2, 0o600)


def test_write_atomic_still_takes_bytes(tmp_path):
    F.write_atomic(str(tmp_path / 'f'), b'bytes', 0o600)
    assert (tmp_path / 'f').read_bytes() == b'bytes' and stat.S_IMODE(os.stat(tmp_path / 'f').st_mode) == 0o600


def test_owner_lookup():
    assert I.lookup_user('root') == 0 and I.lookup_group('root') == 0
    assert I.lookup_user('no-such-user-hardway') is None and I.lookup_group('no-such-group-hardway') is None
    assert I.lookup_user('4242') == 4242 and I.lookup_group('4242') == 4242
    assert I.user_name(0) == 'root' and I.group_name(987654) == '987654'


# ---------------------------------------------------------------- directories


def dir_spec(path, mode='0700', **extra):
    item = {'path': str(path), 'mode': mode, 'owner': I.user_name(os.getuid()), 'group': I.group_name(os.getgid())}
    item.update(extra)
    return I.normalize_directories([item])[0]


def test_directory_inspect_and_ensure(tmp_path):
    wanted = dir_spec(tmp_path / 'a' / 'b', '0700')
    assert I.inspect_directory(wanted, *ids())['reasons'] == ['missing']
    assert I.ensure_directory(wanted, *ids()) == ['created']
    assert stat.S_IMODE(os.stat(tmp_path / 'a' / 'b').st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / 'a').st_mode) == 0o755  # a missing parent
    assert I.inspect_directory(wanted, *ids())['reasons'] == []
    assert I.ensure_directory(wanted, *ids()) == []
    os.chmod(tmp_path / 'a' / 'b', 0o755)
    assert I.inspect_directory(wanted, *ids())['reasons'] == ['mode']
    assert I.ensure_directory(wanted, *ids()) == ['mode']
    assert stat.S_IMODE(os.stat(tmp_path / 'a' / 'b').st_mode) == 0o700


def test_directory_that_is_a_file_is_refused(tmp_path):
    make(tmp_path / 'f', b'x')
    wanted = dir_spec(tmp_path / 'f')
    with pytest.raises(I.InstallError, match=r'directories\[0\] .*: .* is a file, not a directory'):
        I.inspect_directory(wanted, *ids())
    with pytest.raises(I.InstallError, match='not a directory'):
        I.ensure_directory(wanted, *ids())


@pytest.mark.parametrize('items, message', [
    ([{'path': 'relative', 'mode': '0700'}], 'path must be an absolute path'),
    ([{'path': '/x', 'mode': '0700'}, {'path': '/x/', 'mode': '0755'}], 'is also directories[0]'),
    ([{'path': '/x', 'mode': 'rwx'}], 'mode must be an octal string'),
])
def test_normalize_directories_refuses(items, message):
    with pytest.raises(I.InstallError, match=re.escape(message)):
        I.normalize_directories(items)


def test_current_text_only_for_small_text(tmp_path):
    assert I.current_text(str(make(tmp_path / 't', 'naïve: yes\n'.encode()))) == 'naïve: yes\n'
    assert I.current_text(str(make(tmp_path / 'b', b'\0\1\2'))) is None
    assert I.current_text(str(make(tmp_path / 'l', b'x' * (I.TEXT_DIFF_MAX_SIZE + 1)))) is None
    assert I.current_text(str(tmp_path / 'missing')) is None


# ---------------------------------------------------------------- the digest cache on the host


def test_digest_cache_round_trip_and_invalidation(tmp_path):
    data = os.urandom(BIG)
    dest = make(tmp_path / 'kubelet', data)
    cache_path = tmp_path / 'cache' / 'digests.json'
    cache = I.DigestCache(str(cache_path))
    assert cache.get(str(dest), os.lstat(dest)) is None
    # Just changed (its ctime is now): a digest read from it is not kept yet ...
    cache.put(str(dest), os.lstat(dest), sha(data))
    assert cache.entries == {}
    # ... two seconds later it is, and so is one the module wrote itself at once.
    cache.put(str(dest), os.lstat(dest), sha(data), now_ns=time.time_ns() + I.RACY_NS)
    assert cache.get(str(dest), os.lstat(dest)) == sha(data)
    cache.entries.clear()
    cache.put(str(dest), os.lstat(dest), sha(data), written=True)
    cache.save()
    again = I.DigestCache(str(cache_path))
    assert again.get(str(dest), os.lstat(dest)) == sha(data)
    # Rewritten in place with the same size and its old mtime put back: the change time gives it away.
    st = os.lstat(dest)
    with open(dest, 'r+b') as handle:
        handle.write(b'X')
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.lstat(dest).st_mtime_ns == st.st_mtime_ns
    assert again.get(str(dest), os.lstat(dest)) is None


def test_digest_cache_keeps_only_big_files_and_survives_garbage(tmp_path):
    small = make(tmp_path / 'small', b'x')
    cache_path = tmp_path / 'digests.json'
    cache = I.DigestCache(str(cache_path))
    cache.put(str(small), os.lstat(small), sha(b'x'))
    cache.save()
    assert not cache_path.exists()  # nothing worth keeping, nothing written
    cache_path.write_text('{not json')
    assert I.DigestCache(str(cache_path)).entries == {}
    assert I.DigestCache(None).get(str(small), os.lstat(small)) is None


def test_inspect_trusts_the_cache_until_the_file_changes(tmp_path, monkeypatch):
    data = os.urandom(BIG)
    dest = make(tmp_path / 'kubelet', data)
    cache = I.DigestCache(str(tmp_path / 'digests.json'))
    wanted = spec(dest, data)
    reads = []
    real = I.sha256_file
    monkeypatch.setattr(I, 'sha256_file', lambda path: reads.append(path) or real(path))
    assert I.inspect_file(wanted, *ids(), cache=cache)['reasons'] == []
    assert I.inspect_file(wanted, *ids(), cache=cache)['reasons'] == []
    assert reads == [str(dest)] * 2  # changed a moment ago: its digest is not trusted yet
    real_ns = time.time_ns
    monkeypatch.setattr(I.time, 'time_ns', lambda: real_ns() + I.RACY_NS)  # two seconds later
    assert I.inspect_file(wanted, *ids(), cache=cache)['reasons'] == []
    reads.clear()
    assert I.inspect_file(wanted, *ids(), cache=cache)['reasons'] == []
    assert reads == []  # the second look did not read the file
    dest.write_bytes(os.urandom(BIG))
    assert I.inspect_file(wanted, *ids(), cache=cache)['reasons'] == ['content']
    assert reads == [str(dest)]


# ---------------------------------------------------------------- the module, in process


def module_files(tmp_path, **extra):
    item = {'src': '/controller/f', 'dest': str(tmp_path / 'd' / 'f'), 'mode': '0600',
            'owner': I.user_name(os.getuid()), 'group': I.group_name(os.getgid()), 'sha256': sha(b'data')}
    item.update(extra)
    return [item]


def test_module_inspect_then_apply(tmp_path, run_module):
    result = run_module('install_files', {'phase': 'inspect', 'files': module_files(tmp_path)})
    assert result['rc'] == 0 and result['files'][0]['reasons'] == ['missing']
    tmp_src = make(tmp_path / 'file0', b'data')
    result = run_module('install_files', {'phase': 'apply', 'files': module_files(tmp_path, tmp_src=str(tmp_src))})
    assert result['rc'] == 0 and result['changed'] and result['files'][0]['installed']
    assert (tmp_path / 'd' / 'f').read_bytes() == b'data'
    result = run_module('install_files', {'phase': 'inspect', 'files': module_files(tmp_path)})
    assert result['files'][0]['reasons'] == [] and not result['changed']


def test_module_apply_in_check_mode_only_inspects(tmp_path, run_module):
    tmp_src = make(tmp_path / 'file0', b'data')
    result = run_module('install_files', {'phase': 'apply', 'files': module_files(tmp_path, tmp_src=str(tmp_src))},
                        check=True)
    assert result['files'][0]['reasons'] == ['missing'] and not (tmp_path / 'd').exists()


def test_module_unknown_owner(tmp_path, run_module):
    files = module_files(tmp_path, owner='no-such-user-hardway')
    result = run_module('install_files', {'phase': 'inspect', 'files': files})
    assert result.failed and result['msg'] == 'files[0] (%s): no such user on the host: no-such-user-hardway' % (
        tmp_path / 'd' / 'f')
    # in a fresh process: in this one, earlier tests may have routed warnings to the display
    result = run_module_subprocess('install_files', {'phase': 'inspect', 'files': files}, check=True)
    assert not result.failed and 'no such user' in json.dumps(result['warnings'])


def test_module_directories_before_files(tmp_path, run_module):
    owner, group = I.user_name(os.getuid()), I.group_name(os.getgid())
    directories = [{'path': str(tmp_path / 'd'), 'mode': '0700', 'owner': owner, 'group': group}]
    result = run_module('install_files', {'phase': 'inspect', 'files': module_files(tmp_path),
                                          'directories': directories})
    assert result['directories'][0]['reasons'] == ['missing'] and result['files'][0]['reasons'] == ['missing']
    tmp_src = make(tmp_path / 'file0', b'data')
    result = run_module('install_files', {'phase': 'apply', 'directories': directories,
                                          'files': module_files(tmp_path, tmp_src=str(tmp_src))})
    assert result['changed'] and result['directories'] == [{'path': str(tmp_path / 'd'), 'done': ['created']}]
    assert stat.S_IMODE(os.stat(tmp_path / 'd').st_mode) == 0o700  # not the 0755 of a missing parent
    assert (tmp_path / 'd' / 'f').read_bytes() == b'data'


def test_module_without_the_action_plugin(tmp_path, run_module):
    files = module_files(tmp_path)
    del files[0]['sha256']
    result = run_module('install_files', {'files': files})
    assert result.failed and 'runs through its action plugin' in result['msg']


# ---------------------------------------------------------------- end to end, through ansible-playbook

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Install
      hardway.kubernetes.install_files:
        files: "{{ install }}"
        directories: "{{ directories | default([]) }}"
        digest_cache: "{{ digest_cache }}"
"""
# With -v and the JSON result format, the default callback prints the task result as
# "changed: [localhost] => {...}" (JSON, possibly over several lines).
RESULT_RE = re.compile(r'^(?:ok|changed|fatal): \[localhost\](?:: [A-Z]+!)? => (?=\{)', re.M)


class Playbook:
    def __init__(self, tmp_path, pipelining=True):
        cli = ansible_cli('ansible-playbook')
        if not cli:
            pytest.skip('the ansible command line is not installed next to this Python')
        self.tmp_path = tmp_path
        self.remote_tmp = tmp_path / 'remote-tmp'
        self.remote_tmp.mkdir()
        (tmp_path / 'play.yml').write_text(PLAYBOOK)
        (tmp_path / 'ansible.cfg').write_text(textwrap.dedent(f"""\
            [defaults]
            remote_tmp = {self.remote_tmp}
            [connection]
            pipelining = {pipelining}
            """))
        self.cmd = [cli, '-v', '-i', 'localhost,', '-c', 'local', 'play.yml',
                    '-e', 'ansible_python_interpreter=' + sys.executable]
        self.env = dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=collections_path(),
            ANSIBLE_CONFIG=str(tmp_path / 'ansible.cfg'),
            ANSIBLE_HOME=str(tmp_path / '.ansible'),
            ANSIBLE_LOCALHOST_WARNING='0',
            ANSIBLE_NOCOLOR='1',
            ANSIBLE_CALLBACK_RESULT_FORMAT='json',
        )

    def run(self, files, *options, expect_rc=0, directories=None):
        self.digest_cache = self.tmp_path / 'host-cache' / 'digests.json'
        (self.tmp_path / 'vars.json').write_text(json.dumps({'install': files, 'directories': directories or [],
                                                             'digest_cache': str(self.digest_cache)}))
        proc = subprocess.run(self.cmd + ['-e', '@vars.json'] + list(options), cwd=str(self.tmp_path),
                              env=self.env, capture_output=True, text=True, timeout=180, check=False)
        assert proc.returncode == expect_rc, proc.stdout + proc.stderr
        assert os.listdir(self.remote_tmp) == [], 'remote temporary directory left behind'
        self.output = proc.stdout + proc.stderr
        match = RESULT_RE.search(proc.stdout)
        assert match, proc.stdout
        return json.JSONDecoder().raw_decode(proc.stdout, match.end())[0]


def tree(root):
    """{relative path: (mode, content)} of every file under root."""
    out = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, 'rb') as handle:
                out[os.path.relpath(path, root)] = (stat.S_IMODE(os.stat(path).st_mode), handle.read())
    return out


@pytest.fixture
def sources(tmp_path):
    src = tmp_path / 'src'
    data = {
        'ca.pem': b'-----BEGIN CERTIFICATE-----\nnot really\n',
        'node-key.pem': b'-----BEGIN PRIVATE KEY-----\nTOP-SECRET-KEY-MATERIAL\n',
        'kubeconfig': b'apiVersion: v1\n',
        'kubelet': os.urandom(3 * 1024 * 1024),
    }
    for name, content in data.items():
        make(src / name, content)
    owner, group = I.user_name(os.getuid()), I.group_name(os.getgid())
    dest = tmp_path / 'dest'
    files = [
        {'src': str(src / 'ca.pem'), 'dest': str(dest / 'pki' / 'ca.pem'), 'mode': '0644'},
        {'src': str(src / 'node-key.pem'), 'dest': str(dest / 'pki' / 'node-key.pem'), 'mode': '0600'},
        {'src': str(src / 'kubeconfig'), 'dest': str(dest / 'kubeconfig'), 'mode': '0640'},
        {'src': str(src / 'kubelet'), 'dest': str(dest / 'bin' / 'kubelet'), 'mode': '0755'},
    ]
    for item in files:
        item.update(owner=owner, group=group)
    return files, data, dest


def test_playbook_end_to_end(tmp_path, sources):
    files, data, dest = sources
    play = Playbook(tmp_path)

    # Check mode on an empty host: everything would change, nothing is written.
    result = play.run(files, '--check', '--diff')
    assert result['changed'] and [f['reason'] for f in result['files']] == ['missing'] * 4
    assert not dest.exists()

    # First run installs everything.
    result = play.run(files, '--diff')
    assert result['changed'] and all(f['changed'] for f in result['files'])
    installed = tree(dest)
    assert installed == {
        'pki/ca.pem': (0o644, data['ca.pem']),
        'pki/node-key.pem': (0o600, data['node-key.pem']),
        'kubeconfig': (0o640, data['kubeconfig']),
        'bin/kubelet': (0o755, data['kubelet']),
    }
    assert 'TOP-SECRET' not in play.output and 'TOP-SECRET' not in json.dumps(result)
    assert f"+{dest / 'pki' / 'node-key.pem'}: file, mode 0600" in play.output  # the diff lists paths
    assert (tmp_path / 'src' / 'kubelet.sha256cache').exists()
    assert not (tmp_path / 'src' / 'ca.pem.sha256cache').exists()

    # Second run: nothing to do. The big file's digest is on the host, recorded as it was installed.
    assert str(dest / 'bin' / 'kubelet') in json.loads(play.digest_cache.read_text())['files']
    result = play.run(files, '--diff')
    assert not result['changed'] and [f['reason'] for f in result['files']] == ['up to date'] * 4

    # Differences on the host: a mode, a content, a missing file. Check mode only reports them.
    os.chmod(dest / 'pki' / 'node-key.pem', 0o644)
    inode = os.stat(dest / 'pki' / 'node-key.pem').st_ino
    (dest / 'bin' / 'kubelet').write_bytes(b'tampered')  # the digest cache does not hide it
    os.unlink(dest / 'kubeconfig')
    result = play.run(files, '--check')
    assert result['changed'] and [f['reason'] for f in result['files']] == ['up to date', 'mode', 'missing', 'content']
    assert stat.S_IMODE(os.stat(dest / 'pki' / 'node-key.pem').st_mode) == 0o644
    assert (dest / 'bin' / 'kubelet').read_bytes() == b'tampered' and not (dest / 'kubeconfig').exists()

    # The next run repairs them; the mode-only difference without rewriting the file.
    result = play.run(files)
    assert [f['changed'] for f in result['files']] == [False, True, True, True]
    st = os.stat(dest / 'pki' / 'node-key.pem')
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_ino == inode
    assert tree(dest) == installed


def test_playbook_without_pipelining_relative_and_repeated_src(tmp_path, sources):
    files, data, dest = sources
    play = Playbook(tmp_path, pipelining=False)
    # Relative sources are looked up like copy's (here: next to the playbook, in files/).
    os.rename(str(tmp_path / 'src'), str(tmp_path / 'files'))
    for item in files:
        item['src'] = os.path.basename(item['src'])
    # A source for several destinations (transferred once, installed twice).
    files.append(dict(files[0], dest=str(dest / 'other' / 'ca.pem'), mode='0444'))
    files.append(dict(files[3], dest=str(dest / 'other' / 'kubelet')))
    result = play.run(files)
    assert result['changed'] and result['files'][0]['src'] == str(tmp_path / 'files' / 'ca.pem')
    assert tree(dest) == {
        'pki/ca.pem': (0o644, data['ca.pem']),
        'pki/node-key.pem': (0o600, data['node-key.pem']),
        'kubeconfig': (0o640, data['kubeconfig']),
        'bin/kubelet': (0o755, data['kubelet']),
        'other/ca.pem': (0o444, data['ca.pem']),
        'other/kubelet': (0o755, data['kubelet']),
    }
    assert not play.run(files)['changed']


def test_playbook_errors_name_the_item(tmp_path, sources):
    files, dest = sources[0], sources[2]
    play = Playbook(tmp_path)
    files[2]['src'] = str(tmp_path / 'src' / 'missing')
    play.run(files, expect_rc=2)
    assert f"files[2] (src={files[2]['src']}, dest={files[2]['dest']}): src not found on the controller" \
        in play.output
    files[2]['src'] = files[1]['src']
    files[2]['sha256'] = 'a' * 64
    play.run(files, expect_rc=2)
    assert 'sha256' in play.output and 'Unsupported parameters' in play.output
    del files[2]['sha256']
    files[3]['mode'] = 'u=rwx'
    play.run(files, expect_rc=2)
    assert 'files[3]' in play.output and 'mode must be an octal string' in play.output
    assert not dest.exists()
    # An unknown owner fails, except in check mode (an earlier task would have created it).
    files[3]['mode'] = '0755'
    files[0]['owner'] = 'no-such-user-hardway'
    result = play.run(files, expect_rc=2)
    assert result['msg'] == f"files[0] ({files[0]['dest']}): no such user on the host: no-such-user-hardway"
    result = play.run(files, '--check')
    assert result['changed'] and 'no such user on the host' in play.output
    assert not dest.exists()


def test_playbook_content_directories_and_text_diff(tmp_path):
    play = Playbook(tmp_path)
    owner, group = I.user_name(os.getuid()), I.group_name(os.getgid())
    dest = tmp_path / 'dest'
    directories = [{'path': str(dest / 'state'), 'mode': '0700', 'owner': owner, 'group': group}]
    files = [
        {'content': 'address: 10.0.0.1\nport: 6443\n', 'dest': str(dest / 'etc' / 'config.yaml'), 'mode': '0644'},
        {'content': 'key: SECRET-MATERIAL\n', 'dest': str(dest / 'state' / 'key.yaml'), 'mode': '0600',
         'diff': False},
        {'content': 'address: 10.0.0.1\nport: 6443\n', 'dest': str(dest / 'etc' / 'copy.yaml'), 'mode': '0640'},
    ]
    for item in files:
        item.update(owner=owner, group=group)

    result = play.run(files, '--check', '--diff', directories=directories)
    assert result['changed'] and result['directories'][0]['reason'] == 'missing' and not dest.exists()
    result = play.run(files, '--diff', directories=directories)
    assert result['changed'] and all(f['changed'] for f in result['files']) and result['files'][0]['src'] is None
    assert tree(dest) == {
        'etc/config.yaml': (0o644, b'address: 10.0.0.1\nport: 6443\n'),
        'state/key.yaml': (0o600, b'key: SECRET-MATERIAL\n'),
        'etc/copy.yaml': (0o640, b'address: 10.0.0.1\nport: 6443\n'),
    }
    assert stat.S_IMODE(os.stat(dest / 'state').st_mode) == 0o700
    assert '+port: 6443' in play.output  # a new file given as content shows in the diff ...
    assert 'SECRET-MATERIAL' not in play.output  # ... unless its item says diff: false
    assert not play.run(files, '--diff', directories=directories)['changed']

    # A changed content shows as a text diff; a directory's mode is repaired.
    files[0]['content'] = 'address: 10.0.0.2\nport: 6443\n'
    files[1]['content'] = 'key: OTHER-SECRET\n'
    os.chmod(dest / 'state', 0o755)
    result = play.run(files, '--diff', directories=directories)
    assert [f['changed'] for f in result['files']] == [True, True, False]
    assert result['directories'][0]['reasons'] == ['mode']
    assert '-address: 10.0.0.1' in play.output and '+address: 10.0.0.2' in play.output
    assert 'SECRET' not in play.output
    assert (dest / 'etc' / 'config.yaml').read_text() == 'address: 10.0.0.2\nport: 6443\n'
    assert stat.S_IMODE(os.stat(dest / 'state').st_mode) == 0o700

    # src and content are exclusive, and one of them is needed.
    files[0]['src'] = str(dest / 'etc' / 'copy.yaml')
    play.run(files, expect_rc=2)
    assert 'mutually exclusive' in play.output
    del files[0]['src'], files[0]['content']
    play.run(files, expect_rc=2)
    assert 'one of the following is required' in play.output
