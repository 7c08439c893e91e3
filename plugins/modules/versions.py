#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: versions
short_description: Read the versions of the cluster's binaries on a host, and what the API server reports
description:
  - Runs each binary of O(names) found in O(bin_dir) with its version flag and returns the first
    C(X.Y.Z) it prints. A binary that is not installed is left out (the host does not run it).
  - With O(kubeconfig), also asks the API server, through kubectl, for its own version and for the
    kubelet version of every registered node, as the running kubelets report it.
  - Reads only; never reports a change. The upgrade playbook checks the version-skew rules on
    what it returns before any change.
  - Uses only the Python standard library.
author:
  - hardway.kubernetes developers (@hardway)
options:
  bin_dir:
    description: Directory of the binaries.
    type: path
    default: /usr/local/bin
  names:
    description:
      - Binaries to read. Known ones are kube-apiserver, kube-controller-manager, kube-scheduler,
        kubelet, kube-proxy, kubectl, etcd, containerd, runc, flanneld, crictl and coredns.
    type: list
    elements: str
    default: [kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, etcd, containerd, runc,
              flanneld]
  services:
    description:
      - Units whose main process is checked for a binary replaced on disk since it started (a
        service that an interrupted upgrade did not restart yet).
    type: list
    elements: str
    default: []
  kubeconfig:
    description:
      - A kubeconfig with which kubectl (from O(bin_dir)) reaches the API server. Not given, the API
        is not asked.
    type: path
  cordon_annotation:
    description:
      - With O(kubeconfig), the nodes carrying this annotation are listed in RV(api.marked).
    type: str
attributes:
  check_mode:
    support: full
    description: Reads only, the same in check mode.
  diff_mode:
    support: none
    description: It reads only; RV(binaries) says what it found.
  platform:
    support: full
    platforms: posix
    description: Any host with Python 3.
notes:
  - An API server that does not answer is not an error; RV(api.problem) says what happened.
"""

EXAMPLES = r"""
- name: Read what this control-plane host runs, and what the API says of the nodes
  hardway.kubernetes.versions:
    kubeconfig: /etc/kubernetes/admin-local.kubeconfig
  register: running
"""

RETURN = r"""
binaries:
  description: Version of each installed binary of O(names), by name.
  returned: always
  type: dict
  sample: {kubelet: 1.36.5, kube-proxy: 1.36.5, containerd: 2.3.7}
stale:
  description: Units of O(services) still running a binary replaced since they started.
  returned: always
  type: list
  elements: str
  sample: [kubelet]
problems:
  description: Installed binaries whose version could not be read, with why.
  returned: always
  type: dict
  sample: {}
api:
  description: What the API server reported (with O(kubeconfig)).
  returned: when O(kubeconfig) is given
  type: dict
  contains:
    server:
      description: The API server's version, or null when it did not answer.
      type: str
      sample: 1.36.5
    nodes:
      description: Kubelet version of every registered node, by node name.
      type: dict
      sample: {w1: 1.36.5}
    marked:
      description: Nodes that carry O(cordon_annotation).
      type: list
      elements: str
    problem:
      description: Why the API's answer is missing or partial; null when complete.
      type: str
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.versions import (  # noqa: E402
    api_versions,
    binary_versions,
    stale_units,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bin_dir=dict(type='path', default='/usr/local/bin'),
            names=dict(type='list', elements='str',
                       default=['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet',
                                'kube-proxy', 'etcd', 'containerd', 'runc', 'flanneld']),
            services=dict(type='list', elements='str', default=[]),
            kubeconfig=dict(type='path'),
            cordon_annotation=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def run(argv):
        return module.run_command(argv, environ_update={'LC_ALL': 'C'})

    binaries, problems = binary_versions(params['bin_dir'], params['names'], run)
    result = {'changed': False, 'binaries': binaries, 'problems': problems,
              'stale': stale_units(params['services'], run)}
    if params['kubeconfig']:
        result['api'] = api_versions(os.path.join(params['bin_dir'], 'kubectl'), params['kubeconfig'], run,
                                     params['cordon_annotation'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
