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


# --------------------------------------------------------------------------
# The module, many files at once (kubeconfigs)


def batch(certs, directory, **extra):
    out = {
        'ca_file': str(certs / 'ca.pem'),
        'cluster_name': 'lab',
        'kubeconfigs': [
            {
                'path': str(directory / f'{name}.kubeconfig'),
                'server': server,
                'user': name,
                'client_cert_file': str(certs / f'{cert}.pem'),
                'client_key_file': str(certs / f'{cert}-key.pem'),
            }
            for name, cert, server in (
                ('admin', 'admin', 'https://10.0.0.10:6443'),
                ('admin-local', 'admin', 'https://127.0.0.1:6443'),
                ('other', 'other', 'https://10.0.0.10:6443'),
            )
        ],
    }
    out.update(extra)
    return out


def test_batch_writes_then_is_idempotent(certs, tmp_path, run_module):
    result = run_module('kubeconfig', batch(certs, tmp_path))
    assert result['rc'] == 0 and result['changed'] is True and 'path' not in result
    paths = [str(tmp_path / f'{n}.kubeconfig') for n in ('admin', 'admin-local', 'other')]
    assert result['kubeconfigs'] == {p: {'changed': True} for p in paths}
    local = yaml.safe_load((tmp_path / 'admin-local.kubeconfig').read_text())
    assert local['clusters'][0] == {
        'name': 'lab',
        'cluster': {
            'certificate-authority-data': base64.b64encode((certs / 'ca.pem').read_bytes()).decode(),
            'server': 'https://127.0.0.1:6443',
        },
    }
    assert local['users'][0]['name'] == 'admin-local' and local['current-context'] == 'default'
    assert (
        base64.b64decode(local['users'][0]['user']['client-key-data']) == (certs / 'admin-key.pem').read_bytes()
    )
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in paths)
    # The same file as the single-file form writes.
    single = tmp_path / 'single.kubeconfig'
    run_module('kubeconfig', args(certs, single, cluster_name='lab'))
    assert single.read_bytes() == (tmp_path / 'admin.kubeconfig').read_bytes()
    mtimes = [os.stat(p).st_mtime_ns for p in paths]
    again = run_module('kubeconfig', batch(certs, tmp_path), diff=True)
    assert again['changed'] is False and 'diff' not in again
    assert again['kubeconfigs'] == {p: {'changed': False} for p in paths}
    assert [os.stat(p).st_mtime_ns for p in paths] == mtimes


def test_batch_reads_each_pem_file_once(certs, tmp_path, run_module, monkeypatch):
    import builtins

    opened = []
    real_open = builtins.open

    def counting_open(file, *a, **kw):
        if str(file).endswith('.pem'):
            opened.append(os.path.basename(str(file)))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(builtins, 'open', counting_open)
    assert run_module('kubeconfig', batch(certs, tmp_path))['changed']
    assert sorted(opened) == ['admin-key.pem', 'admin.pem', 'ca.pem', 'other-key.pem', 'other.pem']


def test_batch_item_overrides_and_partial_change(certs, tmp_path, run_module):
    run_module('kubeconfig', batch(certs, tmp_path))
    params = batch(certs, tmp_path)
    params['kubeconfigs'][1].update(context='local', mode='0640')
    params['kubeconfigs'][2].update(cluster_name='other-cluster', ca_file=str(certs / 'other.pem'))
    os.chmod(tmp_path / 'admin.kubeconfig', 0o644)
    result = run_module('kubeconfig', params, diff=True)
    assert result['changed'] is True
    assert {p.rsplit('/', 1)[1]: r['changed'] for p, r in result['kubeconfigs'].items()} == {
        'admin.kubeconfig': True,  # mode only
        'admin-local.kubeconfig': True,
        'other.kubeconfig': True,
    }
    assert stat.S_IMODE(os.stat(tmp_path / 'admin.kubeconfig').st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / 'admin-local.kubeconfig').st_mode) == 0o640
    assert yaml.safe_load((tmp_path / 'admin-local.kubeconfig').read_text())['current-context'] == 'local'
    other = yaml.safe_load((tmp_path / 'other.kubeconfig').read_text())
    assert other['clusters'][0]['name'] == 'other-cluster' and other['contexts'][0]['context']['cluster'] == (
        'other-cluster'
    )
    # One diff per changed file, with its own headers, keys redacted.
    diffs = result['diff']
    assert isinstance(diffs, list) and len(diffs) == 3
    assert diffs[0]['before'] == '# mode 0644\n' and diffs[0]['after'] == '# mode 0600\n'
    assert diffs[1]['before_header'] == f'{tmp_path}/admin-local.kubeconfig (mode 0600)'
    assert diffs[1]['after_header'] == f'{tmp_path}/admin-local.kubeconfig (mode 0640)'
    assert 'current-context: local' in diffs[1]['after'] and '<redacted>' in diffs[1]['after']
    text = json.dumps(result)
    for key_file in ('admin-key.pem', 'other-key.pem'):
        assert base64.b64encode((certs / key_file).read_bytes()).decode() not in text
    # Only the item that differs changes.
    params['kubeconfigs'][0]['server'] = 'https://10.0.0.99:6443'
    result = run_module('kubeconfig', params, diff=True)
    assert [p.rsplit('/', 1)[1] for p, r in result['kubeconfigs'].items() if r['changed']] == ['admin.kubeconfig']
    assert len(result['diff']) == 1 and 'server: https://10.0.0.99:6443' in result['diff'][0]['after']


def test_batch_check_mode_writes_nothing(certs, tmp_path, run_module):
    result = run_module('kubeconfig', batch(certs, tmp_path), check=True, diff=True)
    assert result['changed'] is True and len(result['diff']) == 3
    assert all(r['changed'] for r in result['kubeconfigs'].values())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    'change, message',
    [
        (lambda p: p['kubeconfigs'][2].update(server='http://x'), 'kubeconfigs[2] ('),
        (lambda p: p['kubeconfigs'][2].update(server='http://x'), "): server must be an https:// URL, got 'http://x'"),
        (lambda p: p['kubeconfigs'][1].update(client_key_file='/nonexistent/k.pem'),
         'admin-local.kubeconfig): client_key_file: /nonexistent/k.pem does not exist'),
        (lambda p: p.pop('ca_file'), 'kubeconfigs[0] ('),
        (lambda p: p.pop('ca_file'), 'ca_file is required, in the item or at the top level'),
        (
            lambda p: p['kubeconfigs'][2].update(path=p['kubeconfigs'][0]['path']),
            'path is also the path of kubeconfigs[0]',
        ),
        (lambda p: p['kubeconfigs'][0].update(mode='rw'), 'mode must be an octal string'),
        (lambda p: p.update(path='/tmp/x.kubeconfig'), 'mutually exclusive: path|kubeconfigs'),
        (lambda p: p.update(server='https://x:6443'), 'mutually exclusive: server|kubeconfigs'),
        (lambda p: p['kubeconfigs'][0].pop('user'), 'missing required arguments: user'),
    ],
)
def test_batch_bad_input_writes_nothing(certs, tmp_path, run_module, change, message):
    params = batch(certs, tmp_path)
    change(params)
    result = run_module('kubeconfig', params)
    assert result['failed'] and message in result['msg'], result['msg']
    assert os.listdir(tmp_path) == []  # the items before the bad one were not written either


def test_neither_path_nor_kubeconfigs(certs, run_module):
    result = run_module('kubeconfig', {'ca_file': str(certs / 'ca.pem')})
    assert result['failed'] and 'one of the following is required: path, kubeconfigs' in result['msg']
    result = run_module('kubeconfig', {'path': '/tmp/x', 'user': 'admin'})
    assert result['failed'] and "missing parameter(s) required by 'path'" in result['msg'], result['msg']


def test_batch_through_ansible(certs, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    rc, result, output = run_adhoc('kubeconfig', batch(certs, out), tmp_path, diff=True)
    assert rc == 0 and result['changed'] is True, output
    assert output.count('(mode absent)') == 3  # each file's diff is shown
    assert (certs / 'admin-key.pem').read_text().splitlines()[1] not in output
    rc, result, output = run_adhoc('kubeconfig', batch(certs, out), tmp_path)
    assert rc == 0 and result['changed'] is False, output
