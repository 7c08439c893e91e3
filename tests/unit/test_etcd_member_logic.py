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
    """FakeGateway plus etcd's member list, add and promote, with etcd's strict reconfiguration check, its
    learner limit (--max-learners 1) and its error texts; /health; learners' client URLs refuse the API."""

    def __init__(self, members):
        super().__init__()
        self.members = [dict(m) for m in members]
        self.next_id = 0x100
        self.unhealthy = None  # the reason /health gives, or None
        self.behind = set()  # IDs of learners that have not caught up with the leader
        self.learner_endpoints = set()
        self.inactive = set()  # IDs of members that started once and cannot be reached now

    def __call__(self, endpoint, method, path, payload=None, context=None, timeout=10.0, headers=None, names=None):
        if str(endpoint) not in self.down and path == '/health':
            self.requests.append((str(endpoint), path, None))
            body = {'health': 'false' if self.unhealthy else 'true', 'reason': self.unhealthy or ''}
            return Response(503 if self.unhealthy else 200, 'health', json.dumps(body).encode())
        if str(endpoint) in self.learner_endpoints:
            self.requests.append((str(endpoint), path, None))
            body = {'code': 9, 'message': 'etcdserver: rpc not supported for learner'}
            return Response(400, 'Bad Request', json.dumps(body).encode())
        return super().__call__(endpoint, method, path, payload, context, timeout, headers, names)

    def handle(self, path, body, token):
        if path == '/v3/cluster/member/list':
            self.user_of(token)  # any logged-in user may list
            return {'members': self.members}
        if path == '/v3/cluster/member/add':
            self.admin(token)
            if any(set(body['peerURLs']) & set(m['peerURLs']) for m in self.members):
                raise GatewayError(9, 400, 'Peer URLs already exists')
            if body.get('isLearner'):
                if any(m.get('isLearner') for m in self.members):
                    raise GatewayError(9, 400, 'too many learner members in cluster')
            else:
                voting = [m for m in self.members if not m.get('isLearner')]
                started = [m for m in voting if m.get('name') and m['ID'] not in self.inactive]
                total = len(voting) + 1
                if not (len(started) == 1 and total == 2) and len(started) < total // 2 + 1:
                    raise GatewayError(9, 400, 're-configuration failed due to not enough started members')
            self.next_id += 1
            new = {'ID': str(self.next_id), 'peerURLs': list(body['peerURLs'])}
            if body.get('isLearner'):
                new['isLearner'] = True
                self.behind.add(new['ID'])
            self.members.append(new)
            return {'member': new, 'members': self.members}
        if path == '/v3/cluster/member/promote':
            self.admin(token)
            found = [m for m in self.members if m['ID'] == body['ID']]
            if not found:
                raise GatewayError(5, 404, 'member not found')
            if not found[0].get('isLearner'):
                raise GatewayError(9, 400, 'can only promote a learner member')
            if not found[0].get('name') or body['ID'] in self.behind:
                raise GatewayError(9, 400, 'can only promote a learner member which is in sync with leader')
            del found[0]['isLearner']
            return {'members': self.members}
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


def test_join_adds_the_member_as_a_learner_then_starts_existing(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1)], down={E2})
    before = [dict(m) for m in fake.members]
    checked = run(check=True)
    assert checked['changed'] and checked['decision'] == 'add' and checked['member_id'] is None
    assert checked['is_learner'] is True
    assert fake.members == before  # check mode adds nothing
    assert '(not started) (new) peer https://10.0.0.12:2380 (learner)\n' in checked['diff']['after']
    result = run()
    assert result['changed'] and result['decision'] == 'add' and result['state'] == 'existing'
    assert result['member_id'] == '101' and result['initial_cluster'] == f'cp1={CP1},cp2={CP2}'
    assert [(m['peerURLs'], m.get('isLearner', False)) for m in fake.members] == [([CP1], False), ([CP2], True)]
    assert result['diff']['before'] == f'cp1 1 peer {CP1} client {E1}\n'
    assert result['diff']['after'].startswith(f'(not started) 101 peer {CP2} (learner)\n')
    assert '/health' in [r[1] for r in fake.requests]  # the cluster's health was checked before the add
    # a second run before the member started: it is listed (an unstarted learner), not added again
    again = run()
    assert (again['changed'], again['decision'], again['member_id']) == (False, 'join', '101')
    assert again['state'] == 'existing' and again['initial_cluster'] == f'cp1={CP1},cp2={CP2}'
    assert again['is_learner'] is True and len(fake.members) == 2


def test_a_voting_member_can_still_be_added(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1)], down={E2})
    result = run(learner=False)
    assert result['changed'] and result['decision'] == 'add' and result['is_learner'] is False
    assert 'isLearner' not in fake.members[-1] and '(learner)' not in result['diff']['after']


def test_join_logs_in_when_authentication_is_on(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1)])
    fake.users = {'root': {'password': None, 'roles': {'root'}},
                  'etcd-admin': {'password': 's3cret', 'roles': {'root'}},
                  'flannel': {'password': 'x', 'roles': set()}}
    fake.enabled = True
    assert run(client=client('etcd-admin', 's3cret'))['decision'] == 'add'
    fake.members[-1].update(name='cp2', clientURLs=[E2])  # started
    with pytest.raises(E.EtcdError, match='denied'):
        run(name='cp3', peers=[CP3], client=client('flannel', 'x'))  # not root: may not add members


class Clock:
    """An injected clock and sleep: each sleep advances the time and runs the next of ``events``."""

    def __init__(self, *events):
        self.now = 0.0
        self.sleeps = 0
        self.events = list(events)

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.sleeps += 1
        if self.events:
            self.events.pop(0)()


CP4, CP5 = 'https://10.0.0.14:2380', 'https://10.0.0.15:2380'


def test_add_waits_one_at_a_time_for_started_members_health_and_the_learner_limit(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1), member(2, '', CP2, learner=True)])
    fake.behind.add('2')
    steps = []

    def starts():  # the learner added before starts
        steps.append('start')
        fake.members[1].update(name='cp2', clientURLs=[E2])

    def healthy():
        steps.append('healthy')
        fake.unhealthy = None

    def catches_up():  # ... and is promoted by its own run
        steps.append('promote')
        fake.behind.clear()
        fake.members[1].pop('isLearner')

    clock = Clock(starts, healthy, catches_up)
    fake.unhealthy = 'RANGE ERROR:etcdserver: request timed out'
    answer = M.add_member(client(), [CP3], wait=60, sleep=clock.sleep, clock=clock)
    assert steps == ['start', 'healthy', 'promote'] and clock.sleeps == 3
    assert answer['member']['peerURLs'] == [CP3] and answer['member']['isLearner'] is True
    adds = [r for r in fake.requests if r[1] == '/v3/cluster/member/add']
    assert len(adds) == 2  # tried only once the others were started and healthy: refused once (learner limit)


def test_add_gives_up_after_add_wait_and_says_why(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1), member(0x2a, '', CP2, learner=True)])
    clock = Clock()
    with pytest.raises(E.EtcdError) as info:
        M.add_member(client(), [CP3], wait=9, sleep=clock.sleep, clock=clock)
    assert 'not added within add_wait (9 seconds)' in str(info.value)
    assert 'member 2a (peer URLs https://10.0.0.12:2380) was added and has not started' in str(info.value)
    assert clock.sleeps == 5 and not any(r[1] == '/v3/cluster/member/add' for r in fake.requests)
    # a started learner that does not catch up: etcd's learner limit
    fake.members[1].update(name='cp2', clientURLs=[E2])
    with pytest.raises(E.EtcdError, match='too many learner members in cluster'):
        M.add_member(client(), [CP3], wait=4, sleep=clock.sleep, clock=clock)
    fake.unhealthy = 'NOSPACE'
    with pytest.raises(E.EtcdError, match=r'reports the cluster unhealthy \(HTTP 503: NOSPACE\)'):
        M.add_member(client(), [CP3], wait=0, sleep=clock.sleep, clock=clock)


def test_a_voting_add_waits_for_the_strict_reconfiguration_check(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1), member(2, 'cp2', CP2, E2), member(3, 'cp3', CP3, 'x'),
                    member(4, 'cp4', CP4, 'y')])
    fake.inactive = {'3', '4'}  # 2 of 4 voting members reachable: one more needs 3 of 5

    def comes_back():
        fake.inactive.discard('3')

    clock = Clock(comes_back)
    answer = M.add_member(client(), [CP5], learner=False, wait=10, sleep=clock.sleep, clock=clock)
    assert 'isLearner' not in answer['member'] and clock.sleeps == 1
    fake.members[-1].update(name='cp5', clientURLs=['z'])
    fake.inactive = {'3', '4', answer['member']['ID']}
    with pytest.raises(E.EtcdError, match='not enough started members'):
        M.add_member(client(), ['https://10.0.0.16:2380'], learner=False, wait=3, sleep=clock.sleep, clock=clock)


def test_an_other_refusal_is_not_retried(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1)])
    fake.members.append(member(2, 'cp2', CP3, E2))
    with pytest.raises(E.EtcdError, match='Peer URLs already exists'):
        M.add_member(client(), [CP3], wait=60, sleep=pytest.fail, clock=Clock())


# ------------------------------------------------------------------ promote (fake gateway)
def promote(name='cp2', peers=(CP2,), check=False, diff=True, **kwargs):
    return M.run_promote(kwargs.pop('client', None) or client(), name, list(peers), check, diff, **kwargs)


def test_promote_waits_until_the_learner_caught_up(cluster):
    fake = cluster([member(1, 'cp1', CP1, E1), member(0xb, 'cp2', CP2, E2, learner=True)])
    fake.behind.add('11')
    checked = promote(check=True)
    assert (checked['changed'], checked['decision'], checked['member_id']) == (True, 'promote', 'b')
    assert checked['diff']['before'] == f'cp1 1 peer {CP1} client {E1}\ncp2 b peer {CP2} client {E2} (learner)\n'
    assert checked['diff']['after'] == f'cp1 1 peer {CP1} client {E1}\ncp2 b peer {CP2} client {E2}\n'
    assert fake.members[1]['isLearner'] and checked['is_learner'] is False  # check mode promotes nothing
    clock = Clock(lambda: None, fake.behind.clear)
    result = promote(sleep=clock.sleep, clock=clock, wait=30)
    assert (result['changed'], result['decision'], result['is_learner']) == (True, 'promote', False)
    assert clock.sleeps == 2 and 'isLearner' not in fake.members[1]
    assert result['diff']['after'] == checked['diff']['after'] and result['state'] is None
    # promoted: nothing to do any more
    again = promote()
    assert (again['changed'], again['decision'], again['member_id']) == (False, 'voter', 'b')
    assert 'diff' not in again


def test_promote_gives_up_after_promote_wait(cluster):
    cluster([member(1, 'cp1', CP1, E1), member(0xb, '', CP2, learner=True)])
    clock = Clock()
    with pytest.raises(E.EtcdError) as info:
        promote(sleep=clock.sleep, clock=clock, wait=5)
    assert 'can only promote a learner member which is in sync with leader' in str(info.value)
    assert 'within promote_wait (5 seconds): it has not started' in str(info.value) and clock.sleeps == 3


def test_promote_needs_the_member_listed(cluster):
    cluster([member(1, 'cp1', CP1, E1)])
    with pytest.raises(M.MembershipError, match='does not list this member'):
        promote()
    # check mode after an add that was only reported
    checked = promote(check=True)
    assert checked['changed'] and checked['decision'] == 'promote' and checked['member_id'] is None
    cluster([], down={E1, E2})
    with pytest.raises(M.MembershipError, match='no etcd of the cluster answered'):
        promote()


def test_a_learners_endpoint_is_passed_over(cluster):
    """A learner's client URL refuses every API request; the next endpoint answers."""
    fake = cluster([member(1, 'cp1', CP1, E1), member(0xb, 'cp2', CP2, E2, learner=True)])
    fake.learner_endpoints = {E2}
    over = client(endpoints=(E2, E1))
    result = promote(client=over)
    assert (result['decision'], result['member_id'], over.endpoint_url) == ('promote', 'b', E1)
    assert [r[0] for r in fake.requests if r[1] != '/health'][:2] == [E2, E1]
    # only the learner answers: the voting members are down, which is not "no cluster"
    fake.members[1]['isLearner'] = True
    fake.down = {E1}
    with pytest.raises(E.EtcdError, match='only learners of the cluster answered'):
        run(name='cp3', peers=[CP3], client=client(endpoints=(E2, E1)))


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


class SlowGateway(ClusterGateway):
    """A ClusterGateway whose next ``slow`` requests to ``path`` take the connection and then do not answer in
    time; with ``applied``, the request takes effect all the same (etcd applied it, the answer came late)."""

    def __init__(self, members, path, slow=1, applied=False):
        super().__init__(members)
        self.slow_path, self.slow, self.applied = path, slow, applied

    def __call__(self, endpoint, method, path, payload=None, context=None, timeout=10.0, headers=None, names=None):
        if path == self.slow_path and self.slow:
            self.slow -= 1
            if self.applied:
                super().__call__(endpoint, method, path, payload, context, timeout, headers, names)
            error = RequestError(f'no answer from {endpoint} within 5.0 seconds (timeout)', 'timeout', endpoint)
            error.connecting = False
            raise error
        return super().__call__(endpoint, method, path, payload, context, timeout, headers, names)


def test_an_add_that_timed_out_but_went_through_is_not_made_twice(monkeypatch):
    fake = SlowGateway([member(1, 'cp1', CP1, E1)], '/v3/cluster/member/add', applied=True)
    monkeypatch.setattr(E, 'request', fake)
    clock = Clock()
    answer = M.add_member(client(endpoints=(E1,)), [CP3], wait=60, sleep=clock.sleep, clock=clock)
    assert answer['member']['peerURLs'] == [CP3] and clock.sleeps == 1
    assert [m['peerURLs'] for m in fake.members] == [[CP1], [CP3]]


def test_an_etcd_slow_to_answer_is_asked_again_until_add_wait(monkeypatch):
    fake = SlowGateway([member(1, 'cp1', CP1, E1)], '/v3/cluster/member/list', slow=2)
    monkeypatch.setattr(E, 'request', fake)
    clock = Clock()
    result = run(client=client(endpoints=(E1,)), wait=60, sleep=clock.sleep, clock=clock)
    assert result['decision'] == 'add' and result['state'] == 'existing' and clock.sleeps == 2
    fake.slow = 100
    with pytest.raises(E.EtcdError, match='no answer'):
        run(name='cp3', peers=[CP3], client=client(endpoints=(E1,)), wait=5, sleep=clock.sleep, clock=clock)
