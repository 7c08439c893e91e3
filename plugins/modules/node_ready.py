#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_ready
short_description: Wait until Kubernetes nodes are registered and Ready
description:
  - Polls C(GET /api/v1/nodes) on the API server until every node in O(names) is registered and
    has the condition C(Ready=True), and at least O(min_count) nodes are Ready.
  - On timeout it fails with a per-node diagnosis (the conditions that are not OK, with reason and
    message), the named nodes that never registered, and the last error talking to the API server.
    Authentication errors and an unreachable API server are retried until the timeout.
  - Connects with client certificates, given either as files (O(api_server), O(ca_cert),
    O(client_cert), O(client_key)) or through a kubeconfig (O(kubeconfig)). Uses only the Python
    standard library, plus PyYAML to read a kubeconfig written in YAML.
  - Never reports a change.
author:
  - hardway.kubernetes developers (@hardway)
options:
  api_server:
    description:
      - URL of the API server, for example V(https://10.0.0.10:6443).
      - Exactly one of O(api_server) and O(kubeconfig) is required.
    type: str
  ca_cert:
    description: PEM file with the CA that signed the API server certificate (with O(api_server)).
    type: path
  client_cert:
    description: PEM file with the client certificate (with O(api_server)).
    type: path
  client_key:
    description: PEM file with the client certificate's key (with O(api_server)).
    type: path
  kubeconfig:
    description:
      - A kubeconfig file; the server, authority and client certificate of its current context
        are used, as embedded data or as file paths (relative paths are relative to the file).
    type: path
  names:
    description: Nodes that must be registered and Ready.
    type: list
    elements: str
    default: []
  min_count:
    description:
      - How many nodes (named or not) must be Ready at least.
      - With neither O(names) nor O(min_count), the module only checks that the node list can be read.
    type: int
    default: 0
  timeout:
    description: Seconds to wait in total.
    type: int
    default: 300
  interval:
    description: Seconds between two polls.
    type: float
    default: 2
attributes:
  check_mode:
    support: full
    description: Checks once and reports, without waiting, and without failing when nodes are not Ready.
  diff_mode:
    support: none
    description: The module never changes anything, so there is nothing to show.
"""

EXAMPLES = r"""
- name: Wait for every worker
  hardway.kubernetes.node_ready:
    kubeconfig: "{{ playbook_dir }}/admin.kubeconfig"
    names: "{{ groups['workers'] }}"
    timeout: 300
  delegate_to: localhost
  run_once: true

- name: Wait until at least three nodes are Ready
  hardway.kubernetes.node_ready:
    api_server: https://10.0.0.10:6443
    ca_cert: /srv/pki/ca.pem
    client_cert: /srv/pki/admin.pem
    client_key: /srv/pki/admin-key.pem
    min_count: 3
"""

RETURN = r"""
nodes:
  description:
    - Every node the API server listed in the last successful poll, with whether it is Ready and
      the conditions that are not OK (C(Ready) not C(True); C(MemoryPressure), C(DiskPressure),
      C(PIDPressure) or C(NetworkUnavailable) not C(False)).
  returned: always
  type: dict
  sample:
    worker-0:
      ready: false
      conditions:
        - type: Ready
          status: "False"
          reason: KubeletNotReady
          message: "container runtime network not ready: cni plugin not initialized"
ready:
  description: Names of the Ready nodes.
  returned: always
  type: list
  elements: str
  sample: [worker-1, worker-2]
missing:
  description: Nodes of O(names) that are not registered.
  returned: always
  type: list
  elements: str
  sample: [worker-3]
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 12.5
last_error:
  description: The last error talking to the API server, or null when the last poll succeeded.
  returned: always
  type: str
"""

import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.kubeconfig import (  # noqa: E402
    KubeconfigError,
    connection_from_kubeconfig,
)
from ansible_collections.hardway.kubernetes.plugins.module_utils.nodes import ApiClient, wait  # noqa: E402
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import ConfigError  # noqa: E402


def argument_spec():
    return {
        'api_server': {'type': 'str'},
        'ca_cert': {'type': 'path'},
        'client_cert': {'type': 'path'},
        'client_key': {'type': 'path', 'no_log': False},
        'kubeconfig': {'type': 'path'},
        'names': {'type': 'list', 'elements': 'str', 'default': []},
        'min_count': {'type': 'int', 'default': 0},
        'timeout': {'type': 'int', 'default': 300},
        'interval': {'type': 'float', 'default': 2},
    }


def make_client(module, request_timeout):
    params = module.params
    if params['kubeconfig']:
        for option in ('ca_cert', 'client_cert', 'client_key'):
            if params[option]:
                module.fail_json(msg='%s cannot be combined with kubeconfig' % option)
        try:
            conn = connection_from_kubeconfig(params['kubeconfig'])
        except KubeconfigError as exc:
            module.fail_json(msg='kubeconfig: %s' % exc)
        names = ('kubeconfig certificate-authority', 'kubeconfig client-certificate', 'kubeconfig client-key')
        try:
            return ApiClient(conn['server'], conn['ca_file'], conn['cert_file'], conn['key_file'],
                             conn['ca_data'], conn['cert_data'], conn['key_data'], conn['insecure'],
                             conn['token'], request_timeout, names, server_option='kubeconfig server')
        except ConfigError as exc:
            module.fail_json(msg='kubeconfig %s: %s' % (params['kubeconfig'], exc))
    try:
        return ApiClient(params['api_server'], params['ca_cert'], params['client_cert'], params['client_key'],
                         timeout=request_timeout)
    except ConfigError as exc:
        module.fail_json(msg=str(exc))


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_one_of=[('api_server', 'kubeconfig')],
        mutually_exclusive=[('api_server', 'kubeconfig')],
        required_together=[('client_cert', 'client_key')],
        supports_check_mode=True,
    )
    params = module.params
    if params['timeout'] < 0:
        module.fail_json(msg='timeout must not be negative, got %d' % params['timeout'])
    if params['interval'] <= 0:
        module.fail_json(msg='interval must be greater than 0, got %s' % params['interval'])
    if params['min_count'] < 0:
        module.fail_json(msg='min_count must not be negative, got %d' % params['min_count'])
    names = list(dict.fromkeys(n for n in params['names'] if n))

    request_timeout = float(min(10, max(1, params['timeout'])))
    client = make_client(module, request_timeout)
    start = time.monotonic()

    def fetch():
        remaining = params['timeout'] - (time.monotonic() - start)
        return client.nodes(timeout=max(1.0, min(request_timeout, remaining)))

    state = wait(fetch, names, params['min_count'], params['timeout'], params['interval'],
                 once=module.check_mode)
    result = {
        'changed': False,
        'nodes': state['nodes'],
        'ready': state['ready'],
        'missing': state['missing'],
        'elapsed': state['elapsed'],
        'last_error': state['last_error'],
    }
    if state['done']:
        module.exit_json(msg=state['message'], **result)
    if module.check_mode:
        module.warn(state['message'])
        module.exit_json(msg=state['message'], **result)
    module.fail_json(msg=state['message'], **result)


if __name__ == '__main__':
    main()
