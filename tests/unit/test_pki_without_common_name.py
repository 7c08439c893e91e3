"""A client certificate without a common name (pki module_utils), as etcd's JSON gateway wants it while
etcd authentication is on: issued with only the organization, then left alone, and re-issued when a name
appears or goes."""

from __future__ import annotations

from ansible_collections.hardway.kubernetes.plugins.module_utils import pki as P
from cryptography import x509
from cryptography.x509.oid import NameOID

CA = {'name': 'etcd-ca', 'common_name': 'etcd-ca'}
GATEWAY = {'name': 'etcd-client-gateway', 'ca': 'etcd-ca', 'common_name': '', 'organization': ['hardway-etcd-gateway']}


def run(path, certificates):
    pki = P.PKI(str(path), [dict(CA)], [dict(c) for c in certificates], []).plan()
    pki.apply()
    return pki


def subject(path, name):
    cert = x509.load_pem_x509_certificate((path / f'{name}.pem').read_bytes())
    return cert.subject


def test_issued_without_common_name_and_then_kept(tmp_path):
    assert run(tmp_path, [GATEWAY]).changed
    name = subject(tmp_path, 'etcd-client-gateway')
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    assert [a.value for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ['hardway-etcd-gateway']
    assert not run(tmp_path, [GATEWAY]).changed


def test_common_name_appearing_or_going_reissues(tmp_path):
    run(tmp_path, [dict(GATEWAY, common_name='etcd-admin')])
    pki = run(tmp_path, [GATEWAY])
    assert pki.changed
    assert pki.results()['certificates']['etcd-client-gateway']['reason'] == 'common name is [etcd-admin], want none'
    assert subject(tmp_path, 'etcd-client-gateway').get_attributes_for_oid(NameOID.COMMON_NAME) == []
    assert run(tmp_path, [dict(GATEWAY, common_name='x')]).changed
