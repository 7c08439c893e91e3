#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kubeconfig
short_description: Write a kubeconfig with embedded certificates
description:
  - Writes the standard single-cluster, single-user kubeconfig (C(apiVersion) V(v1), C(kind) V(Config),
    one cluster, one user, one context that is the current context) with the authority
    certificate, client certificate and client key embedded as base64 data.
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
    description: The kubeconfig file to write.
    type: path
    required: true
  cluster_name:
    description: Name of the cluster entry.
    type: str
    default: kubernetes
  server:
    description: URL of the API server, for example V(https://10.0.0.10:6443).
    type: str
    required: true
  ca_file:
    description: PEM file with the certificate authority that signed the API server's certificate.
    type: path
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
  user:
    description: Name of the user entry, for example V(admin) or V(system:node:worker-0).
    type: str
    required: true
  context:
    description: Name of the context, which is also the current context.
    type: str
    default: default
  mode:
    description: Permission bits of the file, as an octal string.
    type: raw
    default: "0600"
attributes:
  check_mode:
    support: full
    description: Reports whether the file would change without writing it.
  diff_mode:
    support: full
    description: Before and after YAML, with key data redacted and certificate data shown as size and hash.
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
"""

RETURN = r"""
path:
  description: The kubeconfig file.
  returned: always
  type: str
  sample: /srv/cluster/admin.kubeconfig
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils import kubeconfig as kc  # noqa: E402
from ansible_collections.hardway.kubernetes.plugins.module_utils.files import (  # noqa: E402
    file_mode,
    parse_mode,
    write_atomic,
)


def argument_spec():
    return {
        'path': {'type': 'path', 'required': True},
        'cluster_name': {'type': 'str', 'default': 'kubernetes'},
        'server': {'type': 'str', 'required': True},
        'ca_file': {'type': 'path', 'required': True},
        'client_cert_file': {'type': 'path', 'required': True},
        'client_key_file': {'type': 'path', 'required': True},
        'user': {'type': 'str', 'required': True},
        'context': {'type': 'str', 'default': 'default'},
        'mode': {'type': 'raw', 'default': '0600'},
    }


def read_pem(module, option, what):
    path = module.params[option]
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except FileNotFoundError:
        module.fail_json(msg='%s: %s does not exist' % (option, path))
    except OSError as exc:
        module.fail_json(msg='%s: cannot read %s: %s' % (option, path, exc.strerror or exc))
    if b'-----BEGIN' not in data or what not in data:
        module.fail_json(msg='%s: %s does not contain a PEM %s' % (option, path, what.decode().lower()))
    return data


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    path = params['path']
    try:
        mode = parse_mode(params['mode'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    server = params['server']
    if not server.startswith('https://') or len(server) <= len('https://'):
        module.fail_json(msg='server must be an https:// URL, got %r' % server)
    for option in ('cluster_name', 'user', 'context'):
        if not params[option]:
            module.fail_json(msg='%s must not be empty' % option)

    ca_data = read_pem(module, 'ca_file', b'CERTIFICATE')
    cert_data = read_pem(module, 'client_cert_file', b'CERTIFICATE')
    key_data = read_pem(module, 'client_key_file', b'PRIVATE KEY')
    desired = kc.build(params['cluster_name'], server, ca_data, params['user'], cert_data, key_data,
                       params['context'])
    for secret in kc.secrets_in(desired):
        module.no_log_values.add(secret)

    existing = None
    if os.path.isdir(path):
        module.fail_json(msg='path: %s is a directory' % path)
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
    result = {'changed': changed, 'path': path}

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

    if changed and not module.check_mode:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            module.fail_json(msg='path: directory %s does not exist' % directory)
        try:
            if content_changed:
                write_atomic(path, kc.dump(desired).encode('utf-8'), mode)
            else:
                os.chmod(path, mode)
        except OSError as exc:
            module.fail_json(msg='path: cannot write %s: %s' % (path, exc.strerror or exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
