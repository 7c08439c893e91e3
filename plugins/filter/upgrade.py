# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Filters of the day-two playbooks that keep a cluster current (upgrade.yml, certificates.yml).

- ``upgrade_records(hosts, hostvars)``: per host, what it runs (its roles), the versions it is
  pinned to and the versions found on it (``_upgrade_running``, registered from
  hardway.kubernetes.versions), with what the API server said of the nodes.
- ``skew_problems(records)``: why going from the running versions to the pinned ones breaks the
  Kubernetes version-skew policy (or etcd's upgrade rules), one message each, naming the host and
  both versions (empty: the upgrade may go ahead).
- ``upgrade_pending(records)``: per host, what the upgrade still has to change on it (binaries not
  at their pin, services still running a replaced binary, a kubelet that reports another version).
- ``certificate_lines(certificates)``: hardway.kubernetes.certificates_info's list as lines, soonest
  expiry first.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter.cluster import hosts_variables

# The binaries of each pin the upgrade moves, with the hosts that run them.
PIN_BINARIES = {
    'kubernetes': ('kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy'),
    'etcd': ('etcd',),
    'containerd': ('containerd',),
    'runc': ('runc',),
    'flannel': ('flanneld',),
}
CONTROL_PLANE_BINARIES = ('kube-apiserver', 'kube-controller-manager', 'kube-scheduler')
NODE_BINARIES = ('kubelet', 'kube-proxy')
# kubelet and kube-proxy may be this many minors older than the oldest API server.
NODE_MAX_MINORS_BEHIND = 3


def version_tuple(value, what='version'):
    """``'1.37.1'`` or ``'v1.37.1'`` -> ``(1, 37, 1)``; a suffix after the patch (``-rc.1``) is ignored."""
    text = str(value or '').strip().lstrip('v')
    parts = text.split('.')
    try:
        major, minor = int(parts[0]), int(parts[1])
        patch = int(''.join(c for c in parts[2].split('-')[0].split('+')[0] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        raise AnsibleFilterError('hardway.kubernetes: %s %r is not a version of the form X.Y.Z'
                                 % (what, value)) from None
    return major, minor, patch


def _minor(value):
    return version_tuple(value)[:2]


def upgrade_records(hosts, hostvars):
    """One record per host: ``{host, node, control_plane, etcd, nodes, target, binaries, stale, api}``, from the
    facts the check play of upgrade.yml sets on each host (``_upgrade_self``: what it runs and its pins;
    ``_upgrade_running``: what hardway.kubernetes.versions read)."""
    out = []
    for host, variables in hosts_variables(hosts, hostvars, 'upgrade_records'):
        running = variables.get('_upgrade_running') if '_upgrade_running' in variables else None
        own = variables.get('_upgrade_self') if '_upgrade_self' in variables else None
        if not isinstance(running, dict) or 'binaries' not in running or not isinstance(own, dict):
            raise AnsibleFilterError('hardway.kubernetes.upgrade_records: no versions were read on %s (the check play '
                                     'of upgrade.yml reads them on every host)' % host)
        out.append({
            'host': str(host),
            'node': str(own.get('node') or host),
            'control_plane': bool(own.get('control_plane')),
            'etcd': bool(own.get('etcd')),
            'nodes': bool(own.get('nodes')),
            'target': {k: str(v) for k, v in dict(own.get('target') or {}).items()},
            'binaries': dict(running.get('binaries') or {}),
            'stale': list(running.get('stale') or []),
            'api': dict(running.get('api') or {}),
        })
    return out


def _api_nodes(records):
    """Kubelet versions the API servers reported, by node name (the first answer for each)."""
    nodes = {}
    for record in records:
        for name, version in (record.get('api') or {}).get('nodes', {}).items():
            nodes.setdefault(name, version)
    return nodes


def _running_kubelet(record, api_nodes):
    return api_nodes.get(record['node']) or record['binaries'].get('kubelet')


def _step_problems(record, pin, binaries, running_of):
    """A binary of ``pin`` on this host going down a minor or skipping one."""
    problems = []
    target = record['target'].get(pin)
    if not target:
        return problems
    want = _minor(target)
    for binary in binaries:
        have = running_of(binary)
        if not have:
            continue
        now = _minor(have)
        label = 'cluster_versions.%s' % pin
        if want < now:
            problems.append('%s: %s runs %s and %s is %s: that goes down a minor version, which the upgrade refuses '
                            '(a newer minor cannot be downgraded in place)'
                            % (record['host'], binary, have, label, target))
        elif want[0] != now[0] or want[1] > now[1] + 1:
            problems.append('%s: %s runs %s and %s is %s: that skips a minor version; upgrade one minor at a time '
                            '(first to a %d.%d release)'
                            % (record['host'], binary, have, label, target, now[0], now[1] + 1))
    return problems


def skew_problems(records):
    """Why the pinned versions cannot follow the running ones (empty: the upgrade may go ahead)."""
    records = list(records or [])
    api_nodes = _api_nodes(records)
    problems = []
    for record in records:
        def running_of(binary, record=record):
            if binary == 'kubelet':
                return _running_kubelet(record, api_nodes)
            return record['binaries'].get(binary)
        problems += _step_problems(record, 'kubernetes', PIN_BINARIES['kubernetes'], running_of)
        problems += _step_problems(record, 'etcd', ('etcd',), running_of)

    planes = [r for r in records if r['control_plane'] and r['target'].get('kubernetes')]
    nodes = [r for r in records if r['nodes'] and r['target'].get('kubernetes')]
    if not planes:
        return problems
    # the API servers among themselves: within one minor
    newest = max(planes, key=lambda r: version_tuple(r['target']['kubernetes']))
    oldest = min(planes, key=lambda r: version_tuple(r['target']['kubernetes']))
    oldest_minor = _minor(oldest['target']['kubernetes'])
    if _minor(newest['target']['kubernetes'])[1] > oldest_minor[1] + 1:
        problems.append('%s is pinned to Kubernetes %s and %s to %s: API servers may differ by one minor version at '
                        'most' % (newest['host'], newest['target']['kubernetes'], oldest['host'],
                                  oldest['target']['kubernetes']))
    for record in nodes:
        target = record['target']['kubernetes']
        if _minor(target) > oldest_minor:
            problems.append('%s: its kubelet would be %s, newer than the API server of %s (%s): a kubelet may not be '
                            'newer than any API server' % (record['host'], target, oldest['host'],
                                                           oldest['target']['kubernetes']))
        elif _minor(target)[0] != oldest_minor[0] or _minor(target)[1] < oldest_minor[1] - NODE_MAX_MINORS_BEHIND:
            problems.append('%s: its kubelet would be %s, more than %d minor versions older than the API server of %s '
                            '(%s)' % (record['host'], target, NODE_MAX_MINORS_BEHIND, oldest['host'],
                                      oldest['target']['kubernetes']))
        running = _running_kubelet(record, api_nodes)
        if running and _minor(running) > oldest_minor:
            problems.append('%s: its kubelet runs %s, newer than the %s the control plane of %s is pinned to: the '
                            'control plane may not be older than the nodes'
                            % (record['host'], running, oldest['target']['kubernetes'], oldest['host']))
        elif running and (_minor(running)[0] != oldest_minor[0]
                          or _minor(running)[1] < oldest_minor[1] - NODE_MAX_MINORS_BEHIND):
            problems.append('%s: its kubelet runs %s; once the control plane of %s runs %s it would be more than %d '
                            'minor versions behind: upgrade the nodes first to within %d minors'
                            % (record['host'], running, oldest['host'], oldest['target']['kubernetes'],
                               NODE_MAX_MINORS_BEHIND, NODE_MAX_MINORS_BEHIND))
    return _unique(problems)


def _unique(items):
    seen = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def upgrade_pending(records):
    """``{host: [what to change, ...]}`` for every host the upgrade still has to change (absent: up to date)."""
    records = list(records or [])
    api_nodes = _api_nodes(records)
    marked = {name for record in records for name in (record.get('api') or {}).get('marked', [])}
    pending = {}
    for record in records:
        todo = []
        for pin, binaries in PIN_BINARIES.items():
            target = record['target'].get(pin)
            if not target:
                continue
            for binary in binaries:
                have = record['binaries'].get(binary)
                if have and version_tuple(have) != version_tuple(target):
                    todo.append('%s %s -> %s' % (binary, have, target))
        kubelet = api_nodes.get(record['node'])
        target = record['target'].get('kubernetes')
        if record['nodes'] and kubelet and target and version_tuple(kubelet) != version_tuple(target) \
                and not any(t.startswith('kubelet ') for t in todo):
            todo.append('kubelet reports %s to the API, pinned %s' % (kubelet, target))
        todo += ['%s runs a replaced binary (restart)' % unit for unit in record['stale']]
        if record['node'] in marked:
            todo.append('left cordoned by an interrupted upgrade (uncordon)')
        if todo:
            pending[record['host']] = todo
    return pending


def certificate_lines(certificates):
    """One line per certificate (hardway.kubernetes.certificates_info), soonest expiry first:
    days left, expiry, subject, issuer and where it is."""
    rows = sorted(certificates or [], key=lambda c: (c.get('days_left', 0), c.get('source', '')))
    return ['%5d days  %s  %s (issuer %s)  %s' % (c.get('days_left', 0), c.get('not_after', '?'),
                                                  c.get('subject', '?'), c.get('issuer', '?'), c.get('source', '?'))
            for c in rows]


class FilterModule:
    """hardway.kubernetes filters of the upgrade and certificates playbooks."""

    def filters(self):
        return {
            'upgrade_records': upgrade_records,
            'skew_problems': skew_problems,
            'upgrade_pending': upgrade_pending,
            'certificate_lines': certificate_lines,
        }
