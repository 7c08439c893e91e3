# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""The lock file of hardway.kubernetes.artifact_fetch: locked and pinned digests.

The lock holds the sha256 of every artifact verified so far, by the
artifact's identity (its path below the download site or mirror, such as
``dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet``), the way go.sum does
for Go modules. The first fetch of an artifact trusts the checksum file
its site publishes; once recorded, every later fetch must match the lock.
Digests pinned by the operator take precedence over both.

The file is JSON, sorted and indented, one entry a line, so that it diffs
cleanly in the operator's repository::

    {
      "about": "...",
      "sha256": {
        "dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet": "0b0d...",
        ...
      }
    }

Standard library only.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import unquote, urlsplit

from ansible_collections.hardway.kubernetes.plugins.module_utils.files import write_atomic

DIGEST_RE = re.compile(r'^[0-9a-fA-F]{64}$')
# A lock file bigger than this is no lock file.
LOCK_MAX_SIZE = 16 * 1024 * 1024
LOCK_MODE = 0o644
# Missing parent directories of the lock file: it normally lives in the
# controller's state directory, which also holds the CA keys.
LOCK_DIR_MODE = 0o700
ABOUT = ('sha256 of every artifact hardway.kubernetes has fetched, by its path below the download site or '
         'mirror. Recorded the first time an artifact is verified against the checksum file its site '
         'publishes; every later fetch must match. Commit this file with the inventory. To accept a new '
         'digest for an artifact, remove its line or pin the digest in artifacts_checksums.')

# Where the digest an artifact must have comes from (the order is the precedence).
FROM_PIN = 'checksums'
FROM_LOCK = 'lock file'
FROM_PUBLISHED = 'checksum file'


class LockError(Exception):
    """The lock file or a pinned digest is unusable; the message says which and why."""


def default_key(url):
    """The identity of the artifact at ``url`` when none is given: host and path (no scheme, no query).

    ``https://dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet`` gives
    ``dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet``, the path of that
    file in a mirror laid out like the download sites. A ``file://`` URL
    gives its path without the leading slash.
    """
    parts = urlsplit(url)
    host = parts.netloc.rsplit('@', 1)[-1]
    if parts.scheme.lower() == 'file' and host == 'localhost':
        host = ''
    return (host + '/' + unquote(parts.path).lstrip('/')).lstrip('/')


def normalize_digests(mapping, what):
    """``{key: sha256}`` with the digests in lower case; raises LockError naming ``what`` and the key."""
    if not isinstance(mapping, dict):
        raise LockError('%s must be a mapping of artifact to sha256, got %s' % (what, type(mapping).__name__))
    out = {}
    for key, digest in mapping.items():
        if not isinstance(key, str) or not key:
            raise LockError('%s: %r is not an artifact name' % (what, key))
        if not isinstance(digest, str) or not DIGEST_RE.match(digest.strip()):
            raise LockError('%s: %s: %r is not a sha256 digest (64 hexadecimal digits)'
                            % (what, key, str(digest)[:80]))
        out[key] = digest.strip().lower()
    return out


def parse_lock(text, path):
    """The entries ``{key: sha256}`` of a lock file's text; an empty file has none. Raises LockError."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise LockError('the lock file %s is not valid JSON: %s' % (path, exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get('sha256', {}), dict):
        raise LockError('the lock file %s must be a JSON object with a "sha256" object in it' % path)
    return normalize_digests(data.get('sha256', {}), 'the lock file %s' % path)


def render_lock(entries):
    """The text of a lock file holding ``entries``: sorted, stable, one entry a line."""
    return json.dumps({'about': ABOUT, 'sha256': dict(sorted(entries.items()))},
                      indent=2, sort_keys=True, ensure_ascii=False) + '\n'


def read_lock_text(path):
    """The text of the lock file, '' when it does not exist. Raises LockError."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(LOCK_MAX_SIZE + 1)
    except FileNotFoundError:
        return ''
    except OSError as exc:
        raise LockError('cannot read the lock file %s: %s' % (path, exc.strerror or exc)) from None
    if len(data) > LOCK_MAX_SIZE:
        raise LockError('the lock file %s is bigger than %d bytes' % (path, LOCK_MAX_SIZE))
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        raise LockError('the lock file %s is not UTF-8 text' % path) from None


def read_lock(path):
    """The entries of the lock file at ``path`` ({} when it does not exist). Raises LockError."""
    return parse_lock(read_lock_text(path), path)


def expectation(key, pins, lock):
    """(sha256, where from) the artifact ``key`` must have, before its checksum file is read.

    A pinned digest comes first, then the lock; (None, FROM_PUBLISHED) means
    the published checksum decides (the artifact's first fetch).
    """
    if key in pins:
        return pins[key], FROM_PIN
    if key in lock:
        return lock[key], FROM_LOCK
    return None, FROM_PUBLISHED


def lock_mismatch(name, key, url, checksum_url, published, locked, lock_path, pins_label):
    """The message when a site publishes another digest for an artifact than the lock records."""
    return ('%s: %s (%s): sha256 mismatch: expected %s from the lock file %s, but the checksum file %s '
            'now publishes %s. Nothing was downloaded. If the new digest is right, pin it in %s or remove '
            'the line of %s from the lock file.'
            % (name, key, url, locked, lock_path, checksum_url, published, pins_label, key))


def merge(current, verified, pinned_keys):
    """The lock after recording ``verified`` ({key: sha256}) into ``current``.

    Returns (entries, added, replaced, conflicts): a new entry is added, an
    entry pinned by the operator replaces a different one, and any other
    difference (the lock changed while the artifact was being verified) is a
    conflict {key: (in the lock, verified)} that leaves the lock's entry.
    Nothing is ever removed.
    """
    entries = dict(current)
    added, replaced, conflicts = {}, {}, {}
    for key, digest in sorted(verified.items()):
        old = entries.get(key)
        if old == digest:
            continue
        if old is None:
            added[key] = digest
        elif key in pinned_keys:
            replaced[key] = digest
        else:
            conflicts[key] = (old, digest)
            continue
        entries[key] = digest
    return entries, added, replaced, conflicts


def make_lock_parents(path):
    """Create the missing parent directories of the lock file, mode 0700 (it lives with the CA keys)."""
    parent = os.path.dirname(os.path.abspath(path))
    missing = []
    while not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise LockError('cannot write the lock file %s: %s is not a directory' % (path, parent))
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, LOCK_DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, LOCK_DIR_MODE)


def update_lock(path, verified, pinned_keys, check_mode=False):
    """Record ``verified`` digests in the lock file; returns a dict describing the change.

    Under an exclusive lock on the lock file's directory (two runs sharing
    the state directory record one after the other), the file is read
    again, merged (see :func:`merge`) and, when something changed and not in
    check mode, rewritten atomically. Check mode reads only. Returns
    ``before`` and ``after`` (the texts, for a diff), ``added``,
    ``replaced``, ``conflicts`` and ``changed``. Raises LockError.
    """
    handle = None
    try:
        if not check_mode:
            make_lock_parents(path)
            handle = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
            _flock(handle)
        before = read_lock_text(path)
        entries, added, replaced, conflicts = merge(parse_lock(before, path), verified, pinned_keys)
        changed = bool(added or replaced)
        after = render_lock(entries) if changed else before
        if changed and not check_mode:
            write_atomic(path, after.encode('utf-8'), LOCK_MODE)
    except OSError as exc:
        raise LockError('cannot write the lock file %s: %s' % (path, exc.strerror or exc)) from None
    finally:
        if handle is not None:
            os.close(handle)  # releases the lock
    return {'before': before, 'after': after, 'added': added, 'replaced': replaced,
            'conflicts': conflicts, 'changed': changed}


def record_verified(path, items, results, pinned_keys, check_mode=False):
    """Record the digests of the items verified in a run (``results``, each with its key and sha256).

    Returns a dict: ``lock`` (the module's return value of that name),
    ``diff`` (the lock file's before/after, None when unchanged),
    ``errors`` (one per conflicting item, see :func:`merge`) and ``error``
    (the lock file could not be read or written, else None).
    """
    verified = {result['key']: result['sha256'] for result in results}
    error = None
    try:
        update = update_lock(path, verified, pinned_keys, check_mode)
    except LockError as exc:
        error = str(exc)
        update = {'added': {}, 'replaced': {}, 'conflicts': {}, 'changed': False}
    names = {item['key']: item['name'] for item in items}
    errors = ['%s: %s: sha256 mismatch: expected %s from the lock file %s (recorded meanwhile by another run), '
              'but this run verified %s' % (names.get(key, key), key, locked, path, digest)
              for key, (locked, digest) in sorted(update['conflicts'].items())]
    diff = None
    if update['changed']:
        diff = {'before': update['before'], 'after': update['after'], 'before_header': path, 'after_header': path}
    return {'lock': {'path': path, 'added': update['added'], 'replaced': update['replaced'],
                     'changed': update['changed']},
            'diff': diff, 'errors': errors, 'error': error}


def _flock(fd):
    try:
        import fcntl
    except ImportError:
        return  # no locking there: concurrent runs may each rewrite the file, entries merged as read
    fcntl.flock(fd, fcntl.LOCK_EX)
