# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""How an etcd member starts: bootstrap a new cluster, or join the running one (etcd_member).

etcd reads ``--initial-cluster`` and ``--initial-cluster-state`` only while its
data directory holds no member. Then there are three cases:

- no etcd answers: the member bootstraps a new cluster with the other etcd
  hosts of the inventory (``new``, the inventory's member list);
- a cluster answers and does not list the member: it is added through etcd's
  API first (``/v3/cluster/member/add``) and starts with ``existing`` and an
  initial cluster of the current members plus itself;
- a cluster answers and lists the member as added but never started (a run
  stopped between the add and the start, or a new cluster whose other members
  came up first): it starts with ``existing`` as well.

A member that the cluster lists as started while its data directory is empty
has lost its data: etcd must not let it in again under its old identity, so
nothing is decided and the message says how to remove it first.

Standard library only, Python 3.8+ (the module runs on the controller).
"""

from __future__ import annotations

import time

from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd import EtcdError

# How a connection fails when no etcd serves there: refused, or not set up in time (no
# host there, or an etcd that is not ready yet: etcd serves clients only once it is part of a
# cluster with a quorum). Once the connection is up, no answer means a cluster that runs
# without a quorum, which must not be taken for no cluster.
NOT_SERVING = ('refused', 'timeout', 'connection')
# etcd's answers to a member add that a moment later may succeed (strict reconfiguration check).
ERR_NOT_ENOUGH_STARTED = 'not enough started members'
ERR_UNHEALTHY = 'unhealthy cluster'


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


# --------------------------------------------------------------------------
# etcd's cluster API through the JSON gateway


def not_serving(error):
    """Whether an EtcdError says that no endpoint serves etcd (see NOT_SERVING)."""
    return bool(error.errors) and all(e.connecting and e.kind in NOT_SERVING for e in error.errors)


def list_members(client):
    """The running cluster's members, or None when no endpoint serves etcd.

    A cluster that takes the connection and then does not answer has no
    quorum (with authentication on, even the login takes one): say so, since
    bootstrapping another cluster would split it.
    """
    try:
        answer = client.call('/v3/cluster/member/list', {})
    except EtcdError as exc:
        if not_serving(exc):
            return None
        if any(e.kind == 'timeout' and not e.connecting for e in exc.errors):
            raise EtcdError(
                '%s. etcd took the connection but did not answer: the cluster has no quorum, so whether and how '
                'this member joins cannot be decided. A member that was added and has not started yet (a cluster '
                'of two needs both) is the usual cause: start it, or remove it (etcdctl member remove <ID>), and '
                'run again' % exc, exc.kind, exc.endpoint, exc.errors) from None
        raise
    return list(answer.get('members') or [])


def add_member(client, peer_urls, wait=0.0, sleep=None, clock=None):
    """Add a voting member with ``peer_urls``; returns the gateway's answer (``member``, ``members``).

    etcd refuses an add that would leave too few started members for a quorum
    (another member was just added and has not started yet); such a refusal is
    retried for up to ``wait`` seconds.
    """
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    deadline = clock() + wait
    while True:
        try:
            return client.call('/v3/cluster/member/add', {'peerURLs': list(peer_urls), 'isLearner': False})
        except EtcdError as exc:
            text = str(exc)
            if (ERR_NOT_ENOUGH_STARTED in text or ERR_UNHEALTHY in text) and clock() < deadline:
                sleep(2)
                continue
            raise


def run_member(client, name, peer_urls, member_data, bootstrap_text, check_mode=False, diff=False, wait=0.0):
    """Decide (and add the member when it joins); the module's result. Raises MembershipError, EtcdError."""
    bootstrap = parse_initial_cluster(bootstrap_text)
    members = None if member_data else list_members(client)
    plan = plan_start(name, peer_urls, member_data, members, bootstrap)
    result = {'changed': False, 'decision': plan['decision'], 'state': plan['state'],
              'initial_cluster': plan['initial_cluster'], 'member_id': None,
              'members': members or []}
    if plan['member'] is not None:
        result['member_id'] = member_id(plan['member'])
    if plan['decision'] != 'add':
        return result
    result['changed'] = True
    after = list(members) + [{'peerURLs': list(peer_urls)}]
    if not check_mode:
        answer = add_member(client, peer_urls, wait)
        added = answer.get('member') or {}
        result['member_id'] = member_id(added)
        after = list(answer.get('members') or after)
        result['initial_cluster'] = cluster_of(after, dict((u, n) for n, u in bootstrap), name, peer_urls)
    result['members'] = after
    if diff:
        result['diff'] = {'before': describe_members(members), 'after': describe_members(after),
                          'before_header': 'etcd members', 'after_header': 'etcd members'}
    return result
