"""hardway.kubernetes.etcd_key (a plain key/value module) against a real etcd with TLS and client certificate
authentication."""

from __future__ import annotations

import json
import socket

FLANNEL = {'Network': '10.200.0.0/16', 'SubnetLen': 24, 'Backend': {'Type': 'vxlan'}}


def args(etcd, cert_args, **extra):
    out = {'endpoints': [etcd['url']]}
    out.update(cert_args())
    out.update(extra)
    return out


def get(module, etcd, cert_args, key):
    result = module('etcd_key', args(etcd, cert_args, key=key, state='get'))
    assert result['rc'] == 0 and result['changed'] is False, result
    return result


def test_put_get_and_idempotence(module, etcd, cert_args):
    key = '/it/simple'
    result = module('etcd_key', args(etcd, cert_args, key=key, value='hello'))
    assert result['rc'] == 0, result
    assert (result['changed'], result['previous'], result['value'], result['exists']) == (
        True,
        None,
        'hello',
        True,
    )
    assert result['endpoint'] == etcd['url']
    got = get(module, etcd, cert_args, key)
    assert (got['value'], got['exists'], got['previous']) == ('hello', True, 'hello')
    again = module('etcd_key', args(etcd, cert_args, key=key, value='hello'))
    assert again['changed'] is False and again['previous'] == 'hello'
    changed = module('etcd_key', args(etcd, cert_args, key=key, value='world'), diff=True)
    assert changed['changed'] and changed['previous'] == 'hello'
    assert changed['diff']['before'] == 'hello\n' and changed['diff']['after'] == 'world\n'
    assert get(module, etcd, cert_args, key)['value'] == 'world'


def test_json_values_compare_semantically(module, etcd, cert_args):
    key = '/it/flannel-a/config'
    result = module('etcd_key', args(etcd, cert_args, key=key, value=FLANNEL))
    assert result['changed'] and result['value_json'] == FLANNEL
    stored = get(module, etcd, cert_args, key)['value']
    assert stored == '{"Backend":{"Type":"vxlan"},"Network":"10.200.0.0/16","SubnetLen":24}'
    # the same document as a string with another key order and spacing, and as a dict again
    reordered = json.dumps(
        {'SubnetLen': 24, 'Backend': {'Type': 'vxlan'}, 'Network': '10.200.0.0/16'}, indent=2
    )
    assert module('etcd_key', args(etcd, cert_args, key=key, value=reordered))['changed'] is False
    assert module('etcd_key', args(etcd, cert_args, key=key, value=dict(FLANNEL)))['changed'] is False
    # a real difference is written
    result = module('etcd_key', args(etcd, cert_args, key=key, value=dict(FLANNEL, SubnetLen=26)), diff=True)
    assert result['changed'] and '"SubnetLen": 24' in result['diff']['before']
    assert '"SubnetLen": 26' in result['diff']['after']


def test_check_mode_writes_nothing(module, etcd, cert_args):
    key = '/it/check'
    module('etcd_key', args(etcd, cert_args, key=key, value='original'))
    result = module('etcd_key', args(etcd, cert_args, key=key, value='new'), check=True, diff=True)
    assert result['changed'] and result['diff'] == {
        'before': 'original\n',
        'after': 'new\n',
        'before_header': f'etcd key {key}',
        'after_header': f'etcd key {key}',
    }
    assert get(module, etcd, cert_args, key)['value'] == 'original'
    result = module('etcd_key', args(etcd, cert_args, key=key, state='absent'), check=True)
    assert result['changed'] and result['exists'] is False
    assert get(module, etcd, cert_args, key)['exists'] is True
    result = module('etcd_key', args(etcd, cert_args, key='/it/check-new', value='x'), check=True)
    assert result['changed'] and get(module, etcd, cert_args, '/it/check-new')['exists'] is False


def test_delete(module, etcd, cert_args):
    key = '/it/delete-me'
    module('etcd_key', args(etcd, cert_args, key=key, value='bye'))
    result = module('etcd_key', args(etcd, cert_args, key=key, state='absent'), diff=True)
    assert result['changed'] and result['previous'] == 'bye' and result['exists'] is False
    assert result['diff']['before'] == 'bye\n' and result['diff']['after'] == ''
    got = get(module, etcd, cert_args, key)
    assert got['exists'] is False and got['value'] is None
    assert module('etcd_key', args(etcd, cert_args, key=key, state='absent'))['changed'] is False


def test_list_prefix(module, etcd, cert_args):
    prefix = '/it/network/subnets/'
    leases = {
        prefix + '10.200.1.0-24': {'PublicIP': '10.0.0.21', 'BackendType': 'vxlan'},
        prefix + '10.200.2.0-24': {'PublicIP': '10.0.0.22', 'BackendType': 'vxlan'},
    }
    for key, value in leases.items():
        assert module('etcd_key', args(etcd, cert_args, key=key, value=value))['changed']
    module('etcd_key', args(etcd, cert_args, key='/it/network/subnetsX', value='not under the prefix'))
    module('etcd_key', args(etcd, cert_args, key='/it/network/subnets/plain', value='text'))
    result = module('etcd_key', args(etcd, cert_args, key=prefix, state='list'))
    assert result['rc'] == 0 and result['changed'] is False
    assert sorted(result['kvs']) == sorted(list(leases) + [prefix + 'plain'])
    assert result['kvs'][prefix + 'plain'] == 'text'
    assert result['values_json'] == leases
    assert result['exists'] is True
    empty = module('etcd_key', args(etcd, cert_args, key='/it/nothing-here/', state='list'))
    assert empty['kvs'] == {} and empty['exists'] is False


def test_client_certificate_from_another_ca(module, etcd, cert_args):
    result = module(
        'etcd_key', dict(args(etcd, cert_args, key='/it/x', state='get'), **cert_args('stranger'))
    )
    assert result['rc'] == 1 and result['failed']
    assert 'client_cert' in result['msg'] and etcd['url'] in result['msg'], result['msg']
    assert result['error_kind'] in ('client-cert', 'connection')


def test_untrusted_server(module, etcd, pki, cert_args):
    result = module(
        'etcd_key', dict(args(etcd, cert_args, key='/it/x', state='get'), ca_cert=f'{pki}/other-ca.pem')
    )
    assert result['failed'] and result['error_kind'] == 'tls'
    assert f'TLS verification of {etcd["url"]} failed' in result['msg'] and 'ca_cert' in result['msg']


def test_wrong_endpoint(module, etcd, cert_args, unused_port):
    dead = f'https://127.0.0.1:{unused_port()}'
    result = module('etcd_key', args(etcd, cert_args, key='/it/x', state='get', endpoints=[dead]))
    assert result['failed'] and result['error_kind'] == 'refused'
    assert result['msg'].startswith(f'connection refused by {dead}')
    # the next endpoint is tried, and the one that answered is reported
    result = module('etcd_key', args(etcd, cert_args, key='/it/x', value='y', endpoints=[dead, etcd['url']]))
    assert result['rc'] == 0 and result['endpoint'] == etcd['url']


def test_several_dead_endpoints_are_all_named(module, etcd, cert_args, unused_port):
    dead = [f'https://127.0.0.1:{unused_port()}', f'https://127.0.0.1:{unused_port()}']
    result = module('etcd_key', args(etcd, cert_args, key='/it/x', state='get', endpoints=dead))
    assert result['failed'] and result['msg'].startswith('no etcd endpoint answered: ')
    assert all(d in result['msg'] for d in dead)


def test_plain_http_to_tls_port(module, etcd, cert_args):
    result = module(
        'etcd_key',
        args(etcd, cert_args, key='/it/x', state='get', endpoints=[f'http://127.0.0.1:{etcd["port"]}']),
    )
    assert result['failed'] and f'http://127.0.0.1:{etcd["port"]} closed the connection' in result['msg']
    assert 'use an https:// URL' in result['msg']


def test_timeout(module, etcd, cert_args):
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen(1)
        url = f'https://127.0.0.1:{silent.getsockname()[1]}'
        result = module(
            'etcd_key', args(etcd, cert_args, key='/it/x', state='get', endpoints=[url], timeout=0.5)
        )
    assert result['failed'] and result['error_kind'] == 'timeout'
    assert result['msg'] == f'no answer from {url} within 0.5 seconds (timeout)'


def test_missing_certificate_files_name_the_option(module, etcd, pki, cert_args):
    result = module(
        'etcd_key', dict(args(etcd, cert_args, key='/it/x', state='get'), client_key=f'{pki}/nope-key.pem')
    )
    assert result['failed'] and result['msg'] == f'client_key: {pki}/nope-key.pem does not exist'


def test_through_ansible_on_an_old_python(ansible_adhoc, old_python, etcd, cert_args):
    """The ansible command line ships the module to the oldest Python here, with no packages at all."""
    python = old_python
    key = '/it/ansible'
    rc, result = ansible_adhoc('etcd_key', args(etcd, cert_args, key=key, value=FLANNEL), python=python)
    assert rc == 0 and result['changed'] is True, result
    rc, result = ansible_adhoc('etcd_key', args(etcd, cert_args, key=key, value=FLANNEL), python=python)
    assert rc == 0 and result['changed'] is False, result
    rc, result = ansible_adhoc(
        'etcd_key',
        args(etcd, cert_args, key=key, value={'Backend': {'Type': 'udp'}}),
        python=python,
        check=True,
    )
    assert rc == 0 and result['changed'] is True, result
    rc, result = ansible_adhoc('etcd_key', args(etcd, cert_args, key=key, state='get'), python=python)
    assert result['value_json'] == FLANNEL, result  # check mode wrote nothing


def test_user_and_password_are_ignored_while_authentication_is_off(module, etcd, cert_args):
    result = module('etcd_key', args(etcd, cert_args, key='/it/login', value='v', user='etcd-admin',
                                     password='not-needed'))
    assert result['rc'] == 0 and result['changed'], result
