# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Address arithmetic filters for hardway.kubernetes (they need the netaddr library on the controller).

- ``cidr_nth(cidr, n)``: the n-th address of a network (``'10.32.0.0/24' | cidr_nth(1)`` is ``10.32.0.1``).
- ``cidr_overlaps(named)``: human-readable overlaps between named networks (a dict name -> CIDR or
  list of CIDRs, or a plain list of CIDRs); empty when none overlap.
- ``flannel_lease_cidr(key)``: the CIDR of a flannel lease key
  (``.../subnets/10.200.52.0-24`` -> ``10.200.52.0/24``).
- ``cidr_contains(cidr, address)``: whether an address (or a network) lies inside a network.
- ``split_sans(names)``: a certificate's subject alternative names split into IP addresses and DNS
  names (an https:// URL stands for its host), each once, in order.
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

try:
    import netaddr
except ImportError:
    netaddr = None


def _netaddr(filter_name):
    if netaddr is None:
        raise AnsibleFilterError(
            'hardway.kubernetes.%s needs the Python library netaddr on the controller: '
            'install it with "pip install netaddr" in the Python that runs Ansible' % filter_name)
    return netaddr


def _network(value, filter_name, what='network'):
    lib = _netaddr(filter_name)
    if not isinstance(value, str) or '/' not in value:
        raise AnsibleFilterError('hardway.kubernetes.%s: %s %r is not a CIDR such as 10.32.0.0/24'
                                 % (filter_name, what, value))
    try:
        return lib.IPNetwork(value.strip())
    except (lib.AddrFormatError, ValueError, TypeError) as exc:
        raise AnsibleFilterError('hardway.kubernetes.%s: %s %r is not a valid CIDR (%s)'
                                 % (filter_name, what, value, exc)) from None


def _int(value, filter_name, what):
    if isinstance(value, bool):
        raise AnsibleFilterError('hardway.kubernetes.%s: %s must be an integer, got %r'
                                 % (filter_name, what, value))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError('hardway.kubernetes.%s: %s must be an integer, got %r'
                                 % (filter_name, what, value)) from None


def cidr_nth(cidr, n):
    """The ``n``-th address of ``cidr`` (0 is the network address, 1 the first usable one)."""
    net = _network(cidr, 'cidr_nth')
    index = _int(n, 'cidr_nth', 'n')
    if index < 0 or index >= net.size:
        raise AnsibleFilterError('hardway.kubernetes.cidr_nth: %s has %d addresses (0 to %d), so address #%d '
                                 'does not exist' % (net.cidr, net.size, net.size - 1, index))
    return str(netaddr.IPAddress(net.first + index, net.version))


def _named_networks(named):
    if isinstance(named, dict):
        pairs = []
        for name, value in named.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for item in values:
                if item in (None, ''):
                    continue
                pairs.append(('%s %s' % (name, item), _network(item, 'cidr_overlaps', '%s' % name)))
        return pairs
    if isinstance(named, (list, tuple)):
        return [(str(v), _network(v, 'cidr_overlaps')) for v in named if v not in (None, '')]
    raise AnsibleFilterError('hardway.kubernetes.cidr_overlaps expects a dict of name -> CIDR or a list of '
                             'CIDRs, '
                             'got %s' % type(named).__name__)


def cidr_overlaps(named):
    """Every overlapping pair, as ``"<name> <cidr> overlaps <name> <cidr>"``; ``[]`` when none overlap."""
    pairs = _named_networks(named)
    out = []
    for i, (label_a, net_a) in enumerate(pairs):
        for label_b, net_b in pairs[i + 1:]:
            if net_a.version != net_b.version:
                continue
            if net_a.first <= net_b.last and net_b.first <= net_a.last:
                out.append('%s overlaps %s' % (label_a, label_b))
    return out


def flannel_lease_cidr(key):
    """``/coreos.com/network/subnets/10.200.52.0-24`` -> ``10.200.52.0/24``."""
    if not isinstance(key, str) or not key.strip():
        raise AnsibleFilterError('hardway.kubernetes.flannel_lease_cidr: expected a lease key, got %r'
                                 % (key,))
    last = key.rstrip('/').rsplit('/', 1)[-1]
    address, sep, length = last.rpartition('-')
    if not sep or not length.isdigit():
        raise AnsibleFilterError('hardway.kubernetes.flannel_lease_cidr: %r is not a flannel lease key '
                                 '(.../subnets/<address>-<prefix length>)' % key)
    return str(_network('%s/%s' % (address, length), 'flannel_lease_cidr', 'lease').cidr)


def cidr_contains(cidr, address):
    """True when ``address`` (an IP address or a CIDR) lies entirely inside ``cidr``."""
    net = _network(cidr, 'cidr_contains')
    lib = _netaddr('cidr_contains')
    try:
        other = lib.IPNetwork(address.strip()) if '/' in str(address) else lib.IPAddress(str(address).strip())
    except (lib.AddrFormatError, ValueError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError('hardway.kubernetes.cidr_contains: %r is not an IP address or CIDR (%s)'
                                 % (address, exc)) from None
    if other.version != net.version:
        return False
    return other in net


def split_sans(names):
    """``{'ip_addresses': [...], 'dns_names': [...]}`` of ``names`` (IPs, DNS names or https:// URLs)."""
    if not isinstance(names, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.split_sans: expected a list of names, got %r' % (names,))
    ips, dns = [], []
    for name in names:
        if name is None or name == '':
            continue
        if not isinstance(name, str):
            raise AnsibleFilterError('hardway.kubernetes.split_sans: %r is not a name or an address' % (name,))
        host = name.strip()
        if '://' in host:
            host = host.split('://', 1)[1].split('/', 1)[0]
            host = host[1:].partition(']')[0] if host.startswith('[') else host.partition(':')[0]
        if not host:
            raise AnsibleFilterError('hardway.kubernetes.split_sans: %r names no host' % (name,))
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            if host.lower() not in dns:
                dns.append(host.lower())
        else:
            if address not in ips:
                ips.append(address)
    return {'ip_addresses': ips, 'dns_names': dns}


class FilterModule:
    """hardway.kubernetes address filters."""

    def filters(self):
        return {
            'cidr_nth': cidr_nth,
            'cidr_overlaps': cidr_overlaps,
            'flannel_lease_cidr': flannel_lease_cidr,
            'cidr_contains': cidr_contains,
            'split_sans': split_sans,
        }
