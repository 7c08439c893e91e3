"""The filters in plugins/filter/cert_manager.py: ClusterIssuers, their CAs and the Secrets that hold them."""

from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import cert_manager as CM
from hardway_testlib import run_adhoc

STATE = '/srv/inv/.hardway/kubernetes'
PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----'
LE = {'name': 'letsencrypt', 'type': 'acme', 'preset': 'letsencrypt', 'email': 'ops@example.org'}
PEBBLE = {'name': 'pebble', 'type': 'acme', 'server': 'https://pebble.lab:14000/dir', 'email': 'ops@example.org',
          'ca_bundle': PEM + '\n\n', 'ingress_class': 'other'}
INTERNAL = {'name': 'internal', 'type': 'ca'}
NAMED = {'name': 'lab.ca', 'type': 'ca', 'common_name': 'Lab CA', 'lifetime_days': 730}


def test_registered():
    assert set(CM.FilterModule().filters()) == {'cert_manager_issuers', 'cert_manager_authorities',
                                                'cert_manager_ca_secrets'}


def test_issuers_acme_preset():
    assert CM.cert_manager_issuers([LE], 'traefik') == [{
        'apiVersion': 'cert-manager.io/v1', 'kind': 'ClusterIssuer', 'metadata': {'name': 'letsencrypt'},
        'spec': {'acme': {
            'server': 'https://acme-v02.api.letsencrypt.org/directory',
            'email': 'ops@example.org',
            'privateKeySecretRef': {'name': 'letsencrypt-account-key'},
            'solvers': [{'http01': {'ingress': {'ingressClassName': 'traefik'}}}],
        }},
    }]


def test_issuers_acme_staging_and_default_class():
    staging = dict(LE, name='staging', preset='letsencrypt-staging')
    (issuer,) = CM.cert_manager_issuers([staging])
    assert issuer['spec']['acme']['server'] == 'https://acme-staging-v02.api.letsencrypt.org/directory'
    assert issuer['spec']['acme']['solvers'][0]['http01']['ingress']['ingressClassName'] == 'traefik'


def test_issuers_acme_server_bundle_and_class():
    (issuer,) = CM.cert_manager_issuers([PEBBLE], 'traefik')
    acme = issuer['spec']['acme']
    assert acme['server'] == 'https://pebble.lab:14000/dir'
    assert base64.b64decode(acme['caBundle']).decode() == PEM + '\n'  # one final newline
    assert acme['solvers'] == [{'http01': {'ingress': {'ingressClassName': 'other'}}}]
    assert acme['privateKeySecretRef'] == {'name': 'pebble-account-key'}


def test_issuers_ca():
    assert CM.cert_manager_issuers([INTERNAL, NAMED]) == [
        {'apiVersion': 'cert-manager.io/v1', 'kind': 'ClusterIssuer', 'metadata': {'name': 'internal'},
         'spec': {'ca': {'secretName': 'internal-ca'}}},
        {'apiVersion': 'cert-manager.io/v1', 'kind': 'ClusterIssuer', 'metadata': {'name': 'lab.ca'},
         'spec': {'ca': {'secretName': 'lab.ca-ca'}}},
    ]


def test_empty():
    assert CM.cert_manager_issuers([]) == []
    assert CM.cert_manager_authorities([]) == []
    assert CM.cert_manager_ca_secrets([], STATE) == []


def test_authorities():
    assert CM.cert_manager_authorities([LE, INTERNAL, NAMED]) == [
        {'name': 'cert-manager-internal-ca', 'common_name': 'internal CA'},
        {'name': 'cert-manager-lab.ca-ca', 'common_name': 'Lab CA', 'lifetime_days': 730},
    ]


def test_ca_secrets():
    assert CM.cert_manager_ca_secrets([LE, INTERNAL], STATE + '/') == [
        {'name': 'internal-ca', 'cert': STATE + '/pki/cert-manager-internal-ca.pem',
         'key': STATE + '/pki/cert-manager-internal-ca-key.pem'},
    ]


@pytest.mark.parametrize('issuers, message', [
    ('internal', 'cert_manager_cluster_issuers must be a list, got str'),
    (['internal'], "item 1 must be a dict {name, type, ...}, got 'internal'"),
    ([{'type': 'ca'}], 'item 1, field name: must be a non-empty string, got None'),
    ([{'name': 'Internal', 'type': 'ca'}], "item 1 (Internal), field name: must be a lowercase DNS name"),
    ([{'name': 'a' * 64, 'type': 'ca'}], 'field name: must be a lowercase DNS name'),
    ([{'name': 'x-', 'type': 'ca'}], 'item 1 (x-), field name'),
    ([INTERNAL, LE, dict(LE)], 'item 3 (letsencrypt), field name: is already the name of item 2'),
    ([{'name': 'x', 'type': 'vault'}], "item 1 (x), field type: must be one of acme, ca, got 'vault'"),
    ([{'name': 'x'}], 'item 1 (x), field type: must be one of acme, ca, got None'),
    ([dict(INTERNAL, server='https://x')], 'item 1 (internal), field server: is not a field of type ca'),
    ([dict(LE, secret='x')], 'item 1 (letsencrypt), field secret: is not a field of type acme'),
    ([dict(LE, server='https://x')], 'field server: an acme issuer needs exactly one of server'),
    ([{'name': 'x', 'type': 'acme', 'email': 'a@b.c'}], 'item 1 (x), field server: an acme issuer needs exactly one'),
    ([dict(PEBBLE, server='http://pebble/dir')], "field server: must be the https:// URL of the ACME directory"),
    ([dict(PEBBLE, server='')], 'field server: must be a non-empty string'),
    ([dict(LE, preset='zerossl')], "item 1 (letsencrypt), field preset: must be one of letsencrypt, "
                                   "letsencrypt-staging, got 'zerossl'"),
    ([{'name': 'x', 'type': 'acme', 'preset': 'letsencrypt'}], 'item 1 (x), field email: must be a non-empty'),
    ([dict(LE, email='ops')], "field email: must be an e-mail address, got 'ops'"),
    ([dict(PEBBLE, ca_bundle='not a pem')], 'item 1 (pebble), field ca_bundle: must be PEM text'),
    ([dict(PEBBLE, ingress_class=7)], 'item 1 (pebble), field ingress_class: must be a non-empty string, got 7'),
    ([dict(NAMED, lifetime_days=0)], 'item 1 (lab.ca), field lifetime_days: must be a positive number of days'),
    ([dict(NAMED, lifetime_days='730')], 'field lifetime_days: must be a positive number'),
    ([dict(NAMED, common_name='')], 'item 1 (lab.ca), field common_name: must be a non-empty string'),
])
def test_errors(issuers, message):
    for call in (lambda: CM.cert_manager_issuers(issuers), lambda: CM.cert_manager_authorities(issuers),
                 lambda: CM.cert_manager_ca_secrets(issuers, STATE)):
        with pytest.raises(AnsibleFilterError) as err:
            call()
        assert message in str(err.value)


def test_errors_name_the_filter():
    with pytest.raises(AnsibleFilterError, match=r'^hardway.kubernetes.cert_manager_authorities: '):
        CM.cert_manager_authorities([{'name': 'x', 'type': 'y'}])
    with pytest.raises(AnsibleFilterError, match='the default ingress class must be a non-empty string'):
        CM.cert_manager_issuers([LE], '')
    with pytest.raises(AnsibleFilterError, match='the state directory must be a non-empty string'):
        CM.cert_manager_ca_secrets([INTERNAL], None)


def test_through_ansible(tmp_path):
    expr = ("{{ ([{'name': 'le', 'type': 'acme', 'preset': 'letsencrypt', 'email': 'a@b.org'}]"
            " | hardway.kubernetes.cert_manager_issuers('nginx'))[0].spec.acme.solvers[0].http01.ingress"
            ".ingressClassName }} "
            "{{ ([{'name': 'i', 'type': 'ca'}] | hardway.kubernetes.cert_manager_authorities)[0].name }} "
            "{{ ([{'name': 'i', 'type': 'ca'}] | hardway.kubernetes.cert_manager_ca_secrets('/s'))[0].key }}")
    rc, result, output = run_adhoc('ansible.builtin.debug', {'msg': expr}, tmp_path, pythonpath=False)
    assert rc == 0, output
    assert result['msg'] == 'nginx cert-manager-i-ca /s/pki/cert-manager-i-ca-key.pem', output
