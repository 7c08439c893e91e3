"""etcd membership: the decision how a member starts (new or existing), and the member add through an
in-memory stand-in for etcd's JSON gateway (tests/integration/test_etcd_member.py uses real etcd)."""

from __future__ import annotations

import json

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import etcd as E
from ansible_collections.hardway.kubernetes.plugins.module_utils import etcd_member as M
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import RequestError, Response
from test_etcd_auth_logic import FakeGateway, GatewayError

CP1 = 'https://10.0.0.11:2380'
CP2 = 'https://10.0.0.12:2380'
CP3 = 'https://10.0.0.13:2380'
BOOTSTRAP = [('cp1', CP1), ('cp2', CP2), ('cp3', CP3)]
E1, E2 = 'http://etcd1.test:2379', 'http://etcd2.test:2379'


def member(ident, name, peer, client=None, learner=False):
    out = {'ID': str(ident), 'peerURLs': [peer]}
    if name:
        out['name'] = name
    if client:
        out['clientURLs'] = [client]
    if learner:
        out['isLearner'] = True
    return out


# ------------------------------------------------------------------ the decision (pure)
def test_member_with_data_decides_nothing():
    plan = M.plan_start('cp2', [CP2], True, None, BOOTSTRAP)
    assert plan == {'decision': 'keep', 'state': None, 'initial_cluster': None, 'member': None}


def test_no_cluster_answers_bootstraps_a_new_one_with_the_inventory():
    plan = M.plan_start('cp2', [CP2], False, None, BOOTSTRAP)
    assert plan['decision'] == 'bootstrap' and plan['state'] == 'new'
    assert plan['initial_cluster'] == f'cp1={CP1},cp2={CP2},cp3={CP3}'


def test_a_new_cluster_must_list_the_member():
    with pytest.raises(M.MembershipError, match='does not list this member'):
        M.plan_start('cp4', ['https://10.0.0.14:2380'], False, None, BOOTSTRAP)
    with pytest.raises(M.MembershipError, match='does not list this member'):
        M.plan_start('cp2', ['https://10.9.9.9:2380'], False, None, BOOTSTRAP)


def test_a_running_cluster_without_the_member_adds_it():
    members = [member(1, 'cp1', CP1, 'https://10.0.0.11:2379')]
    plan = M.plan_start('cp2', [CP2], False, members, BOOTSTRAP)
    assert plan['decision'] == 'add' and plan['state'] == 'existing'
    assert plan['initial_cluster'] == f'cp1={CP1},cp2={CP2}'


def test_added_but_never_started_joins_without_another_add():
    # a run stopped between the add and the start; and a new cluster whose other members came up first
    members = [member(1, 'cp1', CP1, 'https://10.0.0.11:2379'), member(0xab, '', CP2)]
    plan = M.plan_start('cp2', [CP2], False, members, BOOTSTRAP)
    assert plan['decision'] == 'join' and plan['state'] == 'existing'
    assert plan['initial_cluster'] == f'cp1={CP1},cp2={CP2}'
    assert M.member_id(plan['member']) == 'ab'


def test_members_not_started_yet_take_their_inventory_names():
    members = [member(1, 'cp1', CP1, 'x'), member(2, '', CP2), member(3, '', CP3)]
    plan = M.plan_start('cp3', [CP3], False, members, BOOTSTRAP)
    assert plan['initial_cluster'] == f'cp1={CP1},cp2={CP2},cp3={CP3}'
    # one the inventory does not know is named by its ID, so that etcd counts it as a member of its own
    members = [member(1, 'cp1', CP1, 'x'), member(0x2f, '', 'https://10.0.0.99:2380')]
    plan = M.plan_start('cp2', [CP2], False, members, BOOTSTRAP)
    assert plan['initial_cluster'] == f'cp1={CP1},cp2={CP2},member-2f=https://10.0.0.99:2380'


def test_a_started_member_without_data_has_lost_it():
    members = [member(1, 'cp1', CP1, 'x'), member(0x99, 'cp2', CP2, 'https://10.0.0.12:2379')]
    with pytest.raises(M.MembershipError) as info:
        M.plan_start('cp2', [CP2], False, members, BOOTSTRAP)
    assert 'data is lost' in str(info.value) and 'etcdctl member remove 99' in str(info.value)


def test_a_name_held_by_another_address_is_refused():
    members = [member(1, 'cp1', CP1, 'x'), member(7, 'cp2', 'https://10.0.0.77:2380', 'y')]
    with pytest.raises(M.MembershipError, match='cannot change its address'):
        M.plan_start('cp2', [CP2], False, members, BOOTSTRAP)


def test_learners_count_as_members():
    members = [member(1, 'cp1', CP1, 'x'), member(2, 'cp3', CP3, 'z', learner=True)]
    plan = M.plan_start('cp2', [CP2], False, members, BOOTSTRAP)
    assert plan['initial_cluster'] == f'cp1={CP1},cp2={CP2},cp3={CP3}'
    assert 'cp3 2 peer https://10.0.0.13:2380 client z (learner)' in M.describe_members(members)


@pytest.mark.parametrize('text, pairs', [
    ('a=https://a:2380,b=https://b:2380', [('a', 'https://a:2380'), ('b', 'https://b:2380')]),
    ('a=https://a:2380, a=https://a2:2380,', [('a', 'https://a:2380'), ('a', 'https://a2:2380')]),
    ('', []),
])
def test_parse_initial_cluster(text, pairs):
    assert M.parse_initial_cluster(text) == pairs
    assert M.format_initial_cluster(pairs) == ','.join(f'{n}={u}' for n, u in pairs)


def test_parse_initial_cluster_refuses_garbage():
    with pytest.raises(M.MembershipError, match="'nourl' is not name=peer-URL"):
        M.parse_initial_cluster('a=https://a:2380,nourl')


def test_member_id_is_hex():
    assert M.member_id({'ID': '10276657743932975437'}) == '8e9e05c52164694d'
    assert M.member_id({'ID': 255}) == 'ff'
    assert M.member_id({}) == '(new)'


# ------------------------------------------------------------------ the cluster API (fake gateway)
class ClusterGateway(FakeGateway):
    """FakeGateway plus etcd's member list and add, with etcd's strict reconfiguration check."""

    def __init__(self, members):
        super().__init__()
        self.members = [dict(m) for m in members]
        self.next_id = 0x100

    def handle(self, path, body, token):
        if path == '/v3/cluster/member/list':
            self.user_of(token)  # any logged-in user may list
            return {'members': self.members}
        if path == '/v3/cluster/member/add':
            self.admin(token)
            if any(set(body['peerURLs']) & set(m['peerURLs']) for m in self.members):
                raise GatewayError(9, 400, 'Peer URLs already exists')
            voting = [m for m in self.members if not m.get('isLearner')]
            started = [m for m in voting if m.get('name')]
            total = len(voting) + 1
            if not (len(started) == 1 and total == 2) and len(started) < total // 2 + 1:
                raise GatewayError(9, 400, 're-configuration failed due to not enough started members')
            self.next_id += 1
            new = {'ID': str(self.next_id), 'peerURLs': list(body['peerURLs'])}
            self.members.append(new)
            return {'member': new, 'members': self.members}
        return super().handle(path, body, token)


@pytest.fixture
def cluster(monkeypatch):
    def make(members, down=()):
        fake = ClusterGateway(members)
        fake.down = set(down)
        monkeypatch.setattr(E, 'request', fake)
        return fake
    return make


def client(user=None, password=None, endpoints=(E1, E2)):
    return E.EtcdClient(list(endpoints), user=user, password=password)


def run(name='cp2', peers=(CP2,), member_data=False, check=False, diff=True, **kwargs):
    return M.run_member(kwargs.pop('client', None) or client(), name, list(peers), member_data,
                        M.format_initial_cluster(BOOTSTRAP), check, diff, **kwargs)


def test_fresh_cluster_asks_and_bootstraps(cluster):
    fake = cluster([], down={E1, E2})
    result = run()
    assert (result['changed'], result['decision'], result['state']) == (False, 'bootstrap', 'new')
    assert result['initial_cluster'] == f'cp1={CP1},cp2={CP2},cp3={CP3}' and result['members'] == []
    assert fake.requests == []  # both refused before any answer


def test_member_with_data_asks_nothing(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1)])
    result = run(member_data=True)
    assert result['decision'] == 'keep' and result['changed'] is False and fake.requests == []


def test_join_adds_the_member_then_starts_existing(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1)], down={E2})
    before = [dict(m) for m in fake.members]
    checked = run(check=True)
    assert checked['changed'] and checked['decision'] == 'add' and checked['member_id'] is None
    assert fake.members == before  # check mode adds nothing
    assert '(not started) (new) peer https://10.0.0.12:2380\n' in checked['diff']['after']
    result = run()
    assert result['changed'] and result['decision'] == 'add' and result['state'] == 'existing'
    assert result['member_id'] == '101' and result['initial_cluster'] == f'cp1={CP1},cp2={CP2}'
    assert [m['peerURLs'] for m in fake.members] == [[CP1], [CP2]]
    assert result['diff']['before'] == f'cp1 1 peer {CP1} client {E1}\n'
    # a second run before the member started: it is listed, not added again
    again = run()
    assert (again['changed'], again['decision'], again['member_id']) == (False, 'join', '101')
    assert len(fake.members) == 2


def test_join_logs_in_when_authentication_is_on(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1)])
    fake.users = {'root': {'password': None, 'roles': {'root'}},
                  'etcd-admin': {'password': 's3cret', 'roles': {'root'}},
                  'flannel': {'password': 'x', 'roles': set()}}
    fake.enabled = True
    assert run(client=client('etcd-admin', 's3cret'))['decision'] == 'add'
    with pytest.raises(E.EtcdError, match='denied'):
        run(name='cp3', peers=[CP3], client=client('flannel', 'x'))  # not root: may not add members


def test_add_waits_for_a_member_that_is_still_starting(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1), member(2, 'cp2', CP2, E2), member(3, '', CP3)])
    fake.members.append(member(4, '', 'https://10.0.0.14:2380'))  # 2 of 4 voting members started
    clock = iter(range(0, 1000, 1)).__next__

    def sleep(_seconds):
        # the member added before starts meanwhile
        fake.members[2]['name'] = 'cp3'

    answer = M.add_member(client(), ['https://10.0.0.15:2380'], wait=10, sleep=sleep, clock=clock)
    assert answer['member']['peerURLs'] == ['https://10.0.0.15:2380']
    fake.members = fake.members[:2] + [member(3, '', CP3), member(4, '', 'https://10.0.0.14:2380')]
    with pytest.raises(E.EtcdError, match='not enough started members'):
        M.add_member(client(), ['https://10.0.0.16:2380'], wait=3, sleep=lambda _s: None, clock=clock)


def test_an_answer_that_is_not_a_refusal_is_not_taken_for_no_cluster(cluster, monkeypatch):
    cluster([member(1, 'cp1', CP1, E1)])

    def broken(*_args, **_kwargs):
        return Response(500, 'error', json.dumps({'error': 'boom', 'code': 2}).encode())

    monkeypatch.setattr(E, 'request', broken)
    with pytest.raises(E.EtcdError):
        run()


def test_a_cluster_without_quorum_is_not_taken_for_no_cluster(cluster, monkeypatch):
    """etcd accepts the connection but cannot answer (a member added and not started yet, two of two
    needed): that is a cluster, and bootstrapping another one would split it."""
    cluster([member(1, 'cp1', CP1, E1)])

    def hanging(endpoint, *_args, **_kwargs):
        raise RequestError(f'no answer from {endpoint} within 5 seconds (timeout)', 'timeout', endpoint)

    monkeypatch.setattr(E, 'request', hanging)
    with pytest.raises(E.EtcdError, match='timeout'):
        run()

    def not_ready(endpoint, *_args, **_kwargs):  # a new member waiting for its peers: the handshake hangs
        error = RequestError(f'no answer from {endpoint} within 5 seconds (timeout)', 'timeout', endpoint)
        error.connecting = True
        raise error

    monkeypatch.setattr(E, 'request', not_ready)
    assert run()['decision'] == 'bootstrap'


def test_module_without_member_data_needs_no_certificates(run_module):
    result = run_module('etcd_member', {'endpoints': [E1], 'name': 'cp1', 'peer_urls': [CP1],
                                        'initial_cluster': f'cp1={CP1}', 'member_data': True})
    assert result['rc'] == 0, result
    assert result['decision'] == 'keep' and result['changed'] is False
