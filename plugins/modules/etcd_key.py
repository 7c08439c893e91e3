#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_key
short_description: Read, write, delete and list etcd v3 keys through the JSON gateway
description:
  - Talks to etcd v3 through its JSON gateway (C(/v3/kv/range), C(/v3/kv/put), C(/v3/kv/deleterange))
    over HTTPS with a client certificate, using only the Python standard library, so it runs on
    any host that can reach etcd, typically an etcd member itself.
  - O(endpoints) are tried in order until one answers; the one used is returned.
  - With O(state=present) the key is written only when its value differs. When the desired value
    is a dictionary or list, or when both the stored and the desired value parse as JSON, the
    parsed documents are compared, so key order and spacing do not matter.
  - When etcd authentication is on, requests through the JSON gateway need O(user) and O(password),
    since etcd maps client certificate names to users only for gRPC clients.
author:
  - hardway.kubernetes developers (@hardway)
extends_documentation_fragment:
  - hardway.kubernetes.etcd
options:
  key:
    description:
      - The key. With O(state=list), the prefix of the keys to list.
    type: str
    required: true
  value:
    description:
      - Value to store with O(state=present). A string is stored as it is; a dictionary or list is
        stored as compact JSON with sorted keys; a number or boolean as JSON.
    type: raw
  state:
    description:
      - V(present) stores O(value), V(absent) deletes the key, V(get) reads it and V(list) reads
        every key that starts with O(key).
    type: str
    choices: [present, absent, get, list]
    default: present
  timeout:
    description: Seconds to wait for each endpoint before trying the next.
    type: float
    default: 10
  user:
    description:
      - etcd user to log in as when etcd authentication is on; ignored while it is off.
      - Needed through the JSON gateway, which never maps the client certificate's name to a user.
    type: str
  password:
    description: Password of O(user).
    type: str
attributes:
  check_mode:
    support: full
    description: Reads the key and reports what would change without writing or deleting anything.
  diff_mode:
    support: full
    description: The stored value before and after (JSON pretty-printed).
"""

EXAMPLES = r"""
- name: A JSON document (stored compact with sorted keys; compared as JSON)
  hardway.kubernetes.etcd_key:
    endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379]
    ca_cert: /etc/etcd/ca.pem
    client_cert: /etc/etcd/gateway.pem
    client_key: /etc/etcd/gateway-key.pem
    key: /myapp/settings
    user: etcd-admin
    password: "{{ lookup('ansible.builtin.file', 'etcd-admin-password') }}"
    value:
      replicas: 3
      features: [a, b]

- name: Flannel's subnet leases
  hardway.kubernetes.etcd_key:
    endpoints: [https://127.0.0.1:2379]
    ca_cert: /etc/etcd/ca.pem
    client_cert: /etc/etcd/flannel.pem
    client_key: /etc/etcd/flannel-key.pem
    key: /coreos.com/network/subnets/
    state: list
  register: leases

- name: Lease CIDRs
  ansible.builtin.debug:
    msg: "{{ leases.kvs.keys() | map('hardway.kubernetes.flannel_lease_cidr') | list }}"
"""

RETURN = r"""
endpoint:
  description: The endpoint that answered.
  returned: always
  type: str
  sample: https://10.0.0.11:2379
value:
  description:
    - With O(state=present), the value now stored (as a string); with O(state=get), the stored
      value or null when the key does not exist; null otherwise.
  returned: always
  type: str
  sample: '{"Backend":{"Type":"vxlan"},"Network":"10.200.0.0/16","SubnetLen":24}'
value_json:
  description: RV(value) parsed as JSON, or null when it is not JSON.
  returned: always
  type: raw
previous:
  description:
    - The value stored before the module ran (null when the key did not exist, and with O(state=list)).
  returned: always
  type: str
exists:
  description:
    - Whether the key exists after the module ran (with O(state=list), whether any key matched).
  returned: always
  type: bool
kvs:
  description: With O(state=list), every key under the prefix with its value; empty otherwise.
  returned: always
  type: dict
  sample:
    /coreos.com/network/subnets/10.200.52.0-24: '{"PublicIP":"10.0.0.21","BackendType":"vxlan"}'
values_json:
  description: With O(state=list), the values of RV(kvs) that parse as JSON, parsed; empty otherwise.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd import (  # noqa: E402
    EtcdClient,
    EtcdError,
    etcd_connection_spec,
    encode_value,
    parse_json,
    pretty,
    values_equal,
)
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError  # noqa: E402


def argument_spec():
    return dict(etcd_connection_spec(), **{
        'key': {'type': 'str', 'required': True, 'no_log': False},
        'value': {'type': 'raw'},
        'state': {'type': 'str', 'choices': ['present', 'absent', 'get', 'list'], 'default': 'present'},
        'timeout': {'type': 'float', 'default': 10},
        'user': {'type': 'str'},
        'password': {'type': 'str', 'no_log': True},
    })


def json_or_none(value):
    ok, parsed = parse_json(value)
    return parsed if ok else None


def run(module, client):
    params = module.params
    key, state = params['key'], params['state']
    result = {'changed': False, 'value': None, 'previous': None, 'exists': False, 'kvs': {},
              'values_json': {}}

    if state == 'list':
        kvs = client.list(key)
        parsed = ((k, json_or_none(v)) for k, v in kvs.items())
        result.update(kvs=kvs, exists=bool(kvs), values_json={k: v for k, v in parsed if v is not None})
        return result

    current = client.get(key)
    result.update(previous=current, exists=current is not None)
    if state == 'get':
        result['value'] = current
        return result

    header = 'etcd key %s' % key
    if state == 'absent':
        if current is not None:
            result.update(changed=True, exists=False)
            if module._diff:
                result['diff'] = {'before': pretty(current), 'after': '', 'before_header': header,
                                  'after_header': header}
            if not module.check_mode:
                client.delete(key)
        return result

    desired = params['value']
    stored = encode_value(desired)
    result.update(value=stored, exists=True)
    if values_equal(current, desired):
        result['value'] = current  # what etcd holds (it may differ in key order only)
        return result
    result['changed'] = True
    if module._diff:
        result['diff'] = {'before': pretty(current), 'after': pretty(stored), 'before_header': header,
                          'after_header': header}
    if not module.check_mode:
        client.put(key, stored)
    return result


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[('state', 'present', ('value',))],
        required_together=[('client_cert', 'client_key')],
        supports_check_mode=True,
    )
    params = module.params
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be greater than 0, got %s' % params['timeout'])
    if params['state'] == 'present':
        if params['value'] is None:
            module.fail_json(msg='value is required with state=present (use state=absent to delete the key)')
        if isinstance(params['value'], float) and params['value'] != params['value']:
            module.fail_json(msg='value: NaN cannot be stored')
        try:
            encode_value(params['value'])
        except (TypeError, ValueError) as exc:
            module.fail_json(msg='value: cannot be serialised as JSON: %s' % exc)
    try:
        client = EtcdClient(params['endpoints'], params['ca_cert'], params['client_cert'],
                            params['client_key'], params['timeout'], params['user'], params['password'])
    except ConfigError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = run(module, client)
    except EtcdError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, endpoint=exc.endpoint)
    result['endpoint'] = client.endpoint_url
    result['value_json'] = json_or_none(result['value'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
