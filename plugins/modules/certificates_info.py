#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: certificates_info
short_description: List every certificate on a host with its expiry and days left
description:
  - Finds every certificate in the C(*.pem) files and in the kubeconfigs (C(*.kubeconfig), or a file
    named C(kubeconfig)) under O(paths). A bundle counts each of its certificates, a kubeconfig its
    authority and client certificate. Private keys are never read.
  - Returns, for each, where it is, its subject and issuer, its serial number, when it expires and
    how many whole days are left.
  - Reads only; never reports a change. Uses only the Python standard library.
author:
  - hardway.kubernetes developers (@hardway)
options:
  paths:
    description: Directories (searched recursively) and files to look at.
    type: list
    elements: path
    default: [/etc/kubernetes]
attributes:
  check_mode:
    support: full
    description: Reads only, the same in check mode.
  diff_mode:
    support: none
    description: It reads only; RV(certificates) says what it found.
  platform:
    support: full
    platforms: posix
    description: Any host with Python 3.
"""

EXAMPLES = r"""
- name: List the host's certificates
  hardway.kubernetes.certificates_info:
    paths: [/etc/kubernetes]
  register: found
"""

RETURN = r"""
certificates:
  description: Every certificate found, sorted by where it is.
  returned: always
  type: list
  elements: dict
  sample:
    - source: /etc/kubernetes/pki/kube-apiserver.pem
      subject: CN=kubernetes
      issuer: CN=kubernetes-ca
      serial: 6AC68AD831A59F0F67E9B410D2AB85CBFB0FD835
      not_after: "2027-11-30T21:20:33Z"
      days_left: 364
  contains:
    source:
      description: The file; for a kubeconfig also the field (C(path:client-certificate-data)); C(#N) for the
        N-th certificate of a bundle (from 0; the first has no suffix).
      type: str
    subject:
      description: The subject, as C(CN=...,O=...).
      type: str
    issuer:
      description: The issuer, as C(CN=...).
      type: str
    serial:
      description: The serial number, in hexadecimal.
      type: str
    not_after:
      description: When it expires (UTC, ISO 8601).
      type: str
    days_left:
      description: Whole days until it expires (negative once expired).
      type: int
problems:
  description: Files that could not be read, with why.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.certinfo import collect  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(paths=dict(type='list', elements='path', default=['/etc/kubernetes'])),
        supports_check_mode=True,
    )
    certificates, problems = collect(module.params['paths'])
    module.exit_json(changed=False, certificates=certificates, problems=problems)


if __name__ == '__main__':
    main()
