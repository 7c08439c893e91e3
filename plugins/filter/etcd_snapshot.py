# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""etcd snapshots on the controller: their names, which old ones to delete, their checksum files, and
what a restore would lose.

- ``etcd_snapshot_name(stamp)``: the file name of a snapshot taken at ``stamp`` (UTC, ``20261130T184700Z``).
- ``etcd_snapshot_prune(paths, keep)``: of the files in the backup directory, the snapshots (and their
  ``.sha256`` files) beyond the newest ``keep``; files of any other name are never chosen.
- ``etcd_snapshot_digest(text, path)``: the digest a ``.sha256`` file (``sha256sum`` format) holds.
- ``etcd_restore_summary(snapshot, status, current, mtime)``: what a restore from ``snapshot`` would undo,
  as the sentences the restore playbook prints (and refuses with, without confirmation).

The etcd role's backup and restore tasks (roles/etcd/tasks/backup.yml, restore*.yml) use them; the
backup playbook is the only writer of names that etcd_snapshot_prune deletes.
"""

from __future__ import annotations

import datetime
import os
import re

from ansible.errors import AnsibleFilterError

PREFIX = 'etcd-snapshot-'
SUFFIX = '.db'
CHECKSUM_SUFFIX = '.sha256'
STAMP_FORMAT = '%Y%m%dT%H%M%SZ'
# A snapshot the backup playbook made: the UTC time it was taken, sortable as text.
SNAPSHOT_RE = re.compile(r'^etcd-snapshot-(\d{8}T\d{6}Z)\.db$')
_DIGEST_RE = re.compile(r'^([0-9a-fA-F]{64})(?:\s+\*?(\S.*))?$')


def _stamp_time(stamp):
    """The UTC datetime of a stamp, or None when it is not one."""
    try:
        return datetime.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def _int(value, what, filter_name):
    if isinstance(value, bool):
        raise AnsibleFilterError('hardway.kubernetes.%s: %s must be an integer, got %r' % (filter_name, what, value))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError('hardway.kubernetes.%s: %s must be an integer, got %r'
                                 % (filter_name, what, value)) from None


def etcd_snapshot_name(stamp):
    """``etcd-snapshot-<stamp>.db`` for a UTC stamp ``YYYYmmddTHHMMSSZ`` (sortable: newer names sort later)."""
    if not isinstance(stamp, str) or _stamp_time(stamp) is None:
        raise AnsibleFilterError('hardway.kubernetes.etcd_snapshot_name: %r is not a UTC time stamp like '
                                 '20261130T184700Z' % (stamp,))
    return PREFIX + stamp + SUFFIX


def etcd_snapshot_prune(paths, keep):
    """The files to delete so that only the newest ``keep`` snapshots stay: each older snapshot and its
    ``.sha256`` file (when listed in ``paths``). Only names etcd_snapshot_name makes are considered, and a
    ``.sha256`` file goes only with its snapshot. ``paths``: paths, or the files ansible.builtin.find
    returns. Sorted by path."""
    if not isinstance(paths, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.etcd_snapshot_prune expects a list of paths, got %s'
                                 % type(paths).__name__)
    keep = _int(keep, 'keep', 'etcd_snapshot_prune')
    if keep < 1:
        raise AnsibleFilterError('hardway.kubernetes.etcd_snapshot_prune: keep must be at least 1, got %d' % keep)
    listed = set()
    stamps = {}  # stamp -> snapshot path
    for path in paths:
        if isinstance(path, dict):  # the files of ansible.builtin.find
            path = path.get('path')
        if not isinstance(path, str) or not path:
            raise AnsibleFilterError('hardway.kubernetes.etcd_snapshot_prune: %r is not a path' % (path,))
        listed.add(path)
        match = SNAPSHOT_RE.match(os.path.basename(path))
        if match:
            stamps[match.group(1)] = path
    kept = set(sorted(stamps, reverse=True)[:keep])
    out = set()
    for stamp, path in stamps.items():
        if stamp not in kept:
            out.add(path)
            if path + CHECKSUM_SUFFIX in listed:
                out.add(path + CHECKSUM_SUFFIX)
    return sorted(out)


def etcd_snapshot_digest(text, path='the snapshot'):
    """The sha256 (lower case) a checksum file holds: ``<64 hex digits>`` with an optional file name after
    it, as ``sha256sum`` writes it. ``path`` names the snapshot in the error."""
    if not isinstance(text, str):
        raise AnsibleFilterError('hardway.kubernetes.etcd_snapshot_digest: expects the text of %s%s, got %s'
                                 % (path, CHECKSUM_SUFFIX, type(text).__name__))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    match = _DIGEST_RE.match(lines[0]) if len(lines) == 1 else None
    if not match:
        raise AnsibleFilterError('%s%s does not hold a sha256 checksum ("<64 hex digits>  <file name>", one '
                                 'line): %r' % (path, CHECKSUM_SUFFIX, text[:200]))
    name = match.group(2)
    if name and os.path.basename(name) != os.path.basename(path):
        raise AnsibleFilterError('%s%s is the checksum of another file (%s), not of %s'
                                 % (path, CHECKSUM_SUFFIX, name, os.path.basename(path)))
    return match.group(1).lower()


def _taken(snapshot, mtime):
    """(when, how) the snapshot was taken: from its name, else from the file's modification time."""
    match = SNAPSHOT_RE.match(os.path.basename(snapshot))
    if match:
        return _stamp_time(match.group(1)), 'taken'
    if mtime is not None:
        try:
            return datetime.datetime.fromtimestamp(float(mtime), datetime.timezone.utc), 'file written'
        except (TypeError, ValueError, OverflowError, OSError):
            pass
    return None, None


def etcd_restore_summary(snapshot, status, current=None, mtime=None):
    """What restoring ``snapshot`` undoes, in sentences.

    ``status``: etcdutl's ``snapshot status -w json`` of the snapshot (``revision``, ``totalKey``);
    ``current``: etcdctl's ``get "" --prefix --keys-only --limit=1 -w json`` answer of the running cluster
    (``header.revision``, ``count``), or None/empty when etcd does not answer; ``mtime``: the file's
    modification time (seconds), used when its name carries no time.
    """
    if not isinstance(snapshot, str) or not snapshot:
        raise AnsibleFilterError('hardway.kubernetes.etcd_restore_summary: the snapshot must be a path, got %r'
                                 % (snapshot,))
    if not isinstance(status, dict) or 'revision' not in status:
        raise AnsibleFilterError('hardway.kubernetes.etcd_restore_summary: status must be etcdutl\'s snapshot '
                                 'status (with revision and totalKey), got %r' % (status,))
    revision = _int(status['revision'], 'status.revision', 'etcd_restore_summary')
    keys = _int(status.get('totalKey', 0), 'status.totalKey', 'etcd_restore_summary')
    when, how = _taken(snapshot, mtime)
    when_text = ' (%s %s)' % (how, when.strftime('%Y-%m-%d %H:%M:%S UTC')) if when else ''
    out = ['The snapshot %s%s is at etcd revision %d with %d keys.' % (snapshot, when_text, revision, keys)]
    header = current.get('header') if isinstance(current, dict) else None
    if isinstance(header, dict) and header.get('revision') is not None:
        now_rev = _int(header['revision'], 'current.header.revision', 'etcd_restore_summary')
        now_keys = _int(current.get('count', 0), 'current.count', 'etcd_restore_summary')
        if now_rev >= revision:
            later = '%d revisions after the snapshot' % (now_rev - revision)
        else:
            later = 'an older revision than the snapshot\'s: it was restored or rebuilt since'
        out.append('etcd is now at revision %d with %d keys (%s).' % (now_rev, now_keys, later))
    else:
        out.append('etcd does not answer now, so what it holds beyond the snapshot cannot be counted.')
    out.append('Restoring loses every change made in the cluster after the snapshot%s: objects created, changed '
               'or deleted since then are as they were in the snapshot.' % (' was taken' if when else ''))
    return ' '.join(out)


class FilterModule:
    """hardway.kubernetes filters for etcd snapshots (backup and restore)."""

    def filters(self):
        return {
            'etcd_snapshot_name': etcd_snapshot_name,
            'etcd_snapshot_prune': etcd_snapshot_prune,
            'etcd_snapshot_digest': etcd_snapshot_digest,
            'etcd_restore_summary': etcd_restore_summary,
        }
