"""etcd_key's pure logic: value encoding and comparison, key ranges; the client's configuration errors."""

from __future__ import annotations

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import etcd as E
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError, Response

FLANNEL = {'Network': '10.200.0.0/16', 'SubnetLen': 24, 'Backend': {'Type': 'vxlan'}}


def test_encode_value():
    assert E.encode_value('as is {"a": 1}') == 'as is {"a": 1}'
    assert E.encode_value(FLANNEL) == '{"Backend":{"Type":"vxlan"},"Network":"10.200.0.0/16","SubnetLen":24}'
    assert E.encode_value([3, 'a']) == '[3,"a"]'
    assert E.encode_value(True) == 'true'
    assert E.encode_value(12) == '12'


@pytest.mark.parametrize(
    'current, desired, equal',
    [
        ('abc', 'abc', True),
        ('abc', 'abd', False),
        (None, 'abc', False),
        ('', '', True),
        # dict against differently ordered / spaced JSON
        ('{"SubnetLen": 24, "Network": "10.200.0.0/16", "Backend": {"Type": "vxlan"}}', FLANNEL, True),
        (
            '{"Network":"10.200.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}',
            dict(FLANNEL, SubnetLen=25),
            False,
        ),
        # both strings parse as JSON
        ('{"b": 1, "a": [1, 2]}', '{"a":[1,2],"b":1}', True),
        ('{"b": 1, "a": [1, 2]}', '{"a":[2,1],"b":1}', False),
        # strictness: true is not 1, 1 is not 1.0, "1" is not 1
        ('{"a": true}', {'a': 1}, False),
        ('{"a": 1.0}', {'a': 1}, False),
        ('{"a": "1"}', {'a': 1}, False),
        ('not json', {'a': 1}, False),
        ('[1, 2]', [1, 2], True),
        ('{"a": null}', {'a': None}, True),
    ],
)
def test_values_equal(current, desired, equal):
    assert E.values_equal(current, desired) is equal


def test_prefix_end():
    assert E.prefix_end(b'/coreos.com/network/subnets/') == b'/coreos.com/network/subnets0'
    assert E.prefix_end(b'a\xff') == b'b'
    assert E.prefix_end(b'\xff\xff') == b'\0'
    assert E.prefix_end(b'') == b'\0'


def test_pretty():
    assert E.pretty('{"b":1,"a":2}') == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert E.pretty('plain') == 'plain\n'
    assert E.pretty(None) == ''


def test_gateway_error():
    body = b'{"error":"etcdserver: permission denied","code":7,"message":"etcdserver: permission denied"}'
    assert E.gateway_error(Response(403, 'Forbidden', body)) == (7, 'etcdserver: permission denied')
    assert E.gateway_error(Response(502, 'Bad Gateway', b'upstream down')) == (None, 'upstream down')
    assert E.gateway_error(Response(500, 'Internal', b'')) == (None, 'Internal')


def test_client_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match='endpoints: give at least one'):
        E.EtcdClient([])
    with pytest.raises(ConfigError, match="endpoints: 'ftp://x' is not an http"):
        E.EtcdClient(['ftp://x'])
    with pytest.raises(ConfigError, match=f'ca_cert: {tmp_path}/ca.pem does not exist'):
        E.EtcdClient(['https://127.0.0.1:2379'], ca_cert=str(tmp_path / 'ca.pem'))
    (tmp_path / 'cert.pem').write_text('x')
    with pytest.raises(ConfigError, match=f'client_key: {tmp_path}/key.pem does not exist'):
        E.EtcdClient(
            ['https://127.0.0.1:2379'],
            client_cert=str(tmp_path / 'cert.pem'),
            client_key=str(tmp_path / 'key.pem'),
        )
    with pytest.raises(ConfigError, match='client_cert and client_key must be given together'):
        E.EtcdClient(['https://127.0.0.1:2379'], client_cert=str(tmp_path / 'cert.pem'))
    with pytest.raises(ConfigError, match='ca_cert: .* does not hold a PEM CA certificate'):
        E.EtcdClient(['https://127.0.0.1:2379'], ca_cert=str(tmp_path / 'cert.pem'))
    # a missing file is reported even with plain http endpoints
    with pytest.raises(ConfigError, match='ca_cert: '):
        E.EtcdClient(['http://127.0.0.1:2379'], ca_cert=str(tmp_path / 'nope.pem'))


def test_endpoint_parsing():
    client = E.EtcdClient(['10.0.0.1', 'https://[fd00::1]:2380', 'http://etcd:12379/'])
    assert [(e.scheme, e.host, e.port) for e in client.endpoints] == [
        ('https', '10.0.0.1', 2379),
        ('https', 'fd00::1', 2380),
        ('http', 'etcd', 12379),
    ]
    assert client.endpoint_url is None


def test_module_rejects_missing_value(run_module):
    result = run_module('etcd_key', {'endpoints': ['https://127.0.0.1:1'], 'key': 'k'})
    assert result['failed'] and 'value' in result['msg']
    result = run_module('etcd_key', {'endpoints': ['https://127.0.0.1:1'], 'key': 'k', 'value': None})
    assert result['failed'] and 'value is required with state=present' in result['msg']
    result = run_module(
        'etcd_key', {'endpoints': ['https://127.0.0.1:1'], 'key': 'k', 'value': 'v', 'timeout': 0}
    )
    assert result['failed'] and 'timeout must be greater than 0' in result['msg']
    result = run_module(
        'etcd_key',
        {'endpoints': ['https://127.0.0.1:1'], 'key': 'k', 'state': 'get', 'ca_cert': '/nonexistent/ca.pem'},
    )
    assert result['failed'] and result['msg'] == 'ca_cert: /nonexistent/ca.pem does not exist'


def test_a_learner_is_passed_over_for_the_next_endpoint(monkeypatch):
    """A member that joined as a learner refuses every gateway request; the client asks the next endpoint."""
    learner = b'{"error":"etcdserver: rpc not supported for learner","code":9}'
    answers = {'https://10.0.0.13:2379': Response(400, 'Bad Request', learner),
               'https://10.0.0.11:2379': Response(200, 'OK', b'{"header":{},"members":[]}')}
    client = E.EtcdClient(['https://10.0.0.13:2379', 'https://10.0.0.11:2379'])
    monkeypatch.setattr(client, '_post', lambda endpoint, path, payload, token: answers[str(endpoint)])
    assert client.call('/v3/cluster/member/list', {}) == {'header': {}, 'members': []}
    assert client.endpoint_url == 'https://10.0.0.11:2379'
    # only the learner: the error says what it is, and that no other endpoint answered
    only = E.EtcdClient(['https://10.0.0.13:2379'])
    monkeypatch.setattr(only, '_post', lambda endpoint, path, payload, token: answers[str(endpoint)])
    with pytest.raises(E.EtcdError, match='is a learner') as error:
        only.call('/v3/kv/range', {'key': 'eA=='})
    assert [e.kind for e in error.value.errors] == ['learner']
