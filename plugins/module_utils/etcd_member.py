# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""How an etcd member starts: bootstrap a new cluster, or join the running one (etcd_member).

etcd reads ``--initial-cluster`` and ``--initial-cluster-state`` only while its
data directory holds no member. Then there are three cases:

- no etcd answers: the member bootstraps a new cluster with the other etcd
  hosts of the inventory (``new``, the inventory's member list);
- a cluster answers and does not list the member: it is added through etcd's
  API first (``/v3/cluster/member/add``), as a learner unless asked otherwise,
  and starts with ``existing`` and an initial cluster of the current members
  plus itself;
- a cluster answers and lists the member as added but never started (a run
  stopped between the add and the start, or a new cluster whose other members
  came up first), learner or not: it starts with ``existing`` as well.

A learner receives the data but does not vote, so it does not count for the
quorum: a cluster keeps working while a new member is added and has not
started yet. Once it runs and has caught up with the leader, it is promoted to
a voting member (``/v3/cluster/member/promote``, a second call of the module).
etcd allows one learner at a time (``--max-learners``, 1 by default): members
added in parallel are added one after the other. Before each add the module
waits until every member has started and the cluster reports healthy.

A member that the cluster lists as started while its data directory is empty
has lost its data: etcd must not let it in again under its old identity, so
nothing is decided and the message says how to remove it first.

Standard library only, Python 3.8+ (the module runs on the controller).
"""

from __future__ import annotations

import time

from ansible_collections.hardway.kubernetes.plugins.module_utils import etcd as etcd_api
from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd import EtcdError
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError, Endpoint, RequestError

# How a connection fails when no etcd serves there: refused, or not set up in time (no
# host there, or an etcd that is not ready yet: etcd serves clients only once it is part of a
# cluster with a quorum). Once the connection is up, no answer means a cluster that runs
# without a quorum, which must not be taken for no cluster.
NOT_SERVING = ('refused', 'timeout', 'connection')
# etcd's answers to a member add that a moment later may succeed (strict reconfiguration check).
ERR_NOT_ENOUGH_STARTED = 'not enough started members'
ERR_UNHEALTHY = 'unhealthy cluster'
# ... and while another learner is in the cluster (--max-learners, 1 by default)
ERR_TOO_MANY_LEARNERS = 'too many learner members'
# etcd's answer to a promote while the learner has not caught up with the leader (or has not started)
ERR_LEARNER_NOT_READY = 'can only promote a learner member which is in sync with leader'
# the refusals of an add that add_member retries
ADD_REFUSALS = (ERR_TOO_MANY_LEARNERS, ERR_NOT_ENOUGH_STARTED, ERR_UNHEALTHY)
# seconds between two tries of an add or promote that etcd refuses for now
RETRY_INTERVAL = 2


class MembershipError(ValueError):
    """This member cannot start as asked; the message says why and what to do."""


# --------------------------------------------------------------------------
# Pure logic


def parse_initial_cluster(text):
    """``[(name, peer URL)]`` of an ``--initial-cluster`` value (``name=url,name=url``)."""
    out = []
    for item in (text or '').split(','):
        item = item.strip()
        if not item:
            continue
        name, sep, url = item.partition('=')
        if not sep or not url:
            raise MembershipError('initial_cluster: %r is not name=peer-URL' % item)
        out.append((name, url))
    return out


def format_initial_cluster(pairs):
    return ','.join('%s=%s' % pair for pair in pairs)


def member_id(member):
    """A member's ID as etcd prints it (hex); the gateway sends uint64 as decimal text."""
    raw = member.get('ID', member.get('id'))
    if raw is None:
        return '(new)'
    try:
        return '%x' % int(raw)
    except (TypeError, ValueError):
        return str(raw)


def started(member):
    """Whether a member has ever run: etcd fills in its name and client URLs when it first starts."""
    return bool(member.get('name') or member.get('clientURLs'))


def find_member(members, name, peer_urls):
    """The member that is this one (one of its peer URLs), or None; raises on a name held by another."""
    wanted = set(peer_urls)
    for member in members:
        if wanted & set(member.get('peerURLs') or ()):
            return member
    for member in members:
        if member.get('name') == name:
            raise MembershipError(
                'the cluster has a member named %s (ID %s) with peer URLs %s, not %s: a member cannot change its '
                'address by restarting. Remove it (etcdctl member remove %s) and run again to add this host afresh'
                % (name, member_id(member), ', '.join(member.get('peerURLs') or ()), ', '.join(peer_urls),
                   member_id(member)))
    return None


def cluster_of(members, names_by_url, name=None, peer_urls=()):
    """The ``--initial-cluster`` of ``members`` (plus this member when given): each member's peer URLs
    under its name, sorted; a member that never started (no name yet) takes the inventory's name of its URL."""
    pairs = []
    for member in members:
        urls = member.get('peerURLs') or []
        if set(urls) & set(peer_urls):
            label = name
        else:
            label = member.get('name') or next((names_by_url[u] for u in urls if u in names_by_url),
                                               'member-%s' % member_id(member))
        pairs.extend((label, url) for url in urls)
    if name and not any(label == name for label, _url in pairs):
        pairs.extend((name, url) for url in peer_urls)
    return format_initial_cluster(sorted(pairs))  # etcd lists members by ID


def plan_start(name, peer_urls, member_data, members, bootstrap):
    """How this member starts (see the module docstring).

    ``member_data``: its data directory holds a member. ``members``: the
    running cluster's member list, or None when no etcd answered.
    ``bootstrap``: the inventory's initial cluster (``[(name, peer URL)]``).

    Returns ``{'decision', 'state', 'initial_cluster', 'member'}``; decision is
    ``keep`` (the data decides, no flags needed), ``bootstrap`` (new),
    ``join`` (listed but never started: existing) or ``add`` (to be added
    first, then existing). Raises MembershipError.
    """
    if not name:
        raise MembershipError('name: give the member name')
    if not peer_urls:
        raise MembershipError('peer_urls: give the member\'s peer URLs')
    if member_data:
        return {'decision': 'keep', 'state': None, 'initial_cluster': None, 'member': None}
    names_by_url = {url: label for label, url in bootstrap}
    if members is None:
        if not any(label == name and url in peer_urls for label, url in bootstrap):
            raise MembershipError(
                'initial_cluster %s does not list this member (%s=%s), and no etcd of the cluster answered: there '
                'is no cluster to join, and a new one must include this member'
                % (format_initial_cluster(bootstrap) or '(empty)', name, ','.join(peer_urls)))
        return {'decision': 'bootstrap', 'state': 'new', 'initial_cluster': format_initial_cluster(bootstrap),
                'member': None}
    member = find_member(members, name, peer_urls)
    if member is None:
        return {'decision': 'add', 'state': 'existing', 'member': None,
                'initial_cluster': cluster_of(members, names_by_url, name, peer_urls)}
    if started(member):
        raise MembershipError(
            'the cluster lists this host as member %s (ID %s), which has run before, but its data directory holds '
            'no member: its data is lost, and etcd must not take it back under the same identity. Remove it '
            '(etcdctl member remove %s) and run again: it is then added as a new member and gets the data from '
            'the others' % (member.get('name') or name, member_id(member), member_id(member)))
    return {'decision': 'join', 'state': 'existing', 'member': member,
            'initial_cluster': cluster_of(members, names_by_url, name, peer_urls)}


def describe_members(members):
    """One line per member, sorted by name then URL, for diffs."""
    lines = []
    for member in members:
        lines.append('%s %s peer %s%s%s' % (
            member.get('name') or '(not started)', member_id(member), ','.join(member.get('peerURLs') or ()),
            ' client %s' % ','.join(member['clientURLs']) if member.get('clientURLs') else '',
            ' (learner)' if member.get('isLearner') else ''))
    return ''.join(line + '\n' for line in sorted(lines))


def not_ready_for_add(members):
    """Why another member cannot be added yet (a member added before has not started), or None."""
    waiting = [m for m in members if not started(m)]
    if waiting:
        return ('member %s (peer URLs %s) was added and has not started yet; add the next one once it runs, or '
                'remove it (etcdctl member remove %s)'
                % (', '.join(member_id(m) for m in waiting),
                   ', '.join(u for m in waiting for u in m.get('peerURLs') or ()), member_id(waiting[0])))
    return None


def promoted(members, member):
    """``members`` with ``member`` as a voting member (the list after a promote)."""
    out = []
    for other in members:
        other = dict(other)
        if member_id(other) == member_id(member):
            other.pop('isLearner', None)
        out.append(other)
    return out


# --------------------------------------------------------------------------
# etcd's cluster API through the JSON gateway


def not_serving(error):
    """Whether an EtcdError says that no endpoint serves etcd (see NOT_SERVING)."""
    return bool(error.errors) and all(e.connecting and e.kind in NOT_SERVING for e in error.errors)


def call(client, path, payload):
    """``client.call``, saying so when only learners answered.

    A learner's client URL answers every gateway request with a refusal
    (etcd.ERR_LEARNER_RPC); the client takes that as "try the next endpoint",
    since a learner is part of the cluster for a while after each add. When
    only learners answer, the voting members do not serve, which is not the
    same as no cluster at all.
    """
    try:
        return client.call(path, payload)
    except EtcdError as exc:
        learners = [str(e.endpoint) for e in exc.errors if e.kind == 'learner']
        others = [e for e in exc.errors if e.kind != 'learner']
        if learners and all(e.connecting and e.kind in NOT_SERVING for e in others):
            raise EtcdError(
                'only learners of the cluster answered (%s), none of its voting members: %s. The cluster runs '
                'without its voting members; bring them back before adding or promoting one'
                % (', '.join(learners), exc), 'etcd', learners[0], exc.errors) from None
        raise


def list_members(client):
    """The running cluster's members, or None when no endpoint serves etcd.

    A cluster that takes the connection and then does not answer has no
    quorum (with authentication on, even the login takes one): say so, since
    bootstrapping another cluster would split it.
    """
    try:
        answer = call(client, '/v3/cluster/member/list', {})
    except EtcdError as exc:
        if not_serving(exc):
            return None
        if any(e.kind == 'timeout' and not e.connecting for e in exc.errors):
            raise EtcdError(
                '%s. etcd took the connection but did not answer: the cluster has no quorum, so whether and how '
                'this member joins cannot be decided. A voting member that was added and has not started yet (a '
                'cluster of two needs both) is the usual cause: start it, or remove it (etcdctl member remove '
                '<ID>), and run again' % exc, exc.kind, exc.endpoint, exc.errors) from None
        raise
    return list(answer.get('members') or [])


def cluster_health(client):
    """Why the cluster is not healthy as the member that answered last sees it (its ``/health``), or None."""
    endpoint = client.endpoint or client.endpoints[0]
    try:
        response = etcd_api.request(endpoint, 'GET', '/health', None, client.context, client.timeout)
    except RequestError as exc:
        return 'its health could not be read: %s' % exc
    body = response.json if isinstance(response.json, dict) else {}
    if response.status == 200 and body.get('health') == 'true':
        return None
    return 'etcd at %s reports the cluster unhealthy (HTTP %d: %s)' % (
        endpoint, response.status, body.get('reason') or response.text or response.reason)


def busy(error):
    """Whether an EtcdError is only etcd not answering in time (a loaded machine, a leader busy sending
    a snapshot to a learner): worth asking again while an add waits."""
    return bool(error.errors) and all(e.kind == 'timeout' for e in error.errors)


def list_patiently(client, wait=0.0, sleep=None, clock=None):
    """``list_members``, asked again for up to ``wait`` seconds while etcd only does not answer in time."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    deadline = clock() + wait
    while True:
        try:
            return list_members(client)
        except EtcdError as exc:
            if not busy(exc) or clock() >= deadline:
                raise
        sleep(RETRY_INTERVAL)


def add_member(client, peer_urls, learner=True, wait=0.0, sleep=None, clock=None):
    """Add a member with ``peer_urls`` (a learner, or a voting member); the gateway's answer (``member``, ``members``).

    One member at a time: before each try it waits until every listed member
    has started and the cluster reports healthy. etcd's refusals that a moment
    later may turn into a yes are retried: another learner is in the cluster
    (it is promoted once it has caught up), or too few members are started
    for a quorum with one more voting member (strict reconfiguration check).
    So is an etcd that does not answer in time; an add that timed out may
    have gone through, so each try first looks for the member in the list.
    All of it for up to ``wait`` seconds.
    """
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    deadline = clock() + wait
    timed_out = False  # an add went unanswered: it may have been made
    while True:
        try:
            members = list_members(client) or []
            mine = next((m for m in members if set(peer_urls) & set(m.get('peerURLs') or ())), None)
            if timed_out and mine is not None:
                return {'member': mine, 'members': members}
            reason = not_ready_for_add(members) or cluster_health(client)
            if reason is None:
                timed_out = True  # until the call says otherwise
                return call(client, '/v3/cluster/member/add', {'peerURLs': list(peer_urls), 'isLearner': learner})
        except EtcdError as exc:
            timed_out = timed_out and busy(exc)
            text = str(exc)
            if not (busy(exc) or any(refusal in text for refusal in ADD_REFUSALS)):
                raise
            reason = text
        if clock() >= deadline:
            raise EtcdError('the member was not added within add_wait (%s seconds): %s' % (wait, reason))
        sleep(RETRY_INTERVAL)


def promote_member(client, member, wait=0.0, sleep=None, clock=None):
    """Promote the learner ``member`` (as listed) to a voting member; the gateway's answer (``members``).

    etcd refuses until the learner runs and has caught up with the leader;
    that refusal is retried for up to ``wait`` seconds.
    """
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    deadline = clock() + wait
    raw = member.get('ID', member.get('id'))
    while True:
        try:
            return call(client, '/v3/cluster/member/promote', {'ID': str(raw)})
        except EtcdError as exc:
            if ERR_LEARNER_NOT_READY not in str(exc):
                raise
            if clock() >= deadline:
                raise EtcdError(
                    '%s. The learner %s (peer URLs %s) did not catch up with the leader within promote_wait (%s '
                    'seconds)%s' % (exc, member_id(member), ', '.join(member.get('peerURLs') or ()), wait,
                                    '' if started(member) else ': it has not started'),
                    exc.kind, exc.endpoint, exc.errors) from None
        sleep(RETRY_INTERVAL)


def run_member(client, name, peer_urls, member_data, bootstrap_text, check_mode=False, diff=False, wait=0.0,
               learner=True, sleep=None, clock=None):
    """Decide (and add the member when it joins); the module's result. Raises MembershipError, EtcdError."""
    bootstrap = parse_initial_cluster(bootstrap_text)
    members = None if member_data else list_patiently(client, wait, sleep, clock)
    plan = plan_start(name, peer_urls, member_data, members, bootstrap)
    result = {'changed': False, 'decision': plan['decision'], 'state': plan['state'],
              'initial_cluster': plan['initial_cluster'], 'member_id': None,
              'members': members or [], 'is_learner': None}
    if plan['member'] is not None:
        result['member_id'] = member_id(plan['member'])
        result['is_learner'] = bool(plan['member'].get('isLearner'))
    if plan['decision'] != 'add':
        return result
    result['changed'] = True
    result['is_learner'] = learner
    new = {'peerURLs': list(peer_urls)}
    if learner:
        new['isLearner'] = True
    after = list(members) + [new]
    if not check_mode:
        answer = add_member(client, peer_urls, learner, wait, sleep, clock)
        added = answer.get('member') or {}
        result['member_id'] = member_id(added)
        after = list(answer.get('members') or after)
        result['initial_cluster'] = cluster_of(after, dict((u, n) for n, u in bootstrap), name, peer_urls)
        members = list_before(members, after, added)
    result['members'] = after
    if diff:
        result['diff'] = {'before': describe_members(members), 'after': describe_members(after),
                          'before_header': 'etcd members', 'after_header': 'etcd members'}
    return result


def list_before(members, after, added):
    """The member list just before the add: the answer's list without the new member (others may have
    started or been promoted while the add waited)."""
    key = added.get('ID', added.get('id'))
    if key is None:
        return members
    return [m for m in after if m.get('ID', m.get('id')) != key]


def run_promote(client, name, peer_urls, check_mode=False, diff=False, wait=0.0, sleep=None, clock=None):
    """Promote this member when the cluster lists it as a learner; the module's result (promote=true).

    Raises MembershipError, EtcdError.
    """
    if not name:
        raise MembershipError('name: give the member name')
    if not peer_urls:
        raise MembershipError('peer_urls: give the member\'s peer URLs')
    members = list_members(client)
    if members is None:
        raise MembershipError('no etcd of the cluster answered (%s): there is no member to promote'
                              % ', '.join(str(e) for e in client.endpoints))
    member = find_member(members, name, peer_urls)
    result = {'changed': False, 'decision': 'voter', 'state': None, 'initial_cluster': None, 'member_id': None,
              'members': members, 'is_learner': False}
    if member is None:
        if not check_mode:
            raise MembershipError(
                'the cluster does not list this member (%s=%s): there is nothing to promote. Run the module '
                'without promote first, which adds it' % (name, ','.join(peer_urls)))
        # check mode after an add that was only reported: it would be added as a learner, then promoted
        result.update(changed=True, decision='promote')
        return result
    result['member_id'] = member_id(member)
    if not member.get('isLearner'):
        return result
    result.update(changed=True, decision='promote')
    after = promoted(members, member)
    if not check_mode:
        answer = promote_member(client, member, wait, sleep, clock)
        after = list(answer.get('members') or after)
    result['members'] = after
    if diff:
        result['diff'] = {'before': describe_members(members), 'after': describe_members(after),
                          'before_header': 'etcd members', 'after_header': 'etcd members'}
    return result


# --------------------------------------------------------------------------
# Removing a member


def voters(members):
    return [m for m in members if not m.get('isLearner')]


def plan_remove(members, member, healthy):
    """Whether ``member`` (as listed, or None when the cluster does not list it) may be removed.

    ``healthy``: the IDs (as member_id gives them) of the members whose ``/health`` said yes.
    A learner may always go. A voting member may not be the last one, and the voting members that
    stay must keep a quorum of the smaller cluster among themselves, all of them healthy
    ones: 3 -> 2 needs both others healthy, 5 -> 4 three of the four. Returns None or the refusal.
    """
    if member is None or member.get('isLearner'):
        return None
    others = [m for m in voters(members) if member_id(m) != member_id(member)]
    if not others:
        return ('%s (ID %s) is the last voting member of the etcd cluster: removing it would end the cluster '
                '(reset.yml takes a whole cluster down)' % (member.get('name') or '(not started)', member_id(member)))
    up = [m for m in others if member_id(m) in healthy]
    need = len(others) // 2 + 1
    if len(up) < need:
        down = [m.get('name') or member_id(m) for m in others if member_id(m) not in healthy]
        return ('removing %s would leave %d voting member(s), of which %d answer healthy (%s not), fewer than the '
                '%d a quorum of %d needs: bring the others back first'
                % (member.get('name') or member_id(member), len(others), len(up), ', '.join(down), need, len(others)))
    return None


def member_health(client, member):
    """Whether ``member`` answers healthy on one of its client URLs (its own ``/health``)."""
    for url in member.get('clientURLs') or ():
        try:
            endpoint = Endpoint(url, default_port=2379)
            response = etcd_api.request(endpoint, 'GET', '/health', None, client.context, client.timeout)
        except (RequestError, ConfigError):
            continue
        body = response.json if isinstance(response.json, dict) else {}
        if response.status == 200 and body.get('health') == 'true':
            return True
    return False


def run_remove(client, name, peer_urls, check_mode=False, diff=False, health=None):
    """Remove this member from the cluster (remove=true); the module's result. Raises MembershipError, EtcdError.

    The member is found by its peer URLs (or its name); one the cluster does not list is gone
    already (no change). ``health``: a function ``member -> bool`` (tests give their own).
    """
    if not name:
        raise MembershipError('name: give the member name')
    health = health or (lambda m: member_health(client, m))
    members = list_members(client)
    if members is None:
        raise MembershipError('no etcd of the cluster answered (%s): the member cannot be removed through it'
                              % ', '.join(str(e) for e in client.endpoints))
    wanted = set(peer_urls or ())
    member = next((m for m in members if wanted & set(m.get('peerURLs') or ())), None)
    if member is None:
        member = next((m for m in members if m.get('name') == name), None)
    result = {'changed': False, 'decision': 'absent', 'state': None, 'initial_cluster': None,
              'member_id': None, 'members': members, 'is_learner': None}
    if member is None:
        return result
    unhealthy = cluster_health(client)
    if unhealthy:
        raise MembershipError('the etcd cluster is not healthy, no member is removed: %s' % unhealthy)
    healthy = {member_id(m) for m in voters(members) if member_id(m) != member_id(member) and health(m)}
    refusal = plan_remove(members, member, healthy)
    if refusal:
        raise MembershipError(refusal)
    after = [m for m in members if member_id(m) != member_id(member)]
    result.update(changed=True, decision='remove', member_id=member_id(member),
                  is_learner=bool(member.get('isLearner')), members=after)
    if not check_mode:
        answer = call(client, '/v3/cluster/member/remove', {'ID': str(member.get('ID', member.get('id')))})
        result['members'] = list(answer.get('members') or after)
    if diff:
        result['diff'] = {'before': describe_members(members), 'after': describe_members(result['members']),
                          'before_header': 'etcd members', 'after_header': 'etcd members'}
    return result
