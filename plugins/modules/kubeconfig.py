#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kubeconfig
short_description: Write kubeconfigs with embedded certificates
description:
  - Writes the standard single-cluster, single-user kubeconfig (C(apiVersion) V(v1), C(kind) V(Config),
    one cluster, one user, one context that is the current context) with the authority
    certificate, client certificate and client key embedded as base64 data.
  - Writes one file (O(path) and the options next to it), or many in one task (O(kubeconfigs), where
    the top-level O(ca_file), O(cluster_name), O(context) and O(mode) are defaults for each file).
    In a batch every file is planned first, each certificate or key file read once however many
    kubeconfigs embed it, and an error in any item fails the task before a file is written.
  - An existing file is parsed and compared semantically, so formatting and key order do not
    matter; it is rewritten (atomically) only when its content differs. A file with the right
    content but the wrong mode only gets its mode fixed.
  - Runs where the certificate files are, normally the controller.
author:
  - hardway.kubernetes developers (@hardway)
requirements:
  - PyYAML (ships with ansible-core) to read and write YAML
options:
  path:
    description:
      - The kubeconfig file to write.
      - Requires O(server), O(ca_file), O(client_cert_file), O(client_key_file) and O(user).
      - Exactly one of O(path) and O(kubeconfigs) is required.
    type: path
  kubeconfigs:
    description:
      - Many kubeconfig files to write in one task, instead of O(path).
      - The top-level O(ca_file), O(cluster_name), O(context) and O(mode) apply to every item
        that does not set its own.
      - Two items cannot have the same O(kubeconfigs[].path).
    type: list
    elements: dict
    suboptions:
      path:
        description: The kubeconfig file to write.
        type: path
        required: true
      server:
        description: URL of the API server, for example V(https://10.0.0.10:6443).
        type: str
        required: true
      user:
        description: Name of the user entry.
        type: str
        required: true
      client_cert_file:
        description: PEM file with the client certificate.
        type: path
        required: true
      client_key_file:
        description:
          - PEM file with the client certificate's private key.
          - Its content never appears in output or diffs.
        type: path
        required: true
      ca_file:
        description:
          - PEM file with the certificate authority, for this file.
          - Defaults to the top-level O(ca_file); one of the two is required.
        type: path
      cluster_name:
        description: Name of the cluster entry, for this file. Defaults to the top-level O(cluster_name).
        type: str
      context:
        description: Name of the context, for this file. Defaults to the top-level O(context).
        type: str
      mode:
        description: Permission bits of this file, as an octal string. Defaults to the top-level O(mode).
        type: raw
  cluster_name:
    description:
      - Name of the cluster entry.
      - With O(kubeconfigs), the default for each item.
    type: str
    default: kubernetes
  server:
    description:
      - URL of the API server, for example V(https://10.0.0.10:6443).
      - Required with O(path); with O(kubeconfigs) each item has its own, and this option cannot be given.
    type: str
  ca_file:
    description:
      - PEM file with the certificate authority that signed the API server's certificate.
      - Required with O(path); with O(kubeconfigs), the default for each item.
    type: path
  client_cert_file:
    description:
      - PEM file with the client certificate.
      - Required with O(path); with O(kubeconfigs) each item has its own, and this option cannot be given.
    type: path
  client_key_file:
    description:
      - PEM file with the client certificate's private key.
      - Its content never appears in output or diffs.
      - Required with O(path); with O(kubeconfigs) each item has its own, and this option cannot be given.
    type: path
  user:
    description:
      - Name of the user entry, for example V(admin) or V(system:node:worker-0).
      - Required with O(path); with O(kubeconfigs) each item has its own, and this option cannot be given.
    type: str
  context:
    description:
      - Name of the context, which is also the current context.
      - With O(kubeconfigs), the default for each item.
    type: str
    default: default
  mode:
    description:
      - Permission bits of the file, as an octal string.
      - With O(kubeconfigs), the default for each item.
    type: raw
    default: "0600"
attributes:
  check_mode:
    support: full
    description: Reports whether the files would change without writing them.
  diff_mode:
    support: full
    description:
      - Before and after YAML, with key data redacted and certificate data shown as size and hash.
      - With O(kubeconfigs), one such diff per file that changes.
seealso:
  - module: hardway.kubernetes.pki
"""

EXAMPLES = r"""
- name: Admin kubeconfig
  hardway.kubernetes.kubeconfig:
    path: "{{ playbook_dir }}/admin.kubeconfig"
    server: https://10.0.0.10:6443
    ca_file: "{{ playbook_dir }}/pki/ca.pem"
    client_cert_file: "{{ playbook_dir }}/pki/admin.pem"
    client_key_file: "{{ playbook_dir }}/pki/admin-key.pem"
    user: admin
  delegate_to: localhost

- name: Kubelet kubeconfig for a node
  hardway.kubernetes.kubeconfig:
    path: "{{ pki_dir }}/{{ inventory_hostname }}.kubeconfig"
    server: "https://{{ api_address }}:6443"
    ca_file: "{{ pki_dir }}/ca.pem"
    client_cert_file: "{{ pki_dir }}/kubelet-{{ inventory_hostname }}.pem"
    client_key_file: "{{ pki_dir }}/kubelet-{{ inventory_hostname }}-key.pem"
    user: "system:node:{{ inventory_hostname }}"
  delegate_to: localhost

- name: Every kubeconfig of the cluster in one task
  hardway.kubernetes.kubeconfig:
    ca_file: "{{ pki_dir }}/ca.pem"
    cluster_name: lab
    kubeconfigs:
      - path: "{{ pki_dir }}/admin.kubeconfig"
        server: https://10.0.0.10:6443
        client_cert_file: "{{ pki_dir }}/admin.pem"
        client_key_file: "{{ pki_dir }}/admin-key.pem"
        user: admin
      - path: "{{ pki_dir }}/kube-scheduler.kubeconfig"
        server: https://127.0.0.1:6443
        client_cert_file: "{{ pki_dir }}/kube-scheduler.pem"
        client_key_file: "{{ pki_dir }}/kube-scheduler-key.pem"
        user: system:kube-scheduler
        mode: "0640"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: The kubeconfig file.
  returned: when O(path) is given
  type: str
  sample: /srv/cluster/admin.kubeconfig
kubeconfigs:
  description: Outcome per file of O(kubeconfigs), by O(kubeconfigs[].path).
  returned: when O(kubeconfigs) is given
  type: dict
  sample:
    /srv/cluster/admin.kubeconfig:
      changed: true
    /srv/cluster/kube-scheduler.kubeconfig:
      changed: false
  contains:
    changed:
      description: Whether the file changed, in content or mode (or would change, in check mode).
      type: bool
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils import kubeconfig as kc  # noqa: E402
from ansible_collections.hardway.kubernetes.plugins.module_utils.files import (  # noqa: E402
    file_mode,
    parse_mode,
    write_atomic,
)

# Options of one file: the single-file options, and the suboptions of kubeconfigs.
FILE_OPTIONS = ('path', 'server', 'user', 'client_cert_file', 'client_key_file', 'ca_file', 'cluster_name',
                'context', 'mode')
DEFAULTED = ('ca_file', 'cluster_name', 'context', 'mode')


def argument_spec():
    return {
        'path': {'type': 'path'},
        'kubeconfigs': {
            'type': 'list', 'elements': 'dict',
            'options': {
                'path': {'type': 'path', 'required': True},
                'server': {'type': 'str', 'required': True},
                'user': {'type': 'str', 'required': True},
                'client_cert_file': {'type': 'path', 'required': True},
                'client_key_file': {'type': 'path', 'required': True},
                'ca_file': {'type': 'path'},
                'cluster_name': {'type': 'str'},
                'context': {'type': 'str'},
                'mode': {'type': 'raw'},
            },
        },
        'cluster_name': {'type': 'str', 'default': 'kubernetes'},
        'server': {'type': 'str'},
        'ca_file': {'type': 'path'},
        'client_cert_file': {'type': 'path'},
        'client_key_file': {'type': 'path'},
        'user': {'type': 'str'},
        'context': {'type': 'str', 'default': 'default'},
        'mode': {'type': 'raw', 'default': '0600'},
    }


class InputError(Exception):
    pass


class PemReader:
    """Reads certificate and key files, each once however many kubeconfigs embed it."""

    def __init__(self):
        self._cache = {}

    def read(self, spec, option, what):
        path = spec[option]
        if path not in self._cache:
            try:
                with open(path, 'rb') as handle:
                    self._cache[path] = (handle.read(), None)
            except FileNotFoundError:
                self._cache[path] = (None, '%s does not exist' % path)
            except OSError as exc:
                self._cache[path] = (None, 'cannot read %s: %s' % (path, exc.strerror or exc))
        data, error = self._cache[path]
        if error:
            raise InputError('%s: %s' % (option, error))
        if b'-----BEGIN' not in data or what not in data:
            raise InputError('%s: %s does not contain a PEM %s' % (option, path, what.decode().lower()))
        return data


def plan(module, spec, pems):
    """Compare one kubeconfig file with what it should be; raises InputError for bad options.

    Returns ``{path, mode, desired, changed, content_changed, current_mode, diff}``
    (``diff`` only in diff mode when the file changes).
    """
    path = spec['path']
    try:
        mode = parse_mode(spec['mode'])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    server = spec['server']
    if not server.startswith('https://') or len(server) <= len('https://'):
        raise InputError('server must be an https:// URL, got %r' % server)
    for option in ('cluster_name', 'user', 'context'):
        if not spec[option]:
            raise InputError('%s must not be empty' % option)

    ca_data = pems.read(spec, 'ca_file', b'CERTIFICATE')
    cert_data = pems.read(spec, 'client_cert_file', b'CERTIFICATE')
    key_data = pems.read(spec, 'client_key_file', b'PRIVATE KEY')
    desired = kc.build(spec['cluster_name'], server, ca_data, spec['user'], cert_data, key_data,
                       spec['context'])
    for secret in kc.secrets_in(desired):
        module.no_log_values.add(secret)

    existing = None
    if os.path.isdir(path):
        raise InputError('path: %s is a directory' % path)
    if os.path.exists(path):
        try:
            with open(path, 'rb') as handle:
                existing = kc.parse(handle.read())
        except (OSError, kc.KubeconfigError):
            existing = None  # unreadable or not a kubeconfig: it is replaced
        if existing is not None:
            for secret in kc.secrets_in(existing if isinstance(existing, dict) else None):
                module.no_log_values.add(secret)
    current_mode = file_mode(path)

    content_changed = existing is None or not kc.same(existing, desired)
    mode_changed = current_mode is not None and current_mode != mode
    changed = content_changed or mode_changed
    result = {'path': path, 'mode': mode, 'desired': desired, 'changed': changed,
              'content_changed': content_changed, 'diff': None}

    if changed and module._diff:
        before = ''
        if current_mode is not None:
            before = kc.dump(kc.redact(existing, desired)) if isinstance(existing, dict) else \
                '# unreadable or not a kubeconfig\n'
        after = kc.dump(kc.redact(desired, existing if isinstance(existing, dict) else None))
        if mode_changed and not content_changed:
            before, after = '# mode %04o\n' % current_mode, '# mode %04o\n' % mode
        result['diff'] = {
            'before': before, 'after': after,
            'before_header': '%s (mode %s)'
                             % (path, '%04o' % current_mode if current_mode is not None else 'absent'),
            'after_header': '%s (mode %04o)' % (path, mode),
        }
    return result


def apply(plan_result):
    """Write (or chmod) one planned file; raises InputError naming the file."""
    path = plan_result['path']
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError('path: directory %s does not exist' % directory)
    try:
        if plan_result['content_changed']:
            write_atomic(path, kc.dump(plan_result['desired']).encode('utf-8'), plan_result['mode'])
        else:
            os.chmod(path, plan_result['mode'])
    except OSError as exc:
        raise InputError('path: cannot write %s: %s' % (path, exc.strerror or exc)) from None


def batch_specs(params):
    """One spec per item of kubeconfigs, the top-level options filling in what an item leaves out."""
    specs = []
    seen = {}
    for index, item in enumerate(params['kubeconfigs']):
        spec = dict(item)
        for option in DEFAULTED:
            if spec.get(option) is None:
                spec[option] = params[option]
        label = 'kubeconfigs[%d] (%s)' % (index, spec['path'])
        if not spec['ca_file']:
            raise InputError('%s: ca_file is required, in the item or at the top level' % label)
        path = os.path.normpath(os.path.abspath(spec['path']))
        if path in seen:
            raise InputError('%s: path is also the path of kubeconfigs[%d]' % (label, seen[path]))
        seen[path] = index
        specs.append((label, spec))
    return specs


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        # With kubeconfigs, these are per item.
        mutually_exclusive=[('path', 'kubeconfigs'), ('server', 'kubeconfigs'), ('user', 'kubeconfigs'),
                            ('client_cert_file', 'kubeconfigs'), ('client_key_file', 'kubeconfigs')],
        required_one_of=[('path', 'kubeconfigs')],
        required_by={'path': ('server', 'ca_file', 'client_cert_file', 'client_key_file', 'user')},
    )
    params = module.params
    pems = PemReader()

    if params['kubeconfigs'] is None:
        spec = {option: params[option] for option in FILE_OPTIONS}
        try:
            planned = plan(module, spec, pems)
        except InputError as exc:
            module.fail_json(msg=str(exc))
        result = {'changed': planned['changed'], 'path': spec['path']}
        if planned['diff']:
            result['diff'] = planned['diff']
        if planned['changed'] and not module.check_mode:
            try:
                apply(planned)
            except InputError as exc:
                module.fail_json(msg=str(exc))
        module.exit_json(**result)

    # Batch: plan every file (and fail on any bad item) before writing one.
    planned = []
    try:
        specs = batch_specs(params)
    except InputError as exc:
        module.fail_json(msg=str(exc))
    for label, spec in specs:
        try:
            planned.append((label, plan(module, spec, pems)))
        except InputError as exc:
            module.fail_json(msg='%s: %s' % (label, exc))
    done = {}
    for label, item in planned:
        if item['changed'] and not module.check_mode:
            try:
                apply(item)
            except InputError as exc:
                module.fail_json(msg='%s: %s' % (label, exc), changed=any(done.values()),
                                 kubeconfigs={path: {'changed': changed} for path, changed in done.items()})
        done[item['path']] = item['changed']
    result = {'changed': any(done.values()),
              'kubeconfigs': {path: {'changed': changed} for path, changed in done.items()}}
    diffs = [item['diff'] for label, item in planned if item['diff']]
    if diffs:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
