#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight
short_description: Check every input of the collection's roles before any host changes
description:
  - Runs on the controller only (an action plugin); it reads variables and facts and changes nothing.
  - With O(scope=host), on every host, it takes each option of the cluster role and of every role in
    O(roles) as the host sees it (inventory, extra vars, or the role's default rendered for that host)
    and checks it against the role's C(meta/argument_specs.yml) (type, elements, suboptions, choices)
    and against O(rules) (ranges, formats such as addresses, networks, DNS names, paths, image
    references, flag names). It also checks the rules that tie the host's values together (its
    address is one of its own, swap and kubelet agree, the flannel network matches the pod network,
    the daemons' ports differ, certificate lifetimes) and the host's operating system. It never
    fails; it returns the problems it found.
  - With O(scope=cluster), once, it collects what every host returned (O(result_var)) and adds the
    rules across hosts and groups (groups present, an odd etcd size, networks that overlap each
    other or the hosts' networks, unique node names and addresses, room for every node's pod subnet,
    cluster-wide settings equal on every host, known version pins, every host reachable and in the
    run). It fails with every problem at once, each naming the variable, the value, the rule and,
    for host variables, the host.
author:
  - hardway.kubernetes developers (@hardway)
options:
  scope:
    description: Which half of the check to run.
    type: str
    choices: [host, cluster]
    default: host
  roles:
    description: Roles of this collection whose options are checked besides the cluster role's (O(scope=host)).
    type: list
    elements: str
    default: []
  rules:
    description:
      - What the argument specs cannot say, by option name (see C(roles/preflight/vars/main/rules.yml)).
      - Keys C(min), C(max), C(why), C(format), C(empty), C(nonempty), C(keys), C(key_format),
        C(value_format), C(element_format), C(element_keys); the key C(_cluster_wide) lists options that
        must be equal on every host besides the C(cluster_*) ones.
    type: dict
    default: {}
  config_fields:
    description:
      - Configuration type -> the names of its top-level fields, for the rules that say C(fields) (a dict
        option may set only those), such as C(KubeletConfiguration) for C(kubelet_config_overrides).
    type: dict
    default: {}
  removed:
    description: Variables the collection no longer reads -> what replaces them; a host that sets one is a problem.
    type: dict
    default: {}
  supported_os:
    description: Distributions and major versions the roles support (O(scope=host)); empty to skip the check.
    type: dict
    default: {}
  result_var:
    description: The variable the host half was registered in (O(scope=cluster)).
    type: str
    default: _preflight_host
attributes:
  check_mode:
    support: full
    description: It only reads, in check mode as in a normal run.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  action:
    support: full
    description: Runs on the controller as an action plugin.
"""

EXAMPLES = r"""
- name: Check this host's inputs
  hardway.kubernetes.preflight:
    scope: host
    roles: [etcd, kubelet]
    rules: "{{ _preflight_rules }}"
  register: _preflight_host

- name: Report every problem of every host and of the inventory
  hardway.kubernetes.preflight:
    scope: cluster
    rules: "{{ _preflight_rules }}"
  run_once: true
"""

RETURN = r"""
problems:
  description: With O(scope=host), [variable, value, rule, host] lists; with O(scope=cluster), message lines.
  returned: always
  type: list
  elements: raw
values:
  description: The host's checked values that the cross-host rules read (O(scope=host)).
  returned: when scope is host
  type: dict
network:
  description: The network of the host's default route, in CIDR form, or an empty string (O(scope=host)).
  returned: when scope is host
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={
        'scope': {'type': 'str', 'choices': ['host', 'cluster'], 'default': 'host'},
        'roles': {'type': 'list', 'elements': 'str', 'default': []},
        'rules': {'type': 'dict', 'default': {}},
        'config_fields': {'type': 'dict', 'default': {}},
        'removed': {'type': 'dict', 'default': {}},
        'supported_os': {'type': 'dict', 'default': {}},
        'result_var': {'type': 'str', 'default': '_preflight_host'},
    }, supports_check_mode=True)
    module.fail_json(msg='hardway.kubernetes.preflight runs on the controller as an action plugin; '
                         'it has no part that runs on a host')


if __name__ == '__main__':
    main()
