"""hardway.kubernetes.etcd_member against real etcd processes of its own.

A one-member cluster (with authentication on, as the collection leaves it) gets a second member, which
etcd_member adds through the JSON gateway as a voting member (learner=false) and which then starts the way the
etcd role starts it (ETCD_INITIAL_CLUSTER_STATE=existing and ETCD_INITIAL_CLUSTER from an environment file's
values); both are healthy and the data is kept.

Another one-member cluster grows to three the way the etcd role grows it: the two new members' adds start at
the same time, go in one after the other as learners (etcd allows one learner at a time), and each member is
started and promoted; then three voting members are healthy and keep the data written before."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request

import pytest

PASSWORD = 'member-password'


@pytest.fixture(scope='module')
def member_pki(module, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('etcd-member-pki'))
    certificates = [
        {'name': 'server', 'ca': 'ca', 'common_name': 'etcd', 'usage': ['client', 'server'],
         'dns_names': ['localhost'], 'ip_addresses': ['127.0.0.1']},
        {'name': 'gateway', 'ca': 'ca', 'common_name': '', 'organization': ['gateway']},
    ]
    result = module('pki', {'path': path, 'authorities': [{'name': 'ca', 'common_name': 'etcd member CA'}],
                            'certificates': certificates})
    assert result['rc'] == 0, result
    return path


class Member:
    """One etcd process on 127.0.0.1 (client URL over TLS with client certificates, peer URL plain)."""

    def __init__(self, binary, pki, work, name, client_port, peer_port):
        self.binary, self.pki, self.name = binary, pki, name
        self.url = f'https://127.0.0.1:{client_port}'
        self.peer = f'http://127.0.0.1:{peer_port}'
        self.data = os.path.join(work, name)
        self.log = os.path.join(work, f'{name}.log')
        self.proc = None

    def start(self, state, initial_cluster):
        argv = [self.binary, '--name', self.name, '--data-dir', self.data,
                '--listen-client-urls', self.url, '--advertise-client-urls', self.url,
                '--listen-peer-urls', self.peer, '--initial-advertise-peer-urls', self.peer,
                '--cert-file', f'{self.pki}/server.pem', '--key-file', f'{self.pki}/server-key.pem',
                '--trusted-ca-file', f'{self.pki}/ca.pem', '--client-cert-auth', '--log-level', 'warn']
        # what the etcd role's environment file holds
        env = dict(os.environ, ETCD_INITIAL_CLUSTER_STATE=state, ETCD_INITIAL_CLUSTER=initial_cluster)
        self.handle = open(self.log, 'ab')
        self.proc = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env)

    def health(self):
        context = ssl.create_default_context(cafile=f'{self.pki}/ca.pem')
        context.load_cert_chain(f'{self.pki}/gateway.pem', f'{self.pki}/gateway-key.pem')
        try:
            with urllib.request.urlopen(self.url + '/health', context=context, timeout=2) as answer:
                return json.loads(answer.read()).get('health') == 'true'
        except OSError:
            return False

    def wait_healthy(self, seconds=60):
        deadline = time.monotonic() + seconds
        while not self.health():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log, errors='replace') as handle:
                    pytest.fail(f'etcd {self.name} is not healthy:\n{handle.read()[-3000:]}', pytrace=False)
            time.sleep(0.3)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.handle.close()


def make_members(etcd_binary, member_pki, unused_port, tmp_path_factory, names):
    work = str(tmp_path_factory.mktemp('etcd-members'))
    out = {name: Member(etcd_binary, member_pki, work, name, unused_port(), unused_port()) for name in names}
    yield out
    for member in out.values():
        member.stop()


@pytest.fixture(scope='module')
def members(etcd_binary, member_pki, unused_port, tmp_path_factory):
    yield from make_members(etcd_binary, member_pki, unused_port, tmp_path_factory, ('a', 'b'))


@pytest.fixture(scope='module')
def growing(etcd_binary, member_pki, unused_port, tmp_path_factory):
    yield from make_members(etcd_binary, member_pki, unused_port, tmp_path_factory, ('x', 'y', 'z'))


def gateway_args(members, pki, **extra):
    args = {'endpoints': [m.url for m in members.values()], 'ca_cert': f'{pki}/ca.pem',
            'client_cert': f'{pki}/gateway.pem', 'client_key': f'{pki}/gateway-key.pem'}
    args.update(extra)
    return args


def member_args(members, pki, name, **extra):
    inventory = ','.join(f'{m.name}={m.peer}' for m in members.values())
    return gateway_args(members, pki, name=name, peer_urls=[members[name].peer], initial_cluster=inventory,
                        user='etcd-admin', password=PASSWORD, **extra)


def test_bootstrap_then_join_with_existing_as_a_voting_member(module, members, member_pki):
    a, b = members['a'], members['b']
    # nothing runs: "a" bootstraps a new cluster (of one here: the inventory of this test lists "a" only)
    fresh = module('etcd_member', dict(member_args(members, member_pki, 'a'), initial_cluster=f'a={a.peer}'))
    assert fresh['rc'] == 0 and (fresh['decision'], fresh['state'], fresh['changed']) == ('bootstrap', 'new', False)
    a.start(fresh['state'], fresh['initial_cluster'])
    a.wait_healthy()
    # data, and authentication on, as the collection leaves a cluster
    put = module('etcd_key', gateway_args(members, member_pki, key='/it/kept', value='before the join'))
    assert put['rc'] == 0 and put['changed'], put
    auth = module('etcd_auth', gateway_args(members, member_pki, user='etcd-admin', password=PASSWORD, enabled=True,
                                            users=[{'name': 'root', 'roles': ['root']},
                                                   {'name': 'etcd-admin', 'roles': ['root']}]))
    assert auth['rc'] == 0 and auth['enabled'], auth

    # "b" has no data and the cluster answers without it: check mode adds nothing
    checked = module('etcd_member', member_args(members, member_pki, 'b', learner=False), check=True, diff=True)
    assert checked['rc'] == 0 and checked['changed'] and checked['decision'] == 'add', checked
    assert checked['state'] == 'existing' and checked['initial_cluster'] == f'a={a.peer},b={b.peer}'
    listed = module('etcd_member', member_args(members, member_pki, 'b'), check=True)
    assert len(listed['members']) == 2 and checked['diff']['before'].count('\n') == 1

    joined = module('etcd_member', member_args(members, member_pki, 'b', learner=False), diff=True)
    assert joined['rc'] == 0 and joined['changed'] and joined['decision'] == 'add', joined
    assert joined['member_id'] and joined['state'] == 'existing' and joined['is_learner'] is False
    assert joined['initial_cluster'] == f'a={a.peer},b={b.peer}' and joined['endpoint'] == a.url
    # added but not started yet: a cluster of two needs both for a quorum, and with authentication on even
    # the login takes one, so asking again cannot decide (and says why) rather than take it for no cluster
    again = module('etcd_member', member_args(members, member_pki, 'b', timeout=2))
    assert again['failed'] and 'the cluster has no quorum' in again['msg'], again

    b.start(joined['state'], joined['initial_cluster'])
    b.wait_healthy()
    a.wait_healthy()
    # both started, and b serves the data written before it joined
    after = module('etcd_member', dict(member_args(members, member_pki, 'b'), member_data=True))
    assert after['decision'] == 'keep' and after['changed'] is False
    listed = module('etcd_member', member_args(members, member_pki, 'a', endpoints=[b.url]), check=True)
    # "a" asked as if it had lost its data: the cluster lists it as started, so the module refuses
    assert listed['failed'] and 'its data is lost' in listed['msg'], listed
    read = module('etcd_key', gateway_args(members, member_pki, endpoints=[b.url], key='/it/kept', state='get',
                                           user='etcd-admin', password=PASSWORD))
    assert read['rc'] == 0 and read['value'] == 'before the join', read
    write = module('etcd_key', gateway_args(members, member_pki, endpoints=[b.url], key='/it/after', value='quorum',
                                            user='etcd-admin', password=PASSWORD))
    assert write['rc'] == 0 and write['changed'], write  # two of two members: writes need both
    third = dict(member_args(members, member_pki, 'a'), name='c', peer_urls=['http://127.0.0.1:1'],
                 initial_cluster=f'a={a.peer},b={b.peer},c=http://127.0.0.1:1')
    started = module('etcd_member', third, check=True)
    names = sorted(m.get('name') for m in started['members'] if m.get('name'))
    assert names == ['a', 'b'] and started['decision'] == 'add', started
    assert started['initial_cluster'] == f'a={a.peer},b={b.peer},c=http://127.0.0.1:1'


def wait_for_one(runs, seconds=90):
    """The first of ``runs`` (background module runs) to finish."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for run in runs:
            if not run.running():
                return run
        time.sleep(0.2)
    pytest.fail(f'no member add finished within {seconds} seconds', pytrace=False)


def test_grow_from_one_to_three_members_as_learners_one_at_a_time(module, background_module, growing, member_pki):
    x = growing['x']
    fresh = module('etcd_member', dict(member_args(growing, member_pki, 'x'), initial_cluster=f'x={x.peer}'))
    assert fresh['rc'] == 0 and fresh['decision'] == 'bootstrap', fresh
    x.start(fresh['state'], fresh['initial_cluster'])
    x.wait_healthy()
    for index in range(20):
        put = module('etcd_key', gateway_args(growing, member_pki, key=f'/grow/{index}', value=f'value {index}'))
        assert put['rc'] == 0 and put['changed'], put
    auth = module('etcd_auth', gateway_args(growing, member_pki, user='etcd-admin', password=PASSWORD, enabled=True,
                                            users=[{'name': 'root', 'roles': ['root']},
                                                   {'name': 'etcd-admin', 'roles': ['root']}]))
    assert auth['rc'] == 0 and auth['enabled'], auth

    # both new members at once, as the etcd role's hosts run in parallel (strategy free)
    adds = {name: background_module('etcd_member', member_args(growing, member_pki, name, add_wait=150))
            for name in ('y', 'z')}
    for _turn in range(2):
        first = wait_for_one(list(adds.values()))
        name = next(n for n, run in adds.items() if run is first)
        new = growing[name]
        added = first.result()
        del adds[name]
        assert added['rc'] == 0 and added['changed'] and added['decision'] == 'add', added
        assert added['is_learner'] is True and added['state'] == 'existing'
        assert [m['isLearner'] for m in added['members'] if new.peer in m['peerURLs']] == [True]
        # a run stopped here (added, not started) starts with "existing" on the next run, not added again
        again = module('etcd_member', member_args(growing, member_pki, name))
        assert again['rc'] == 0 and (again['changed'], again['decision']) == (False, 'join'), again
        assert (again['member_id'], again['state'], again['is_learner']) == (added['member_id'], 'existing', True)
        assert again['initial_cluster'] == added['initial_cluster']

        new.start(again['state'], again['initial_cluster'])
        new.wait_healthy()  # a learner reports healthy once it runs
        if adds:
            # the other add waits: it may only go in once this learner is promoted
            time.sleep(5)
            assert all(run.running() for run in adds.values()), 'the second add did not wait for the learner'
        # the promote, in check mode first; asked through the learner's own endpoint first, which refuses
        promote = member_args(growing, member_pki, name, promote=True,
                              endpoints=[new.url] + [m.url for m in growing.values() if m is not new])
        del promote['initial_cluster']
        checked = module('etcd_member', promote, check=True, diff=True)
        assert checked['rc'] == 0 and (checked['changed'], checked['decision']) == (True, 'promote'), checked
        assert f'{name} {checked["member_id"]} peer {new.peer} client {new.url} (learner)' in checked['diff']['before']
        assert '(learner)' not in checked['diff']['after']
        promoted = module('etcd_member', promote, diff=True)
        assert promoted['rc'] == 0 and promoted['changed'] and promoted['decision'] == 'promote', promoted
        assert promoted['member_id'] == added['member_id'] and promoted['is_learner'] is False
        assert promoted['endpoint'] != new.url
        assert not any(m.get('isLearner') for m in promoted['members'])
        done = module('etcd_member', promote, diff=True)
        assert done['rc'] == 0 and (done['changed'], done['decision']) == (False, 'voter'), done

    listed = module('etcd_member', dict(member_args(growing, member_pki, 'x'), promote=True))
    assert listed['rc'] == 0 and listed['decision'] == 'voter', listed
    assert sorted(m.get('name') for m in listed['members']) == ['x', 'y', 'z']
    assert not any(m.get('isLearner') for m in listed['members'])
    for member in growing.values():
        member.wait_healthy()
        for index in (0, 19):
            read = module('etcd_key', gateway_args(growing, member_pki, endpoints=[member.url], key=f'/grow/{index}',
                                                   state='get', user='etcd-admin', password=PASSWORD))
            assert read['rc'] == 0 and read['value'] == f'value {index}', read
    write = module('etcd_key', gateway_args(growing, member_pki, endpoints=[growing['z'].url], key='/grow/after',
                                            value='three voters', user='etcd-admin', password=PASSWORD))
    assert write['rc'] == 0 and write['changed'], write
