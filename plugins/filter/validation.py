# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Yes/no checks on addresses, for preflight messages that name the bad value.

- ``cidr_valid(value)``: whether a value is a network in CIDR form (``10.32.0.0/24``).
- ``ip_valid(value)``: whether a value is a single IPv4 or IPv6 address.

Unlike the address filters, these never raise: preflight turns a False into a
message naming the variable and the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress


def cidr_valid(value):
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    return True


def ip_valid(value):
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


class FilterModule(object):
    def filters(self):
        return {"cidr_valid": cidr_valid, "ip_valid": ip_valid}
