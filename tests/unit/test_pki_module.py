"""The pki module end to end: argument handling, check mode, diff, failures, and a real ansible run."""

from __future__ import annotations

import os
import stat

from hardway_testlib import run_adhoc, run_module_subprocess

ARGS = {
    'authorities': [{'name': 'ca', 'common_name': 'Test CA'}],
    'certificates': [
        {'name': 'admin', 'ca': 'ca', 'common_name': 'admin', 'organization': ['system:masters']},
        {
            'name': 'kubelet-w1',
            'ca': 'ca',
            'common_name': 'system:node:w1',
            'organization': ['system:nodes'],
            'dns_names': ['w1'],
            'ip_addresses': ['10.0.0.21'],
            'usage': ['client', 'server'],
        },
    ],
    'keypairs': [{'name': 'service-account'}],
}


def mtimes(path):
    return {n: os.stat(os.path.join(path, n)).st_mtime_ns for n in os.listdir(path)}


def test_module_create_then_unchanged(tmp_path, run_module):
    path = str(tmp_path / 'pki')
    result = run_module('pki', dict(ARGS, path=path))
    assert result['rc'] == 0 and result['changed'] is True
    assert result['certificates']['kubelet-w1']['action'] == 'created'
    assert result['authorities']['ca']['path'] == os.path.join(path, 'ca.pem')
    assert stat.S_IMODE(os.stat(os.path.join(path, 'kubelet-w1-key.pem')).st_mode) == 0o600
    before = mtimes(path)
    again = run_module('pki', dict(ARGS, path=path), diff=True)
    assert again['changed'] is False and 'diff' not in again
    assert {r['action'] for r in again['certificates'].values()} == {'unchanged'}
    assert mtimes(path) == before


def test_module_check_mode_and_diff(tmp_path, run_module):
    path = str(tmp_path / 'pki')
    result = run_module('pki', dict(ARGS, path=path), check=True, diff=True)
    assert result['changed'] is True
    assert not os.path.exists(path)
    assert 'certificates/admin: created' in result['diff']['after']
    run_module('pki', dict(ARGS, path=path))
    before = mtimes(path)
    args = dict(ARGS, path=path)
    args['certificates'] = [
        dict(ARGS['certificates'][0], organization=['system:masters', 'admins']),
        ARGS['certificates'][1],
    ]
    result = run_module('pki', args, check=True, diff=True)
    assert result['changed'] is True
    assert (
        result['certificates']['admin']['reason']
        == 'organization is [system:masters], want [system:masters, admins]'
    )
    assert 'certificates/admin: reissued (organization is' in result['diff']['after']
    assert mtimes(path) == before


def test_module_defaults_apply(tmp_path, run_module):
    path = str(tmp_path / 'pki')
    result = run_module(
        'pki',
        {
            'path': path,
            'authorities': [{'name': 'ca', 'common_name': 'CA'}],
            'certificates': [{'name': 'c', 'ca': 'ca', 'common_name': 'c'}],
        },
    )
    assert result['rc'] == 0
    assert result['keypairs'] == {}
    with open(os.path.join(path, 'c.pem'), 'rb') as handle:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(handle.read())
    assert cert.public_key().curve.name == 'secp256r1'
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365


def test_module_bad_input_names_the_option(tmp_path, run_module):
    args = dict(ARGS, path=str(tmp_path))
    args['certificates'] = [dict(ARGS['certificates'][1], ip_addresses=['not-an-ip'])]
    result = run_module('pki', args)
    assert result['rc'] == 1 and result['failed']
    assert (
        result['msg'] == "certificates[0] (kubelet-w1): ip_addresses entry 'not-an-ip' is not an IP address"
    )
    result = run_module('pki', dict(ARGS, path=str(tmp_path), certificates=[{'name': 'x', 'ca': 'ca'}]))
    assert result['failed'] and 'common_name' in result['msg']
    result = run_module(
        'pki',
        dict(ARGS, path=str(tmp_path), authorities=[{'name': 'ca', 'common_name': 'CA', 'key_type': 'dsa'}]),
    )
    assert result['failed'] and 'key_type' in result['msg']


def test_module_refuses_to_replace_broken_ca(tmp_path, run_module):
    path = str(tmp_path / 'pki')
    run_module('pki', dict(ARGS, path=path))
    with open(os.path.join(path, 'ca-key.pem'), 'w') as handle:
        handle.write('junk')
    result = run_module('pki', dict(ARGS, path=path))
    assert result['failed'] and 'regenerate_authorities' in result['msg']
    result = run_module('pki', dict(ARGS, path=path, regenerate_authorities=True))
    assert result['changed'] and result['authorities']['ca']['action'] == 'reissued'
    assert {r['reason'] for r in result['certificates'].values()} == {'not signed by the current CA'}


def test_module_warns_about_ca_drift(tmp_path, run_module):
    path = str(tmp_path / 'pki')
    run_module('pki', dict(ARGS, path=path))
    args = dict(ARGS, path=path, authorities=[{'name': 'ca', 'common_name': 'Other'}])
    # in a fresh process: in-process, warnings go to the controller's display once ansible's controller
    # code has been imported by another test
    result = run_module_subprocess('pki', args)
    assert result['changed'] is False
    assert 'regenerate_authorities' in str(result.get('warnings'))


def test_ansible_adhoc_run(tmp_path):
    """Through the ansible command line, with ANSIBLE_COLLECTIONS_PATH pointing at this checkout."""
    path = str(tmp_path / 'pki')
    rc, result, output = run_adhoc('pki', dict(ARGS, path=path), tmp_path, diff=True)
    assert rc == 0, output
    assert result['changed'] is True
    assert result['certificates']['admin']['action'] == 'created'
    assert os.path.exists(os.path.join(path, 'service-account.pub'))
    rc, result, output = run_adhoc('pki', dict(ARGS, path=path), tmp_path)
    assert rc == 0 and result['changed'] is False, output
