#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_member
short_description: Decide how an etcd member starts, add it to the running cluster as a learner, promote it
description:
  - etcd reads C(--initial-cluster) and C(--initial-cluster-state) only while its data directory
    holds no member. This module says what they must be for one member, and when the member joins a
    running cluster it adds it through etcd's API first (C(/v3/cluster/member/add) on the JSON
    gateway), as etcd requires before the member starts with V(existing). It is added as a learner
    (O(learner=true)) and promoted to a voting member by a second call with O(promote=true) once it
    runs.
  - With O(member_data=true) there is nothing to decide (the data says which cluster the member
    belongs to), and the module asks etcd nothing.
  - Otherwise it asks O(endpoints) for the member list. When none of them serves etcd (each refuses
    the connection or does not set it up in time, as an etcd does that waits for its peers), the
    member bootstraps a new cluster - RV(state=new) with O(initial_cluster). An etcd that takes the
    connection and does not answer belongs to a cluster without a quorum; the module fails then,
    rather than bootstrap a second cluster. When a cluster answers and does not list the member, the member is added and
    starts with RV(state=existing) and an initial cluster of the current members plus itself. When
    the cluster lists it as added but never started (a learner or not), it starts with V(existing)
    without another add.
  - A member the cluster lists as started while O(member_data=false) has lost its data; the module
    fails and says how to remove it, so that it can be added afresh.
  - Members are added one at a time. Before the add the module waits until every member the cluster
    lists has started and the cluster reports healthy (C(/health) of the endpoint that answers).
    etcd refuses to add a learner while another learner is in the cluster (C(--max-learners), 1 by
    default), and a voting member while too few members are started for a quorum; such refusals are
    retried too, and so is an etcd that does not answer in time (a busy machine; an add that went
    unanswered is looked for in the member list before it is tried again). All of this waits for up
    to O(add_wait) seconds, so that members added in parallel go in one after the other, each once
    the one before was promoted.
  - With O(promote=true) the module only promotes this member. It finds the member in the cluster's
    list by O(peer_urls); a learner is promoted (C(/v3/cluster/member/promote)), a voting member is
    left as it is. etcd refuses to promote a learner that has not caught up with the leader; that
    refusal is retried for O(promote_wait) seconds.
  - With O(remove=true) the module only removes this member from the cluster
    (C(/v3/cluster/member/remove)), found by O(peer_urls) or O(name); a member the cluster does not
    list is gone already. It refuses, before any change, when the cluster is not healthy, when the
    member is the last voting member, and when the voting members that stay would not keep a quorum
    of healthy members among themselves (each asked on its own C(/health)). A learner may always go.
    Stop the member's etcd afterwards and keep its data directory aside, since a member that was removed
    must not start from its old data again.
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
      - Required unless O(promote=true) or O(remove=true).
    type: str
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
    description:
      - Seconds to wait for a member add, while a member added before has not started or not been
        promoted yet, or the cluster is not healthy.
    type: float
    default: 120
  learner:
    description:
      - Add the member as a learner (it does not vote, and does not count for the quorum until it is
        promoted with O(promote=true)). V(false) adds a voting member at once.
    type: bool
    default: true
  promote:
    description:
      - Promote this member, if the cluster lists it as a learner, to a voting member, and do nothing
        else (no decision, no add; O(initial_cluster) and O(member_data) are not used).
      - The cluster must list the member; in check mode a member it does not list is reported as one
        to promote (it would have been added by the call before).
    type: bool
    default: false
  remove:
    description:
      - Remove this member from the cluster instead (see above). Excludes O(promote).
    type: bool
    default: false
  promote_wait:
    description: Seconds to keep retrying a promote that etcd refuses until the learner has caught up with the leader.
    type: float
    default: 120
attributes:
  check_mode:
    support: full
    description: Reads the member list and reports the add or promote it would make, without making it.
  diff_mode:
    support: full
    description: The member list before and after the add or promote, learners marked C((learner)).
notes:
  - A learner receives the cluster's data but does not vote, so a cluster keeps its quorum while a new
    member is added and has not started yet; it is promoted once it runs and has caught up. That is
    etcd's recommended way to grow a cluster. With O(learner=false) the member votes from its add on;
    a cluster of one then becomes a cluster of two that needs both for a quorum, and until the new
    member runs, the cluster answers nothing (with authentication on, not even the login this module
    needs).
  - The client URL of a learner answers no API request (etcd refuses them for learners); the module
    goes on to the next of O(endpoints).
  - A learner's C(/health) (client and metrics URLs) reports healthy once it runs. Whether it has
    caught up with the leader shows only in etcd's answer to the promote, which the module retries.
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

# ... write the initial cluster, start etcd, wait until it is healthy, then:
- name: Promote this member to a voting member (it joined as a learner)
  hardway.kubernetes.etcd_member:
    endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379, https://10.0.0.13:2379]
    name: "{{ inventory_hostname }}"
    peer_urls: ["https://{{ cluster_node_address }}:2380"]
    promote: true
    ca_cert: pki/etcd-ca.pem
    client_cert: pki/etcd-client-gateway.pem
    client_key: pki/etcd-client-gateway-key.pem
    user: etcd-admin
    password: "{{ lookup('ansible.builtin.file', 'etcd-admin-password') }}"
  delegate_to: localhost
"""

RETURN = r"""
decision:
  description:
    - V(keep) (the data directory holds a member), V(bootstrap) (a new cluster), V(join) (listed by
      the cluster but never started) or V(add) (added to the running cluster).
    - With O(promote=true), V(promote) (a learner, promoted) or V(voter) (a voting member already).
    - With O(remove=true), V(remove) (removed) or V(absent) (the cluster did not list it).
  returned: always
  type: str
  sample: add
state:
  description:
    - The C(--initial-cluster-state) to start with, V(new) or V(existing); null with V(keep) and
      with O(promote=true).
  returned: always
  type: str
  sample: existing
initial_cluster:
  description: The C(--initial-cluster) to start with; null with V(keep) and with O(promote=true).
  returned: always
  type: str
  sample: etcd1=https://10.0.0.11:2380,etcd2=https://10.0.0.12:2380
member_id:
  description: This member's ID (hex) once the cluster lists it; null otherwise (and in check mode).
  returned: always
  type: str
  sample: 8e9e05c52164694d
members:
  description:
    - The cluster's member list as etcd's gateway returns it (after the add or promote); empty when no
      etcd answered. Learners have C(isLearner=true).
  returned: always
  type: list
  elements: dict
is_learner:
  description:
    - Whether the cluster lists this member as a learner once the module is done (in check mode, would
      list); null when the cluster does not list it (V(keep), V(bootstrap)).
  returned: always
  type: bool
  sample: true
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
    run_promote,
    run_remove,
)
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError  # noqa: E402


def argument_spec():
    return dict(etcd_connection_spec(), **{
        'name': {'type': 'str', 'required': True},
        'peer_urls': {'type': 'list', 'elements': 'str', 'required': True},
        'initial_cluster': {'type': 'str'},
        'member_data': {'type': 'bool', 'default': False},
        'user': {'type': 'str'},
        'password': {'type': 'str', 'no_log': True},
        'timeout': {'type': 'float', 'default': 5},
        'add_wait': {'type': 'float', 'default': 120},
        'learner': {'type': 'bool', 'default': True},
        'promote': {'type': 'bool', 'default': False},
        'promote_wait': {'type': 'float', 'default': 120},
        'remove': {'type': 'bool', 'default': False},
    })


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_together=[('client_cert', 'client_key')],
        mutually_exclusive=[('promote', 'remove')],
        supports_check_mode=True,
    )
    params = module.params
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be greater than 0, got %s' % params['timeout'])
    client = None
    if params['initial_cluster'] is None and not (params['promote'] or params['remove']):
        module.fail_json(msg='initial_cluster is required unless promote or remove is true')
    if params['promote'] or params['remove'] or not params['member_data']:
        try:
            client = EtcdClient(params['endpoints'], params['ca_cert'], params['client_cert'], params['client_key'],
                                params['timeout'], params['user'], params['password'])
        except ConfigError as exc:
            module.fail_json(msg=str(exc))
    try:
        if params['remove']:
            result = run_remove(client, params['name'], params['peer_urls'], module.check_mode, module._diff)
        elif params['promote']:
            result = run_promote(client, params['name'], params['peer_urls'], module.check_mode, module._diff,
                                 params['promote_wait'])
        else:
            result = run_member(client, params['name'], params['peer_urls'], params['member_data'],
                                params['initial_cluster'], module.check_mode, module._diff, params['add_wait'],
                                params['learner'])
    except MembershipError as exc:
        module.fail_json(msg=str(exc), endpoint=client.endpoint_url if client else None)
    except EtcdError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, endpoint=exc.endpoint)
    result['endpoint'] = client.endpoint_url if client else None
    module.exit_json(**result)


if __name__ == '__main__':
    main()
