#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_member
short_description: Decide how an etcd member starts, and add it to the running cluster when it joins one
description:
  - etcd reads C(--initial-cluster) and C(--initial-cluster-state) only while its data directory
    holds no member. This module says what they must be for one member, and when the member joins a
    running cluster it adds it through etcd's API first (C(/v3/cluster/member/add) on the JSON
    gateway), as etcd requires before the member starts with V(existing).
  - With O(member_data=true) there is nothing to decide (the data says which cluster the member
    belongs to), and the module asks etcd nothing.
  - Otherwise it asks O(endpoints) for the member list. When none of them serves etcd (each refuses
    the connection or does not set it up in time, as an etcd does that waits for its peers), the
    member bootstraps a new cluster - RV(state=new) with O(initial_cluster). An etcd that takes the
    connection and does not answer belongs to a cluster without a quorum; the module fails then,
    rather than bootstrap a second cluster. When a cluster answers and does not list the member, the member is added and
    starts with RV(state=existing) and an initial cluster of the current members plus itself. When
    the cluster lists it as added but never started, it starts with V(existing) without another add.
  - A member the cluster lists as started while O(member_data=false) has lost its data; the module
    fails and says how to remove it, so that it can be added afresh.
  - etcd refuses to add a voting member while too few members are started for a quorum (another
    member was added a moment ago and is still starting); such a refusal is retried for
    O(add_wait) seconds.
  - When etcd authentication is on, the gateway needs O(user) and O(password) of a root user.
author:
  - hardway.kubernetes developers (@hardway)
extends_documentation_fragment:
  - hardway.kubernetes.etcd
options:
  endpoints:
    description:
      - Client URLs of the cluster's etcd members, for example V(https://10.0.0.11:2379). Tried in
        order until one answers; this member's own URL may be among them (it does not run yet).
    type: list
    elements: str
    required: true
  name:
    description: This member's name (etcd's C(--name)).
    type: str
    required: true
  peer_urls:
    description: This member's peer URLs (etcd's C(--initial-advertise-peer-urls)).
    type: list
    elements: str
    required: true
  initial_cluster:
    description:
      - The members of a new cluster, as etcd's C(--initial-cluster) (V(name=peer-URL,...)); it must
        list this member. Also names members the cluster lists as not yet started.
    type: str
    required: true
  member_data:
    description: Whether this member's data directory already holds a member (C(<data-dir>/member) exists).
    type: bool
    default: false
  user:
    description:
      - etcd user to log in as when etcd authentication is on (adding a member needs the role
        V(root)); ignored while it is off.
    type: str
  password:
    description: Password of O(user).
    type: str
  timeout:
    description: Seconds to wait for each endpoint before taking it as not running etcd.
    type: float
    default: 5
  add_wait:
    description: Seconds to keep retrying a member add that etcd refuses until another new member has started.
    type: float
    default: 120
attributes:
  check_mode:
    support: full
    description: Reads the member list and reports the add it would make, without adding.
  diff_mode:
    support: full
    description: The member list before and after the add.
notes:
  - The member is added as a voting member. Add one member at a time, each started right after its
    add. A cluster of two needs both for a quorum, and until the new member runs, the cluster
    answers nothing (with authentication on, not even the login this module needs).
"""

EXAMPLES = r"""
- name: Is there a member in etcd's data directory?
  ansible.builtin.stat:
    path: /var/lib/etcd/member
  register: etcd_data

- name: Decide how etcd starts, and add this member to the running cluster if there is one
  hardway.kubernetes.etcd_member:
    endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379, https://10.0.0.13:2379]
    name: "{{ inventory_hostname }}"
    peer_urls: ["https://{{ cluster_node_address }}:2380"]
    initial_cluster: etcd1=https://10.0.0.11:2380,etcd2=https://10.0.0.12:2380,etcd3=https://10.0.0.13:2380
    member_data: "{{ etcd_data.stat.exists }}"
    ca_cert: pki/etcd-ca.pem
    client_cert: pki/etcd-client-gateway.pem
    client_key: pki/etcd-client-gateway-key.pem
    user: etcd-admin
    password: "{{ lookup('ansible.builtin.file', 'etcd-admin-password') }}"
  delegate_to: localhost
  register: etcd_start
"""

RETURN = r"""
decision:
  description:
    - V(keep) (the data directory holds a member), V(bootstrap) (a new cluster), V(join) (listed by
      the cluster but never started) or V(add) (added to the running cluster).
  returned: always
  type: str
  sample: add
state:
  description: The C(--initial-cluster-state) to start with, V(new) or V(existing); null with V(keep).
  returned: always
  type: str
  sample: existing
initial_cluster:
  description: The C(--initial-cluster) to start with; null with V(keep).
  returned: always
  type: str
  sample: etcd1=https://10.0.0.11:2380,etcd2=https://10.0.0.12:2380
member_id:
  description: This member's ID (hex) once the cluster lists it; null otherwise (and in check mode).
  returned: always
  type: str
  sample: 8e9e05c52164694d
members:
  description: The cluster's member list as etcd's gateway returns it (after the add); empty when no etcd answered.
  returned: always
  type: list
  elements: dict
endpoint:
  description: The endpoint that answered, or null.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd import EtcdClient, EtcdError, etcd_connection_spec  # noqa: E402
from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd_member import (  # noqa: E402
    MembershipError,
    run_member,
)
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError  # noqa: E402


def argument_spec():
    return dict(etcd_connection_spec(), **{
        'name': {'type': 'str', 'required': True},
        'peer_urls': {'type': 'list', 'elements': 'str', 'required': True},
        'initial_cluster': {'type': 'str', 'required': True},
        'member_data': {'type': 'bool', 'default': False},
        'user': {'type': 'str'},
        'password': {'type': 'str', 'no_log': True},
        'timeout': {'type': 'float', 'default': 5},
        'add_wait': {'type': 'float', 'default': 120},
    })


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_together=[('client_cert', 'client_key')],
        supports_check_mode=True,
    )
    params = module.params
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be greater than 0, got %s' % params['timeout'])
    client = None
    if not params['member_data']:
        try:
            client = EtcdClient(params['endpoints'], params['ca_cert'], params['client_cert'], params['client_key'],
                                params['timeout'], params['user'], params['password'])
        except ConfigError as exc:
            module.fail_json(msg=str(exc))
    try:
        result = run_member(client, params['name'], params['peer_urls'], params['member_data'],
                            params['initial_cluster'], module.check_mode, module._diff, params['add_wait'])
    except MembershipError as exc:
        module.fail_json(msg=str(exc), endpoint=client.endpoint_url if client else None)
    except EtcdError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, endpoint=exc.endpoint)
    result['endpoint'] = client.endpoint_url if client else None
    module.exit_json(**result)


if __name__ == '__main__':
    main()
