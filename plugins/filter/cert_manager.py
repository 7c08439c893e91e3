# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""cert-manager's ClusterIssuers from the operator's list (cert_manager_cluster_issuers).

Each item is ``{name, type, ...}``; ``type`` is ``acme`` (an ACME server, by URL or preset, solving
HTTP-01 challenges through an IngressClass) or ``ca`` (a CA the collection makes on the controller
with the pki module and puts into the cluster as a kubernetes.io/tls Secret).

- ``cert_manager_issuers(issuers, ingress_class)``: the ClusterIssuer objects, as dicts.
- ``cert_manager_authorities(issuers)``: the pki module's authority requests for the ``ca`` items.
- ``cert_manager_ca_secrets(issuers, state_dir)``: for each ``ca`` item, the Secret's name and the
  controller's files (certificate and key) that fill it.

Every filter validates the whole list first and raises AnsibleFilterError naming the item (its
position and name) and the field at fault.
"""

from __future__ import annotations

import base64
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.hardway.kubernetes.plugins.filter.state import state_path

PRESETS = {
    'letsencrypt': 'https://acme-v02.api.letsencrypt.org/directory',
    'letsencrypt-staging': 'https://acme-staging-v02.api.letsencrypt.org/directory',
}
TYPES = ('acme', 'ca')
FIELDS = {
    'acme': {'name', 'type', 'server', 'preset', 'email', 'ca_bundle', 'ingress_class'},
    'ca': {'name', 'type', 'common_name', 'lifetime_days'},
}
# A DNS-1123 subdomain, short enough that the Secrets named after it stay valid names too.
_NAME = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_NAME_MAX = 63
_EMAIL = re.compile(r'^[^@\s]+@[^@\s]+\.[^@\s]+$')
_PEM_CERT = '-----BEGIN CERTIFICATE-----'
_VARIABLE = 'cert_manager_cluster_issuers'


class _Item:
    """One list item, for error messages that name it."""

    def __init__(self, filter_name, index, item):
        self.filter_name = filter_name
        self.index = index
        self.item = item

    def fail(self, field, message):
        name = self.item.get('name') if isinstance(self.item, dict) else None
        label = '%s item %d' % (_VARIABLE, self.index + 1)
        if isinstance(name, str) and name:
            label += ' (%s)' % name
        raise AnsibleFilterError('hardway.kubernetes.%s: %s, field %s: %s' % (self.filter_name, label, field, message))

    def text(self, field, required=True):
        value = self.item.get(field)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(field, 'must be a non-empty string, got %r' % (value,))
        return value


def _validate(issuers, filter_name):
    """The items, checked: a list of dicts with a valid name (unique) and type, and that type's fields."""
    if not isinstance(issuers, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.%s: %s must be a list, got %s'
                                 % (filter_name, _VARIABLE, type(issuers).__name__))
    seen = {}
    out = []
    for index, item in enumerate(issuers):
        check = _Item(filter_name, index, item)
        if not isinstance(item, dict):
            raise AnsibleFilterError('hardway.kubernetes.%s: %s item %d must be a dict {name, type, ...}, got %r'
                                     % (filter_name, _VARIABLE, index + 1, item))
        name = check.text('name')
        if len(name) > _NAME_MAX or not _NAME.match(name):
            check.fail('name', 'must be a lowercase DNS name (letters, digits, "-" and ".") of at most %d '
                               'characters, got %r' % (_NAME_MAX, name))
        if name in seen:
            check.fail('name', 'is already the name of item %d' % seen[name])
        seen[name] = index + 1
        kind = item.get('type')
        if kind not in TYPES:
            check.fail('type', 'must be one of %s, got %r' % (', '.join(TYPES), kind))
        unknown = sorted(set(item) - FIELDS[kind])
        if unknown:
            check.fail(unknown[0], 'is not a field of type %s (its fields: %s)'
                       % (kind, ', '.join(sorted(FIELDS[kind]))))
        if kind == 'acme':
            _validate_acme(check)
        else:
            _validate_ca(check)
        out.append(item)
    return out


def _validate_acme(check):
    item = check.item
    if ('server' in item) == ('preset' in item):
        check.fail('server', 'an acme issuer needs exactly one of server (the ACME directory URL) and preset (%s)'
                   % ', '.join(sorted(PRESETS)))
    if 'server' in item:
        server = check.text('server')
        if not server.startswith('https://') or len(server) <= len('https://'):
            check.fail('server', 'must be the https:// URL of the ACME directory, got %r' % server)
    elif item['preset'] not in PRESETS:
        check.fail('preset', 'must be one of %s, got %r' % (', '.join(sorted(PRESETS)), item['preset']))
    email = check.text('email')
    if not _EMAIL.match(email):
        check.fail('email', 'must be an e-mail address, got %r' % email)
    bundle = check.text('ca_bundle', required=False)
    if bundle is not None and _PEM_CERT not in bundle:
        check.fail('ca_bundle', 'must be PEM text with at least one certificate (%s)' % _PEM_CERT)
    check.text('ingress_class', required=False)


def _validate_ca(check):
    check.text('common_name', required=False)
    days = check.item.get('lifetime_days')
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days <= 0):
        check.fail('lifetime_days', 'must be a positive number of days, got %r' % (days,))


def _authority_name(name):
    return 'cert-manager-%s-ca' % name


def _secret_name(name):
    return '%s-ca' % name


def cert_manager_issuers(issuers, ingress_class='traefik'):
    """ClusterIssuer objects (dicts) for the items, in order.

    acme: the server (or the preset's URL), the account e-mail, the account key Secret
    ``<name>-account-key``, an optional CA bundle (base64 of the PEM text) and one HTTP-01 solver
    through the item's ``ingress_class`` (default: ``ingress_class``). ca: ``spec.ca.secretName``
    ``<name>-ca``, the Secret ``cert_manager_ca_secrets`` describes.
    """
    if not isinstance(ingress_class, str) or not ingress_class:
        raise AnsibleFilterError('hardway.kubernetes.cert_manager_issuers: the default ingress class must be a '
                                 'non-empty string, got %r' % (ingress_class,))
    out = []
    for item in _validate(issuers, 'cert_manager_issuers'):
        name = item['name']
        if item['type'] == 'acme':
            acme = {
                'server': item.get('server') or PRESETS[item['preset']],
                'email': item['email'],
                'privateKeySecretRef': {'name': '%s-account-key' % name},
                'solvers': [{'http01': {'ingress': {'ingressClassName': item.get('ingress_class') or ingress_class}}}],
            }
            if item.get('ca_bundle'):
                pem = item['ca_bundle'].strip() + '\n'
                acme['caBundle'] = base64.b64encode(pem.encode('utf-8')).decode('ascii')
            spec = {'acme': acme}
        else:
            spec = {'ca': {'secretName': _secret_name(name)}}
        out.append({'apiVersion': 'cert-manager.io/v1', 'kind': 'ClusterIssuer', 'metadata': {'name': name},
                    'spec': spec})
    return out


def cert_manager_authorities(issuers):
    """The pki module's authorities for the ca items: ``cert-manager-<name>-ca``, common name
    ``common_name`` (default ``<name> CA``) and, when the item sets it, ``lifetime_days``."""
    out = []
    for item in _validate(issuers, 'cert_manager_authorities'):
        if item['type'] != 'ca':
            continue
        authority = {'name': _authority_name(item['name']), 'common_name': item.get('common_name') or
                     '%s CA' % item['name']}
        if item.get('lifetime_days') is not None:
            authority['lifetime_days'] = item['lifetime_days']
        out.append(authority)
    return out


def cert_manager_ca_secrets(issuers, state_dir):
    """``{name, cert, key}`` per ca item: the Secret ``<name>-ca`` and the controller's certificate
    and key files of its authority in the state directory."""
    items = _validate(issuers, 'cert_manager_ca_secrets')
    if not isinstance(state_dir, str) or not state_dir:
        raise AnsibleFilterError('hardway.kubernetes.cert_manager_ca_secrets: the state directory must be a '
                                 'non-empty string, got %r' % (state_dir,))
    return [{'name': _secret_name(item['name']),
             'cert': state_path(state_dir, 'cert', _authority_name(item['name'])),
             'key': state_path(state_dir, 'key', _authority_name(item['name']))}
            for item in items if item['type'] == 'ca']


class FilterModule:
    """hardway.kubernetes filters for cert-manager's ClusterIssuers."""

    def filters(self):
        return {
            'cert_manager_issuers': cert_manager_issuers,
            'cert_manager_authorities': cert_manager_authorities,
            'cert_manager_ca_secrets': cert_manager_ca_secrets,
        }
