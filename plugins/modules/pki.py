#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pki
short_description: Keep a directory of certificate authorities, certificates and key pairs up to date
description:
  - Maintains every certificate authority, certificate and bare key pair a cluster needs in one
    directory, in one call, on the machine the module runs on (normally the controller, delegated
    to V(localhost) and run once).
  - Each authority is written as C(<name>.pem) and C(<name>-key.pem); each certificate as
    C(<name>.pem) and C(<name>-key.pem); each key pair as C(<name>-key.pem) and C(<name>.pub)
    (PEM SubjectPublicKeyInfo, as used for service account token signing).
  - Each authority also gets C(<name>-bundle.pem), the CA certificates to trust, that is the current
    one, plus during a rotation (O(rotation)) the staged or the previous one. Hosts are given the bundle,
    never the CA alone, so that a rotation only changes its content.
  - Private keys are written with mode C(0600) and certificates with C(0644), each atomically
    (temporary file and rename). The directory is created with mode C(0700) when missing.
  - A certificate is created when missing and re-issued, with a reason, when its certificate or
    key is missing or unreadable, its key is of another type or size, its key does not match it,
    its common name, organizations, subject alternative names (compared as sets, IP addresses
    normalised) or usage differ from the request, it is not signed by the current authority, or it
    expires within O(renew_before_days). The existing key is kept when it is readable and of the
    requested type and size.
  - An existing authority is never replaced unless O(regenerate_authorities=true). Without it a
    broken authority (unreadable files, a key that does not match) makes the module fail, and an
    authority that differs from the request (common name, key type, close to expiry) only causes a
    warning. When an authority is created or replaced, every certificate it signs is re-issued.
  - When nothing needs to change no file is written, not even rewritten with the same content.
author:
  - hardway.kubernetes developers (@hardway)
requirements:
  - cryptography >= 3.1 (on the host that runs the module)
options:
  path:
    description:
      - Directory holding every file. Created with mode C(0700) when missing.
    type: path
    required: true
  authorities:
    description:
      - Self-signed certificate authorities.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: File name stem; the authority is written to C(<name>.pem) and C(<name>-key.pem).
        type: str
        required: true
      common_name:
        description: Common name (CN) of the authority.
        type: str
        required: true
      key_type:
        description: Kind of key.
        type: str
        choices: [rsa, ecdsa]
        default: ecdsa
      key_size:
        description:
          - Key size in bits. For C(rsa) 2048 (the default) or more; for C(ecdsa) 256 (P-256, the
            default) or 384 (P-384).
        type: int
      lifetime_days:
        description: Validity of a newly created authority, in days.
        type: int
        default: 3650
  certificates:
    description:
      - Certificates signed by one of O(authorities).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: File name stem; the certificate is written to C(<name>.pem) and C(<name>-key.pem).
        type: str
        required: true
      ca:
        description: Name of the authority in O(authorities) that signs this certificate.
        type: str
        required: true
      common_name:
        description:
          - Common name (CN) of the subject. Kubernetes reads the user name from it.
          - V("") leaves it out (the subject then needs O(certificates[].organization)), for a client of
            etcd's JSON gateway, which refuses certificates with a common name while etcd authentication
            is on.
        type: str
        required: true
      organization:
        description: Organizations (O) of the subject. Kubernetes reads group names from them.
        type: list
        elements: str
        default: []
      dns_names:
        description: DNS subject alternative names.
        type: list
        elements: str
        default: []
      ip_addresses:
        description: IP address subject alternative names (IPv4 or IPv6).
        type: list
        elements: str
        default: []
      usage:
        description:
          - Extended key usages; C(client) is TLS client authentication, C(server) TLS server
            authentication.
        type: list
        elements: str
        choices: [client, server]
        default: [client]
      key_type:
        description: Kind of key.
        type: str
        choices: [rsa, ecdsa]
        default: ecdsa
      key_size:
        description:
          - Key size in bits. For C(rsa) 2048 (the default) or more; for C(ecdsa) 256 (P-256, the
            default) or 384 (P-384).
        type: int
      lifetime_days:
        description:
          - Validity of a newly issued certificate, in days. It never outlives its authority.
        type: int
        default: 365
  keypairs:
    description:
      - Bare key pairs, without a certificate, such as the service account signing key.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: File name stem; the pair is written to C(<name>-key.pem) and C(<name>.pub).
        type: str
        required: true
      key_type:
        description: Kind of key.
        type: str
        choices: [rsa, ecdsa]
        default: rsa
      key_size:
        description:
          - Key size in bits. For C(rsa) 2048 (the default) or more; for C(ecdsa) 256 (P-256, the
            default) or 384 (P-384).
        type: int
  renew_before_days:
    description:
      - Re-issue a certificate that expires within this many days.
      - Must be shorter than every C(lifetime_days).
    type: int
    default: 30
  reissue:
    description:
      - Certificates (by O(certificates[].name)) to re-issue even when nothing else asks for it; V(*) for
        every one. Their keys are kept. Authorities and key pairs are not affected.
    type: list
    elements: str
    default: []
  reissue_within_days:
    description:
      - Also re-issue, on this run, every certificate that expires within this many days, however long
        its lifetime (unlike O(renew_before_days), which applies to every run). V(0) asks for nothing.
    type: int
    default: 0
  rotation:
    description:
      - One step of replacing every authority without downtime; each step is re-runnable, and asking
        for one out of order fails naming the step that comes first.
      - V(stage) makes a new CA as C(<name>-next.pem) (and key) beside each current one; both are
        trusted (C(<name>-bundle.pem)), the old one still signs.
      - V(switch) makes the staged CA the current one (it signs from now on, so every certificate is
        re-issued by it, keys kept) and keeps the old one trusted as C(<name>-previous.pem).
      - V(finish) drops the old CA from the bundle; its files are kept as C(<name>-retired-<time>).
      - V(none) (the default) changes no authority; a staged or previous CA stays trusted.
    type: str
    choices: [none, stage, switch, finish]
    default: none
  keep_on_previous:
    description:
      - Certificates (by name) that stay signed by the old CA while it is trusted during a rotation
        (after the V(switch) step), and are re-issued by the new one at the V(finish) step. For a
        server's certificate whose clients may still trust only the old CA until then, such as the
        API server's for kubeconfigs made before the rotation.
    type: list
    elements: str
    default: []
  regenerate_authorities:
    description:
      - Allow replacing an existing authority that is broken, differs from the request or
        expires within O(renew_before_days). A replaced authority gets a new key, and every
        certificate it signs is re-issued.
      - Without this option an existing authority is never replaced.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what would be created or re-issued, and why, without writing anything.
  diff_mode:
    support: full
    description: A before/after summary of every item that changes, with the reasons.
notes:
  - Certificates are X.509 v3 with a random serial number, valid from five minutes before they
    are issued, signed with SHA-256, and carry subject and authority key identifiers, basic
    constraints, key usage, extended key usage and, when names are given, subject alternative names.
seealso:
  - module: hardway.kubernetes.kubeconfig
"""

EXAMPLES = r"""
- name: Cluster PKI
  hardway.kubernetes.pki:
    path: "{{ playbook_dir }}/pki"
    authorities:
      - name: ca
        common_name: Kubernetes CA
    certificates:
      - name: admin
        ca: ca
        common_name: admin
        organization: [system:masters]
      - name: kube-apiserver
        ca: ca
        common_name: kube-apiserver
        usage: [server]
        dns_names: [kubernetes, kubernetes.default, kubernetes.default.svc.cluster.local]
        ip_addresses: [10.32.0.1, 127.0.0.1]
    keypairs:
      - name: service-account
  delegate_to: localhost
  run_once: true
  register: pki

- name: Show why certificates were re-issued
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.reason }}"
  loop: "{{ pki.certificates | dict2items | rejectattr('value.action', 'eq', 'unchanged') }}"
"""

RETURN = r"""
authorities:
  description: Outcome per authority name.
  returned: always
  type: dict
  sample:
    ca:
      action: created
      reason: authority missing
      path: /srv/pki/ca.pem
      key_path: /srv/pki/ca-key.pem
      not_after: "2035-06-01T12:00:00Z"
  contains:
    action:
      description: C(created), C(reissued) or C(unchanged); for an authority also the rotation step it took
        (C(stage), C(switch), C(finish)).
      type: str
    reason:
      description: Why it was created or re-issued (reasons joined with C(; )), or C(up to date).
      type: str
    path:
      description: Certificate file.
      type: str
    key_path:
      description: Private key file.
      type: str
    not_after:
      description: Expiry of the certificate (UTC, ISO 8601), estimated in check mode.
      type: str
certificates:
  description: Outcome per certificate name, with the same keys as RV(authorities).
  returned: always
  type: dict
  sample:
    admin:
      action: reissued
      reason: "organization is [], want [system:masters]"
      path: /srv/pki/admin.pem
      key_path: /srv/pki/admin-key.pem
      not_after: "2026-06-01T12:00:00Z"
keypairs:
  description:
    - Outcome per key pair name, with the same keys as RV(authorities); C(path) is the public
      key file and C(not_after) is null.
  returned: always
  type: dict
  sample:
    service-account:
      action: unchanged
      reason: up to date
      path: /srv/pki/service-account.pub
      key_path: /srv/pki/service-account-key.pem
      not_after: null
bundles:
  description:
    - Outcome per authority's trust bundle (C(<name>-bundle.pem)), with the same keys as RV(authorities)
      plus C(certificates), how many CA certificates it holds; C(key_path) and C(not_after) are null.
  returned: always
  type: dict
  sample:
    ca:
      action: written
      reason: the trust bundle holds 2 CA(s)
      path: /srv/pki/ca-bundle.pem
      key_path: null
      not_after: null
      certificates: 2
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.pki import (  # noqa: E402
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    PKI,
    PKIError,
)

KEY_OPTIONS = {
    'key_type': {'type': 'str', 'choices': ['rsa', 'ecdsa'], 'default': 'ecdsa'},
    'key_size': {'type': 'int'},
}


def argument_spec():
    return {
        'path': {'type': 'path', 'required': True},
        'authorities': {
            'type': 'list', 'elements': 'dict', 'default': [],
            'options': dict(
                name={'type': 'str', 'required': True},
                common_name={'type': 'str', 'required': True},
                lifetime_days={'type': 'int', 'default': 3650},
                **KEY_OPTIONS,
            ),
        },
        'certificates': {
            'type': 'list', 'elements': 'dict', 'default': [],
            'options': dict(
                name={'type': 'str', 'required': True},
                ca={'type': 'str', 'required': True},
                common_name={'type': 'str', 'required': True},
                organization={'type': 'list', 'elements': 'str', 'default': []},
                dns_names={'type': 'list', 'elements': 'str', 'default': []},
                ip_addresses={'type': 'list', 'elements': 'str', 'default': []},
                usage={'type': 'list', 'elements': 'str', 'choices': ['client', 'server'],
                       'default': ['client']},
                lifetime_days={'type': 'int', 'default': 365},
                **KEY_OPTIONS,
            ),
        },
        'keypairs': {
            'type': 'list', 'elements': 'dict', 'default': [], 'no_log': False,
            'options': {
                'name': {'type': 'str', 'required': True},
                'key_type': {'type': 'str', 'choices': ['rsa', 'ecdsa'], 'default': 'rsa'},
                'key_size': {'type': 'int'},
            },
        },
        'renew_before_days': {'type': 'int', 'default': 30},
        'regenerate_authorities': {'type': 'bool', 'default': False},
        'reissue': {'type': 'list', 'elements': 'str', 'default': []},
        'reissue_within_days': {'type': 'int', 'default': 0},
        'rotation': {'type': 'str', 'default': 'none', 'choices': ['none', 'stage', 'switch', 'finish']},
        'keep_on_previous': {'type': 'list', 'elements': 'str', 'default': []},
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    params = module.params
    try:
        pki = PKI(
            params['path'],
            authorities=params['authorities'],
            certificates=params['certificates'],
            keypairs=params['keypairs'],
            renew_before_days=params['renew_before_days'],
            regenerate_authorities=params['regenerate_authorities'],
            reissue=params['reissue'],
            reissue_within_days=params['reissue_within_days'],
            rotation=params['rotation'],
            keep_on_previous=params['keep_on_previous'],
        ).plan()
        if not module.check_mode:
            pki.apply()
    except PKIError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='cannot write to %s: %s' % (exc.filename or params['path'], exc.strerror or exc))

    for warning in pki.warnings:
        module.warn(warning)
    result = dict(changed=pki.changed, **pki.results())
    if module._diff and pki.changed:
        result['diff'] = pki.diff()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
