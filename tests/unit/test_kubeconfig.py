"""kubeconfig: building, semantic comparison, redaction, reading connections, and the module."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
import yaml
from ansible_collections.hardway.kubernetes.plugins.module_utils import kubeconfig as kc
from ansible_collections.hardway.kubernetes.plugins.module_utils import pki as P
from hardway_testlib import run_adhoc


@pytest.fixture(scope='module')
def certs(tmp_path_factory):
    path = tmp_path_factory.mktemp('pki')
    P.PKI(
        str(path),
        [{'name': 'ca', 'common_name': 'CA'}],
        [
            {'name': 'admin', 'ca': 'ca', 'common_name': 'admin', 'organization': ['system:masters']},
            {'name': 'other', 'ca': 'ca', 'common_name': 'other'},
        ],
    ).plan().apply()
    return path


def args(certs, path, **extra):
    out = {
        'path': str(path),
        'server': 'https://10.0.0.10:6443',
        'ca_file': str(certs / 'ca.pem'),
        'client_cert_file': str(certs / 'admin.pem'),
        'client_key_file': str(certs / 'admin-key.pem'),
        'user': 'admin',
    }
    out.update(extra)
    return out


def test_build_shape():
    config = kc.build('kubernetes', 'https://x:6443', b'CA', 'admin', b'CERT', b'KEY')
    assert config == {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [
            {
                'name': 'kubernetes',
                'cluster': {'certificate-authority-data': 'Q0E=', 'server': 'https://x:6443'},
            }
        ],
        'users': [
            {'name': 'admin', 'user': {'client-certificate-data': 'Q0VSVA==', 'client-key-data': 'S0VZ'}}
        ],
        'contexts': [{'name': 'default', 'context': {'cluster': 'kubernetes', 'user': 'admin'}}],
        'current-context': 'default',
        'preferences': {},
    }


def test_semantic_compare_ignores_formatting():
    config = kc.build('kubernetes', 'https://x:6443', b'CA', 'admin', b'CERT', b'KEY')
    text = yaml.safe_dump(config, default_flow_style=True, sort_keys=True)
    assert kc.same(kc.parse(text), config)
    assert kc.same(kc.parse(json.dumps(config, indent=4)), config)
    changed = kc.build('kubernetes', 'https://y:6443', b'CA', 'admin', b'CERT', b'KEY')
    assert not kc.same(changed, config)
    assert not kc.same(None, config)


def test_redact():
    before = kc.build('k', 'https://x', b'CA', 'admin', b'CERT', b'KEY1')
    after = kc.build('k', 'https://x', b'CA', 'admin', b'CERT', b'KEY2')
    shown = kc.redact(after, before)
    assert shown['users'][0]['user']['client-key-data'] == '<redacted, changed>'
    assert kc.redact(before, before)['users'][0]['user']['client-key-data'] == '<redacted>'
    assert shown['clusters'][0]['cluster']['certificate-authority-data'].startswith('<2 bytes, sha256 ')
    assert after['users'][0]['user']['client-key-data'] == 'S0VZMg=='  # the original is untouched
    assert 'S0VZ' not in kc.dump(shown)


def test_connection_from_kubeconfig_with_data(tmp_path):
    config = kc.build('k', 'https://x:6443', b'CA', 'admin', b'CERT', b'KEY')
    (tmp_path / 'k.yaml').write_text(kc.dump(config))
    conn = kc.connection_from_kubeconfig(str(tmp_path / 'k.yaml'))
    assert conn['server'] == 'https://x:6443'
    assert (conn['ca_data'], conn['cert_data'], conn['key_data']) == (b'CA', b'CERT', b'KEY')
    assert conn['ca_file'] is None and not conn['insecure']


def test_connection_from_kubeconfig_with_relative_files(tmp_path):
    config = {
        'apiVersion': 'v1',
        'kind': 'Config',
        'current-context': 'c',
        'clusters': [
            {'name': 'k', 'cluster': {'server': 'https://x', 'certificate-authority': 'pki/ca.pem'}}
        ],
        'users': [{'name': 'u', 'user': {'client-certificate': '/abs/cert.pem', 'client-key': 'key.pem'}}],
        'contexts': [{'name': 'c', 'context': {'cluster': 'k', 'user': 'u'}}],
    }
    (tmp_path / 'k.json').write_text(json.dumps(config))
    conn = kc.connection_from_kubeconfig(str(tmp_path / 'k.json'))
    assert conn['ca_file'] == str(tmp_path / 'pki' / 'ca.pem')
    assert conn['cert_file'] == '/abs/cert.pem'
    assert conn['key_file'] == str(tmp_path / 'key.pem')


@pytest.mark.parametrize(
    'content, message',
    [
        ('a: [', 'not valid YAML'),
        ('apiVersion: v1\n', 'has no current-context'),
        ('current-context: c\ncontexts: []\n', "context 'c' not found"),
        ('current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n', "cluster 'k' of context 'c'"),
    ],
)
def test_connection_errors(tmp_path, content, message):
    (tmp_path / 'k').write_text(content)
    with pytest.raises(kc.KubeconfigError, match=message):
        kc.connection_from_kubeconfig(str(tmp_path / 'k'))
    with pytest.raises(kc.KubeconfigError, match='cannot read kubeconfig'):
        kc.connection_from_kubeconfig(str(tmp_path / 'missing'))


# --------------------------------------------------------------------------
# The module


def test_module_writes_then_is_idempotent(certs, tmp_path, run_module):
    path = tmp_path / 'admin.kubeconfig'
    result = run_module('kubeconfig', args(certs, path))
    assert result['rc'] == 0 and result['changed'] is True and result['path'] == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config['current-context'] == 'default'
    assert (
        base64.b64decode(config['users'][0]['user']['client-key-data'])
        == (certs / 'admin-key.pem').read_bytes()
    )
    assert config['clusters'][0]['cluster']['server'] == 'https://10.0.0.10:6443'
    mtime = os.stat(path).st_mtime_ns
    again = run_module('kubeconfig', args(certs, path), diff=True)
    assert again['changed'] is False and 'diff' not in again
    assert os.stat(path).st_mtime_ns == mtime


def test_module_reformatted_file_is_unchanged(certs, tmp_path, run_module):
    path = tmp_path / 'admin.kubeconfig'
    run_module('kubeconfig', args(certs, path))
    path.write_text(json.dumps(yaml.safe_load(path.read_text()), indent=1, sort_keys=True))
    os.chmod(path, 0o600)
    assert run_module('kubeconfig', args(certs, path))['changed'] is False


def test_module_fixes_mode_only(certs, tmp_path, run_module):
    path = tmp_path / 'admin.kubeconfig'
    run_module('kubeconfig', args(certs, path))
    content = path.read_bytes()
    os.chmod(path, 0o644)
    result = run_module('kubeconfig', args(certs, path), diff=True)
    assert result['changed'] is True
    assert result['diff']['before'] == '# mode 0644\n' and result['diff']['after'] == '# mode 0600\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.read_bytes() == content
    result = run_module('kubeconfig', args(certs, path, mode='0640'))
    assert result['changed'] and stat.S_IMODE(os.stat(path).st_mode) == 0o640
    result = run_module('kubeconfig', args(certs, path, mode=0o640))
    assert not result['changed']


def test_module_diff_never_shows_the_key(certs, tmp_path, run_module):
    path = tmp_path / 'admin.kubeconfig'
    run_module('kubeconfig', args(certs, path))
    new = args(
        certs,
        path,
        client_cert_file=str(certs / 'other.pem'),
        client_key_file=str(certs / 'other-key.pem'),
        server='https://10.0.0.11:6443',
    )
    result = run_module('kubeconfig', new, diff=True, check=True)
    assert result['changed'] is True
    text = json.dumps(result)
    for key_file in ('admin-key.pem', 'other-key.pem'):
        key = (certs / key_file).read_bytes()
        assert base64.b64encode(key).decode() not in text
        assert key.decode().splitlines()[1] not in text
    assert '<redacted, changed>' in result['diff']['after']
    assert 'server: https://10.0.0.10:6443' in result['diff']['before']
    assert 'server: https://10.0.0.11:6443' in result['diff']['after']
    # check mode wrote nothing
    assert 'https://10.0.0.10:6443' in path.read_text()
    assert run_module('kubeconfig', new)['changed'] is True
    assert 'https://10.0.0.11:6443' in path.read_text()


def test_module_replaces_garbage(certs, tmp_path, run_module):
    path = tmp_path / 'admin.kubeconfig'
    path.write_text('{{{ not yaml')
    result = run_module('kubeconfig', args(certs, path), diff=True)
    assert result['changed'] and 'unreadable' in result['diff']['before']
    assert yaml.safe_load(path.read_text())['kind'] == 'Config'


@pytest.mark.parametrize(
    'extra, message',
    [
        ({'ca_file': '/nonexistent/ca.pem'}, 'ca_file: /nonexistent/ca.pem does not exist'),
        ({'client_key_file': 'CERT'}, 'client_key_file: '),
        ({'server': 'http://x:6443'}, 'server must be an https:// URL'),
        ({'mode': 'rw'}, 'mode must be an octal string'),
        ({'user': ''}, 'user must not be empty'),
    ],
)
def test_module_bad_input(certs, tmp_path, run_module, extra, message):
    if extra.get('client_key_file') == 'CERT':
        extra = {'client_key_file': str(certs / 'admin.pem')}
    result = run_module('kubeconfig', args(certs, tmp_path / 'k', **extra))
    assert result['failed'] and message in result['msg'], result['msg']
    assert not (tmp_path / 'k').exists()


def test_module_through_ansible(certs, tmp_path):
    path = tmp_path / 'admin.kubeconfig'
    rc, result, output = run_adhoc('kubeconfig', args(certs, path), tmp_path, diff=True)
    assert rc == 0 and result['changed'] is True, output
    assert (certs / 'admin-key.pem').read_text().splitlines()[1] not in output
    assert base64.b64encode((certs / 'admin-key.pem').read_bytes()).decode() not in output
    rc, result, output = run_adhoc('kubeconfig', args(certs, path), tmp_path)
    assert rc == 0 and result['changed'] is False, output
