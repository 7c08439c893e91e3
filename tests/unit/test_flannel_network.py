"""flannel's network config as the flannel role builds it, the guard against changing a live network,
and flannel_network (write, and wait) against an in-memory stand-in for etcd's JSON gateway."""

from __future__ import annotations

import base64
import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter.flannel import flannel_network_config
from ansible_collections.hardway.kubernetes.plugins.module_utils import etcd as E
from ansible_collections.hardway.kubernetes.plugins.module_utils import flannel_config as F
from ansible_collections.hardway.kubernetes.plugins.module_utils import flannel_network as N
from test_etcd_auth_logic import FakeGateway

BACKEND = {'Type': 'vxlan', 'VNI': 1, 'Port': 8472}
CONFIG = {'Network': '10.200.0.0/16', 'SubnetLen': 24, 'Backend': BACKEND}
KEY = '/coreos.com/network/config'
URL = 'http://etcd.test:2379'


# ------------------------------------------------------------------ building the config
def test_network_config_merges_the_overrides_over_the_backend():
    assert F.network_config('10.200.0.0/16', 24, BACKEND) == CONFIG
    assert F.network_config('10.200.0.0/16', 24, BACKEND, {'Port': 8473, 'MTU': 1400}) == dict(
        CONFIG, Backend={'Type': 'vxlan', 'VNI': 1, 'Port': 8473, 'MTU': 1400})
    # ~ leaves an option out (flannel's default applies)
    assert F.network_config('10.200.0.0/16', 24, BACKEND, {'Port': None})['Backend'] == {'Type': 'vxlan', 'VNI': 1}
    assert BACKEND == {'Type': 'vxlan', 'VNI': 1, 'Port': 8472}  # not changed in place


def test_the_filter_is_the_same_function():
    assert flannel_network_config('10.200.0.0/16', 24, BACKEND, {'VNI': 2})['Backend']['VNI'] == 2
    with pytest.raises(AnsibleFilterError, match='overrides must be a dict, got str'):
        flannel_network_config('10.200.0.0/16', 24, BACKEND, 'Port=1')


def test_describe_backend_and_changed_fields():
    assert F.describe_backend(BACKEND) == 'vxlan (Port 8472, VNI 1)'
    assert F.describe_backend({'Type': 'host-gw'}) == 'host-gw'
    assert F.describe_backend(None) == "udp (flannel's default, no Backend)"
    assert F.changed_fields(CONFIG, dict(CONFIG, Backend=dict(BACKEND, Port=1))) == ['Backend.Port']
    assert F.changed_fields(CONFIG, dict(CONFIG, SubnetLen=25, Backend={'Type': 'host-gw'})) == [
        'Backend.Port', 'Backend.Type', 'Backend.VNI', 'SubnetLen']
    assert F.changed_fields(None, CONFIG) == ['Backend', 'Network', 'SubnetLen']
    assert F.changed_fields(dict(CONFIG, SubnetLen=True), dict(CONFIG, SubnetLen=1)) == ['SubnetLen']


# ------------------------------------------------------------------ the guard (pure)
def stored(doc):
    return json.dumps(doc)


def test_plan_writes_a_missing_or_different_config():
    assert F.plan_network_config(KEY, None, CONFIG, False, 0) == (True, ['Backend', 'Network', 'SubnetLen'])
    assert F.plan_network_config(KEY, stored(CONFIG), CONFIG, False, 3) == (False, [])
    # key order and spacing do not matter
    text = json.dumps({'SubnetLen': 24, 'Backend': {'Port': 8472, 'VNI': 1, 'Type': 'vxlan'},
                       'Network': '10.200.0.0/16'}, indent=2)
    assert F.plan_network_config(KEY, text, CONFIG, False, 3) == (False, [])
    # a config no flanneld has leased a subnet with may change freely
    other = dict(CONFIG, Backend=dict(BACKEND, Port=8473))
    assert F.plan_network_config(KEY, stored(CONFIG), other, False, 0) == (True, ['Backend.Port'])


@pytest.mark.parametrize('backend, before, after', [
    (dict(BACKEND, Port=8473), 'vxlan (Port 8472, VNI 1)', 'vxlan (Port 8473, VNI 1)'),
    (dict(BACKEND, VNI=2), 'vxlan (Port 8472, VNI 1)', 'vxlan (Port 8472, VNI 2)'),
    ({'Type': 'host-gw'}, 'vxlan (Port 8472, VNI 1)', 'host-gw'),
])
def test_plan_refuses_any_backend_change_of_a_live_network_without_force(backend, before, after):
    desired = dict(CONFIG, Backend=backend)
    with pytest.raises(F.NetworkConfigError) as info:
        F.plan_network_config(KEY, stored(CONFIG), desired, False, 2)
    message = str(info.value)
    assert f'the backend is {before} and would become {after}' in message
    assert 'on a live network (2 node leases)' in message and 'flannel_force_network_config: true' in message
    assert F.plan_network_config(KEY, stored(CONFIG), desired, True, 2)[0] is True


def test_plan_refuses_a_changed_network_of_a_live_network_too():
    with pytest.raises(F.NetworkConfigError, match=r'\(changed: SubnetLen\)'):
        F.plan_network_config(KEY, stored(CONFIG), dict(CONFIG, SubnetLen=25), False, 1)


def test_plan_refuses_what_flannel_would_refuse_even_with_force():
    bad = dict(CONFIG, Network='10.200.0.1/16', Backend=dict(BACKEND, VNI=20000000))
    with pytest.raises(F.NetworkConfigError) as info:
        F.plan_network_config(KEY, None, bad, True, 0)
    assert len(info.value.problems) == 2 and 'has host bits set' in str(info.value)


def test_plan_replaces_garbage_only_when_forced_on_a_live_network():
    unreadable = 'the backend is unreadable \\("not json" is not a JSON object\\) and would become'
    with pytest.raises(F.NetworkConfigError, match=unreadable):
        F.plan_network_config(KEY, 'not json', CONFIG, False, 1)
    assert F.plan_network_config(KEY, 'not json', CONFIG, True, 1)[0] is True


# ------------------------------------------------------------------ against the fake gateway
class CountingGateway(FakeGateway):
    """FakeGateway plus count_only ranges, as flannel_network asks for the leases."""

    def handle(self, path, body, token):
        if path == '/v3/kv/range' and body.get('count_only'):
            answer = super().handle(path, dict(body, count_only=None), token)
            return {'count': str(len(answer.get('kvs') or []))}
        return super().handle(path, body, token)


@pytest.fixture
def gateway(monkeypatch):
    fake = CountingGateway()
    monkeypatch.setattr(E, 'request', fake)
    return fake


def put(fake, key, value):
    fake.kv[key.encode()] = (value if isinstance(value, str) else json.dumps(value)).encode()


def make_client():
    return E.EtcdClient([URL])


def test_write_then_nothing_to_do(gateway):
    result = N.run_network(make_client, '/coreos.com/network/', CONFIG, diff=True)
    assert result['changed'] and result['key'] == KEY and result['previous'] is None
    assert json.loads(gateway.kv[KEY.encode()]) == CONFIG
    assert result['value'] == E.encode_value(CONFIG) and '"Port": 8472' in result['diff']['after']
    again = N.run_network(make_client, '/coreos.com/network', CONFIG)
    assert again['changed'] is False and again['leases'] == 0


def test_live_change_refused_then_forced(gateway):
    put(gateway, KEY, CONFIG)
    put(gateway, '/coreos.com/network/subnets/10.200.1.0-24', {'PublicIP': '10.0.0.21'})
    put(gateway, '/coreos.com/network/subnetsX', 'not a lease')
    desired = dict(CONFIG, Backend=dict(BACKEND, Port=8473))
    with pytest.raises(F.NetworkConfigError, match=r'\(1 node lease\)'):
        N.run_network(make_client, '/coreos.com/network', desired)
    assert json.loads(gateway.kv[KEY.encode()]) == CONFIG
    checked = N.run_network(make_client, '/coreos.com/network', desired, force=True, check_mode=True)
    assert checked['changed'] and checked['changed_fields'] == ['Backend.Port']
    assert json.loads(gateway.kv[KEY.encode()]) == CONFIG  # check mode writes nothing
    result = N.run_network(make_client, '/coreos.com/network', desired, force=True)
    assert result['changed'] and result['leases'] == 1
    assert json.loads(gateway.kv[KEY.encode()]) == desired


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept += 1


def test_wait_returns_once_etcd_holds_the_config(gateway):
    clock = Clock()
    gateway.down = {URL}  # etcd not up yet

    def sleep(seconds):
        clock.sleep(seconds)
        if clock.slept == 2:
            gateway.down = set()
        if clock.slept == 4:
            put(gateway, KEY, CONFIG)  # the writer got there

    result = N.run_network(make_client, '/coreos.com/network', CONFIG, write=False, wait=60, sleep=sleep, clock=clock)
    assert result['changed'] is False and result['pending'] is False and clock.slept == 4


def test_wait_fails_at_once_when_the_writer_would_refuse(gateway):
    put(gateway, KEY, CONFIG)
    put(gateway, '/coreos.com/network/subnets/10.200.1.0-24', {'PublicIP': '10.0.0.21'})
    clock = Clock()
    with pytest.raises(F.NetworkConfigError, match='refusing to change'):
        N.run_network(make_client, '/coreos.com/network', dict(CONFIG, SubnetLen=25), write=False, wait=60,
                      sleep=clock.sleep, clock=clock)
    assert clock.slept == 0


def test_wait_runs_out(gateway):
    put(gateway, KEY, CONFIG)
    clock = Clock()
    with pytest.raises(F.NetworkConfigError, match='does not hold the flannel network config this run writes'):
        N.run_network(make_client, '/coreos.com/network', dict(CONFIG, SubnetLen=25), force=True, write=False,
                      wait=10, sleep=clock.sleep, clock=clock)
    gateway.down = {URL}
    with pytest.raises(E.EtcdError, match='connection refused'):
        N.run_network(make_client, '/coreos.com/network', CONFIG, write=False, wait=10, sleep=clock.sleep,
                      clock=clock)


def test_wait_in_check_mode_reports_without_waiting(gateway):
    put(gateway, KEY, CONFIG)
    clock = Clock()
    result = N.run_network(make_client, '/coreos.com/network', dict(CONFIG, SubnetLen=25), force=True, write=False,
                           wait=60, check_mode=True, sleep=clock.sleep, clock=clock)
    assert result['pending'] is True and result['changed'] is False and clock.slept == 0


def test_each_attempt_gets_a_new_client(gateway):
    """A password made while the module waits is used: make_client runs again for each attempt."""
    gateway.users = {'root': {'password': None, 'roles': {'root'}},
                     'etcd-admin': {'password': 's3cret', 'roles': {'root'}}}
    gateway.enabled = True
    put(gateway, KEY, CONFIG)
    passwords = iter([None, None, 's3cret'])
    clock = Clock()

    def make():
        return E.EtcdClient([URL], user='etcd-admin', password=next(passwords))

    result = N.run_network(make, '/coreos.com/network', CONFIG, write=False, wait=60, sleep=clock.sleep, clock=clock)
    assert result['pending'] is False and clock.slept == 2


# ------------------------------------------------------------------ the module
def test_module_refuses_an_invalid_config_before_connecting(run_module):
    args = {'endpoints': ['https://127.0.0.1:1'], 'config': dict(CONFIG, SubnetLen=31, Network='10.200.0.1/16')}
    for check in (False, True):
        result = run_module('flannel_network', args, check=check)
        assert result['failed'], result
        assert result['msg'].startswith("refusing to write /coreos.com/network/config, it breaks flannel's rules: ")
        assert 'Network = "10.200.0.1/16"' in result['msg'] and len(result['problems']) == 1


def test_module_valid_config_goes_on_to_etcd(run_module, tmp_path):
    result = run_module('flannel_network', {'endpoints': ['https://127.0.0.1:1'], 'config': CONFIG})
    assert result['failed'] and result['error_kind'] == 'refused'  # it got as far as connecting
    result = run_module('flannel_network', {'endpoints': ['https://127.0.0.1:1'], 'config': CONFIG, 'wait': -1})
    assert result['failed'] and result['msg'] == 'wait must be greater than 0, got -1.0'


def test_module_reads_the_password_file(run_module, tmp_path, monkeypatch):
    fake = CountingGateway()
    fake.users = {'root': {'password': None, 'roles': {'root'}},
                  'etcd-admin': {'password': 's3cret', 'roles': {'root'}}}
    fake.enabled = True
    monkeypatch.setattr(E, 'request', fake)
    secret = tmp_path / 'etcd-admin-password'
    secret.write_text('s3cret\n')
    args = {'endpoints': [URL], 'config': CONFIG, 'user': 'etcd-admin', 'password_file': str(secret)}
    result = run_module('flannel_network', args)
    assert result['rc'] == 0 and result['changed'], result
    assert base64.b64decode(base64.b64encode(fake.kv[KEY.encode()])) == E.encode_value(CONFIG).encode()
    result = run_module('flannel_network', dict(args, password_file=str(tmp_path / 'missing')))
    assert result['failed'] and 'permission denied' in result['msg']
