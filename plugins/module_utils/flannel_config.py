# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""flannel's own rules for the network configuration it reads from etcd (``<prefix>/config``).

The rules are those of flannel v0.28: how ``pkg/subnet/config.go`` decodes the
document (Go's encoding/json into typed fields: a string where a number is
expected, a fraction, a negative length or an IPv6 address where an IPv4 one
belongs makes flanneld fail or panic at start), ``CheckNetworkConfig`` (the
coherence of Network, SubnetLen, SubnetMin and SubnetMax, and their IPv6
twins), the backend types a Linux flanneld registers (``Backend`` left out means
``udp``), and the vxlan backend's limits (a 24-bit VNI, a device named
``flannel.<VNI>`` that must fit the 15 characters of a Linux interface name, a
UDP port, an MTU that leaves the device at least 68 bytes).

Stricter than flannel in three places, because flannel would accept the value
but not do what it says: a Network with host bits set (flannel silently drops
them), a field name flannel does not know or spells differently (Go matches
names case-insensitively and ignores the rest, so a typo is silently
ignored), and a SubnetMin above SubnetMax (no subnet could ever be leased).

Standard library only, Python 3.8+: the check runs wherever etcd_key runs.
"""

from __future__ import annotations

import ipaddress
import json

# Top-level fields flannel's Config decodes (Networks/IPv6Networks are reset
# after decoding: they only exist for the Kubernetes subnet manager).
BOOL_FIELDS = ('EnableIPv4', 'EnableIPv6', 'EnableNFTables')
FIELDS = BOOL_FIELDS + ('Network', 'IPv6Network', 'SubnetMin', 'SubnetMax', 'IPv6SubnetMin',
                        'IPv6SubnetMax', 'SubnetLen', 'IPv6SubnetLen', 'Backend')

# Backend types a Linux (amd64) flanneld v0.28 registers, with the options each
# one decodes (Go type of each). None: the backend's options are not checked here.
BACKENDS = {
    'vxlan': {'VNI': 'int', 'Port': 'int', 'MTU': 'int', 'GBP': 'bool', 'Learning': 'bool',
              'DirectRouting': 'bool'},
    'host-gw': {},
    'udp': {'Port': 'int'},
    'wireguard': None,
    'ipip': None,
    'ipsec': None,
    'alloc': {},
    'extension': None,
    'tencent-vpc': None,
}
# flannel uses this backend when the Backend field is missing
DEFAULT_BACKEND = 'udp'

# Linux: IFNAMSIZ is 16, so an interface name has at most 15 characters.
IFNAME_MAX = 15
VXLAN_VNI_MAX = (1 << 24) - 1
PORT_MAX = 65535
# flannel gives its vxlan device the MTU option minus 50 bytes of headers; the
# kernel's smallest MTU for it is 68 (ETH_MIN_MTU)
VXLAN_OVERHEAD = 50
MIN_MTU = 68


def _show(value):
    """A value as it appears in the JSON document (for messages)."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _go_type_problem(name, value, kind):
    """Why Go's encoding/json would refuse ``value`` for a field of ``kind``, or None."""
    if kind == 'bool':
        if not isinstance(value, bool):
            return '%s = %s: must be true or false' % (name, _show(value))
    elif kind in ('int', 'uint'):
        if isinstance(value, bool) or not isinstance(value, int):
            return '%s = %s: must be a whole number (flannel cannot read %s)' % (
                name, _show(value), 'a string' if isinstance(value, str) else 'this value')
        if kind == 'uint' and value < 0:
            return '%s = %s: must not be negative' % (name, _show(value))
    elif kind == 'str':
        if not isinstance(value, str):
            return '%s = %s: must be a string' % (name, _show(value))
    return None


def _parse_network(name, value, version, problems):
    """An ip_network for a CIDR field, or None (after recording why)."""
    if not isinstance(value, str):
        problems.append('%s = %s: must be a network in CIDR notation, as a string' % (name, _show(value)))
        return None
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        problems.append('%s = %s: is not a network in CIDR notation (address/prefix length)' % (name, _show(value)))
        return None
    if not value.partition('/')[2].isdigit():
        problems.append('%s = %s: needs a prefix length in bits (address/prefix length)' % (name, _show(value)))
        return None
    if network.version != version:
        other = 'IPv6Network' if version == 4 else 'Network'
        problems.append('%s = %s: is an IPv%d network; %s takes IPv%d (IPv%d goes in %s)'
                        % (name, _show(value), network.version, name, version, network.version, other))
        return None
    if network.prefixlen == 0 and int(network.network_address) == 0:
        problems.append('%s = %s: flannel treats the whole address space as "no network"; give the pod network'
                        % (name, _show(value)))
        return None
    if ipaddress.ip_interface(value).ip != network.network_address:
        problems.append('%s = %s: has host bits set; the network is %s (flannel would silently use that)'
                        % (name, _show(value), network))
        return None
    return network


def _parse_address(name, value, version, problems):
    """An ip_address for a SubnetMin/SubnetMax field, or None (after recording why)."""
    if not isinstance(value, str):
        problems.append('%s = %s: must be an IPv%d address, as a string' % (name, _show(value), version))
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        problems.append('%s = %s: is not an IP address' % (name, _show(value)))
        return None
    if address.version != version:
        problems.append('%s = %s: is an IPv%d address; %s takes IPv%d'
                        % (name, _show(value), address.version, name, version))
        return None
    return address


def _check_family(doc, problems, version):
    """CheckNetworkConfig for one address family."""
    v6 = version == 6
    net_name = 'IPv6Network' if v6 else 'Network'
    len_name = 'IPv6SubnetLen' if v6 else 'SubnetLen'
    min_name, max_name = ('IPv6SubnetMin', 'IPv6SubnetMax') if v6 else ('SubnetMin', 'SubnetMax')
    bits = 128 if v6 else 32
    max_len = bits - 2          # a subnet needs room for the tunnel and the bridge device
    max_prefix = bits - 4       # ... and the network at least four of them
    default_len = 64 if v6 else 24

    enabled = doc.get('EnableIPv6' if v6 else 'EnableIPv4', not v6) is True
    network = None
    if net_name in doc:
        network = _parse_network(net_name, doc[net_name], version, problems)
    elif enabled:
        problems.append('%s is missing: flannel needs the pod network (CIDR)%s'
                        % (net_name, ' when EnableIPv6 is true' if v6 else ''))

    subnet_len = doc.get(len_name, 0)
    len_ok = _go_type_problem(len_name, subnet_len, 'uint') is None
    if not len_ok:
        problems.append(_go_type_problem(len_name, subnet_len, 'uint'))

    bounds = {}
    for name in (min_name, max_name):
        if name in doc:
            address = _parse_address(name, doc[name], version, problems)
            if address is not None and int(address) != 0:
                bounds[name] = address  # flannel treats the zero address as "not set"

    if not enabled or network is None or not len_ok:
        return
    prefix = network.prefixlen
    if subnet_len > 0:
        if subnet_len > max_len:
            problems.append('%s = %d: must be at most %d (each node\'s subnet needs room for a tunnel and a '
                            'bridge address)' % (len_name, subnet_len, max_len))
            return
        if subnet_len < prefix + 2:
            problems.append('%s = %d: must be at least %d, two more than the prefix of %s = %s, so that the '
                            'network holds at least four subnets (flannel never leases the first one)'
                            % (len_name, subnet_len, prefix + 2, net_name, network))
            return
        effective = subnet_len
    else:
        if prefix > max_prefix:
            problems.append('%s = %s: is too small for flannel: the prefix must be /%d or shorter'
                            % (net_name, network, max_prefix))
            return
        effective = default_len if prefix <= default_len - 2 else prefix + 2

    size = 1 << (bits - effective)
    for name, address in sorted(bounds.items()):
        if address not in network:
            problems.append('%s = %s: is not in %s = %s' % (name, address, net_name, network))
        elif int(address) % size:
            problems.append('%s = %s: is not on a /%d boundary (%s%s)' % (
                name, address, effective, len_name,
                ' = %d' % subnet_len if subnet_len else ' defaults to %d for this network' % effective))
    low, high = bounds.get(min_name), bounds.get(max_name)
    if low is not None and high is not None and low > high:
        problems.append('%s = %s is above %s = %s: no subnet could be leased' % (min_name, low, max_name, high))


def _check_backend(doc, problems):
    if 'Backend' not in doc:
        return  # flannel's default backend
    backend = doc['Backend']
    if not isinstance(backend, dict):
        problems.append('Backend = %s: must be an object with a Type (%s)'
                        % (_show(backend), ', '.join(sorted(BACKENDS))))
        return
    kind = backend.get('Type')
    if not isinstance(kind, str) or kind not in BACKENDS:
        problems.append('Backend.Type = %s: flannel has no such backend; use one of %s'
                        % (_show(kind) if 'Type' in backend else '(missing)', ', '.join(sorted(BACKENDS))))
        return
    options = BACKENDS[kind]
    if options is None:
        return
    for name, value in backend.items():
        if name == 'Type':
            continue
        if name not in options:
            problems.append(_unknown('Backend.%s' % name, name, options, 'the %s backend' % kind))
            continue
        problem = _go_type_problem('Backend.%s' % name, value, options[name])
        if problem:
            problems.append(problem)
    if kind == 'vxlan':
        _check_vxlan(doc, backend, problems)
    elif kind == 'udp':
        port = backend.get('Port', 8285)
        if isinstance(port, int) and not isinstance(port, bool) and not 1 <= port <= PORT_MAX:
            problems.append('Backend.Port = %d: must be a UDP port, 1 to %d' % (port, PORT_MAX))


def _check_vxlan(doc, backend, problems):
    vni = backend.get('VNI', 1)
    if isinstance(vni, int) and not isinstance(vni, bool):
        devices = ['flannel.%d' % vni] if doc.get('EnableIPv4', True) is True else []
        if doc.get('EnableIPv6') is True:
            devices.append('flannel-v6.%d' % vni)
        if not 0 <= vni <= VXLAN_VNI_MAX:
            problems.append('Backend.VNI = %d: a VXLAN network identifier has 24 bits (0 to %d)'
                            % (vni, VXLAN_VNI_MAX))
        else:
            for device in devices:
                if len(device) > IFNAME_MAX:
                    stem = device.rsplit('.', 1)[0] + '.'
                    problems.append('Backend.VNI = %d: flannel names its device %s, longer than the %d characters '
                                    'of a Linux interface name (so the VNI can be at most %d%s)'
                                    % (vni, device, IFNAME_MAX, 10 ** (IFNAME_MAX - len(stem)) - 1,
                                       ' with EnableIPv6' if stem == 'flannel-v6.' else ''))
    port = backend.get('Port', 0)
    if isinstance(port, int) and not isinstance(port, bool) and not 0 <= port <= PORT_MAX:
        problems.append('Backend.Port = %d: must be a UDP port, 1 to %d (0: the kernel\'s default, 8472)'
                        % (port, PORT_MAX))
    mtu = backend.get('MTU')
    if isinstance(mtu, int) and not isinstance(mtu, bool) and mtu - VXLAN_OVERHEAD < MIN_MTU:
        problems.append('Backend.MTU = %d: must be at least %d: flannel gives its vxlan device %d bytes less, '
                        'and a Linux interface takes no MTU below %d (leave MTU out for the interface\'s own)'
                        % (mtu, MIN_MTU + VXLAN_OVERHEAD, VXLAN_OVERHEAD, MIN_MTU))


def _unknown(label, name, known, where):
    """Message for a field flannel does not read (or reads under another spelling)."""
    for candidate in known:
        if candidate.lower() == name.lower():
            return ('%s: write it %s (flannel matches names case-insensitively, this collection compares them '
                    'exactly)' % (label, candidate))
    return '%s: %s has no such field (known: %s)' % (label, where, ', '.join(sorted(known)) or 'none')


def network_config_problems(value):
    """Every reason flannel v0.28 would refuse (or misread) ``value`` as its network config; [] when valid.

    ``value`` is the document (a dict) or its JSON text. Each message names the
    field, the value and the rule.
    """
    doc = value
    if isinstance(value, (str, bytes)):
        try:
            doc = json.loads(value)
        except ValueError as exc:
            return ['the flannel network config is not JSON: %s' % exc]
    if not isinstance(doc, dict):
        return ['the flannel network config must be a JSON object with Network, SubnetLen and Backend, got %s'
                % _show(doc)]
    problems = []
    for name in doc:
        if name not in FIELDS:
            problems.append(_unknown(name, name, FIELDS, 'flannel\'s network config'))
    for name in BOOL_FIELDS:
        if name in doc:
            problem = _go_type_problem(name, doc[name], 'bool')
            if problem:
                problems.append(problem)
    if doc.get('EnableIPv4', True) is not True and doc.get('EnableIPv6', False) is not True:
        if all(isinstance(doc.get(n, True), bool) for n in ('EnableIPv4', 'EnableIPv6')):
            problems.append('EnableIPv4 and EnableIPv6 are both false: flannel would have no network to serve')
    _check_family(doc, problems, 4)
    _check_family(doc, problems, 6)
    _check_backend(doc, problems)
    return problems


# --------------------------------------------------------------------------
# The network config the flannel role writes, and the guard on changing it


class NetworkConfigError(ValueError):
    """The network config must not be written; ``problems`` lists each reason."""

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = problems or [message]


def merge_backend(backend, overrides=None):
    """``backend`` with ``overrides`` merged over it (shallow); a key set to None in ``overrides`` is removed."""
    merged = dict(backend or {})
    for key, value in (overrides or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def network_config(network, subnet_len, backend, overrides=None):
    """flannel's network config for the pod network ``network``: each node leases a ``/subnet_len`` of
    it, and the backend is ``backend`` with ``overrides`` merged over it (see merge_backend)."""
    return {'Network': network, 'SubnetLen': subnet_len, 'Backend': merge_backend(backend, overrides)}


def describe_backend(backend):
    """Words for a Backend object, e.g. ``vxlan (VNI 1, Port 8472)``."""
    if not isinstance(backend, dict):
        return 'udp (flannel\'s default, no Backend)' if backend is None else _show(backend)
    kind = backend.get('Type', '(no type)')
    rest = ', '.join('%s %s' % (k, _show(v)) for k, v in sorted(backend.items()) if k != 'Type')
    return '%s (%s)' % (kind, rest) if rest else str(kind)


def changed_fields(before, after):
    """Top-level fields (``Backend.<option>`` for the backend) whose values differ, sorted."""
    out = set()
    before = before if isinstance(before, dict) else {}
    for name in set(before) | set(after):
        if name == 'Backend' and isinstance(before.get(name), dict) and isinstance(after.get(name), dict):
            old, new = before[name], after[name]
            out.update('Backend.%s' % k for k in set(old) | set(new) if _json_key(old.get(k)) != _json_key(new.get(k)))
        elif _json_key(before.get(name)) != _json_key(after.get(name)):
            out.add(name)
    return sorted(out)


def _json_key(value):
    """A comparable form of parsed JSON in which true, 1 and 1.0 differ."""
    return json.dumps(value, sort_keys=True)


def plan_network_config(key, current, desired, force, leases):
    """Whether to write ``desired`` over the stored text ``current`` (None: no config yet).

    ``leases``: how many node subnet leases etcd holds (flanneld runs with the
    stored config on that many nodes). Returns ``(write, fields)``, the fields
    that change. Raises NetworkConfigError when ``desired`` breaks flannel's
    rules, or when it changes the config of a live network (any lease) without
    ``force``: every flanneld must restart to read it, and nodes that run with
    different backends (or VNI, or port) cannot reach each other in between.
    """
    problems = network_config_problems(desired)
    if problems:
        raise NetworkConfigError('refusing to write %s, it breaks flannel\'s rules: %s' % (key, '; '.join(problems)),
                                 problems)
    if current is None:
        return True, sorted(desired)
    try:
        stored = json.loads(current)
    except ValueError:
        stored = None
    if _json_key(stored) == _json_key(desired):
        return False, []
    fields = changed_fields(stored, desired)
    if leases and not force:
        if isinstance(stored, dict):
            old = describe_backend(stored.get('Backend'))
        else:
            old = 'unreadable (%s is not a JSON object)' % _show(current)
        raise NetworkConfigError(
            'refusing to change flannel\'s network config in %s on a live network (%d node lease%s): the backend '
            'is %s and would become %s (changed: %s). flanneld reads it only at start, so every flanneld must '
            'restart (the flannel role restarts each one), and nodes running the old and the new settings cannot '
            'reach each other in between. Set force: true (flannel_force_network_config: true) to change it.'
            % (key, leases, '' if leases == 1 else 's', old, describe_backend(desired.get('Backend')),
               ', '.join(fields)))
    return True, fields
