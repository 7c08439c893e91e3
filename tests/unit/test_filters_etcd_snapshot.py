"""The etcd snapshot filters in plugins/filter/etcd_snapshot.py (backup names, pruning, checksum files,
what a restore loses)."""

from __future__ import annotations

import hashlib

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import etcd_snapshot as E

D = '/srv/inv/.hardway/kubernetes/backups'


def snap(stamp):
    return f'{D}/etcd-snapshot-{stamp}.db'


def test_registered():
    assert set(E.FilterModule().filters()) == {'etcd_snapshot_name', 'etcd_snapshot_prune', 'etcd_snapshot_digest',
                                               'etcd_restore_summary'}


def test_name_is_sortable_and_matches_the_pruning_pattern():
    names = [E.etcd_snapshot_name(s) for s in ('20261130T184700Z', '20261130T184701Z', '20270101T000000Z')]
    assert names[0] == 'etcd-snapshot-20261130T184700Z.db'
    assert names == sorted(names)
    assert all(E.SNAPSHOT_RE.match(n) for n in names)


@pytest.mark.parametrize('stamp', ['2026-11-30', '20261130T184700', '20261332T184700Z', '', None, 20261130])
def test_name_refuses_what_is_no_utc_stamp(stamp):
    with pytest.raises(AnsibleFilterError, match='is not a UTC time stamp'):
        E.etcd_snapshot_name(stamp)


def test_prune_keeps_the_newest_and_deletes_older_with_their_checksums():
    stamps = ['20261101T000000Z', '20261102T000000Z', '20261103T000000Z', '20261104T000000Z']
    files = [snap(s) for s in stamps] + [snap(s) + '.sha256' for s in stamps[:3]]
    assert E.etcd_snapshot_prune(files, 2) == sorted([snap(stamps[0]), snap(stamps[0]) + '.sha256',
                                                      snap(stamps[1]), snap(stamps[1]) + '.sha256'])
    assert E.etcd_snapshot_prune(files, 4) == []
    assert E.etcd_snapshot_prune(files, 7) == []
    assert E.etcd_snapshot_prune(files, 1) == sorted(set(files) - {snap(stamps[3])})


def test_prune_never_touches_other_files():
    others = [D + '/my-etcd.db', D + '/etcd-snapshot-latest.db', D + '/etcd-snapshot-20261101T000000Z.db.bak',
              D + '/etcd-snapshot-20261101T000000Z.db.part', D + '/notes.txt',
              D + '/etcd-snapshot-20261101T000000Z.db.sha256']  # a checksum without its snapshot stays
    files = others + [snap('20261102T000000Z'), snap('20261103T000000Z')]
    assert E.etcd_snapshot_prune(files, 1) == [snap('20261102T000000Z')]


def test_prune_takes_the_files_of_find():
    files = [{'path': snap('20261101T000000Z'), 'size': 1}, {'path': snap('20261102T000000Z'), 'size': 1}]
    assert E.etcd_snapshot_prune(files, 1) == [snap('20261101T000000Z')]


@pytest.mark.parametrize('paths, keep, message', [
    ('x', 1, 'expects a list of paths'),
    ([snap('20261101T000000Z')], 0, 'keep must be at least 1'),
    ([snap('20261101T000000Z')], 'seven', 'keep must be an integer'),
    ([snap('20261101T000000Z')], True, 'keep must be an integer'),
    ([None], 1, 'is not a path'),
])
def test_prune_errors(paths, keep, message):
    with pytest.raises(AnsibleFilterError, match=message):
        E.etcd_snapshot_prune(paths, keep)


def test_digest_reads_sha256sum_files():
    digest = hashlib.sha256(b'x').hexdigest()
    path = snap('20261101T000000Z')
    assert E.etcd_snapshot_digest(f'{digest}  etcd-snapshot-20261101T000000Z.db\n', path) == digest
    assert E.etcd_snapshot_digest(f'{digest.upper()} *{path}\n', path) == digest  # binary mode, full path
    assert E.etcd_snapshot_digest(digest + '\n', path) == digest


@pytest.mark.parametrize('text, message', [
    ('', 'does not hold a sha256 checksum'),
    ('abc  etcd-snapshot-20261101T000000Z.db', 'does not hold a sha256 checksum'),
    ('0' * 64 + '  a\n' + '1' * 64 + '  b\n', 'does not hold a sha256 checksum'),
    ('0' * 64 + '  other.db', 'is the checksum of another file .other.db.'),
    (None, 'expects the text of'),
])
def test_digest_errors_name_the_file(text, message):
    path = snap('20261101T000000Z')
    with pytest.raises(AnsibleFilterError, match=message) as err:
        E.etcd_snapshot_digest(text, path)
    assert path in str(err.value)


STATUS = {'hash': 1, 'revision': 488, 'totalKey': 308, 'totalSize': 700416, 'version': '3.6.0'}
CURRENT = {'header': {'cluster_id': 11447593031317426918, 'revision': 581}, 'count': 311, 'more': True}


def test_summary_names_the_time_revisions_and_keys():
    text = E.etcd_restore_summary(snap('20261130T184950Z'), STATUS, CURRENT)
    assert '(taken 2026-11-30 18:49:50 UTC) is at etcd revision 488 with 308 keys' in text
    assert 'etcd is now at revision 581 with 311 keys (93 revisions after the snapshot)' in text
    assert 'loses every change made in the cluster after the snapshot was taken' in text


def test_summary_when_etcd_does_not_answer_and_the_name_has_no_time():
    text = E.etcd_restore_summary('/tmp/copy.db', STATUS, None, mtime=1796064590.5)
    assert '/tmp/copy.db (file written 2026-11-30 18:49:50 UTC)' in text
    assert 'etcd does not answer now' in text
    text = E.etcd_restore_summary('/tmp/copy.db', STATUS, {})
    assert '/tmp/copy.db is at etcd revision 488' in text and 'after the snapshot:' in text


def test_summary_of_a_cluster_older_than_the_snapshot():
    text = E.etcd_restore_summary(snap('20261130T184950Z'), STATUS, {'header': {'revision': 12}, 'count': 3})
    assert 'an older revision than the snapshot' in text


@pytest.mark.parametrize('args, message', [
    (('', STATUS), 'the snapshot must be a path'),
    ((snap('20261130T184950Z'), {}), 'status must be etcdutl'),
    ((snap('20261130T184950Z'), {'revision': 'x'}), 'status.revision must be an integer'),
    ((snap('20261130T184950Z'), STATUS, {'header': {'revision': 'y'}}), 'current.header.revision'),
])
def test_summary_errors(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        E.etcd_restore_summary(*args)
