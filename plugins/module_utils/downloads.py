# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Files a host downloads for itself (hardway.kubernetes.install_files with ``url``).

A file comes either as the download itself (a binary, an image archive) or
as a member of a downloaded tar archive (``member``, such as
``etcd-v3.6.16-linux-amd64/etcd``). Either way the download is verified
against the sha256 the controller locked for it (``url_sha256``) before a
single byte of it is installed.

The content digest of a member is known only once the archive has been read.
The host keeps what it learnt in the module's digest cache (``members``:
``"<archive sha256>/<member>" -> sha256``), a fact about a verified archive
that never goes stale. So a re-run compares installed files by digest without
downloading anything; only a host that lost its cache and still has the files
downloads the archive once to learn the digests again.

Standard library only (plus the opener given by the module), Python 3.8
syntax: this runs on the managed hosts.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tarfile
import tempfile
import urllib.request

from ansible_collections.hardway.kubernetes.plugins.module_utils.files import write_atomic
from ansible_collections.hardway.kubernetes.plugins.module_utils.install import (
    CHUNK,
    HashingReader,
    InstallError,
    VerifyingReader,
    describe_fetch_error as _why,
    make_parents,
)

# Where archives wait while their members are installed, then are deleted.
DOWNLOAD_DIR = '/var/cache/hardway/downloads'


def url_opener(timeout):
    """``opener(url)``: a GET through urllib (the host's proxy settings, its CA store, redirects followed).

    urllib rather than ansible.module_utils.urls keeps the module's payload small: it travels to
    every host on every run.
    """
    handlers = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
    agent = {'User-Agent': 'hardway.kubernetes.install_files'}

    def opener(url):
        return handlers.open(urllib.request.Request(url, headers=agent), timeout=timeout)
    return opener


def member_key(url_sha256, member):
    """The digest cache's key for one member of the archive with sha256 ``url_sha256``."""
    return '%s/%s' % (url_sha256, member)


class Downloader:
    """Downloads, verified, for one module run; ``opener(url)`` returns a binary file object.

    ``specs`` are install_files' normalised file items; those with a ``url``
    are the ones handled here.
    """

    def __init__(self, opener, download_dir=DOWNLOAD_DIR):
        self.opener = opener
        self.download_dir = download_dir
        self._archives = {}  # url -> local verified copy, for this run

    def _open(self, spec):
        try:
            return self.opener(spec['url'])
        except Exception as exc:  # noqa: BLE001 - urllib raises many kinds (URLError, HTTPError, ssl, socket)
            raise InstallError('%s: cannot download %s: %s' % (spec['label'], spec['url'], _why(exc))) from None

    def _verified(self, spec, handle):
        return VerifyingReader(handle, spec['url_sha256'], spec['label'],
                               'the download %s' % spec['url'])

    def archive(self, spec):
        """A local, verified copy of the archive at ``spec['url']`` (downloaded once per run)."""
        url = spec['url']
        if url in self._archives:
            return self._archives[url]
        make_parents(os.path.join(self.download_dir, 'x'))  # the directory itself, 0755 (its files are 0600)
        fd, path = tempfile.mkstemp(prefix='.%s.' % spec['url_sha256'][:16], suffix='.download',
                                    dir=self.download_dir)
        try:
            with os.fdopen(fd, 'wb') as out:
                with self._open(spec) as response:
                    shutil.copyfileobj(self._verified(spec, response), out, CHUNK)
        except InstallError as exc:
            os.unlink(path)
            raise InstallError('%s; nothing was installed from it' % exc) from None
        except Exception as exc:  # noqa: BLE001 - a connection that breaks off, a full disk
            os.unlink(path)
            raise InstallError('%s: cannot download %s: %s' % (spec['label'], url, _why(exc))) from None
        self._archives[url] = path
        return path

    def cleanup(self):
        """Delete the archives this run downloaded (their members are installed or known)."""
        for path in self._archives.values():
            try:
                os.unlink(path)
            except OSError:
                pass
        self._archives = {}

    def member_digests(self, spec, members):
        """sha256 of each of ``members`` in the archive of ``spec``, read from a verified copy."""
        found = {}
        with _open_tar(spec, self.archive(spec)) as tar:
            for member in members:
                handle = _extract(spec, tar, member)
                reader = HashingReader(handle)
                while reader.read(CHUNK):
                    pass
                found[member] = reader.digest.hexdigest()
        return found

    def install(self, spec, uid, gid):
        """Install ``spec['dest']`` (whose directory exists) from its URL; returns the installed content's sha256.

        The file is written next to its destination and renamed over it only
        once it is complete (and, for a download that is the file itself,
        verified).
        """
        if not spec.get('member'):
            try:
                with self._open(spec) as response:
                    write_atomic(spec['dest'], self._verified(spec, response), spec['mode'], uid=uid, gid=gid)
            except InstallError as exc:
                raise InstallError('%s; %s left as it was' % (exc, spec['dest'])) from None
            except Exception as exc:  # noqa: BLE001
                raise InstallError('%s: cannot download %s to %s: %s'
                                   % (spec['label'], spec['url'], spec['dest'], _why(exc))) from None
            return spec['url_sha256']
        with _open_tar(spec, self.archive(spec)) as tar:
            reader = HashingReader(_extract(spec, tar, spec['member']))
            write_atomic(spec['dest'], reader, spec['mode'], uid=uid, gid=gid)
        return reader.digest.hexdigest()


def _open_tar(spec, path):
    try:
        return tarfile.open(path, 'r:*')
    except (tarfile.TarError, OSError) as exc:
        raise InstallError('%s: %s (sha256 %s) is no tar archive: %s'
                           % (spec['label'], spec['url'], spec['url_sha256'], exc)) from None


def _extract(spec, tar, member):
    wanted = os.path.normpath(member)
    info = next((m for m in tar.getmembers() if os.path.normpath(m.name) == wanted), None)  # "./x" is "x"
    if info is None:
        raise InstallError('%s: %s has no member %s' % (spec['label'], spec['url'], member))
    if not info.isfile():
        raise InstallError('%s: %s in %s is not a regular file' % (spec['label'], member, spec['url']))
    return tar.extractfile(info)


def resolve_members(specs, cache, downloader):
    """Give every archive member in ``specs`` its content sha256 where the comparison needs it.

    From the digest cache when known; otherwise, for a destination that
    exists as a regular file, read from a verified copy of the archive (one
    download per archive) and kept in the cache. A missing destination needs
    no digest: it is installed anyway.
    """
    unknown = {}
    for spec in specs:
        if not spec.get('url') or not spec.get('member') or spec['sha256']:
            continue
        known = cache.member(member_key(spec['url_sha256'], spec['member']))
        if known:
            spec['sha256'] = known
        elif os.path.isfile(spec['dest']) and not os.path.islink(spec['dest']):
            unknown.setdefault(spec['url'], []).append(spec)
    for group in unknown.values():
        digests = downloader.member_digests(group[0], sorted(set(spec['member'] for spec in group)))
        for spec in group:
            spec['sha256'] = digests[spec['member']]
            cache.put_member(member_key(spec['url_sha256'], spec['member']), spec['sha256'])


def install_from_url(spec, uid, gid, cache, downloader):
    """Install one ``url`` item and record its digests; returns the created parent directories."""
    created = make_parents(spec['dest'])
    digest = downloader.install(spec, uid, gid)
    if spec.get('member'):
        cache.put_member(member_key(spec['url_sha256'], spec['member']), digest)
    cache.put(spec['dest'], os.lstat(spec['dest']), digest, written=True)
    return created
