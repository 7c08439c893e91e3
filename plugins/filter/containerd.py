# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""containerd's registry host files from ``containerd_registry_mirrors``.

- ``containerd_hosts_files(mirrors, config_dir)``: the files (for the
  install_files module) that send a registry's pulls to its mirrors: one
  ``<config_dir>/<registry>/hosts.toml`` per registry, and each mirror's CA
  next to it.

Pure functions of plain data, unit-tested in tests/unit/test_filters_containerd.py.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

# The pulls a mirror serves when an entry does not say: pull blobs and
# resolve tags to digests (a mirror is never pushed to by the CRI).
DEFAULT_CAPABILITIES = ('pull', 'resolve')

_NAME = r'[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?'
_HOST_RE = re.compile(r'^%s(\.%s)*(:[0-9]{1,5})?$' % (_NAME, _NAME))
_PEM = '-----BEGIN CERTIFICATE-----'


def registry_problem(value):
    """None when ``value`` names a registry as containerd's host directories do, else what it must be."""
    if value == '_default':
        return None
    if not isinstance(value, str) or not _HOST_RE.match(value) or '://' in value:
        return 'must be a registry host as images name it (host or host:port, no scheme), or _default'
    port = value.rpartition(':')[2] if ':' in value else None
    if port is not None and not 0 < int(port) < 65536:
        return 'must be a registry host as images name it (host or host:port, no scheme), or _default'
    return None


def endpoint_problems(endpoints):
    """Every problem of one registry's list of mirrors (each a dict), as text without the variable's name."""
    problems = []
    if not isinstance(endpoints, list):
        return ['must be a list of mirrors']
    for index, item in enumerate(endpoints):
        where = '[%d]' % index
        if not isinstance(item, dict):
            problems.append('%s must be a dict with a url' % where)
            continue
        url = item.get('url')
        parts = urlsplit(url) if isinstance(url, str) else None
        try:
            port_ok = parts is not None and (parts.port is None or 0 < parts.port < 65536)
        except ValueError:
            port_ok = False
        if not parts or parts.scheme not in ('http', 'https') or not parts.hostname or not port_ok \
                or parts.query or parts.fragment:
            problems.append('%s.url = %s must be an http:// or https:// URL of the mirror' % (where, json.dumps(url)))
        ca = item.get('ca')
        if ca and (not isinstance(ca, str) or _PEM not in ca):
            problems.append('%s.ca must be the PEM text of the CA that signed the mirror\'s certificate' % where)
        if ca and parts and parts.scheme == 'http':
            problems.append('%s.ca is given for an http:// mirror, which uses no TLS' % where)
        if bool(item.get('username')) != bool(item.get('password')):
            problems.append('%s needs both username and password, or neither' % where)
    return problems


def _toml_string(value):
    """A TOML basic string (JSON's escapes are TOML's for the characters that can occur here)."""
    return json.dumps(str(value))


def _ca_file_name(url):
    parts = urlsplit(url)
    return '%s.crt' % (parts.netloc.replace(':', '_'))


def _host_lines(item, ca_path):
    caps = item.get('capabilities') or list(DEFAULT_CAPABILITIES)
    lines = ['capabilities = [%s]' % ', '.join(_toml_string(c) for c in caps)]
    if ca_path:
        lines.append('ca = %s' % _toml_string(ca_path))
    if item.get('skip_verify'):
        lines.append('skip_verify = true')
    if item.get('override_path'):
        lines.append('override_path = true')
    return lines


def _header_lines(item):
    if not item.get('username'):
        return []
    token = base64.b64encode(('%s:%s' % (item['username'], item['password'])).encode()).decode()
    return ['authorization = %s' % _toml_string('Basic ' + token)]


def containerd_hosts_files(mirrors, config_dir='/etc/containerd/certs.d'):
    """The files that configure every registry of ``mirrors`` (``containerd_registry_mirrors``).

    Returns ``{'directories': [...], 'files': [...]}`` in install_files' shape.
    A registry's mirrors are tried in order; with ``upstream`` (the default)
    the registry itself comes last, without it the last mirror takes the
    registry's place (``server``) and nothing else is tried. A hosts.toml
    with credentials is mode 0600 and never shown in a diff.
    """
    if mirrors is None:
        mirrors = []
    if not isinstance(mirrors, list):
        raise AnsibleFilterError('containerd_hosts_files: containerd_registry_mirrors must be a list, got %s'
                                 % type(mirrors).__name__)
    config_dir = config_dir.rstrip('/')
    seen = set()
    directories = []
    files = []
    for index, entry in enumerate(mirrors):
        where = 'containerd_registry_mirrors[%d]' % index
        if not isinstance(entry, dict):
            raise AnsibleFilterError('%s must be a dict' % where)
        registry = entry.get('registry')
        problem = registry_problem(registry)
        if problem:
            raise AnsibleFilterError('%s.registry = %s %s' % (where, json.dumps(registry), problem))
        if registry in seen:
            raise AnsibleFilterError('%s.registry = %s is listed twice' % (where, json.dumps(registry)))
        seen.add(registry)
        endpoints = entry.get('endpoints') or []
        problems = endpoint_problems(endpoints)
        if problems:
            raise AnsibleFilterError('%s.endpoints%s' % (where, problems[0]))
        upstream = entry.get('upstream', True)
        if upstream is None:
            upstream = True
        if not endpoints and not upstream:
            raise AnsibleFilterError('%s has no endpoints and upstream false: no registry would be left to pull from'
                                     % where)
        host_dir = '%s/%s' % (config_dir, registry)
        directories.append({'path': host_dir, 'mode': '0755'})
        secret = any(item.get('username') for item in endpoints)
        lines = ['# Managed by hardway.kubernetes (containerd_registry_mirrors): pulls from %s' % registry]
        ca_paths = []
        for item in endpoints:
            ca_path = None
            if item.get('ca'):
                ca_path = '%s/%s' % (host_dir, _ca_file_name(item['url']))
                files.append({'dest': ca_path, 'content': item['ca'].strip() + '\n', 'mode': '0644'})
            ca_paths.append(ca_path)
        mirrors_first = endpoints if upstream else endpoints[:-1]
        if upstream:
            lines.append('# then from the registry itself.')
        else:
            last = endpoints[-1]
            lines.append('# and nothing else: the last mirror stands in for the registry.')
            lines.append('server = %s' % _toml_string(last['url']))
            lines += _host_lines(last, ca_paths[-1])
            header = _header_lines(last)
            if header:
                lines += ['', '[header]'] + header
        for item, ca_path in zip(mirrors_first, ca_paths):
            lines += ['', '[host.%s]' % _toml_string(item['url'])]
            lines += ['  ' + line for line in _host_lines(item, ca_path)]
            header = _header_lines(item)
            if header:
                lines += ['  [host.%s.header]' % _toml_string(item['url'])]
                lines += ['    ' + line for line in header]
        files.append({'dest': '%s/hosts.toml' % host_dir, 'content': '\n'.join(lines) + '\n',
                      'mode': '0600' if secret else '0644', 'diff': not secret})
    return {'directories': directories, 'files': files}


class FilterModule:
    """hardway.kubernetes containerd filters."""

    def filters(self):
        return {'containerd_hosts_files': containerd_hosts_files}
