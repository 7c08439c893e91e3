#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kube_apply
short_description: Apply manifest files through kubectl, reporting exactly what changed
description:
  - Compares each file of O(files), in order, with the cluster (C(kubectl diff --server-side)) and
    applies it (C(kubectl apply --server-side)) only when the cluster differs, so a run that
    changes nothing reports no change.
  - After a file whose O(files[].crds) is set, waits until every CustomResourceDefinition in it is
    C(Established), so that the next file can create objects of those kinds.
  - Then waits until every object of O(rollouts) is rolled out (C(kubectl rollout status)); on a
    timeout the error lists the namespace's pods.
  - Runs on a host with C(kubectl) and a kubeconfig, such as a control-plane host. Uses only the
    Python standard library.
author:
  - hardway.kubernetes developers (@hardway)
options:
  kubectl:
    description: Path of the kubectl binary.
    type: path
    default: /usr/local/bin/kubectl
  kubeconfig:
    description: The kubeconfig kubectl uses.
    type: path
    required: true
  files:
    description: Manifest files on the host, applied in this order.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: A YAML file with one or more objects.
        type: path
        required: true
      crds:
        description: Wait until the CustomResourceDefinitions in this file are Established.
        type: bool
        default: false
  rollouts:
    description: Objects to wait for, as C(<namespace>/<kind>/<name>) (for example V(traefik/daemonset/traefik)).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for each CRD set and each rollout.
    type: int
    default: 300
  field_manager:
    description: The field manager of the server-side apply.
    type: str
    default: hardway
attributes:
  check_mode:
    support: full
    description:
      - Compares only; a file kubectl cannot compare (its namespace or kind does not exist yet) counts
        as a change and is named in RV(notes). Waits for nothing.
  diff_mode:
    support: full
    description: The output of C(kubectl diff) for each file that differs (Secret values masked by kubectl).
"""

EXAMPLES = r"""
- name: Apply the CRDs, then the controller, and wait for it
  hardway.kubernetes.kube_apply:
    kubeconfig: /etc/kubernetes/admin-local.kubeconfig
    files:
      - {path: /etc/kubernetes/addons/crds/standard-install.yaml, crds: true}
      - path: /etc/kubernetes/addons/ingress/traefik.yaml
    rollouts: [traefik/daemonset/traefik]
"""

RETURN = r"""
applied:
  description: The files that were applied (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/kubernetes/addons/ingress/traefik.yaml]
notes:
  description: In check mode, the files kubectl could not compare and why.
  returned: always
  type: list
  elements: str
"""

import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.kube_apply import (  # noqa: E402
    ApplyError,
    Kubectl,
    converge,
)


def argument_spec():
    return dict(
        kubectl=dict(type='path', default='/usr/local/bin/kubectl'),
        kubeconfig=dict(type='path', required=True),
        files=dict(type='list', elements='dict', required=True, options=dict(
            path=dict(type='path', required=True),
            crds=dict(type='bool', default=False),
        )),
        rollouts=dict(type='list', elements='str', default=[]),
        timeout=dict(type='int', default=300),
        field_manager=dict(type='str', default='hardway'),
    )


def _run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    kubectl = Kubectl(p['kubectl'], p['kubeconfig'], _run, p['field_manager'])
    try:
        result = converge(kubectl, p['files'], p['rollouts'], p['timeout'], module.check_mode)
    except ApplyError as exc:
        module.fail_json(msg=str(exc))
    out = {'changed': result['changed'], 'applied': result['applied'], 'notes': result['notes']}
    if module._diff and result['diffs']:
        out['diff'] = [{'before_header': d['path'], 'after_header': d['path'], 'prepared': d['diff']}
                       for d in result['diffs']]
    module.exit_json(**out)


if __name__ == '__main__':
    main()
