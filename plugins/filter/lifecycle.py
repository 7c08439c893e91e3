# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Filters of the day-two playbooks that take hosts out (remove_node.yml, reset.yml).

- ``node_names(value)``: the host names of ``-e remove_node_names=a,b`` (a list or comma-separated text).
- ``remove_node_problems(names, inventory, control_planes, etcd_members, etcd_step)``: why these hosts
  cannot be removed, one message each (empty: they can).
- ``flannel_leases_of(values, address)``: the keys of the flannel subnet leases a host holds.
- ``drain_blockers(output)``: the pods that kept ``kubectl drain`` from finishing.
- ``node_state_files(records, state_dir)``: the files of the controller's state that belong to these
  hosts alone (their kubelet and etcd certificates and keys, their kubelet kubeconfig).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter.cluster import kubelet_kubeconfigs, pki_node_certificates
from ansible_collections.hardway.kubernetes.plugins.filter.state import state_path

# kubectl drain's lines for a pod it cannot evict or that does not go in time
_EVICT = re.compile(r'error when evicting pods/"([^"]+)" -n "([^"]+)"')
_WAIT = re.compile(r'pod "([^"]+)" in namespace "([^"]+)"')
_CANNOT = re.compile(r'cannot delete [^:]*: ((?:[\w.-]+/[\w.-]+(?:, )?)+)')


def node_names(value):
    """``a,b`` or ``[a, b]`` -> ``['a', 'b']``: stripped, empty items and repeats left out, in order."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(',')
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise AnsibleFilterError('hardway.kubernetes.node_names: expected host names (a list or "a,b"), got %r'
                                 % (value,))
    out = []
    for item in items:
        name = str(item).strip()
        if name and name not in out:
            out.append(name)
    return out


def remove_node_problems(names, inventory, control_planes, etcd_members, etcd_step=False):
    """Why the hosts ``names`` cannot be removed from the cluster; an empty list when they can.

    ``inventory``: every host of the inventory; ``control_planes`` and ``etcd_members``: the hosts of
    those groups; ``etcd_step``: whether the run may remove etcd members (remove_node_etcd).
    Whether etcd keeps a quorum of healthy members is asked of etcd itself (etcd_member).
    """
    names = node_names(names)
    inventory = list(inventory or [])
    control_planes = list(control_planes or [])
    etcd_members = list(etcd_members or [])
    if not names:
        return ['remove_node_names is empty: name the hosts to remove (-e remove_node_names=node3 or a,b)']
    problems = []
    unknown = [n for n in names if n not in inventory]
    if unknown:
        problems.append('remove_node_names: %s %s not a host of the inventory (its hosts: %s)'
                        % (', '.join(unknown), 'is' if len(unknown) == 1 else 'are', ', '.join(sorted(inventory))))
    known = [n for n in names if n in inventory]
    cps = [n for n in known if n in control_planes]
    if control_planes and cps and len(cps) == len(control_planes):
        problems.append('refusing to remove %s: the cluster would have no control-plane host left; reset.yml takes '
                        'a whole cluster down' % ', '.join(cps))
    members = [n for n in known if n in etcd_members]
    if members and not etcd_step:
        problems.append('%s %s an etcd member: removing a member takes -e remove_node_etcd=true (the member is '
                        'removed through etcd\'s API, its data directory moved aside)'
                        % (', '.join(members), 'is' if len(members) == 1 else 'are'))
    elif members and len(members) == len(etcd_members):
        problems.append('refusing to remove %s: no etcd member would be left (etcd keeps the cluster\'s data); '
                        'reset.yml takes a whole cluster down' % ', '.join(members))
    return problems


def flannel_leases_of(values, address):
    """The lease keys (sorted) among ``values`` (key -> parsed JSON, as etcd_key state=list returns them
    in values_json) whose PublicIP is ``address``."""
    if not isinstance(values, dict):
        raise AnsibleFilterError('hardway.kubernetes.flannel_leases_of: expected a dict of lease key -> value, got %s'
                                 % type(values).__name__)
    return sorted(k for k, v in values.items() if isinstance(v, dict) and v.get('PublicIP') == address)


def drain_blockers(output):
    """``namespace/pod`` of each pod named in kubectl drain's output as not evicted or not gone, each once."""
    found = []
    for line in str(output or '').splitlines():
        pairs = [(m.group(2), m.group(1)) for m in _EVICT.finditer(line)]
        pairs += [(m.group(2), m.group(1)) for m in _WAIT.finditer(line)]
        for ns, pod in pairs:
            if '%s/%s' % (ns, pod) not in found:
                found.append('%s/%s' % (ns, pod))
        for m in _CANNOT.finditer(line):
            for item in m.group(1).split(', '):
                if item and item not in found:
                    found.append(item)
    return found


def node_state_files(records, state_dir):
    """The state files (controller paths) issued for the hosts ``records`` (node_records) alone, so that a host
    added again gets new ones: ``kubelet-<node>`` and ``etcd-{server,peer}-<host>`` certificates and keys, and
    ``kubelet-<node>.kubeconfig``. Whatever the host ran; a file that was never issued is simply not there."""
    out = []
    for cert in pki_node_certificates(records, records):
        out += [state_path(state_dir, 'cert', cert['name']), state_path(state_dir, 'key', cert['name'])]
    for kubeconfig in kubelet_kubeconfigs(records, 'https://unused'):
        out.append(state_path(state_dir, 'kubeconfig', kubeconfig['name']))
    return out


class FilterModule:
    """hardway.kubernetes filters for taking hosts out of the cluster."""

    def filters(self):
        return {
            'node_names': node_names,
            'remove_node_problems': remove_node_problems,
            'flannel_leases_of': flannel_leases_of,
            'drain_blockers': drain_blockers,
            'node_state_files': node_state_files,
        }
