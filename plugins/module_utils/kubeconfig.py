# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Building, comparing and redacting kubeconfig files (hardway.kubernetes.kubeconfig).

Also reads the connection details out of a kubeconfig (``connection_from_kubeconfig``),
which the node_ready module uses; that part needs only the standard library for
JSON kubeconfigs and PyYAML for YAML ones.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os

REDACTED = '<redacted>'
KEY_FIELDS = ('client-key-data',)
CERT_FIELDS = ('certificate-authority-data', 'client-certificate-data')


class KubeconfigError(Exception):
    """A kubeconfig cannot be built or read; the message says why."""


def b64(data):
    return base64.b64encode(data).decode('ascii')


def build(cluster_name, server, ca_data, user, cert_data, key_data, context='default'):
    """The standard single-cluster, single-user kubeconfig as a dict (file contents as bytes)."""
    return {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{
            'name': cluster_name,
            'cluster': {'certificate-authority-data': b64(ca_data), 'server': server},
        }],
        'users': [{
            'name': user,
            'user': {'client-certificate-data': b64(cert_data), 'client-key-data': b64(key_data)},
        }],
        'contexts': [{'name': context, 'context': {'cluster': cluster_name, 'user': user}}],
        'current-context': context,
        'preferences': {},
    }


def _yaml():
    try:
        import yaml
    except ImportError:
        return None
    return yaml


def dump(config):
    """YAML text for a kubeconfig dict (JSON, which is valid YAML, without PyYAML)."""
    yaml = _yaml()
    if yaml is None:
        return json.dumps(config, indent=2, sort_keys=False) + '\n'
    dumper = getattr(yaml, 'CSafeDumper', yaml.SafeDumper)
    return yaml.dump(config, Dumper=dumper, default_flow_style=False, sort_keys=False)


def parse(text):
    """Parse kubeconfig text (JSON or YAML). Raises KubeconfigError."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', errors='replace')
    stripped = text.lstrip()
    if stripped.startswith('{'):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow mappings also start with "{"
    yaml = _yaml()
    if yaml is None:
        raise KubeconfigError('the kubeconfig is YAML, and reading YAML needs PyYAML, which this Python '
                              'does not have (install PyYAML, or use a kubeconfig in JSON)')
    loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise KubeconfigError('not valid YAML: %s' % exc) from None


def same(existing, desired):
    """Semantic comparison: the parsed documents are equal (formatting and key order do not matter)."""
    return _normalise(existing) == _normalise(desired)


def _normalise(value):
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def redact(config, other=None):
    """A copy of ``config`` safe to show: key data replaced, certificate data summarised.

    When ``other`` (the config on the other side of a diff) is given, a key that
    differs from the one in ``other`` is shown as ``<redacted, changed>``.
    """
    if not isinstance(config, dict):
        return config
    other_keys = set()
    if isinstance(other, dict):
        for entry in other.get('users') or []:
            user = entry.get('user') if isinstance(entry, dict) else None
            if isinstance(user, dict):
                other_keys.update(str(user.get(f)) for f in KEY_FIELDS if user.get(f))
    out = copy.deepcopy(config)
    for section, inner in (('users', 'user'), ('clusters', 'cluster')):
        for entry in out.get(section) or []:
            body = entry.get(inner) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for field in KEY_FIELDS:
                if body.get(field):
                    changed = other is not None and str(body[field]) not in other_keys
                    body[field] = REDACTED[:-1] + (', changed>' if changed else '>')
            for field in CERT_FIELDS:
                if isinstance(body.get(field), str):
                    body[field] = summarise(body[field])
    return out


def summarise(data_b64):
    """'<N bytes, sha256 0123abcd...>' for base64 certificate data."""
    try:
        raw = base64.b64decode(data_b64)
    except (ValueError, TypeError):
        raw = data_b64.encode('utf-8', errors='replace')
    return '<%d bytes, sha256 %s>' % (len(raw), hashlib.sha256(raw).hexdigest()[:16])


def secrets_in(config):
    """Every key-data string in ``config`` (to register as no_log values)."""
    out = []
    for entry in (config or {}).get('users') or []:
        user = entry.get('user') if isinstance(entry, dict) else None
        if isinstance(user, dict):
            out.extend(str(user[f]) for f in KEY_FIELDS if user.get(f))
    return out


# --------------------------------------------------------------------------
# Reading connection details (used by node_ready)


def _named(entries, name, what):
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get('name') == name:
            body = entry.get(what)
            return body if isinstance(body, dict) else {}
    return None


def _data_or_file(body, field, base_dir):
    """``(bytes or None, path or None)`` for a ``<field>-data`` / ``<field>`` pair."""
    data = body.get(field + '-data')
    if data:
        try:
            return base64.b64decode(data), None
        except (ValueError, TypeError):
            raise KubeconfigError('%s-data is not valid base64' % field) from None
    path = body.get(field)
    if path:
        path = os.path.expanduser(str(path))
        if not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        return None, path
    return None, None


def connection_from_kubeconfig(path, context=None):
    """Server URL and TLS material of the current (or given) context of a kubeconfig file.

    Returns a dict with ``server``, ``ca_data``/``ca_file``, ``cert_data``/``cert_file``,
    ``key_data``/``key_file``, ``insecure`` and ``tls_server_name``. Raises KubeconfigError.
    """
    try:
        with open(path, 'rb') as handle:
            text = handle.read()
    except OSError as exc:
        raise KubeconfigError('cannot read kubeconfig %s: %s' % (path, exc.strerror or exc)) from None
    try:
        config = parse(text)
    except KubeconfigError as exc:
        raise KubeconfigError('kubeconfig %s: %s' % (path, exc)) from None
    if not isinstance(config, dict):
        raise KubeconfigError('kubeconfig %s is not a mapping' % path)
    name = context or config.get('current-context')
    if not name:
        raise KubeconfigError('kubeconfig %s has no current-context' % path)
    ctx = _named(config.get('contexts'), name, 'context')
    if ctx is None:
        raise KubeconfigError('kubeconfig %s: context %r not found' % (path, name))
    cluster = _named(config.get('clusters'), ctx.get('cluster'), 'cluster')
    if not cluster or not cluster.get('server'):
        raise KubeconfigError('kubeconfig %s: cluster %r of context %r not found or has no server'
                              % (path, ctx.get('cluster'), name))
    user = _named(config.get('users'), ctx.get('user'), 'user') or {}
    base_dir = os.path.dirname(os.path.abspath(path))
    try:
        ca_data, ca_file = _data_or_file(cluster, 'certificate-authority', base_dir)
        cert_data, cert_file = _data_or_file(user, 'client-certificate', base_dir)
        key_data, key_file = _data_or_file(user, 'client-key', base_dir)
    except KubeconfigError as exc:
        raise KubeconfigError('kubeconfig %s: %s' % (path, exc)) from None
    return {
        'server': str(cluster['server']),
        'ca_data': ca_data, 'ca_file': ca_file,
        'cert_data': cert_data, 'cert_file': cert_file,
        'key_data': key_data, 'key_file': key_file,
        'insecure': bool(cluster.get('insecure-skip-tls-verify')),
        'tls_server_name': cluster.get('tls-server-name'),
        'token': user.get('token'),
    }
