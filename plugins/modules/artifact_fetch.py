#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: artifact_fetch
short_description: Download files into a local cache, verify them against locked or published checksums, unpack archives
description:
  - Keeps a local cache of downloaded files (binaries, release archives, image archives) in one
    task, where a loop of M(ansible.builtin.get_url) and M(ansible.builtin.unarchive) costs a
    module run per file and hashes every cached file again on every run.
  - Each item must have an expected sha256. It is the one pinned in O(checksums) for the item's
    O(items[].key), if any; otherwise the one recorded in the lock file O(lock_file), if any;
    otherwise (the first fetch) the one its site publishes in the checksum file at
    O(items[].checksum_url). The checksum file is read on every run unless the digest is pinned,
    and an item whose lock entry differs from the published digest fails, naming both digests,
    before anything is downloaded.
  - O(items[].dest) is kept only when its sha256 is the expected one. Otherwise the file is
    downloaded to a temporary file next to O(items[].dest), hashed while it streams in, and renamed
    over O(items[].dest) only when its sha256 matches; a mismatch fails the task, naming the file,
    both digests and where the expected one comes from, and leaves O(items[].dest) as it was.
    Missing parent directories are created with mode C(0755); downloaded files get mode C(0644).
  - With O(lock_file), the sha256 of every item verified in the run (by download or in the cache)
    is recorded there by O(items[].key), the way C(go.sum) records Go modules, so that every later
    fetch (a new cache, another controller) must match it. Entries are only ever added (or replaced
    by a digest pinned in O(checksums)), never removed; a failed item records nothing, the other
    items are recorded all the same. The file is JSON, sorted, one entry a line, meant to be
    committed with the inventory.
  - The sha256 of a cached file bigger than 1 MiB is kept in a sidecar file C(<dest>.sha256cache)
    (C(<mtime_ns> <size> <hexdigest>), the cache that M(hardway.kubernetes.install_files) uses for
    its sources), trusted while the file's modification time and size are unchanged. A run where
    nothing changed thus reads a few small files per item instead of hashing every cached file.
  - An item with O(items[].extract_dir) is a tar archive (plain or compressed, for example
    C(.tar.gz) or C(.tgz)) that is unpacked into that directory when it was downloaded in this run
    or when the directory's marker file C(.hardway-unpacked) does not hold the archive's sha256.
    The archive is unpacked into a new directory next to O(items[].extract_dir), which then
    replaces it as a whole (stale files of an earlier archive do not survive), with the marker
    written last. Members that would land outside the directory, device files and set-id bits are
    refused or dropped (the C(data) filter of Python's C(tarfile)).
  - Items are processed in parallel threads (see O(parallel)); downloads are network or disk
    bound.
  - Runs where the cache is, normally the controller (C(delegate_to=localhost), C(run_once=true)).
    Uses only the Python standard library and ansible-core's URL handling.
author:
  - hardway.kubernetes developers (@hardway)
options:
  items:
    description:
      - The files to keep in the cache.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the item, unique among O(items); the key of the item in RV(items) and the
            name used in messages.
        type: str
        required: true
      url:
        description:
          - Where to download the file from, an V(https://), V(http://) or V(file://) URL.
            Redirects are followed. The certificates of V(https://) sites are always verified, against
            the trust store of the host that runs the module.
        type: str
        required: true
      checksum_url:
        description:
          - URL (same schemes as O(items[].url)) of the file publishing the sha256 of
            O(items[].url), read like M(ansible.builtin.get_url) reads a checksum URL.
          - A file holding a single word is that digest. Otherwise each line is
            C(<digest> <file name>) (the output of C(sha256sum), as in C(SHA256SUMS)); the line
            whose file name, without a leading C(*) or C(./) and directory, equals the last path
            component of O(items[].url) gives the digest.
        type: str
        required: true
      dest:
        description:
          - Where the file is kept. A relative path is relative to the working directory.
          - Two items cannot have the same O(items[].dest).
        type: path
        required: true
      extract_dir:
        description:
          - When set, the file is a tar archive, unpacked into this directory.
          - The directory belongs to the module, and its content is replaced by the archive's when
            the archive is unpacked. It cannot contain an O(items[].dest) or another item's
            O(items[].extract_dir).
        type: path
      key:
        description:
          - The identity of the file in O(lock_file) and O(checksums), unique among O(items). Give
            a name that stays the same whichever site or mirror the file comes from and that
            changes with its version and architecture, such as its path below the download site
            (V(dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet)).
          - Defaults to the host and path of O(items[].url) (for a V(file://) URL, its path without
            the leading C(/)).
        type: str
  lock_file:
    description:
      - The lock file, read at the start and updated at the end of the run (see the description).
        A missing file is an empty lock; missing parent directories are created with mode
        C(0700), since it normally lives in the controller's state directory.
      - When not set, nothing is locked, and the published checksums (or O(checksums)) decide.
    type: path
  checksums:
    description:
      - sha256 digests pinned by the operator, by O(items[].key). They take precedence over
        O(lock_file) and over the published checksum files, which are not read for a pinned item;
        a pinned digest replaces a different entry in O(lock_file) once the file is verified.
      - A key that no item has is reported in a warning.
    type: dict
    default: {}
  checksums_label:
    description:
      - How messages name O(checksums), for example the variable the digests come from.
    type: str
    default: checksums
  timeout:
    description:
      - Timeout in seconds of each network operation (connecting, and each read).
    type: int
    default: 60
  parallel:
    description:
      - How many items are processed at the same time (V(1) processes them one after the other).
    type: int
    default: 4
  download:
    description:
      - V(false) resolves only the sha256 each item must have (pinned, locked, or read from its
        published checksum file, then recorded in the lock file) and leaves O(items[].dest) alone,
        for hosts that download the files themselves and verify them against that digest.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description:
      - Reads the checksum files and the lock file and compares the cache, reports what would be
        downloaded, unpacked and recorded in the lock file, and writes nothing (no sidecar, no
        lock file either).
  diff_mode:
    support: full
    description:
      - A before/after listing of the items that change, with the reasons (digests and
        directories, never file contents); and the lock file's text before and after, when it
        changes.
  platform:
    support: full
    platforms: posix
    description: The machine that holds the cache, normally the controller.
notes:
  - A Jinja expression reaches the returned RV(items) as C(result['items']), since C(result.items) is
    the dictionary method of that name.
  - Add C(*.sha256cache) to the C(.gitignore) of a repository holding the cache.
  - To accept a new digest for a file whose lock entry no longer matches what its site publishes,
    pin it in O(checksums) or remove its line from O(lock_file).
seealso:
  - module: ansible.builtin.get_url
  - module: ansible.builtin.unarchive
  - module: hardway.kubernetes.install_files
"""

EXAMPLES = r"""
- name: Download, verify and unpack the release files
  hardway.kubernetes.artifact_fetch:
    items:
      - name: kubelet
        url: https://dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet
        checksum_url: https://dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet.sha256
        dest: "{{ cache_dir }}/kubelet"
      - name: etcd
        url: https://github.com/etcd-io/etcd/releases/download/v3.6.1/etcd-v3.6.1-linux-amd64.tar.gz
        checksum_url: https://github.com/etcd-io/etcd/releases/download/v3.6.1/SHA256SUMS
        dest: "{{ cache_dir }}/etcd-v3.6.1-linux-amd64.tar.gz"
        extract_dir: "{{ cache_dir }}/etcd-v3.6.1"
  delegate_to: localhost
  run_once: true
  register: fetched

- name: A mirror in a local directory, digests locked in the state directory, one pinned
  hardway.kubernetes.artifact_fetch:
    items:
      - name: kubelet
        key: dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet
        url: file:///srv/mirror/dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet
        checksum_url: file:///srv/mirror/dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet.sha256
        dest: "{{ cache_dir }}/kubelet"
      - name: pause image
        key: images/pause-3.10.tar
        url: file:///srv/mirror/images/pause-3.10.tar
        checksum_url: file:///srv/mirror/images/pause-3.10.tar.sha256
        dest: "{{ cache_dir }}/images/pause-3.10.tar"
    lock_file: "{{ inventory_dir }}/.hardway/kubernetes/artifacts.lock"
    checksums:
      images/pause-3.10.tar: 1f6a4cf7e9b3a1c0d5e8f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4
  delegate_to: localhost
  run_once: true

- name: Show what was downloaded
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.action }} ({{ item.value.reason }})"
  loop: "{{ fetched['items'] | dict2items | selectattr('value.changed') }}"
"""

RETURN = r"""
items:
  description:
    - Outcome per item, by O(items[].name). In check mode, what would be done.
    - Reach it as C(result['items']) in Jinja.
  returned: always
  type: dict
  sample:
    kubelet:
      action: downloaded
      reason: dest missing
      changed: true
      sha256: 0b0d8e0c1b0a8e3a8e6f2f6d5d2ad5f0d4c2a7b2f9e3f0e1e9e4d1a2c3b4a5f6
      key: dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubelet
      expected_from: lock file
      dest: /home/me/.cache/hardway/artifacts/kubelet
      extract_dir: null
    etcd:
      action: unpacked
      reason: no marker in extract_dir
      changed: true
      sha256: 4a1c8e7d0b6f5e3c2d1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c
      key: github.com/etcd-io/etcd/releases/download/v3.6.1/etcd-v3.6.1-linux-amd64.tar.gz
      expected_from: checksum file
      dest: /home/me/.cache/hardway/artifacts/etcd-v3.6.1-linux-amd64.tar.gz
      extract_dir: /home/me/.cache/hardway/artifacts/etcd-v3.6.1
  contains:
    action:
      description:
        - V(unchanged), V(downloaded), V(unpacked) (the cached archive was unpacked again),
          V(downloaded and unpacked), or V(resolved) with O(download=false).
      type: str
    reason:
      description:
        - Why, reasons joined with C(; ). V(dest missing), V(dest has sha256 <digest>) (it differs
          from the published one), V(archive downloaded), V(no marker in extract_dir),
          V(extract_dir holds sha256 <digest>); V(up to date) when unchanged.
      type: str
    changed:
      description: Whether the item changed (or would change, in check mode).
      type: bool
    sha256:
      description: The expected sha256 of the file (see RV(items.expected_from)), which O(items[].dest) now has.
      type: str
    key:
      description: The file's O(items[].key).
      type: str
    expected_from:
      description:
        - Where RV(items.sha256) comes from, V(checksums) (pinned), V(lock file) (the published
          checksum was read too, and is the same) or V(checksum file) (the first fetch).
      type: str
    dest:
      description: The cached file, as an absolute path.
      type: str
    extract_dir:
      description: The directory the archive is unpacked in, as an absolute path; null for a plain file.
      type: str
lock:
  description:
    - What happened to O(lock_file) (in check mode, what would happen; nothing is written).
  returned: when O(lock_file) is set
  type: dict
  sample:
    path: /home/me/ops/inventories/mycluster/.hardway/kubernetes/artifacts.lock
    added:
      images/pause-3.10.tar: 0b0d8e0c1b0a8e3a8e6f2f6d5d2ad5f0d4c2a7b2f9e3f0e1e9e4d1a2c3b4a5f6
    replaced: {}
    changed: true
  contains:
    path:
      description: The lock file, as an absolute path.
      type: str
    added:
      description: The entries recorded in this run, sha256 by O(items[].key).
      type: dict
    replaced:
      description: The entries replaced by a different digest pinned in O(checksums), new sha256 by O(items[].key).
      type: dict
    changed:
      description: Whether the lock file changed (or would change, in check mode).
      type: bool
"""

import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from urllib.parse import unquote, urlsplit  # noqa: E402
from urllib.request import url2pathname  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.urls import Request, make_context  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.artifact_lock import (  # noqa: E402
    FROM_LOCK,
    FROM_PIN,
    LockError,
    default_key,
    expectation,
    lock_mismatch,
    normalize_digests,
    read_lock,
    record_verified,
)
from ansible_collections.hardway.kubernetes.plugins.module_utils.files import write_atomic  # noqa: E402
from ansible_collections.hardway.kubernetes.plugins.module_utils.install import (  # noqa: E402
    SIDECAR_MIN_SIZE,
    SIDECAR_SUFFIX,
    InstallError,
    VerifyingReader,
    describe_error,
    describe_fetch_error as _why,
    make_parents,
    source_sha256,
)

MARKER = '.hardway-unpacked'
SCHEMES = ('http', 'https', 'file')
# A checksum file bigger than this is no checksum file.
CHECKSUM_MAX_SIZE = 1024 * 1024
DIGEST_RE = re.compile(r'^[0-9a-fA-F]{64}$')
UP_TO_DATE = 'up to date'


class FetchError(Exception):
    """An item cannot be fetched, verified or unpacked; the message names the item."""


# ---------------------------------------------------------------- checksums


def url_filename(url):
    """The last path component of ``url``, unquoted."""
    return os.path.basename(unquote(urlsplit(url).path))


def parse_checksum(text, filename):
    """The sha256 for ``filename`` in the text of a checksum file (lower case), or raise ValueError.

    A file holding a single word is the digest. Otherwise each line is
    ``<digest> <name>`` (``sha256sum`` output; ``*`` before the name marks
    binary mode) and the line whose name, without a leading ``./`` and
    directory, is ``filename`` gives the digest.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith('#')]
    if len(lines) == 1 and len(lines[0].split()) == 1:
        digest = lines[0]
    else:
        digest = None
        for line in lines:
            parts = line.split(None, 1)
            if len(parts) != 2:
                continue
            name = parts[1].strip()
            if name.startswith('*'):
                name = name[1:]
            while name.startswith('./'):
                name = name[2:]
            if name == filename or os.path.basename(name) == filename:
                digest = parts[0]
                break
        if digest is None:
            raise ValueError('it has no line for %s' % filename)
    if not DIGEST_RE.match(digest):
        raise ValueError('%r is not a sha256 digest' % digest[:80])
    return digest.lower()


# ---------------------------------------------------------------- the work


class Fetcher:
    """Processes the items; :meth:`run` is called once per item, from worker threads."""

    def __init__(self, timeout, check_mode, pins=None, lock=None, lock_file=None, pins_label='checksums',
                 download=True):
        self.download_files = download
        self.timeout = timeout
        self.check_mode = check_mode
        self.pins = pins or {}
        self.lock = lock or {}
        self.lock_file = lock_file
        self.pins_label = pins_label
        self._context = None
        self._lock = threading.Lock()

    def ssl_context(self):
        """One TLS context for every request (loading the CA store costs about 0.1 s each time)."""
        with self._lock:
            if self._context is None:
                self._context = make_context(validate_certs=True)
            return self._context

    def open(self, url):
        """A binary file object reading ``url``; a file:// URL is opened as the local file it names."""
        parts = urlsplit(url)
        if parts.scheme.lower() == 'file':
            if parts.netloc not in ('', 'localhost'):
                raise ValueError('a file:// URL names a local file, not one on %s' % parts.netloc)
            return open(url2pathname(parts.path), 'rb')
        request = Request(timeout=self.timeout, validate_certs=True,
                          http_agent='hardway.kubernetes.artifact_fetch')
        return request.open('GET', url, context=self.ssl_context())

    def published_sha256(self, item):
        url = item['checksum_url']
        try:
            with self.open(url) as response:
                data = response.read(CHECKSUM_MAX_SIZE + 1)
        except Exception as exc:  # noqa: BLE001 - urllib raises many kinds (URLError, HTTPError, ssl, socket)
            raise FetchError('%s: cannot read the checksum file %s: %s' % (item['name'], url, _why(exc))) from None
        if len(data) > CHECKSUM_MAX_SIZE:
            raise FetchError('%s: the checksum file %s is bigger than %d bytes'
                             % (item['name'], url, CHECKSUM_MAX_SIZE))
        try:
            return parse_checksum(data.decode('utf-8', errors='replace'), url_filename(item['url']))
        except ValueError as exc:
            raise FetchError('%s: no sha256 for %s in the checksum file %s: %s'
                             % (item['name'], url_filename(item['url']), url, exc)) from None

    def cached_sha256(self, item):
        """sha256 of dest through its sidecar; None when missing. Check mode writes no sidecar."""
        dest = item['dest']
        if not os.path.lexists(dest):
            return None
        if os.path.isdir(dest):
            raise FetchError('%s: dest %s is a directory' % (item['name'], dest))
        try:
            # A "now" at the epoch makes every file look just modified, which source_sha256 never caches.
            return source_sha256(dest, now_ns=0 if self.check_mode else None)
        except FileNotFoundError:
            return None  # a dangling symbolic link: replaced by the download
        except (OSError, InstallError) as exc:
            raise FetchError('%s: cannot read dest: %s' % (item['name'], describe_error(exc))) from None

    def expected_sha256(self, item):
        """(sha256, where from) the item must have: pinned, locked or published (see artifact_lock).

        The checksum file is read unless the digest is pinned; a locked
        digest must be the one it publishes.
        """
        digest, origin = expectation(item['key'], self.pins, self.lock)
        if origin == FROM_PIN:
            return digest, origin
        published = self.published_sha256(item)
        if origin == FROM_LOCK and published != digest:
            raise FetchError(lock_mismatch(item['name'], item['key'], item['url'], item['checksum_url'],
                                           published, digest, self.lock_file, self.pins_label))
        return published, origin

    def origin_text(self, item, origin):
        """Where the expected digest of ``item`` comes from, for messages."""
        if origin == FROM_PIN:
            return 'pinned in %s' % self.pins_label
        if origin == FROM_LOCK:
            return 'from the lock file %s' % self.lock_file
        return 'from the checksum file %s' % item['checksum_url']

    def download(self, item, expected, origin):
        """Download url to dest, verified against ``expected``, then record the digest in the sidecar."""
        dest, url = item['dest'], item['url']
        try:
            make_parents(dest)
        except (OSError, InstallError) as exc:
            raise FetchError('%s: cannot create the directory of %s: %s' % (item['name'], dest, _why(exc))) from None
        try:
            with self.open(url) as response:
                what = '%s: %s (%s)' % (item['name'], item['key'], url)
                write_atomic(dest, VerifyingReader(response, expected, what), 0o644)
        except InstallError as exc:
            raise FetchError('%s (%s); dest %s left as it was'
                             % (exc, self.origin_text(item, origin), dest)) from None
        except Exception as exc:  # noqa: BLE001 - network and file system errors of every kind
            raise FetchError('%s: cannot download %s to %s: %s' % (item['name'], url, dest, _why(exc))) from None
        remember_sha256(dest, expected)

    def run(self, item):
        """Bring one item up to date (in check mode: find out what that takes); returns its result."""
        expected, origin = self.expected_sha256(item)
        if not self.download_files:  # the hosts download it themselves: its digest is all they need
            return {'action': 'resolved', 'reason': 'digest only', 'changed': False, 'sha256': expected,
                    'key': item['key'], 'expected_from': origin, 'url': item['url'],
                    'dest': item['dest'], 'extract_dir': item['extract_dir'], 'before': [], 'after': []}
        current = self.cached_sha256(item)
        result = {'action': 'unchanged', 'reason': UP_TO_DATE, 'changed': False, 'sha256': expected,
                  'key': item['key'], 'expected_from': origin,
                  'dest': item['dest'], 'extract_dir': item['extract_dir'],
                  'before': [], 'after': []}
        reasons = []
        download = current != expected
        if download:
            reasons.append('dest missing' if current is None else 'dest has sha256 %s' % current)
            result['before'].append('%s: %s' % (item['dest'], 'absent' if current is None else 'sha256 ' + current))
            result['after'].append('%s: sha256 %s from %s' % (item['dest'], expected, item['url']))
            if not self.check_mode:
                self.download(item, expected, origin)
        unpack = False
        if item['extract_dir']:
            marker = read_marker(item['extract_dir'])
            if download:
                reasons.append('archive downloaded')
                unpack = True
            elif marker != expected:
                reasons.append('no marker in extract_dir' if marker is None else 'extract_dir holds sha256 %s' % marker)
                unpack = True
            if unpack:
                result['before'].append('%s: %s' % (item['extract_dir'], 'no marker' if marker is None
                                                    else 'unpacked from sha256 ' + marker))
                result['after'].append('%s: unpacked from sha256 %s' % (item['extract_dir'], expected))
                if not self.check_mode:
                    unpack_archive(item, expected)
        if download or unpack:
            actions = [action for action, done in (('downloaded', download), ('unpacked', unpack)) if done]
            result.update(changed=True, reason='; '.join(reasons), action=' and '.join(actions))
        return result


def remember_sha256(path, digest):
    """Write the sidecar of a file this module has just written and verified.

    Same format as the sidecar of install.source_sha256 (which reads it on
    the next run): the digest is known from the verified download, so the
    file is not read again. A sidecar that cannot be written is skipped.
    """
    try:
        st = os.stat(path)
        if st.st_size > SIDECAR_MIN_SIZE:
            write_atomic(path + SIDECAR_SUFFIX, ('%d %d %s\n' % (st.st_mtime_ns, st.st_size, digest)).encode(), 0o644)
    except OSError:
        pass


def read_marker(extract_dir):
    """The sha256 recorded in extract_dir's marker, or None."""
    try:
        with open(os.path.join(extract_dir, MARKER)) as handle:
            text = handle.read(200).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if DIGEST_RE.match(text) else None


def _safe_members(tar, directory):
    """The members of ``tar`` made safe to extract, for a Python without tarfile's data filter.

    Like the ``data`` filter: no absolute names, no ``..``, no links leading
    out, only files, directories and links, no set-id bits, owned by whoever
    unpacks.
    """
    root = os.path.realpath(directory)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(root, member.name))
        if os.path.isabs(member.name) or os.path.commonpath([root, target]) != root:
            raise tarfile.TarError('%s would be unpacked outside the directory' % member.name)
        if member.issym() or member.islnk():
            base = os.path.dirname(target) if member.issym() else root
            link = os.path.realpath(os.path.join(base, member.linkname))
            if os.path.isabs(member.linkname) or os.path.commonpath([root, link]) != root:
                raise tarfile.TarError('%s links outside the directory' % member.name)
        elif not (member.isfile() or member.isdir()):
            raise tarfile.TarError('%s is a special file' % member.name)
        member.mode = (member.mode or 0o644) & 0o755
        member.uid, member.gid = os.getuid(), os.getgid()
        member.uname = member.gname = ''
        yield member


def extract(archive, directory):
    with tarfile.open(archive, 'r:*') as tar:
        if hasattr(tarfile, 'data_filter'):
            tar.extractall(directory, filter='data')
        else:
            tar.extractall(directory, members=list(_safe_members(tar, directory)))


def unpack_archive(item, digest):
    """Unpack dest into a new directory, write the marker, then put it in place of extract_dir."""
    extract_dir = item['extract_dir']
    parent, base = os.path.split(extract_dir)
    tmp = old = lock = None
    try:
        # Two runs sharing the cache unpack one after the other, and the second finds it done.
        lock = open(item['dest'], 'rb')
        _lock(lock)
        # Checked under the lock: meanwhile another run may be swapping its directory in.
        if os.path.islink(extract_dir) or (os.path.lexists(extract_dir) and not os.path.isdir(extract_dir)):
            raise InstallError('%s exists and is not a directory' % extract_dir)
        if read_marker(extract_dir) == digest:
            return
        make_parents(extract_dir)
        tmp = tempfile.mkdtemp(prefix='.%s.' % base, suffix='.tmp', dir=parent)
        extract(item['dest'], tmp)
        with open(os.path.join(tmp, MARKER), 'w') as marker:
            marker.write(digest + '\n')
        os.chmod(tmp, 0o755)  # mkdtemp made it 0700
        if os.path.lexists(extract_dir):
            old = tempfile.mkdtemp(prefix='.%s.' % base, suffix='.old', dir=parent)
            os.rename(extract_dir, os.path.join(old, base))
        os.rename(tmp, extract_dir)
        tmp = None
    except (tarfile.TarError, EOFError, OSError, InstallError) as exc:
        if old and not os.path.lexists(extract_dir) and os.path.lexists(os.path.join(old, base)):
            os.rename(os.path.join(old, base), extract_dir)  # put the old directory back
        raise FetchError('%s: cannot unpack %s into %s: %s'
                         % (item['name'], item['dest'], extract_dir, _why(exc))) from None
    finally:
        for directory in (tmp, old):
            if directory:
                shutil.rmtree(directory, ignore_errors=True)
        if lock:
            lock.close()  # releases the lock


def _lock(handle):
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except (ImportError, OSError):
        pass  # no locking there: concurrent runs may unpack twice, each completely


# ---------------------------------------------------------------- options


def argument_spec():
    return {
        'items': {
            'type': 'list', 'elements': 'dict', 'required': True,
            'options': {
                'name': {'type': 'str', 'required': True},
                'url': {'type': 'str', 'required': True},
                'checksum_url': {'type': 'str', 'required': True},
                'dest': {'type': 'path', 'required': True},
                'extract_dir': {'type': 'path'},
                'key': {'type': 'str', 'no_log': False},
            },
        },
        'lock_file': {'type': 'path'},
        'checksums': {'type': 'dict', 'default': {}},
        'checksums_label': {'type': 'str', 'default': 'checksums'},
        'timeout': {'type': 'int', 'default': 60},
        'parallel': {'type': 'int', 'default': 4},
        'download': {'type': 'bool', 'default': True},
    }


def _inside(path, directory):
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def normalize_items(items):
    """Validate the items; returns them with absolute, normalised paths. Raises FetchError."""
    result = []
    names = set()
    keys = {}
    for index, item in enumerate(items):
        name = item['name']
        label = 'items[%d] (%s)' % (index, name)
        if not name:
            raise FetchError('items[%d]: name must not be empty' % index)
        if name in names:
            raise FetchError('%s: another item has the same name' % label)
        names.add(name)
        for option in ('url', 'checksum_url'):
            scheme = urlsplit(item[option]).scheme.lower()
            if scheme not in SCHEMES:
                raise FetchError('%s: %s must be an https://, http:// or file:// URL, got %r'
                                 % (label, option, item[option]))
        if not url_filename(item['url']):
            raise FetchError('%s: url %s names no file' % (label, item['url']))
        key = item.get('key') or default_key(item['url'])
        if key in keys:
            raise FetchError('%s: key %s is also the key of %s' % (label, key, keys[key]))
        keys[key] = label
        extract_dir = item.get('extract_dir')
        result.append({
            'name': name,
            'label': label,
            'key': key,
            'url': item['url'],
            'checksum_url': item['checksum_url'],
            'dest': os.path.normpath(os.path.abspath(item['dest'])),
            'extract_dir': os.path.normpath(os.path.abspath(extract_dir)) if extract_dir else None,
        })
    for position, item in enumerate(result):
        for other in result[:position]:
            if other['dest'] == item['dest']:
                raise FetchError('%s: dest is also the dest of %s' % (item['label'], other['label']))
        for other in result:
            if item['extract_dir'] and _inside(other['dest'], item['extract_dir']):
                what = 'dest' if other is item else 'the dest of %s' % other['label']
                raise FetchError('%s: extract_dir contains %s' % (item['label'], what))
            if other is not item and item['extract_dir'] and other['extract_dir'] \
                    and _inside(other['extract_dir'], item['extract_dir']):
                raise FetchError('%s: extract_dir contains the extract_dir of %s' % (item['label'], other['label']))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be a positive number of seconds')
    if params['parallel'] < 1:
        module.fail_json(msg='parallel must be at least 1')
    try:
        items = normalize_items(params['items'])
    except FetchError as exc:
        module.fail_json(msg=str(exc))
    lock_file = params['lock_file'] and os.path.normpath(os.path.abspath(params['lock_file']))
    try:
        pins = normalize_digests(params['checksums'], params['checksums_label'])
        lock = read_lock(lock_file) if lock_file else {}
    except LockError as exc:
        module.fail_json(msg=str(exc))
    unused = sorted(set(pins) - {item['key'] for item in items})
    if unused:
        module.warn('%s pins a digest for %s, which no item fetches (items are known by their key, such as %s)'
                    % (params['checksums_label'], ', '.join(unused), items[0]['key'] if items else 'a URL path'))

    fetcher = Fetcher(params['timeout'], module.check_mode,
                      pins=pins, lock=lock, lock_file=lock_file, pins_label=params['checksums_label'],
                      download=params['download'])

    def run(item):
        try:
            return item, fetcher.run(item), None
        except FetchError as exc:
            return item, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - reported per item rather than as a traceback
            return item, None, '%s: %s' % (item['name'], _why(exc))

    workers = max(1, min(params['parallel'], len(items)))
    if workers == 1:
        outcomes = [run(item) for item in items]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(run, items))

    results = {}
    errors = []
    before = []
    after = []
    for item, result, error in outcomes:
        if error:
            errors.append(error)
            continue
        before.extend('%s: %s' % (item['name'], line) for line in result.pop('before'))
        after.extend('%s: %s' % (item['name'], line) for line in result.pop('after'))
        results[item['name']] = result
    changed = any(result['changed'] for result in results.values())
    output = {'changed': changed, 'items': results}
    diffs = []
    if before or after:
        diffs.append({'before': ''.join(line + '\n' for line in before),
                      'after': ''.join(line + '\n' for line in after),
                      'before_header': 'artifact cache', 'after_header': 'artifact cache'})
    lock_error = None
    if lock_file:
        # Every verified digest goes into the lock, also when other items failed.
        recorded = record_verified(lock_file, items, results.values(), set(pins), module.check_mode)
        errors.extend(recorded['errors'])
        lock_error = recorded['error']
        output['lock'] = recorded['lock']
        if recorded['diff']:
            output['changed'] = True
            diffs.append(recorded['diff'])
    if module._diff and diffs:
        output['diff'] = diffs[0] if len(diffs) == 1 else diffs
    if errors or lock_error:
        msg = errors[0] if errors else ''
        if len(errors) > 1:
            msg = '%d of %d items failed: %s' % (len(errors), len(items), ' | '.join(errors))
        if lock_error:
            msg = '%s | %s' % (msg, lock_error) if msg else lock_error
        module.fail_json(msg=msg, **output)
    module.exit_json(**output)


if __name__ == '__main__':
    main()
