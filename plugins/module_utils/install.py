# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""The logic behind hardway.kubernetes.install_files.

Used on both sides: the action plugin on the controller hashes the sources
(:func:`source_sha256`, with a sidecar cache for big files) and bundles small
files (:func:`pack_bundle`); the module on the host compares the destinations
(:func:`inspect_file`) and installs or fixes them (:func:`unpack_bundle`,
:func:`install_file`, :func:`fix_attributes`). Standard library only, and
Python 3.8 syntax, since the module part runs on the managed hosts.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import tarfile
import time

from ansible_collections.hardway.kubernetes.plugins.module_utils.files import parse_mode, write_atomic

CHUNK = 1024 * 1024
# Sources bigger than this get their digest cached in a sidecar file.
SIDECAR_MIN_SIZE = 1024 * 1024
SIDECAR_SUFFIX = '.sha256cache'
# A file modified this recently may still change within the same mtime tick:
# its digest is not cached (the "racy git" problem).
RACY_NS = 2 * 10 ** 9
# Changed files up to this size travel together in one tar archive.
BUNDLE_MAX_SIZE = 1024 * 1024
# Where the module keeps the digests of big files it installed or hashed on a host.
DIGEST_CACHE = '/var/cache/hardway/install_files-digests.json'
# The current content of a file given as text is returned for a diff up to this size.
TEXT_DIFF_MAX_SIZE = 256 * 1024
DIR_MODE = 0o755
SHA256_RE = re.compile(r'^[0-9a-f]{64}$')

# Why a file changes, in the order they are reported ('owner' covers the group too).
REASONS = ('missing', 'content', 'mode', 'owner')
UP_TO_DATE = 'up to date'


class InstallError(Exception):
    pass


# ---------------------------------------------------------------- hashing


def sha256_file(path_or_handle):
    """Hex sha256 of a file, given as a path or a binary file object (read from where it is)."""
    if hasattr(path_or_handle, 'read'):
        return _sha256_handle(path_or_handle)
    with open(path_or_handle, 'rb') as handle:
        return _sha256_handle(handle)


def _sha256_handle(handle):
    digest = hashlib.sha256()
    while True:
        chunk = handle.read(CHUNK)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


def _read_sidecar(sidecar, st):
    """The digest cached in ``sidecar`` if it was recorded for a file with ``st``'s mtime and size."""
    try:
        with open(sidecar) as handle:
            fields = handle.read(200).split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) == 3 and fields[0] == str(st.st_mtime_ns) and fields[1] == str(st.st_size) \
            and SHA256_RE.match(fields[2]):
        return fields[2]
    return None


def source_sha256(path, now_ns=None):
    """sha256 of the controller file ``path``, through ``<path>.sha256cache`` for files over 1 MiB.

    The sidecar holds ``<mtime_ns> <size> <hexdigest>`` and is trusted only
    while the file's mtime and size match. It is written atomically; a file
    modified less than two seconds ago is hashed but not cached, and a
    sidecar that cannot be written is simply skipped. Concurrent callers (one
    Ansible worker per host) serialise on a lock on the source, so a big file
    is hashed once, not once per host. Raises ``OSError`` (missing,
    unreadable) or :class:`InstallError` (not a regular file).
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise InstallError('%s is not a regular file' % path)
    if st.st_size <= SIDECAR_MIN_SIZE:
        return sha256_file(path)
    sidecar = path + SIDECAR_SUFFIX
    cached = _read_sidecar(sidecar, st)
    if cached:
        return cached
    with open(path, 'rb') as handle:
        _lock(handle)
        st = os.fstat(handle.fileno())
        cached = _read_sidecar(sidecar, st)  # another worker may have hashed it meanwhile
        if cached:
            return cached
        digest = sha256_file(handle)
        after = os.fstat(handle.fileno())
        now_ns = time.time_ns() if now_ns is None else now_ns
        if (after.st_mtime_ns, after.st_size) == (st.st_mtime_ns, st.st_size) \
                and now_ns - st.st_mtime_ns >= RACY_NS:
            try:
                write_atomic(sidecar, ('%d %d %s\n' % (st.st_mtime_ns, st.st_size, digest)).encode(), 0o644)
            except OSError:
                pass  # a read-only cache: hash again next time
        return digest


def _lock(handle):
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except (ImportError, OSError):
        pass  # no locking there (some network file systems): at worst hashed twice
    # released when the handle is closed


class HashingReader:
    """Wraps a binary file object and hashes what is read through it (``digest``)."""

    def __init__(self, handle):
        self._handle = handle
        self.digest = hashlib.sha256()

    def read(self, size=-1):
        data = self._handle.read(size)
        if data:
            self.digest.update(data)
        else:
            self.at_end()
        return data

    def at_end(self):
        pass


class VerifyingReader(HashingReader):
    """Wraps a binary file object; at its end, raises InstallError unless the sha256 matches.

    Handed to :func:`write_atomic`, a mismatch aborts the write before the
    rename, so a corrupted transfer never replaces the destination.
    """

    def __init__(self, handle, expected, name, what='the transferred copy'):
        super().__init__(handle)
        self._expected = expected
        self._name = name
        self._what = what

    def at_end(self):
        if self.digest.hexdigest() != self._expected:
            raise InstallError('%s: %s has sha256 %s, expected %s'
                               % (self._name, self._what, self.digest.hexdigest(), self._expected))


# ---------------------------------------------------------------- options


def _path_and_mode(label, option, path, mode, seen, index, other):
    """Check one item's absolute path (unique among ``seen``) and mode; returns them normalised."""
    if not os.path.isabs(path):
        raise InstallError('%s: %s must be an absolute path' % (label, option))
    path = os.path.normpath(path)
    if path in seen:
        raise InstallError('%s: %s is also %s[%d]' % (label, option, other, seen[path]))
    seen[path] = index
    try:
        return path, parse_mode(mode, option='mode')
    except ValueError as exc:
        raise InstallError('%s: %s' % (label, exc)) from None


def directory_options(path_type):
    """The suboptions of ``directories``, shared by the action plugin (path_type str) and the module (path)."""
    return {
        'path': {'type': path_type, 'required': True},
        'mode': {'type': 'raw', 'required': True},
        'owner': {'type': 'str', 'default': 'root'},
        'group': {'type': 'str', 'default': 'root'},
    }


def normalize_files(files, require_sha256=True):
    """Validate the module's ``files`` and return them with ``mode`` as an int.

    Each item gets ``index`` and ``label`` (``files[<i>] (<dest>)``, used in messages).
    """
    seen = {}
    result = []
    for index, item in enumerate(files):
        dest = item.get('dest') or ''
        label = 'files[%d] (%s)' % (index, dest or 'no dest')
        if dest.endswith('/'):
            raise InstallError('%s: dest must name a file, not a directory' % label)
        dest, mode = _path_and_mode(label, 'dest', dest, item.get('mode'), seen, index, 'the destination of files')
        sha256 = (item.get('sha256') or '').lower()
        if sha256 and not SHA256_RE.match(sha256):
            raise InstallError('%s: sha256 must be 64 hexadecimal digits' % label)
        url = item.get('url')
        url_sha256 = (item.get('url_sha256') or '').lower()
        member = item.get('member') or None
        if url:
            if not SHA256_RE.match(url_sha256):
                raise InstallError('%s: url needs url_sha256, 64 hexadecimal digits' % label)
            if item.get('src') or item.get('tmp_src'):
                raise InstallError('%s: url excludes src and tmp_src' % label)
            if member and (member.startswith('/') or '..' in member.split('/')):
                raise InstallError('%s: member must be a relative path inside the archive' % label)
            if not member:
                sha256 = url_sha256  # the download is the file itself
        elif member or url_sha256:
            raise InstallError('%s: member and url_sha256 go with url' % label)
        if require_sha256 and not sha256 and not url:
            raise InstallError('%s: sha256 is missing. This module runs through its action plugin '
                               '(hardway.kubernetes.install_files), which computes it from src' % label)
        result.append({
            'index': index,
            'label': label,
            'src': item.get('src'),
            'dest': dest,
            'sha256': sha256,
            'mode': mode,
            'owner': item.get('owner') or 'root',
            'group': item.get('group') or 'root',
            'tmp_src': item.get('tmp_src'),
            'text_diff': bool(item.get('text_diff')),
            'url': url or None,
            'url_sha256': url_sha256 if url else None,
            'member': member if url else None,
            'fetch': bool(item.get('fetch')),
        })
    return result


def normalize_directories(directories):
    """Validate the module's ``directories``; each gets ``index``, ``label`` and ``mode`` as an int."""
    seen = {}
    result = []
    for index, item in enumerate(directories or []):
        path = item.get('path') or ''
        label = 'directories[%d] (%s)' % (index, path or 'no path')
        path, mode = _path_and_mode(label, 'path', path, item.get('mode'), seen, index, 'directories')
        result.append({'index': index, 'label': label, 'path': path, 'mode': mode,
                       'owner': item.get('owner') or 'root', 'group': item.get('group') or 'root'})
    return result


def format_mode(mode):
    return None if mode is None else '%04o' % mode


def lookup_user(name):
    """uid of user ``name`` (a number that is no user name is taken as a uid); None if unknown."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return int(name) if name.isdigit() else None


def lookup_group(name):
    """gid of group ``name`` (a number that is no group name is taken as a gid); None if unknown."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return int(name) if name.isdigit() else None


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# ---------------------------------------------------------------- on the host


class DigestCache:
    """Digests of big files on the host, trusted while the file's inode, size, mtime and ctime are unchanged.

    Hashing every installed binary on every run costs seconds of CPU per
    host. The cache maps a destination to ``[inode, size, mtime_ns,
    ctime_ns, sha256]``. Any write to the file changes its mtime and ctime,
    a replacement its inode, and ctime cannot be set back by a user, so a
    matching entry means the content is the one hashed. Only files bigger
    than 1 MiB are kept. A missing, unreadable or corrupt cache is simply
    empty; ``path`` None disables it.
    """

    def __init__(self, path):
        self.path = path
        self.entries = {}
        # Digests of archive members, by "<archive sha256>/<member>" (see module_utils/downloads.py).
        self.members = {}
        self.dirty = False
        if not path:
            return
        try:
            with open(path) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and isinstance(data.get('files'), dict):
            self.entries = data['files']
        if isinstance(data, dict) and isinstance(data.get('members'), dict):
            self.members = {k: v for k, v in data['members'].items()
                            if isinstance(v, str) and SHA256_RE.match(v)}

    def member(self, key):
        return self.members.get(key)

    def put_member(self, key, digest):
        """Keep the content digest of an archive member (kept also when caching is off for files)."""
        if self.members.get(key) != digest:
            self.members[key] = digest
            self.dirty = True

    @staticmethod
    def _key(st):
        return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def get(self, dest, st):
        entry = self.entries.get(dest)
        if self.path and isinstance(entry, list) and len(entry) == 5 and entry[:4] == self._key(st) \
                and isinstance(entry[4], str) and SHA256_RE.match(entry[4]):
            return entry[4]
        return None

    def put(self, dest, st, digest, written=False, now_ns=None):
        """Keep ``digest`` for ``dest`` as found in ``st``.

        A digest read from a file changed less than two seconds ago is not
        kept: another write within the same timestamp tick would leave its
        times as they are (the sidecar of :func:`source_sha256` has the same
        rule). ``written`` says the module has just written the file itself,
        verified against the digest, so that it is kept at once.
        """
        if not self.path:
            return
        now_ns = time.time_ns() if now_ns is None else now_ns
        if not written and now_ns - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
            return
        if st.st_size <= SIDECAR_MIN_SIZE:
            if self.entries.pop(dest, None) is not None:
                self.dirty = True
            return
        entry = self._key(st) + [digest]
        if self.entries.get(dest) != entry:
            self.entries[dest] = entry
            self.dirty = True

    def save(self):
        """Write the cache if it changed; a failure only costs hashing again next time."""
        if not (self.path and self.dirty):
            return
        try:
            make_parents(self.path)
            data = json.dumps({'files': self.entries, 'members': self.members}, sort_keys=True).encode()
            write_atomic(self.path, data, 0o644)
            self.dirty = False
        except (OSError, InstallError):
            pass


def describe(st):
    """What is at a destination now: ``{state, mode, owner, group}`` (state ``absent``, ``file``, ...)."""
    if st is None:
        return {'state': 'absent', 'mode': None, 'owner': None, 'group': None}
    if stat.S_ISREG(st.st_mode):
        state = 'file'
    elif stat.S_ISLNK(st.st_mode):
        state = 'symlink'
    elif stat.S_ISDIR(st.st_mode):
        state = 'directory'
    else:
        state = 'special file'
    return {'state': state, 'mode': format_mode(stat.S_IMODE(st.st_mode)),
            'owner': user_name(st.st_uid), 'group': group_name(st.st_gid)}


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a parent is a file: reported as missing, and the install names the culprit


def _attribute_reasons(st, mode, uid, gid):
    """What differs in mode and ownership between ``st`` and the wanted values: ``mode``, ``owner``."""
    reasons = []
    if stat.S_IMODE(st.st_mode) != mode:
        reasons.append('mode')
    if st.st_uid != uid or st.st_gid != gid:
        reasons.append('owner')
    return reasons


def _set_attributes(path, st, mode, uid, gid, chmod_anyway=False):
    """Give ``path`` (found as ``st``) its owner, group and mode; returns what was fixed (``owner``, ``mode``).

    chown comes first, since it may clear set-id bits that the chmod then sets.
    """
    fixed = []
    if st.st_uid != uid or st.st_gid != gid:
        os.chown(path, uid, gid)
        fixed.append('owner')
    if stat.S_IMODE(st.st_mode) != mode or fixed or chmod_anyway:
        os.chmod(path, mode)
        if stat.S_IMODE(st.st_mode) != mode:
            fixed.append('mode')
    return fixed


def inspect_file(spec, uid, gid, cache=None):
    """Compare one destination with ``spec``; returns ``{dest, reasons, current}``.

    ``reasons`` is a sub-list of :data:`REASONS` (empty when up to date). A
    regular file's content is compared by sha256; anything else but a
    directory (a symlink, a fifo) counts as ``content`` since it will be
    replaced by a file. ``uid``/``gid`` None (an unknown user or group) count
    as an owner difference.
    """
    dest = spec['dest']
    st = _lstat(dest)
    current = describe(st)
    if st is None:
        return {'dest': dest, 'reasons': ['missing'], 'current': current}
    if stat.S_ISDIR(st.st_mode):
        raise InstallError('%s: dest is a directory' % spec['label'])
    reasons = []
    if not stat.S_ISREG(st.st_mode):
        reasons.append('content')
    else:
        try:
            digest = cache.get(dest, st) if cache else None
            if digest is None:
                digest = sha256_file(dest)
                if cache:
                    cache.put(dest, st, digest)
            if digest != spec['sha256']:
                reasons.append('content')
        except OSError as exc:
            raise InstallError('%s: cannot read dest: %s' % (spec['label'], exc.strerror or exc)) from None
        reasons.extend(_attribute_reasons(st, spec['mode'], uid, gid))
    result = {'dest': dest, 'reasons': reasons, 'current': current}
    if spec.get('text_diff') and 'content' in reasons:
        text = current_text(dest)
        if text is not None:
            result['current_text'] = text
    return result


def current_text(path):
    """The content of the regular file ``path`` as text, for a diff; None if too big or not UTF-8."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(TEXT_DIFF_MAX_SIZE + 1)
    except OSError:
        return None
    if len(data) > TEXT_DIFF_MAX_SIZE or b'\0' in data:
        return None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        return None


def inspect_directory(spec, uid, gid):
    """Compare one wanted directory with what is there; returns ``{path, reasons, current}``."""
    path = spec['path']
    st = _lstat(path)
    current = describe(st)
    if st is None:
        return {'path': path, 'reasons': ['missing'], 'current': current}
    if not stat.S_ISDIR(st.st_mode):
        raise InstallError('%s: %s is a %s, not a directory' % (spec['label'], path, current['state']))
    return {'path': path, 'reasons': _attribute_reasons(st, spec['mode'], uid, gid), 'current': current}


def ensure_directory(spec, uid, gid):
    """Create the directory (missing parents get mode 0755) or fix it.

    Returns ``['created']``, or what was fixed on an existing one (``owner``, ``mode``).
    """
    path = spec['path']
    created = False
    if _lstat(path) is None:
        make_parents(path)
        try:
            os.mkdir(path, spec['mode'])
            created = True
        except FileExistsError:
            pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise InstallError('%s: %s is a %s, not a directory' % (spec['label'], path, describe(st)['state']))
    # a new directory gets its mode whatever the umask
    fixed = _set_attributes(path, st, spec['mode'], uid, gid, chmod_anyway=created)
    return ['created'] if created else fixed


def make_parents(path):
    """Create the missing parent directories of ``path``, mode 0755; returns those created."""
    missing = []
    parent = os.path.dirname(path)
    while not os.path.isdir(parent):
        # isdir again: another thread (artifact_fetch downloads in parallel) may have just made it
        if os.path.lexists(parent) and not os.path.isdir(parent):
            raise InstallError('%s exists and is not a directory' % parent)
        missing.append(parent)
        parent = os.path.dirname(parent)
    created = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        os.chmod(directory, DIR_MODE)  # whatever the umask
        created.append(directory)
    return created


def unpack_bundle(bundle):
    """Extract the tar archive ``bundle`` (plain files, no directories) next to itself, then delete it."""
    directory = os.path.dirname(bundle)
    try:
        with tarfile.open(bundle, 'r:') as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or '/' in name or name.startswith('.') or not name:
                    raise InstallError('unexpected member %r in %s' % (name, bundle))
                source = tar.extractfile(member)
                with open(os.path.join(directory, name), 'xb') as out:
                    shutil.copyfileobj(source, out, CHUNK)
    except (tarfile.TarError, EOFError) as exc:
        raise InstallError('%s is no valid archive: %s' % (bundle, exc)) from None
    os.unlink(bundle)


def install_file(spec, uid, gid, consume=True, cache=None):
    """Move the transferred ``tmp_src`` into place, verified, atomically; returns created directories.

    The copy goes to a temporary file in the destination's directory (same
    file system) that is renamed over ``dest`` only once the sha256 matched
    and owner, group and mode are set. With ``consume`` (when no later item
    uses the same ``tmp_src``) the transferred copy is then deleted.
    """
    created = make_parents(spec['dest'])
    with open(spec['tmp_src'], 'rb') as handle:
        write_atomic(spec['dest'], VerifyingReader(handle, spec['sha256'], spec['label']), spec['mode'],
                     uid=uid, gid=gid)
    if cache:
        cache.put(spec['dest'], os.lstat(spec['dest']), spec['sha256'], written=True)  # verified while written
    if consume:
        try:
            os.unlink(spec['tmp_src'])  # free the space now, not at the end of the task
        except OSError:
            pass
    return created


def fix_attributes(spec, uid, gid, cache=None):
    """Set owner, group and mode of an existing file; returns what changed (``owner``, ``mode``).

    A digest cached for the file stays valid: only its change time moves.
    """
    st = _lstat(spec['dest'])
    if st is None or not stat.S_ISREG(st.st_mode):
        raise InstallError('%s: dest is %s now, not a file' % (spec['label'], describe(st)['state']))
    digest = cache.get(spec['dest'], st) if cache else None
    fixed = _set_attributes(spec['dest'], st, spec['mode'], uid, gid)
    if digest and fixed:  # the content is the one cached; only the change time moved
        cache.put(spec['dest'], os.lstat(spec['dest']), digest, written=True)
    return fixed


def describe_error(exc):
    """A short text for an OSError, naming the file involved."""
    if isinstance(exc, OSError):
        text = exc.strerror or errno.errorcode.get(exc.errno, str(exc))
        return '%s: %s' % (exc.filename, text) if exc.filename else text
    return str(exc)


def describe_fetch_error(exc):
    """A short text for an exception raised while reading a URL or writing a file."""
    reason = getattr(exc, 'reason', None)  # URLError wraps the real error
    if reason is not None and not getattr(exc, 'code', None):
        exc = reason
    if isinstance(exc, OSError) and not getattr(exc, 'code', None):
        return describe_error(exc)
    return str(exc) or exc.__class__.__name__


# ---------------------------------------------------------------- on the controller


def pack_bundle(bundle, members):
    """Write the tar archive ``bundle`` holding ``members``: ``(arcname, local path)`` pairs.

    Each file is read through an open handle, so a symbolic link source is
    stored as the file it points to.
    """
    with tarfile.open(bundle, 'w', format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in members:
            with open(path, 'rb') as handle:
                info = tar.gettarinfo(arcname=arcname, fileobj=handle)
                info.uid = info.gid = 0
                info.uname = info.gname = ''
                info.mode = 0o600
                tar.addfile(info, handle)


def summary_line(dest, info):
    """One line of the diff: where ``info`` is ``{state, mode, owner, group}``."""
    if info['state'] == 'absent':
        return '%s: absent' % dest
    return '%s: %s, mode %s, owner %s:%s' % (dest, info['state'], info['mode'], info['owner'], info['group'])
