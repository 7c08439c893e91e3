# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""How the collection's etcd modules reach etcd (the options of etcd_connection_spec in module_utils/etcd.py)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  endpoints:
    description:
      - Client URLs of etcd members, for example V(https://10.0.0.11:2379). Tried in order until
        one answers. A URL without a scheme is taken as https.
    type: list
    elements: str
    required: true
  ca_cert:
    description:
      - PEM file with the CA that signed the etcd server certificates.
      - Without it the system trust store is used.
    type: path
  client_cert:
    description: PEM file with the client certificate presented to etcd.
    type: path
  client_key:
    description: PEM file with the client certificate's private key.
    type: path
"""
