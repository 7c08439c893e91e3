#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: flannel_network
short_description: Write flannel's network config into etcd, or wait until etcd holds it
description:
  - flanneld reads its network config (pod network, subnet length, backend) from the etcd key
    C(<prefix>/config), only when it starts. This module writes that key through etcd's JSON gateway
    (with O(write=true), on one host), or waits until etcd holds it (with O(write=false), on each node
    before its flanneld restarts for a changed config), using only the Python standard library.
  - O(config) is checked against flannel v0.28's own rules before anything is written or awaited,
    also in check mode; a bad value fails with a message naming each bad field and value.
  - Changing the config of a live network (etcd holds node subnet leases under C(<prefix>/subnets/))
    is refused unless O(force=true), since every flanneld must restart to read it, and nodes running the
    old and the new settings cannot reach each other in between. The message names the current and
    the requested backend and what changes. A config no flanneld has leased a subnet with may be
    changed freely.
  - Configs are compared as JSON documents, so key order and spacing do not matter.
  - When etcd authentication is on, requests through the JSON gateway need O(user) and a password
    (O(password) or O(password_file)), since etcd maps client certificate names to users only for
    gRPC clients.
author:
  - hardway.kubernetes developers (@hardway)
extends_documentation_fragment:
  - hardway.kubernetes.etcd
options:
  prefix:
    description: flannel's etcd prefix (flanneld's C(--etcd-prefix)); the config is C(<prefix>/config).
    type: str
    default: /coreos.com/network
  config:
    description:
      - 'The network config, for example V({"Network": "10.200.0.0/16", "SubnetLen": 24,
        "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}). It is stored as compact JSON with
        sorted keys.'
    type: dict
    required: true
  force:
    description: Change the config of a live network anyway (see the description).
    type: bool
    default: false
  write:
    description:
      - V(true) writes O(config) when etcd holds another one (or none).
      - V(false) only reads, waiting up to O(wait) seconds until etcd holds O(config); it fails at
        once when the writer would refuse the change (a live network without O(force)), and when
        the wait runs out. In check mode it does not wait.
    type: bool
    default: true
  wait:
    description: With O(write=false), seconds to wait until etcd holds O(config) (and answers at all).
    type: float
    default: 0
  client_cert:
    description: PEM file with the client certificate presented to etcd (one without a common name
      while etcd authentication is on).
    type: path
  user:
    description: etcd user to log in as when etcd authentication is on; ignored while it is off.
    type: str
  password:
    description: Password of O(user).
    type: str
  password_file:
    description:
      - File holding the password of O(user), read at each attempt (a missing file means no
        password yet), so that a password made while the module waits is used. Ignored when
        O(password) is given.
    type: path
  timeout:
    description: Seconds to wait for each endpoint before trying the next.
    type: float
    default: 10
attributes:
  check_mode:
    support: full
    description: Reads the key (and the leases) and reports what would change without writing.
  diff_mode:
    support: full
    description: The stored config before and after (JSON pretty-printed).
"""

EXAMPLES = r"""
- name: Write flannel's network config (one host)
  hardway.kubernetes.flannel_network:
    endpoints: [https://10.0.0.11:2379]
    ca_cert: pki/etcd-ca.pem
    client_cert: pki/etcd-client-gateway.pem
    client_key: pki/etcd-client-gateway-key.pem
    user: etcd-admin
    password_file: etcd-admin-password
    config:
      Network: 10.200.0.0/16
      SubnetLen: 24
      Backend: {Type: vxlan, VNI: 1, Port: 8472}
    force: "{{ flannel_force_network_config }}"
  delegate_to: localhost
  run_once: true

- name: Wait until etcd holds it before restarting flanneld (each node)
  hardway.kubernetes.flannel_network:
    endpoints: [https://10.0.0.11:2379]
    ca_cert: pki/etcd-ca.pem
    client_cert: pki/etcd-client-gateway.pem
    client_key: pki/etcd-client-gateway-key.pem
    user: etcd-admin
    password_file: etcd-admin-password
    config:
      Network: 10.200.0.0/16
      SubnetLen: 24
      Backend: {Type: vxlan, VNI: 1, Port: 8472}
    write: false
    wait: 300
  delegate_to: localhost
"""

RETURN = r"""
key:
  description: The key flanneld reads, C(<prefix>/config).
  returned: always
  type: str
  sample: /coreos.com/network/config
value:
  description: The config etcd holds after the module ran (in check mode, would hold), as stored; null when none.
  returned: always
  type: str
  sample: '{"Backend":{"Port":8472,"Type":"vxlan","VNI":1},"Network":"10.200.0.0/16","SubnetLen":24}'
previous:
  description: The config etcd held before the module ran, or null.
  returned: always
  type: str
leases:
  description: How many node subnet leases etcd holds (0 when there is no config yet).
  returned: always
  type: int
changed_fields:
  description: The fields that differ between the stored and the desired config (C(Backend.Port), ...).
  returned: always
  type: list
  elements: str
pending:
  description: With O(write=false) in check mode, whether etcd does not hold O(config) yet (the writer would write it).
  returned: when O(write=false)
  type: bool
endpoint:
  description: The endpoint that answered.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd import EtcdClient, EtcdError, etcd_connection_spec  # noqa: E402
from ansible_collections.hardway.kubernetes.plugins.module_utils.flannel_config import (  # noqa: E402
    NetworkConfigError,
)
from ansible_collections.hardway.kubernetes.plugins.module_utils.flannel_network import run_network  # noqa: E402
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError  # noqa: E402


def argument_spec():
    return dict(etcd_connection_spec(), **{
        'prefix': {'type': 'str', 'default': '/coreos.com/network'},
        'config': {'type': 'dict', 'required': True},
        'force': {'type': 'bool', 'default': False},
        'write': {'type': 'bool', 'default': True},
        'wait': {'type': 'float', 'default': 0},
        'user': {'type': 'str'},
        'password': {'type': 'str', 'no_log': True},
        'password_file': {'type': 'path', 'no_log': False},
        'timeout': {'type': 'float', 'default': 10},
    })


def read_password(params):
    if params['password'] or not params['password_file']:
        return params['password']
    try:
        with open(params['password_file']) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_together=[('client_cert', 'client_key')],
        supports_check_mode=True,
    )
    params = module.params
    for name in ('timeout', 'wait'):
        if params[name] < 0 or name == 'timeout' and params[name] == 0:
            module.fail_json(msg='%s must be greater than 0, got %s' % (name, params[name]))

    def make_client():
        return EtcdClient(params['endpoints'], params['ca_cert'], params['client_cert'], params['client_key'],
                          params['timeout'], params['user'], read_password(params))

    try:
        result = run_network(make_client, params['prefix'], params['config'], params['force'], params['write'],
                             params['wait'], module.check_mode, module._diff)
    except ConfigError as exc:
        module.fail_json(msg=str(exc))
    except NetworkConfigError as exc:
        module.fail_json(msg=str(exc), problems=exc.problems)
    except (EtcdError, OSError) as exc:
        module.fail_json(msg=str(exc), error_kind=getattr(exc, 'kind', 'os'), endpoint=getattr(exc, 'endpoint', None))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
