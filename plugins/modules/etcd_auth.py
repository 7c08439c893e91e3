#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_auth
short_description: etcd users, roles with key permissions, and the authentication switch
description:
  - Manages etcd v3 authentication through the JSON gateway (C(/v3/auth/...)) over HTTPS with a
    client certificate, using only the Python standard library.
  - Each role in O(roles) ends up with exactly the listed key permissions, each user in O(users)
    with exactly the listed roles; roles and users not listed are left alone. New users are
    certificate users (no password) -- with C(--client-cert-auth), etcd takes a gRPC client's
    certificate common name as its user name -- except O(user), the module's own login, which is
    created with O(password).
  - Changes are made in an order that never takes access away in between (roles and grants
    first, revocations after) and O(enabled=true) turns authentication on last, so clients whose
    certificate names are listed users keep working through the switch.
  - Before anything is changed the module refuses a plan that cannot work, for example turning
    authentication on without the user C(root) having the role C(root), or with O(user) not being
    a root user (it could not manage etcd afterwards).
  - Once authentication is on, the module logs in as O(user), which needs the role C(root), since
    etcd's JSON gateway never maps client certificate names to users.
author:
  - hardway.kubernetes developers (@hardway)
extends_documentation_fragment:
  - hardway.kubernetes.etcd
options:
  timeout:
    description: Seconds to wait for each endpoint before trying the next.
    type: float
    default: 10
  user:
    description:
      - The user the module logs in as once authentication is on, and the only user it creates
        with a password. Required with O(enabled=true); it must then be listed in O(users) with
        the role V(root).
    type: str
  password:
    description:
      - Password of O(user). Set when the module creates the user, and again just before it turns
        authentication on (etcd cannot check a password while authentication is off).
    type: str
  roles:
    description: Roles and their key permissions.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Role name. V(root) is built in and cannot be listed.
        type: str
        required: true
      permissions:
        description: The role's permissions; any other permission the role has is revoked.
        type: list
        elements: dict
        default: []
        suboptions:
          key:
            description:
              - A key, or with O(roles[].permissions[].prefix=true) a key prefix (V("") with a prefix
                is every key).
            type: str
            required: true
          prefix:
            description: Whether O(roles[].permissions[].key) is a prefix covering every key that starts with it.
            type: bool
            default: false
          type:
            description: What the role may do on those keys.
            type: str
            choices: [read, write, readwrite]
            default: readwrite
  users:
    description:
      - Users and their roles. A user named like a client certificate's common name is what etcd
        authorizes that certificate as.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: User name.
        type: str
        required: true
      roles:
        description: The user's roles (V(root) for every permission and auth management); any other role is revoked.
        type: list
        elements: str
        default: []
  enabled:
    description:
      - V(true) turns authentication on after every other change, V(false) turns it off; unset
        leaves it as it is.
    type: bool
attributes:
  check_mode:
    support: full
    description: Reads users, roles and the authentication switch and reports what would change.
  diff_mode:
    support: full
    description: The listed roles and users (and the switch) before and after.
notes:
  - While authentication is off, any client certificate the etcd CA signed may change users and
    roles; once it is on, only root users may.
"""

EXAMPLES = r"""
- name: Each etcd client its own permissions, then authentication on
  hardway.kubernetes.etcd_auth:
    endpoints: [https://10.0.0.11:2379]
    ca_cert: pki/etcd-ca.pem
    client_cert: pki/etcd-client-admin.pem
    client_key: pki/etcd-client-admin-key.pem
    user: etcd-admin
    password: "{{ lookup('ansible.builtin.file', 'etcd-admin-password') }}"
    roles:
      - name: kube-apiserver
        permissions:
          - {key: "", prefix: true}
      - name: flannel
        permissions:
          - {key: /coreos.com/network/, prefix: true}
    users:
      - {name: root, roles: [root]}
      - {name: etcd-admin, roles: [root]}
      - {name: kube-apiserver-etcd-client, roles: [kube-apiserver]}
      - {name: flannel, roles: [flannel]}
    enabled: true
"""

RETURN = r"""
endpoint:
  description: The endpoint that answered.
  returned: always
  type: str
  sample: https://10.0.0.11:2379
actions:
  description: What the module did (in check mode, would do), in order.
  returned: always
  type: list
  elements: str
  sample:
    - add role flannel
    - "grant readwrite on keys under '/coreos.com/network/' to role flannel"
    - add user flannel (certificate only)
    - grant role flannel to user flannel
    - enable authentication
enabled:
  description: Whether authentication is on after the module ran.
  returned: always
  type: bool
previously_enabled:
  description: Whether authentication was on before the module ran.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd import (  # noqa: E402
    AuthSpecError,
    EtcdClient,
    EtcdError,
    etcd_connection_spec,
    run_auth,
)
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError  # noqa: E402


def argument_spec():
    permission = {
        'key': {'type': 'str', 'required': True, 'no_log': False},
        'prefix': {'type': 'bool', 'default': False},
        'type': {'type': 'str', 'choices': ['read', 'write', 'readwrite'], 'default': 'readwrite'},
    }
    return dict(etcd_connection_spec(), **{
        'timeout': {'type': 'float', 'default': 10},
        'user': {'type': 'str'},
        'password': {'type': 'str', 'no_log': True},
        'roles': {'type': 'list', 'elements': 'dict', 'default': [], 'options': {
            'name': {'type': 'str', 'required': True},
            'permissions': {'type': 'list', 'elements': 'dict', 'default': [], 'options': permission},
        }},
        'users': {'type': 'list', 'elements': 'dict', 'default': [], 'options': {
            'name': {'type': 'str', 'required': True},
            'roles': {'type': 'list', 'elements': 'str', 'default': []},
        }},
        'enabled': {'type': 'bool'},
    })


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_together=[('client_cert', 'client_key')],
        required_if=[('enabled', True, ('user',))],
        supports_check_mode=True,
    )
    params = module.params
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be greater than 0, got %s' % params['timeout'])
    try:
        client = EtcdClient(params['endpoints'], params['ca_cert'], params['client_cert'], params['client_key'],
                            params['timeout'], params['user'], params['password'])
    except ConfigError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = run_auth(client, params['roles'], params['users'], params['enabled'], params['user'],
                          params['password'], module.check_mode, module._diff)
    except AuthSpecError as exc:
        module.fail_json(msg=str(exc), endpoint=client.endpoint_url)
    except EtcdError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, endpoint=exc.endpoint)
    result['endpoint'] = client.endpoint_url
    module.exit_json(**result)


if __name__ == '__main__':
    main()
