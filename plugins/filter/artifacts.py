# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""The artifacts role's catalog turned into downloads and installs.

- ``artifact_downloads(catalog, cache_dir, mirror_url, upstream)``: one artifact_fetch item per
  catalog entry (URL, checksum URL, lock key, cache path, unpack directory of an archive).
- ``artifact_installs(catalog, cache_dir, host_groups, bin_dir, cni_bin_dir)``: the files a host
  with the given install groups gets, ``{src, dest}``, from the controller cache.
- ``image_downloads(images, images_url, cache_dir)``: one artifact_fetch item per image archive.
- ``image_files(images, cache_dir, host_dir)``: the image archives as install_files items.
- ``artifact_url_installs(catalog, downloads, digests, host_groups, bin_dir, cni_bin_dir)`` and
  ``image_url_files(images, images_url, digests, host_dir)``: the same files as install_files items
  that the host downloads itself (``url``, ``url_sha256``, ``member`` inside an archive).
- ``images_for_host(images, host_groups)``: the image archives meant for a host (``groups``).
- ``artifact_probe_urls(catalog, downloads, host_groups, images, images_url, source_var)``: one
  small file per server a host downloads from, which preflight asks from the host.

A catalog entry: ``name``, ``site`` (the top directory of a mirror), ``dir`` and ``file`` (below
the site), ``checksum`` (a suffix such as ``.sha256`` appended to the file name, or the name of a
checksum list in the same directory), ``install`` (file in the archive, or the download itself ->
install groups), and optionally ``archive_root`` (the directory in the archive), ``cni`` (install
into the CNI directory), ``install_dir`` (an absolute directory to install into instead, for files
that are not programs, such as an addon's CRDs), ``mode`` (default ``0755``), ``rename`` (file ->
installed name) and ``enabled`` (false: neither downloaded nor installed, for an addon that is off).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

ARCHIVE = re.compile(r'[.](tgz|tar[.]gz)$')
REQUIRED = ('name', 'site', 'dir', 'file', 'checksum', 'install')


def _catalog(catalog, filter_name):
    if not isinstance(catalog, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.%s expects the catalog (a list), got %s'
                                 % (filter_name, type(catalog).__name__))
    for entry in catalog:
        missing = [k for k in REQUIRED if not isinstance(entry, dict) or entry.get(k) in (None, '')]
        if missing:
            raise AnsibleFilterError('hardway.kubernetes.%s: catalog entry %s lacks %s'
                                     % (filter_name, entry.get('name') if isinstance(entry, dict) else entry,
                                        ', '.join(missing)))
    return [entry for entry in catalog if _enabled(entry.get('enabled', True))]


def _enabled(value):
    if isinstance(value, str):
        return value.strip().lower() in ('true', 'yes', 'on', '1')
    return bool(value)


def _paths(entry, cache_dir):
    """(path below the site, cache file, unpack directory or None) of one catalog entry."""
    path = '%s/%s' % (entry['dir'], entry['file'])
    dest = '%s/%s/%s' % (cache_dir, entry['site'], path)
    extract = '%s/extracted/%s/%s' % (cache_dir, entry['site'], path) if ARCHIVE.search(entry['file']) else None
    return path, dest, extract


def artifact_downloads(catalog, cache_dir, mirror_url='', upstream=None):
    """artifact_fetch items: from ``<mirror_url>/<site>`` when a mirror is set, else from ``upstream[site]``."""
    out = []
    for entry in _catalog(catalog, 'artifact_downloads'):
        if mirror_url:
            base = '%s/%s' % (mirror_url.rstrip('/'), entry['site'])
        elif entry['site'] in (upstream or {}):
            base = upstream[entry['site']].rstrip('/')
        else:
            raise AnsibleFilterError('hardway.kubernetes.artifact_downloads: %s comes from %s, which has no URL in '
                                     'the upstream sites (%s)' % (entry['name'], entry['site'],
                                                                  ', '.join(sorted(upstream or {})) or 'none'))
        path, dest, extract = _paths(entry, cache_dir)
        checksum = entry['file'] + entry['checksum'] if entry['checksum'].startswith('.') else entry['checksum']
        out.append({'name': entry['name'], 'url': '%s/%s' % (base, path),
                    'checksum_url': '%s/%s/%s' % (base, entry['dir'], checksum),
                    'key': '%s/%s' % (entry['site'], path), 'dest': dest, 'extract_dir': extract})
    return out


def _installed(entry, groups, bin_dir, cni_bin_dir):
    """``(name in the download, {dest, mode})`` for each file of ``entry`` whose install groups meet ``groups``."""
    directory = entry.get('install_dir') or (cni_bin_dir if entry.get('cni') else bin_dir)
    for name, wanted in entry['install'].items():
        if groups.intersection(wanted or []):
            installed = (entry.get('rename') or {}).get(name, name)
            yield name, {'dest': '%s/%s' % (directory.rstrip('/'), installed), 'mode': entry.get('mode') or '0755'}


def artifact_installs(catalog, cache_dir, host_groups, bin_dir, cni_bin_dir):
    """``{src, dest, mode}`` for every file whose install groups meet ``host_groups``."""
    groups = set(host_groups or [])
    out = []
    for entry in _catalog(catalog, 'artifact_installs'):
        _path, dest, extract = _paths(entry, cache_dir)
        for name, item in _installed(entry, groups, bin_dir, cni_bin_dir):
            src = '%s/%s%s' % (extract, entry.get('archive_root') or '', name) if extract else dest
            out.append(dict(item, src=src))
    return out


def _digest(digests, name, filter_name):
    found = (digests or {}).get(name)
    digest = found.get('sha256') if isinstance(found, dict) else found
    if not isinstance(digest, str) or not re.match(r'^[0-9a-f]{64}$', digest):
        raise AnsibleFilterError('hardway.kubernetes.%s: no sha256 resolved for %s' % (filter_name, name))
    return digest


def artifact_url_installs(catalog, downloads, digests, host_groups, bin_dir, cni_bin_dir):
    """``{url, url_sha256, member, dest, mode}`` for every file the host downloads itself.

    ``downloads`` are :func:`artifact_downloads`' items (their URLs), ``digests`` the
    artifact_fetch result's ``items`` (name -> ``{sha256}``) or a plain name -> sha256 mapping.
    A file inside an archive names its ``member``; a download that is the file itself has none.
    """
    groups = set(host_groups or [])
    urls = {item['name']: item['url'] for item in downloads or []}
    out = []
    for entry in _catalog(catalog, 'artifact_url_installs'):
        wanted = list(_installed(entry, groups, bin_dir, cni_bin_dir))
        if not wanted:
            continue
        if entry['name'] not in urls:
            raise AnsibleFilterError('hardway.kubernetes.artifact_url_installs: %s is not among the downloads'
                                     % entry['name'])
        digest = _digest(digests, entry['name'], 'artifact_url_installs')
        archive = ARCHIVE.search(entry['file'])
        for name, item in wanted:
            item.update(url=urls[entry['name']], url_sha256=digest)
            if archive:
                item['member'] = '%s%s' % (entry.get('archive_root') or '', name)
            out.append(item)
    return out


def artifact_probe_urls(catalog, downloads, host_groups, images=None, images_url='', source_var='artifacts_mirror'):
    """What to ask from a host to learn that it reaches every server it downloads from: ``[{url, var}]``.

    One small file per server (scheme and host:port): the checksum file of the first
    download this host needs from it, and for image archives the checksum file of the
    first archive. ``var`` names the variable that chose the server.
    """
    groups = set(host_groups or [])
    checksums = {item['name']: item['checksum_url'] for item in downloads or []}
    seen = set()
    out = []

    def add(url, var):
        parts = urlsplit(url)
        server = (parts.scheme.lower(), parts.netloc.lower())
        if parts.scheme.lower() in ('http', 'https') and server not in seen:
            seen.add(server)
            out.append({'url': url, 'var': var})

    for entry in _catalog(catalog, 'artifact_probe_urls'):
        if entry['name'] in checksums and any(groups.intersection(on or []) for on in entry['install'].values()):
            add(checksums[entry['name']], source_var)
    if images and images_url:
        first = _images(images, 'artifact_probe_urls')[0]
        add('%s/%s.sha256' % (images_url.rstrip('/'), first['archive']), 'artifacts_images_url')
    return out


def images_for_host(images, host_groups):
    """The image archives a host imports: those without ``groups``, and those whose groups meet ``host_groups``.

    ``host_groups`` is the host's group names and its own inventory name.
    """
    groups = set(host_groups or [])
    return [i for i in _images(images, 'images_for_host') if not i.get('groups') or groups.intersection(i['groups'])]


def image_url_files(images, images_url, digests, host_dir):
    """install_files items for image archives the host downloads from ``images_url`` itself, mode 0644."""
    return [{'url': '%s/%s' % (images_url, i['archive']), 'url_sha256': _digest(digests, i['ref'], 'image_url_files'),
             'dest': '%s/%s' % (host_dir, i['archive']), 'mode': '0644'}
            for i in _images(images, 'image_url_files')]


def _images(images, filter_name):
    if not isinstance(images, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.%s expects a list of images, got %s'
                                 % (filter_name, type(images).__name__))
    for image in images:
        if not isinstance(image, dict) or not image.get('archive') or not image.get('ref'):
            raise AnsibleFilterError('hardway.kubernetes.%s: %r needs archive and ref' % (filter_name, image))
    return images


def image_downloads(images, images_url, cache_dir):
    """artifact_fetch items for image archives, each with the checksum file next to it, keyed ``images/<archive>``."""
    return [{'name': i['ref'], 'url': '%s/%s' % (images_url, i['archive']),
             'checksum_url': '%s/%s.sha256' % (images_url, i['archive']), 'key': 'images/' + i['archive'],
             'dest': '%s/%s' % (cache_dir, i['archive'])}
            for i in _images(images, 'image_downloads')]


def image_files(images, cache_dir, host_dir):
    """install_files items: each archive from the controller cache to ``host_dir``, mode 0644."""
    return [{'src': '%s/%s' % (cache_dir, i['archive']), 'dest': '%s/%s' % (host_dir, i['archive']), 'mode': '0644'}
            for i in _images(images, 'image_files')]


class FilterModule:
    """hardway.kubernetes filters for the artifacts role."""

    def filters(self):
        return {
            'artifact_downloads': artifact_downloads,
            'artifact_installs': artifact_installs,
            'image_downloads': image_downloads,
            'image_files': image_files,
            'artifact_url_installs': artifact_url_installs,
            'artifact_probe_urls': artifact_probe_urls,
            'images_for_host': images_for_host,
            'image_url_files': image_url_files,
        }
