"""The PKI logic (plugins/module_utils/pki.py): decisions, files, and what openssl sees."""

from __future__ import annotations

import datetime
import os
import shutil
import stat
import subprocess
import time

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import pki as P
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CA = {'name': 'ca', 'common_name': 'Test CA'}
ADMIN = {'name': 'admin', 'ca': 'ca', 'common_name': 'admin', 'organization': ['system:masters']}
API = {
    'name': 'apiserver',
    'ca': 'ca',
    'common_name': 'kube-apiserver',
    'usage': ['server'],
    'dns_names': ['kubernetes', 'kubernetes.default'],
    'ip_addresses': ['10.32.0.1', '127.0.0.1', 'fd00::1'],
}
SA = {'name': 'service-account'}

OPENSSL = shutil.which('openssl')
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason='openssl command not installed')


def run(path, authorities=(CA,), certificates=(ADMIN, API), keypairs=(SA,), check=False, **kwargs):
    """Plan (and unless ``check``, apply) a PKI run in ``path``; returns the PKI object."""
    pki = P.PKI(
        str(path),
        [dict(a) for a in authorities],
        [dict(c) for c in certificates],
        [dict(k) for k in keypairs],
        **kwargs,
    ).plan()
    if not check:
        pki.apply()
    return pki


def snapshot(directory):
    """name -> (inode, mtime_ns, mode, content) for every file."""
    out = {}
    for name in sorted(os.listdir(directory)):
        st = os.stat(os.path.join(directory, name))
        with open(os.path.join(directory, name), 'rb') as handle:
            out[name] = (st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode), handle.read())
    return out


def load_cert(path):
    with open(path, 'rb') as handle:
        return x509.load_pem_x509_certificate(handle.read())


def actions(pki, kind='certificates'):
    return {name: (r['action'], r['reason']) for name, r in pki.results()[kind].items()}


@pytest.fixture
def pkidir(tmp_path):
    """A directory with a complete, freshly made PKI."""
    path = tmp_path / 'pki'
    run(path)
    return path


# --------------------------------------------------------------------------
# Creating


def test_creates_everything_with_modes(tmp_path):
    path = tmp_path / 'sub' / 'pki'
    pki = run(path)
    assert pki.changed
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    expected = {
        'ca.pem': 0o644,
        'ca-key.pem': 0o600,
        'ca-bundle.pem': 0o644,  # what is trusted: the CA alone, until it is rotated
        'admin.pem': 0o644,
        'admin-key.pem': 0o600,
        'apiserver.pem': 0o644,
        'apiserver-key.pem': 0o600,
        'service-account.pub': 0o644,
        'service-account-key.pem': 0o600,
    }
    assert {n: m for n, (_inode, _mtime, m, _content) in snapshot(path).items()} == expected
    results = pki.results()
    assert results['authorities']['ca']['action'] == 'created'
    assert results['certificates']['admin'] == {
        'action': 'created',
        'reason': 'certificate missing; key missing',
        'path': str(path / 'admin.pem'),
        'key_path': str(path / 'admin-key.pem'),
        'not_after': results['certificates']['admin']['not_after'],
    }
    assert results['keypairs']['service-account']['path'] == str(path / 'service-account.pub')
    assert results['keypairs']['service-account']['not_after'] is None
    # no temporary files left behind
    assert not [n for n in os.listdir(path) if n.startswith('.')]


def test_certificate_contents(pkidir):
    ca = load_cert(pkidir / 'ca.pem')
    admin = load_cert(pkidir / 'admin.pem')
    api = load_cert(pkidir / 'apiserver.pem')
    assert admin.version == x509.Version.v3
    assert P.signed_by(admin, ca) and P.signed_by(api, ca)
    assert P.subject_values(admin, P.NameOID.COMMON_NAME) == ['admin']
    assert P.subject_values(admin, P.NameOID.ORGANIZATION_NAME) == ['system:masters']
    assert P.cert_usage(admin) == ['client'] and P.cert_usage(api) == ['server']
    assert admin.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert P.is_ca(ca)
    ca_ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ca_ku.key_cert_sign and ca_ku.crl_sign
    ku = admin.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
    aki = admin.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    with pytest.raises(x509.ExtensionNotFound):
        admin.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dns, ips = P.cert_sans(api)
    assert dns == ['kubernetes', 'kubernetes.default']
    assert [str(i) for i in ips] == ['10.32.0.1', '127.0.0.1', 'fd00::1']
    now = datetime.datetime.now(P.UTC)
    start = P.not_after(admin) - datetime.timedelta(days=365)
    assert abs((start - now).total_seconds()) < 60
    assert admin.not_valid_before_utc < now - datetime.timedelta(minutes=4)
    assert isinstance(admin.public_key(), ec.EllipticCurvePublicKey)
    assert admin.signature_hash_algorithm.name == 'sha256'
    assert admin.serial_number != api.serial_number


@needs_openssl
def test_openssl_verifies_and_reads_what_was_asked(pkidir):
    for name in ('admin', 'apiserver'):
        proc = subprocess.run(
            [OPENSSL, 'verify', '-CAfile', str(pkidir / 'ca.pem'), str(pkidir / f'{name}.pem')],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0 and ': OK' in proc.stdout, proc.stdout + proc.stderr
    text = subprocess.run(
        [OPENSSL, 'x509', '-noout', '-text', '-in', str(pkidir / 'apiserver.pem')],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'CN=kube-apiserver' in text.replace(' = ', '=')
    assert (
        'DNS:kubernetes, DNS:kubernetes.default, IP Address:10.32.0.1, IP Address:127.0.0.1, '
        'IP Address:FD00:0:0:0:0:0:0:1' in text
    )
    assert 'TLS Web Server Authentication' in text and 'TLS Web Client Authentication' not in text
    assert 'CA:FALSE' in text and 'Digital Signature' in text
    text = subprocess.run(
        [OPENSSL, 'x509', '-noout', '-text', '-in', str(pkidir / 'admin.pem')],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace(' = ', '=')
    assert 'O=system:masters, CN=admin' in text
    assert 'TLS Web Client Authentication' in text and 'TLS Web Server Authentication' not in text
    text = subprocess.run(
        [OPENSSL, 'x509', '-noout', '-text', '-in', str(pkidir / 'ca.pem')],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'CA:TRUE' in text and 'Certificate Sign, CRL Sign' in text
    # the key pair: the public key file is the private key's public half
    pub = subprocess.run(
        [OPENSSL, 'pkey', '-in', str(pkidir / 'service-account-key.pem'), '-pubout'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert pub == (pkidir / 'service-account.pub').read_text()
    assert 'BEGIN PUBLIC KEY' in pub


@needs_openssl
def test_openssl_rsa_certificate(tmp_path):
    cert = dict(ADMIN, name='rsa', key_type='rsa', usage=['client', 'server'])
    run(tmp_path, certificates=[cert], keypairs=[])
    text = subprocess.run(
        [OPENSSL, 'x509', '-noout', '-text', '-in', str(tmp_path / 'rsa.pem')],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'Public-Key: (2048 bit)' in text
    assert 'Digital Signature, Key Encipherment' in text
    assert (
        'TLS Web Client Authentication, TLS Web Server Authentication' in text
        or 'TLS Web Server Authentication, TLS Web Client Authentication' in text
    )
    proc = subprocess.run(
        [OPENSSL, 'verify', '-CAfile', str(tmp_path / 'ca.pem'), str(tmp_path / 'rsa.pem')],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------
# Idempotence


def test_unchanged_rewrites_nothing(pkidir):
    before = snapshot(pkidir)
    time.sleep(0.01)
    pki = run(pkidir)
    assert not pki.changed
    assert snapshot(pkidir) == before
    for kind in ('authorities', 'certificates', 'keypairs'):
        assert {r['action'] for r in pki.results()[kind].values()} == {'unchanged'}
        assert {r['reason'] for r in pki.results()[kind].values()} == {P.UP_TO_DATE}
    assert pki.diff() == {'before': '', 'after': ''}


def test_equivalent_requests_are_unchanged(pkidir):
    api = dict(
        API,
        dns_names=['KUBERNETES.default', 'kubernetes', 'kubernetes'],
        ip_addresses=['127.0.0.1', 'fd00:0:0::1', '10.32.0.1'],
        key_size=256,
        lifetime_days=400,
    )
    admin = dict(ADMIN, usage=['client', 'client'])
    assert not run(pkidir, certificates=[admin, api]).changed


# --------------------------------------------------------------------------
# Re-issue reasons


def reissue(pkidir, mutate=None, certificates=(ADMIN, API), **kwargs):
    """Mutate files, rerun and return (result of admin, admin key bytes before, after)."""
    key_before = (pkidir / 'admin-key.pem').read_bytes()
    if mutate:
        mutate(pkidir)
    pki = run(pkidir, certificates=certificates, **kwargs)
    assert pki.changed
    return pki.results()['certificates']['admin'], key_before, (pkidir / 'admin-key.pem').read_bytes()


def test_missing_certificate_reuses_key(pkidir):
    result, key_before, key_after = reissue(pkidir, lambda d: (d / 'admin.pem').unlink())
    assert (result['action'], result['reason']) == ('created', 'certificate missing')
    assert key_before == key_after
    assert P.key_matches_cert(P.load_private_key(key_after)[0], load_cert(pkidir / 'admin.pem'))


def test_unreadable_certificate(pkidir):
    result, key_before, key_after = reissue(pkidir, lambda d: (d / 'admin.pem').write_text('garbage'))
    assert result['action'] == 'reissued'
    assert result['reason'].startswith('certificate unreadable: not a PEM certificate')
    assert key_before == key_after


def test_missing_key_makes_a_new_one(pkidir):
    result, _key_before, key_after = reissue(pkidir, lambda d: (d / 'admin-key.pem').unlink())
    assert (result['action'], result['reason']) == ('reissued', 'key missing')
    assert P.key_matches_cert(P.load_private_key(key_after)[0], load_cert(pkidir / 'admin.pem'))
    assert stat.S_IMODE(os.stat(pkidir / 'admin-key.pem').st_mode) == 0o600


def test_unreadable_key(pkidir):
    result, key_before, key_after = reissue(pkidir, lambda d: (d / 'admin-key.pem').write_text('nope'))
    assert result['reason'].startswith('key unreadable: not an unencrypted PEM private key')
    assert key_after != key_before and b'BEGIN PRIVATE KEY' in key_after


def test_key_type_change(pkidir):
    admin = dict(ADMIN, key_type='rsa', key_size=3072)
    result, key_before, key_after = reissue(pkidir, certificates=[admin, API])
    assert result['reason'] == 'key is ecdsa secp256r1, want rsa 3072'
    key = P.load_private_key(key_after)[0]
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    assert P.key_matches_cert(key, load_cert(pkidir / 'admin.pem'))


def test_key_not_matching_certificate_keeps_the_key(pkidir):
    other = P.key_pem(P.KeySpec('ecdsa', 256).generate())
    result, _key_before, key_after = reissue(pkidir, lambda d: (d / 'admin-key.pem').write_bytes(other))
    assert result['reason'] == 'key does not match certificate'
    assert key_after == other
    assert P.key_matches_cert(P.load_private_key(other)[0], load_cert(pkidir / 'admin.pem'))


def test_common_name_change(pkidir):
    result, key_before, key_after = reissue(pkidir, certificates=[dict(ADMIN, common_name='root'), API])
    assert result['reason'] == 'common name is [admin], want root'
    assert key_before == key_after


def test_organization_change(pkidir):
    admin = dict(ADMIN, organization=['system:masters', 'ops'])
    result, _key_before, _key_after = reissue(pkidir, certificates=[admin, API])
    assert result['reason'] == 'organization is [system:masters], want [system:masters, ops]'
    assert sorted(P.subject_values(load_cert(pkidir / 'admin.pem'), P.NameOID.ORGANIZATION_NAME)) == [
        'ops',
        'system:masters',
    ]


def test_san_change(pkidir):
    api = dict(API, dns_names=['kubernetes', 'kubernetes.default.svc'], ip_addresses=['10.32.0.1'])
    pki = run(pkidir, certificates=[ADMIN, api])
    result = pki.results()['certificates']['apiserver']
    assert result['action'] == 'reissued'
    assert result['reason'] == (
        'subject alternative names differ (missing kubernetes.default.svc; unexpected '
        '127.0.0.1, fd00::1, kubernetes.default)'
    )
    assert pki.results()['certificates']['admin']['action'] == 'unchanged'


def test_usage_change(pkidir):
    result, _key_before, _key_after = reissue(pkidir, certificates=[dict(ADMIN, usage=['server', 'client']), API])
    assert result['reason'] == 'usage is [client], want [client, server]'
    assert P.cert_usage(load_cert(pkidir / 'admin.pem')) == ['client', 'server']


def test_signed_by_another_ca(pkidir, tmp_path):
    other = tmp_path / 'other'
    run(other, authorities=[dict(CA, common_name='Test CA')], certificates=[ADMIN], keypairs=[])
    result, _key_before, _key_after = reissue(pkidir, lambda d: shutil.copy(other / 'admin.pem', d / 'admin.pem'))
    # the key in the directory does not match the copied certificate either
    assert result['reason'] == 'key does not match certificate; ' + P.NOT_SIGNED


def test_signed_by_another_ca_with_same_key(pkidir, tmp_path):
    """Same subject, same issuer name, same key, but another CA's signature."""
    other = tmp_path / 'other'
    run(other, authorities=[CA], certificates=[], keypairs=[])
    signer = P.Signer(load_cert(other / 'ca.pem'), P.load_private_key((other / 'ca-key.pem').read_bytes())[0])
    key = P.load_private_key((pkidir / 'admin-key.pem').read_bytes())[0]
    spec = P.normalize_certificate(dict(ADMIN), 0, {'ca'})
    (pkidir / 'admin.pem').write_bytes(P.cert_pem(signer.issue(spec, key, datetime.datetime.now(P.UTC))))
    result, _key_before, _key_after = reissue(pkidir)
    assert result['reason'] == P.NOT_SIGNED


def test_renew_window(pkidir):
    later = datetime.datetime.now(P.UTC) + datetime.timedelta(days=340)
    pki = run(pkidir, now=later)
    assert actions(pki)['admin'][0] == 'reissued'
    assert actions(pki)['admin'][1].startswith('expires within the renew window (')
    assert actions(pki, 'authorities')['ca'][0] == 'unchanged'
    assert P.not_after(load_cert(pkidir / 'admin.pem')) > later + datetime.timedelta(days=364)
    # a shorter window leaves it alone
    assert not run(pkidir, now=later, renew_before_days=10).changed


def test_expired(pkidir):
    much_later = datetime.datetime.now(P.UTC) + datetime.timedelta(days=400)
    pki = run(pkidir, check=True, now=much_later)
    assert actions(pki)['admin'][1].startswith('expired on ')


def test_several_reasons_are_joined(pkidir):
    admin = dict(ADMIN, common_name='x', organization=[], usage=['server'])
    result, _key_before, _key_after = reissue(pkidir, certificates=[admin, API])
    assert result['reason'] == (
        'common name is [admin], want x; organization is [system:masters], want []; '
        'usage is [client], want [server]'
    )


def test_certificate_never_outlives_its_ca(tmp_path):
    pki = run(
        tmp_path,
        authorities=[dict(CA, lifetime_days=100)],
        certificates=[dict(ADMIN, lifetime_days=365)],
        keypairs=[],
    )
    assert P.not_after(load_cert(tmp_path / 'admin.pem')) == P.not_after(load_cert(tmp_path / 'ca.pem'))
    assert (
        pki.results()['certificates']['admin']['not_after'] == pki.results()['authorities']['ca']['not_after']
    )


def test_key_mode_is_repaired(pkidir):
    os.chmod(pkidir / 'admin-key.pem', 0o644)
    os.chmod(pkidir / 'ca-key.pem', 0o640)
    before = snapshot(pkidir)
    pki = run(pkidir)
    assert pki.changed
    assert actions(pki)['admin'] == ('unchanged', 'key file mode set to 0600')
    assert stat.S_IMODE(os.stat(pkidir / 'admin-key.pem').st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pkidir / 'ca-key.pem').st_mode) == 0o600
    assert (pkidir / 'admin-key.pem').read_bytes() == before['admin-key.pem'][3]
    assert not run(pkidir).changed


# --------------------------------------------------------------------------
# Authorities


def test_broken_ca_key_fails_without_regenerate(pkidir):
    (pkidir / 'ca-key.pem').write_text('broken')
    before = snapshot(pkidir)
    with pytest.raises(P.PKIError) as err:
        run(pkidir)
    message = str(err.value)
    assert "authority 'ca'" in message and 'key unreadable' in message
    assert 'regenerate_authorities' in message and 'Refusing to replace' in message
    assert snapshot(pkidir) == before


def test_mismatched_ca_key_fails(pkidir):
    (pkidir / 'ca-key.pem').write_bytes(P.key_pem(P.KeySpec('ecdsa', 256).generate()))
    with pytest.raises(P.PKIError, match='key does not match certificate'):
        run(pkidir)


def test_missing_ca_certificate_fails(pkidir):
    (pkidir / 'ca.pem').unlink()
    with pytest.raises(P.PKIError, match='certificate missing'):
        run(pkidir)


def test_ca_that_is_not_a_ca_fails(pkidir):
    shutil.copy(pkidir / 'admin.pem', pkidir / 'ca.pem')
    shutil.copy(pkidir / 'admin-key.pem', pkidir / 'ca-key.pem')
    with pytest.raises(P.PKIError, match='is not a CA'):
        run(pkidir)


def test_regenerate_replaces_broken_ca_and_reissues_its_certificates(pkidir):
    (pkidir / 'ca-key.pem').write_text('broken')
    old_ca = (pkidir / 'ca.pem').read_bytes()
    pki = run(pkidir, regenerate_authorities=True)
    assert actions(pki, 'authorities')['ca'][0] == 'reissued'
    assert (pkidir / 'ca.pem').read_bytes() != old_ca
    assert {a for a, _reason in actions(pki).values()} == {'reissued'}
    assert {r for _action, r in actions(pki).values()} == {P.NOT_SIGNED}
    assert actions(pki, 'keypairs')['service-account'][0] == 'unchanged'
    ca = load_cert(pkidir / 'ca.pem')
    assert P.signed_by(load_cert(pkidir / 'admin.pem'), ca)
    assert not run(pkidir, regenerate_authorities=True).changed


def test_ca_drift_only_warns(pkidir):
    before = snapshot(pkidir)
    pki = run(pkidir, authorities=[dict(CA, common_name='Renamed CA', key_type='rsa')])
    assert not pki.changed
    assert snapshot(pkidir) == before
    assert len(pki.warnings) == 1
    assert 'common name is [Test CA], want Renamed CA' in pki.warnings[0]
    assert 'key is ecdsa secp256r1, want rsa 2048' in pki.warnings[0]
    assert 'regenerate_authorities' in pki.warnings[0]


def test_ca_drift_with_regenerate(pkidir):
    pki = run(pkidir, authorities=[dict(CA, common_name='Renamed CA')], regenerate_authorities=True)
    assert actions(pki, 'authorities')['ca'] == ('reissued', 'common name is [Test CA], want Renamed CA')
    assert P.subject_values(load_cert(pkidir / 'ca.pem'), P.NameOID.COMMON_NAME) == ['Renamed CA']
    assert P.signed_by(load_cert(pkidir / 'apiserver.pem'), load_cert(pkidir / 'ca.pem'))


def test_ca_expiring_is_replaced_only_with_regenerate(pkidir):
    later = datetime.datetime.now(P.UTC) + datetime.timedelta(days=3640)
    pki = run(pkidir, check=True, now=later)
    assert actions(pki, 'authorities')['ca'][0] == 'unchanged'
    assert 'expires within the renew window' in pki.warnings[0]
    pki = run(pkidir, check=True, now=later, regenerate_authorities=True)
    assert actions(pki, 'authorities')['ca'][1].startswith('expires within the renew window')


def test_two_authorities(tmp_path):
    etcd_ca = {'name': 'etcd-ca', 'common_name': 'etcd CA', 'key_type': 'rsa'}
    peer = {'name': 'etcd-peer', 'ca': 'etcd-ca', 'common_name': 'etcd', 'usage': ['client', 'server']}
    run(tmp_path, authorities=[CA, etcd_ca], certificates=[ADMIN, peer], keypairs=[])
    assert P.signed_by(load_cert(tmp_path / 'etcd-peer.pem'), load_cert(tmp_path / 'etcd-ca.pem'))
    assert not P.signed_by(load_cert(tmp_path / 'etcd-peer.pem'), load_cert(tmp_path / 'ca.pem'))
    (tmp_path / 'etcd-ca.pem').unlink()
    (tmp_path / 'etcd-ca-key.pem').unlink()
    pki = run(tmp_path, authorities=[CA, etcd_ca], certificates=[ADMIN, peer], keypairs=[])
    assert actions(pki, 'authorities') == {
        'ca': ('unchanged', P.UP_TO_DATE),
        'etcd-ca': ('created', 'authority missing'),
    }
    assert actions(pki) == {'admin': ('unchanged', P.UP_TO_DATE), 'etcd-peer': ('reissued', P.NOT_SIGNED)}


# --------------------------------------------------------------------------
# Key pairs


def test_keypair_public_key_missing_keeps_private_key(pkidir):
    key = (pkidir / 'service-account-key.pem').read_bytes()
    (pkidir / 'service-account.pub').unlink()
    pki = run(pkidir)
    assert actions(pki, 'keypairs')['service-account'] == ('reissued', 'public key missing')
    assert (pkidir / 'service-account-key.pem').read_bytes() == key
    assert P.public_pem(P.load_private_key(key)[0]) == (pkidir / 'service-account.pub').read_bytes()


def test_keypair_public_key_mismatch(pkidir):
    (pkidir / 'service-account.pub').write_bytes(P.public_pem(P.KeySpec('rsa', 2048).generate()))
    pki = run(pkidir)
    assert actions(pki, 'keypairs')['service-account'] == (
        'reissued',
        'public key does not match private key',
    )


def test_keypair_type_change(pkidir):
    pki = run(pkidir, keypairs=[{'name': 'service-account', 'key_type': 'ecdsa'}])
    assert actions(pki, 'keypairs')['service-account'] == ('reissued', 'key is rsa 2048, want ecdsa P-256')
    key = P.load_private_key((pkidir / 'service-account-key.pem').read_bytes())[0]
    assert isinstance(key, ec.EllipticCurvePrivateKey)


# --------------------------------------------------------------------------
# Check mode


def test_check_mode_on_empty_directory(tmp_path):
    path = tmp_path / 'pki'
    pki = run(path, check=True)
    assert pki.changed
    assert not path.exists()
    assert actions(pki, 'authorities')['ca'] == ('created', 'authority missing')
    assert pki.results()['certificates']['admin']['not_after'] is not None
    diff = pki.diff()
    assert f'directory {path}: absent' in diff['before']
    assert 'certificates/admin: created (certificate missing; key missing)' in diff['after']


def test_check_mode_writes_nothing(pkidir):
    (pkidir / 'ca-key.pem').write_text('broken')
    os.chmod(pkidir / 'admin-key.pem', 0o644)
    (pkidir / 'service-account.pub').unlink()
    before = snapshot(pkidir)
    pki = run(
        pkidir, check=True, regenerate_authorities=True, certificates=[dict(ADMIN, common_name='other'), API]
    )
    assert snapshot(pkidir) == before
    assert actions(pki, 'authorities')['ca'][0] == 'reissued'
    # a CA that would be replaced means every certificate it signs would be re-issued
    assert actions(pki)['apiserver'] == ('reissued', P.NOT_SIGNED)
    assert actions(pki)['admin'][1] == 'common name is [admin], want other; ' + P.NOT_SIGNED
    assert actions(pki, 'keypairs')['service-account'][0] == 'reissued'


def test_diff_names_items_and_reasons(pkidir):
    pki = run(pkidir, check=True, certificates=[dict(ADMIN, common_name='root'), API])
    diff = pki.diff()
    assert diff['before'].startswith('certificates/admin: certificate ok, key ok, not after ')
    assert diff['after'].startswith('certificates/admin: reissued (common name is [admin], want root)')
    assert 'apiserver' not in diff['before'] + diff['after']


# --------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (
            {'certificates': [dict(ADMIN, ca='nope')]},
            "certificates[0] (admin): ca 'nope' is not one of the authorities",
        ),
        (
            {'certificates': [dict(ADMIN, ip_addresses=['10.0.0.300'])]},
            "ip_addresses entry '10.0.0.300' is not an IP",
        ),
        (
            {'certificates': [dict(ADMIN, key_type='rsa', key_size=1024)]},
            'key_size 1024 is not valid for rsa',
        ),
        ({'certificates': [dict(ADMIN, key_size=2048)]}, 'key_size 2048 is not valid for ecdsa'),
        (
            {'certificates': [dict(ADMIN, usage=['peer'])]},
            'usage must be a non-empty list of client and server',
        ),
        ({'certificates': [dict(ADMIN, name='../x')]}, 'name must be a simple file name'),
        ({'certificates': [dict(ADMIN, name='ca')]}, "name 'ca' is used twice"),
        ({'keypairs': [{'name': 'admin'}]}, "name 'admin' is used twice"),
        (
            {'certificates': [dict(ADMIN, lifetime_days=20)]},
            'lifetime_days (20) must be longer than renew_before_days',
        ),
        ({'certificates': [dict(ADMIN, common_name=None)]}, 'common_name must be a non-empty string'),
        ({'certificates': [dict(ADMIN, common_name='', organization=[])]}, 'without common_name needs an organization'),
        ({'renew_before_days': -1}, 'renew_before_days must be a non-negative integer'),
    ],
)
def test_bad_input(tmp_path, kwargs, message):
    args = {'authorities': [CA], 'certificates': [ADMIN], 'keypairs': [SA]}
    args.update(kwargs)
    with pytest.raises(P.PKIError) as err:
        P.PKI(str(tmp_path), **args)
    assert message in str(err.value)


def test_path_that_is_a_file(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(P.PKIError, match='is not a directory'):
        run(tmp_path / 'file')


# --------------------------------------------------------------------------
# Pure decision functions


def test_certificate_reasons_pure():
    now = datetime.datetime.now(P.UTC)
    ca_key = P.KeySpec('ecdsa', 256).generate()
    ca_spec = P.normalize_authority(dict(CA))
    ca_cert = P.build_authority(ca_spec, ca_key, now)
    signer = P.Signer(ca_cert, ca_key)
    spec = P.normalize_certificate(dict(API), 0, {'ca'})
    key = spec['key'].generate()
    cert = signer.issue(spec, key, now)
    found = P.Existing(cert, 'ok', key, 'ok', 0o600)
    window = datetime.timedelta(days=30)
    assert P.certificate_reasons(spec, found, ca_cert, now, window) == []
    assert P.certificate_reasons(spec, found, ca_cert, now, window, ca_replaced=True) == [P.NOT_SIGNED]
    assert P.certificate_reasons(spec, found, None, now, window) == [P.NOT_SIGNED]
    missing = P.Existing()
    assert P.certificate_reasons(spec, missing, ca_cert, now, window) == [
        'certificate missing',
        'key missing',
    ]
    assert P.plan_authority(ca_spec, missing, now, window, False) == ('created', ['authority missing'], [])
    assert P.plan_authority(ca_spec, P.Existing(ca_cert, 'ok', ca_key, 'ok'), now, window, False) == (
        'unchanged',
        [],
        [],
    )


def test_key_spec():
    assert P.key_spec('rsa', None, 'x') == P.KeySpec('rsa', 2048)
    assert P.key_spec('ecdsa', None, 'x').describe() == 'ecdsa P-256'
    assert P.key_spec('ecdsa', 384, 'x').generate().curve.name == 'secp384r1'
    with pytest.raises(P.PKIError, match='key_type must be one of rsa, ecdsa'):
        P.key_spec('dsa', None, 'x')


def test_hundred_nodes_is_fast(tmp_path):
    """About 110 certificates from scratch, then an unchanged run (the benchmark target is 2 s)."""
    certs = [dict(ADMIN)]
    for i in range(55):
        for kind in ('kubelet', 'proxy'):
            certs.append(
                {
                    'name': f'{kind}-{i}',
                    'ca': 'ca',
                    'common_name': f'system:node:w{i}',
                    'organization': ['system:nodes'],
                    'dns_names': [f'w{i}'],
                    'ip_addresses': [f'10.0.0.{i}'],
                    'usage': ['client', 'server'],
                }
            )
    start = time.monotonic()
    assert run(tmp_path, certificates=certs).changed
    created = time.monotonic() - start
    start = time.monotonic()
    assert not run(tmp_path, certificates=certs).changed
    rechecked = time.monotonic() - start
    assert created < 5 and rechecked < 5, (created, rechecked)


def test_reissue_on_request_keeps_keys_and_leaves_the_rest(pkidir):
    key_before = (pkidir / 'admin-key.pem').read_bytes()
    serial_before = load_cert(pkidir / 'admin.pem').serial_number
    api_before = (pkidir / 'apiserver.pem').read_bytes()
    pki = run(pkidir, reissue=['admin'])
    assert actions(pki)['admin'] == ('reissued', 're-issue asked for')
    assert actions(pki)['apiserver'][0] == 'unchanged'
    assert actions(pki, 'authorities')['ca'][0] == 'unchanged'
    assert (pkidir / 'admin-key.pem').read_bytes() == key_before
    assert load_cert(pkidir / 'admin.pem').serial_number != serial_before
    assert (pkidir / 'apiserver.pem').read_bytes() == api_before
    everything = run(pkidir, reissue=['*'])
    assert {outcome[0] for outcome in actions(everything).values()} == {'reissued'}


def test_reissue_refuses_unknown_names(pkidir):
    with pytest.raises(P.PKIError, match='not requested: nope'):
        run(pkidir, reissue=['nope'])


def test_reissue_within_days_takes_what_expires_that_soon_whatever_its_lifetime(pkidir):
    assert not run(pkidir, reissue_within_days=300, check=True).changed
    pki = run(pkidir, reissue_within_days=400)
    assert {outcome[0] for outcome in actions(pki).values()} == {'reissued'}
    assert actions(pki)['admin'][1].startswith('re-issue asked for what expires within 400 days (')
    assert actions(pki, 'authorities')['ca'][0] == 'unchanged'
    with pytest.raises(P.PKIError, match='reissue_within_days must be a non-negative integer'):
        run(pkidir, reissue_within_days=-1)


# --------------------------------------------------------------------------
# Rotating an authority

def bundle_subjects(path):
    """(serial of each CA in the bundle), in order."""
    data = (path / 'ca-bundle.pem').read_bytes()
    return [c.serial_number for c in x509.load_pem_x509_certificates(data)]


def test_rotation_stages_switches_and_finishes_and_each_step_is_rerunnable(pkidir):
    old = load_cert(pkidir / 'ca.pem')
    admin_before = load_cert(pkidir / 'admin.pem')
    assert bundle_subjects(pkidir) == [old.serial_number]

    # 1. stage: a new CA, trusted beside the old one; nothing is signed by it yet
    staged = run(pkidir, rotation='stage')
    assert actions(staged, 'authorities')['ca'] == ('stage', 'a new CA is staged as ca-next (trusted in '
                                                    'ca-bundle.pem, not signing yet)')
    assert actions(staged)['admin'][0] == 'unchanged'
    new = load_cert(pkidir / 'ca-next.pem')
    assert bundle_subjects(pkidir) == [old.serial_number, new.serial_number]
    assert load_cert(pkidir / 'ca.pem').serial_number == old.serial_number
    assert not run(pkidir, rotation='stage').changed  # re-run: staged already
    assert not run(pkidir).changed  # a normal run keeps the staged CA and the bundle

    # 2. switch: the new CA signs, every certificate is re-issued by it (keys kept), the old one stays trusted
    switched = run(pkidir, rotation='switch')
    assert actions(switched, 'authorities')['ca'][0] == 'switch'
    assert actions(switched)['admin'] == ('reissued', P.NOT_SIGNED)
    assert load_cert(pkidir / 'ca.pem').serial_number == new.serial_number
    assert load_cert(pkidir / 'ca-previous.pem').serial_number == old.serial_number
    assert not (pkidir / 'ca-next.pem').exists() and not (pkidir / 'ca-next-key.pem').exists()
    assert bundle_subjects(pkidir) == [new.serial_number, old.serial_number]
    admin = load_cert(pkidir / 'admin.pem')
    assert admin.issuer == new.subject and admin.serial_number != admin_before.serial_number
    assert P.signed_by(admin, new)
    assert not run(pkidir, rotation='switch').changed  # re-run: switched already

    # 3. finish: only the new CA is trusted; the old one's files are kept aside, never deleted
    finished = run(pkidir, rotation='finish')
    assert actions(finished, 'authorities')['ca'][0] == 'finish'
    assert bundle_subjects(pkidir) == [new.serial_number]
    assert not (pkidir / 'ca-previous.pem').exists()
    retired = sorted(p.name for p in pkidir.glob('ca-retired-*'))
    assert len(retired) == 2 and retired[0].endswith('-key.pem')
    assert not run(pkidir, rotation='finish').changed
    assert not run(pkidir).changed


def test_rotation_steps_out_of_order_are_refused_naming_the_step_first(pkidir):
    with pytest.raises(P.PKIError, match='no CA is staged to switch to .* run the stage step first'):
        run(pkidir, rotation='switch', check=True)
    run(pkidir, rotation='stage')
    with pytest.raises(P.PKIError, match='does not sign yet: run the switch step before finishing'):
        run(pkidir, rotation='finish', check=True)
    run(pkidir, rotation='switch')
    with pytest.raises(P.PKIError, match='the last rotation is not finished'):
        run(pkidir, rotation='stage', check=True)
    with pytest.raises(P.PKIError, match='exclude each other'):
        run(pkidir, rotation='finish', regenerate_authorities=True, check=True)
    with pytest.raises(P.PKIError, match='rotation must be one of'):
        run(pkidir, rotation='sideways', check=True)


def test_rotation_in_check_mode_writes_nothing(pkidir):
    before = snapshot(pkidir)
    pki = run(pkidir, rotation='stage', check=True)
    assert pki.changed and actions(pki, 'bundles')['ca'][0] == 'written'
    assert snapshot(pkidir) == before


def test_an_interrupted_switch_is_finished_by_the_next_run(pkidir):
    old = load_cert(pkidir / 'ca.pem')
    run(pkidir, rotation='stage')
    new = load_cert(pkidir / 'ca-next.pem')
    # the run stopped after keeping the old CA and moving the new one in, before removing the staged files
    shutil.copy(pkidir / 'ca.pem', pkidir / 'ca-previous.pem')
    shutil.copy(pkidir / 'ca-key.pem', pkidir / 'ca-previous-key.pem')
    shutil.copy(pkidir / 'ca-next-key.pem', pkidir / 'ca-key.pem')
    shutil.copy(pkidir / 'ca-next.pem', pkidir / 'ca.pem')
    run(pkidir, rotation='switch')
    assert load_cert(pkidir / 'ca.pem').serial_number == new.serial_number
    assert load_cert(pkidir / 'ca-previous.pem').serial_number == old.serial_number
    assert P.key_matches_cert(P.load_private_key((pkidir / 'ca-previous-key.pem').read_bytes())[0], old)
    assert bundle_subjects(pkidir) == [new.serial_number, old.serial_number]


def test_a_certificate_kept_on_the_old_ca_moves_to_the_new_one_at_the_last_step(pkidir):
    old = load_cert(pkidir / 'ca.pem')
    api_before = (pkidir / 'apiserver.pem').read_bytes()
    run(pkidir, rotation='stage', keep_on_previous=['apiserver'])
    switched = run(pkidir, rotation='switch', keep_on_previous=['apiserver'])
    assert actions(switched)['admin'][0] == 'reissued' and actions(switched)['apiserver'][0] == 'unchanged'
    assert (pkidir / 'apiserver.pem').read_bytes() == api_before  # still the old CA's, which stays trusted
    assert not run(pkidir, keep_on_previous=['apiserver']).changed
    finished = run(pkidir, rotation='finish', keep_on_previous=['apiserver'])
    assert actions(finished)['apiserver'] == ('reissued', P.NOT_SIGNED)
    api = load_cert(pkidir / 'apiserver.pem')
    assert P.signed_by(api, load_cert(pkidir / 'ca.pem')) and not P.signed_by(api, old)
