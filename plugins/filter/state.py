# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""The controller's state directory (cluster_state_dir): where each file lives, named once.

- ``state_path(state_dir, kind, name)``: the path of one file (or directory) of the state.
- ``credential_files(items, state_dir, pki_dir, config_dir)``: the install_files items that put
  certificates, keys and kubeconfigs from the state on a host, with the host's paths and modes.
- ``changed_credentials(pki_result, kubeconfig_result)``: the state files that the pki and
  kubeconfig modules wrote (or would write) in this run.
- ``reissued(install_result, changed)``: whether an install_files task installs one of those.

Every role reads the state through these filters; the pki and kubeconfig modules write
``<name>.pem``, ``<name>-key.pem`` and ``<name>.pub`` into ``state_path(dir, 'pki')`` and
kubeconfigs where ``state_path(dir, 'kubeconfig', name)`` says.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleFilterError

# kind -> path below the state directory ({name}: the file's name stem).
LAYOUT = {
    'pki': 'pki',
    'kubeconfigs': 'kubeconfigs',
    'cert': 'pki/{name}.pem',
    'bundle': 'pki/{name}-bundle.pem',
    'key': 'pki/{name}-key.pem',
    'pub': 'pki/{name}.pub',
    'kubeconfig': 'kubeconfigs/{name}.kubeconfig',
    'admin_kubeconfig': 'admin.kubeconfig',
    'encryption_key': 'encryption-key',
    'etcd_admin_password': 'etcd-admin-password',
    'artifacts_lock': 'artifacts.lock',
    'backups': 'backups',
}

# What an item of credential_files installs: kind -> [(state kind, mode)].
CREDENTIALS = {
    # a CA goes to a host as its trust bundle (the CA, and during a rotation the other one too)
    'ca': [('bundle', '0644')],
    'cert': [('cert', '0644'), ('key', '0600')],
    'key': [('key', '0600')],
    'pub': [('pub', '0644')],
    'kubeconfig': [('kubeconfig', '0600')],
}


def _text(value, filter_name, what):
    if not isinstance(value, str) or not value:
        raise AnsibleFilterError('hardway.kubernetes.%s: %s must be a non-empty string, got %r'
                                 % (filter_name, what, value))
    return value


def state_path(state_dir, kind, name=None):
    """The path of one file (``kind`` and, for a certificate, key or kubeconfig, its ``name``) of the state."""
    state_dir = _text(state_dir, 'state_path', 'the state directory')
    if kind not in LAYOUT:
        raise AnsibleFilterError('hardway.kubernetes.state_path: unknown kind %r (kinds: %s)'
                                 % (kind, ', '.join(sorted(LAYOUT))))
    pattern = LAYOUT[kind]
    if '{name}' in pattern:
        pattern = pattern.format(name=_text(name, 'state_path', 'the name of a %s' % kind))
    elif name is not None:
        raise AnsibleFilterError('hardway.kubernetes.state_path: kind %s takes no name (got %r)' % (kind, name))
    return state_dir.rstrip('/') + '/' + pattern


def credential_files(items, state_dir, pki_dir, config_dir):
    """install_files items for a host's credentials.

    Each item names one credential by its kind: ``{ca: name}`` (the CA's trust bundle, installed
    as ``<name>.pem``),
    ``{cert: name}`` (certificate and key), ``{key: name}``, ``{pub: name}`` (a key pair's halves)
    go to ``pki_dir`` under their state file names; ``{kubeconfig: name, as: host_name}`` goes to
    ``config_dir/<host_name or name>.kubeconfig``. Keys and kubeconfigs get mode 0600, the rest 0644.
    """
    if not isinstance(items, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.credential_files expects a list of credentials, got %s'
                                 % type(items).__name__)
    pki_dir = _text(pki_dir, 'credential_files', 'pki_dir').rstrip('/')
    config_dir = _text(config_dir, 'credential_files', 'config_dir').rstrip('/')
    out = []
    for item in items:
        kinds = [k for k in CREDENTIALS if isinstance(item, dict) and k in item]
        if len(kinds) != 1 or set(item) - {kinds[0], 'as'} or ('as' in item and kinds[0] != 'kubeconfig'):
            raise AnsibleFilterError('hardway.kubernetes.credential_files: %r must name one credential: '
                                     '{ca|cert|key|pub: name} or {kubeconfig: name, as: file name}' % (item,))
        kind = kinds[0]
        name = _text(item[kind], 'credential_files', 'the name of a %s' % kind)
        for state_kind, mode in CREDENTIALS[kind]:
            src = state_path(state_dir, state_kind, name)
            if kind == 'kubeconfig':
                dest = '%s/%s.kubeconfig' % (config_dir, _text(item.get('as', name), 'credential_files', 'as'))
            elif kind == 'ca':
                dest = '%s/%s.pem' % (pki_dir, name)
            else:
                dest = '%s/%s' % (pki_dir, os.path.basename(src))
            out.append({'src': src, 'dest': dest, 'mode': mode})
    return out


def changed_credentials(pki_result, kubeconfig_result=None):
    """The state files the pki module (and the kubeconfig module) wrote, or would write in check mode."""
    out = []
    for group in ('authorities', 'certificates', 'keypairs', 'bundles'):
        for outcome in ((pki_result or {}).get(group) or {}).values():
            if outcome.get('action', 'unchanged') != 'unchanged':
                out += [p for p in (outcome.get('path'), outcome.get('key_path')) if p]
    for path, outcome in ((kubeconfig_result or {}).get('kubeconfigs') or {}).items():
        if outcome.get('changed'):
            out.append(path)
    return sorted(set(out))


def _norm(path):
    return os.path.normpath(os.path.expanduser(str(path)))


def reissued(install_result, changed):
    """Whether an install_files result has a source among ``changed`` (controller paths).

    A file shared by two roles on one host (a CA, the service account key) is replaced by the
    first role that installs it; the second finds it up to date, and restarts its service all
    the same when the file was re-issued in this run.
    """
    changed = {_norm(p) for p in changed or []}
    if not changed or not isinstance(install_result, dict):
        return False
    return any(f.get('src') and _norm(f['src']) in changed for f in install_result.get('files') or [])


class FilterModule:
    """hardway.kubernetes filters for the controller's state directory."""

    def filters(self):
        return {
            'state_path': state_path,
            'credential_files': credential_files,
            'changed_credentials': changed_credentials,
            'reissued': reissued,
        }
