"""flannel's rules for its network config (module_utils/flannel_config.py); the module that writes it is
tested in test_flannel_network.py."""

from __future__ import annotations

import json

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils.flannel_config import network_config_problems

GOOD = {'Network': '10.200.0.0/16', 'SubnetLen': 24, 'Backend': {'Type': 'vxlan', 'VNI': 1, 'Port': 8472}}


def problems(**changes):
    doc = dict(GOOD)
    for name, value in changes.items():
        if value is ...:
            doc.pop(name, None)
        else:
            doc[name] = value
    return network_config_problems(doc)


def only(found, *fragments):
    """Exactly one problem, containing every fragment."""
    assert len(found) == 1, found
    for fragment in fragments:
        assert fragment in found[0], found
    return found[0]


# ------------------------------------------------------------------ valid documents
@pytest.mark.parametrize(
    'doc',
    [
        GOOD,
        # what roles/flannel writes by default, as JSON text too
        json.dumps(GOOD),
        {'Network': '10.200.0.0/16', 'Backend': {'Type': 'vxlan'}},  # SubnetLen defaults to 24
        {'Network': '10.0.0.0/28', 'Backend': {'Type': 'host-gw'}},  # the smallest network: 4 x /30
        {'Network': '10.0.0.0/24', 'SubnetLen': 26, 'Backend': {'Type': 'vxlan'}},
        {'Network': '10.0.0.0/8', 'SubnetLen': 30, 'Backend': {'Type': 'vxlan'}},
        {'Network': '10.0.0.0/8', 'SubnetLen': 10, 'Backend': {'Type': 'vxlan'}},  # prefix + 2
        {'Network': '10.200.0.0/16', 'SubnetLen': 0, 'Backend': {'Type': 'vxlan'}},  # 0: flannel's default
        {'Network': '10.200.0.0/16', 'SubnetLen': 24, 'SubnetMin': '10.200.10.0', 'SubnetMax': '10.200.99.0',
         'Backend': {'Type': 'vxlan'}},
        {'Network': '10.200.0.0/16', 'SubnetMin': '0.0.0.0', 'Backend': {'Type': 'vxlan'}},  # 0.0.0.0: unset
        {'Network': '10.200.0.0/16', 'SubnetLen': 24, 'SubnetMin': '10.200.5.0', 'SubnetMax': '10.200.5.0',
         'Backend': {'Type': 'vxlan'}},
        {'Network': '10.200.0.0/16',
         'Backend': {'Type': 'vxlan', 'VNI': 0, 'Port': 0, 'GBP': True, 'Learning': False, 'DirectRouting': True,
                     'MTU': 1400}},
        {'Network': '10.200.0.0/16', 'Backend': {'Type': 'vxlan', 'MTU': 118}},
        # no Backend: flannel's udp backend (built into flanneld v0.28 on amd64)
        {'Network': '10.200.0.0/16'},
        {'Network': '10.200.0.0/16', 'Backend': {'Type': 'udp', 'Port': 8285}},
        {'Network': '10.200.0.0/16', 'Backend': {'Type': 'vxlan', 'VNI': 9999999, 'Port': 65535}},
        {'EnableIPv4': True, 'EnableIPv6': True, 'Network': '10.200.0.0/16', 'IPv6Network': 'fd00:200::/56',
         'IPv6SubnetLen': 64, 'Backend': {'Type': 'vxlan', 'VNI': 9999}},
        {'EnableIPv4': False, 'EnableIPv6': True, 'IPv6Network': 'fd00::/48', 'Backend': {'Type': 'vxlan'}},
        # the backends whose options this module does not check
        {'Network': '10.200.0.0/16', 'Backend': {'Type': 'wireguard', 'PersistentKeepaliveInterval': 25}},
        {'Network': '10.200.0.0/16', 'Backend': {'Type': 'ipip', 'DirectRouting': True}},
        {'Network': '10.200.0.0/16', 'Backend': {'Type': 'alloc'}},
        {'Network': '10.200.0.0/16', 'EnableNFTables': True, 'Backend': {'Type': 'vxlan'}},
    ],
)
def test_valid(doc):
    assert network_config_problems(doc) == []


# ------------------------------------------------------------------ the document
def test_not_json_or_not_an_object():
    only(network_config_problems('{"Network": '), 'is not JSON')
    only(network_config_problems('[1, 2]'), 'must be a JSON object', '[1, 2]')
    only(network_config_problems(42), 'must be a JSON object')
    only(network_config_problems(None), 'must be a JSON object', 'null')


def test_unknown_and_misspelled_fields():
    only(problems(SubnetLength=24), 'SubnetLength', 'no such field')
    only(problems(subnetLen=25, SubnetLen=...), 'subnetLen: write it SubnetLen')
    only(problems(Networks=['10.1.0.0/16']), 'Networks', 'no such field')
    only(problems(Backend={'Type': 'vxlan', 'vni': 3}), 'Backend.vni: write it VNI')
    only(problems(Backend={'Type': 'vxlan', 'Vni': 3}), 'Backend.Vni: write it VNI')
    only(problems(Backend={'Type': 'vxlan', 'Mode': 'x'}), 'Backend.Mode', 'the vxlan backend has no such field')
    only(problems(Backend={'Type': 'host-gw', 'VNI': 1}), 'Backend.VNI', 'the host-gw backend has no such field')


def test_every_problem_is_reported_at_once():
    found = problems(Network='10.200.1.0/16', SubnetLen='24', Backend={'Type': 'gce'}, Extra=1)
    assert len(found) == 4, found
    assert any(p.startswith('Network = "10.200.1.0/16"') for p in found)
    assert any(p.startswith('SubnetLen = "24"') for p in found)
    assert any(p.startswith('Backend.Type = "gce"') for p in found)
    assert any(p.startswith('Extra') for p in found)


# ------------------------------------------------------------------ Network
@pytest.mark.parametrize(
    'value, fragments',
    [
        (None, ['Network = null', 'CIDR notation, as a string']),
        (10, ['Network = 10', 'as a string']),
        ('10.200.0.0', ['needs a prefix length']),
        ('10.200.0.0/255.255.0.0', ['needs a prefix length in bits']),
        ('10.200.0.0/33', ['is not a network in CIDR notation']),
        ('10.300.0.0/16', ['is not a network in CIDR notation']),
        ('pods', ['is not a network in CIDR notation']),
        ('', ['is not a network in CIDR notation']),
        ('10.200.7.1/16', ['has host bits set', 'the network is 10.200.0.0/16']),
        ('fd00::/48', ['is an IPv6 network', 'IPv6Network']),
        ('0.0.0.0/0', ['whole address space']),
        ('10.0.0.0/29', ['is too small for flannel', '/28']),
        ('10.0.0.0/32', ['is too small for flannel']),
    ],
)
def test_network(value, fragments):
    doc = {'Network': value, 'Backend': {'Type': 'vxlan'}}
    message = only(network_config_problems(doc), *fragments)
    assert message.startswith('Network = ')


def test_network_missing():
    only(problems(Network=...), 'Network is missing')
    # not needed when IPv4 is off
    assert network_config_problems({'EnableIPv4': False, 'EnableIPv6': True, 'IPv6Network': 'fd00::/48',
                                    'Backend': {'Type': 'vxlan'}}) == []
    # but a bad one still breaks flannel's decoding
    found = network_config_problems({'EnableIPv4': False, 'EnableIPv6': True, 'IPv6Network': 'fd00::/48',
                                     'Network': 'nope', 'Backend': {'Type': 'vxlan'}})
    only(found, 'Network = "nope"')


# ------------------------------------------------------------------ SubnetLen
@pytest.mark.parametrize(
    'network, subnet_len, fragments',
    [
        ('10.200.0.0/16', 31, ['SubnetLen = 31', 'at most 30']),
        ('10.200.0.0/16', 32, ['SubnetLen = 32', 'at most 30']),
        ('10.200.0.0/16', 17, ['SubnetLen = 17', 'at least 18', 'Network = 10.200.0.0/16']),
        ('10.200.0.0/16', 16, ['SubnetLen = 16', 'at least 18']),
        ('10.200.0.0/16', 8, ['SubnetLen = 8', 'at least 18']),
        ('10.0.0.0/29', 30, ['SubnetLen = 30', 'at least 31']),
        ('10.200.0.0/16', -1, ['SubnetLen = -1', 'must not be negative']),
        ('10.200.0.0/16', '24', ['SubnetLen = "24"', 'whole number', 'a string']),
        ('10.200.0.0/16', 24.0, ['SubnetLen = 24.0', 'whole number']),
        ('10.200.0.0/16', 24.5, ['SubnetLen = 24.5', 'whole number']),
        ('10.200.0.0/16', True, ['SubnetLen = true', 'whole number']),
        ('10.200.0.0/16', None, ['SubnetLen = null', 'whole number']),
    ],
)
def test_subnet_len(network, subnet_len, fragments):
    only(network_config_problems({'Network': network, 'SubnetLen': subnet_len, 'Backend': {'Type': 'vxlan'}}),
         *fragments)


@pytest.mark.parametrize('prefix, subnet_len', [(8, 10), (16, 18), (22, 24), (24, 26), (26, 28), (28, 30)])
def test_subnet_len_boundaries(prefix, subnet_len):
    network = f'10.0.0.0/{prefix}'
    assert network_config_problems({'Network': network, 'SubnetLen': subnet_len, 'Backend': {'Type': 'vxlan'}}) == []
    assert network_config_problems({'Network': network, 'SubnetLen': subnet_len - 1,
                                    'Backend': {'Type': 'vxlan'}}) != []


# ------------------------------------------------------------------ SubnetMin / SubnetMax
@pytest.mark.parametrize(
    'changes, fragments',
    [
        ({'SubnetMin': '10.201.0.0'}, ['SubnetMin = 10.201.0.0', 'is not in Network = 10.200.0.0/16']),
        ({'SubnetMax': '10.199.255.0'}, ['SubnetMax = 10.199.255.0', 'is not in Network']),
        ({'SubnetMin': '10.200.0.128'}, ['SubnetMin = 10.200.0.128', 'not on a /24 boundary', 'SubnetLen = 24']),
        ({'SubnetMax': '10.200.255.1'}, ['SubnetMax = 10.200.255.1', 'not on a /24 boundary']),
        ({'SubnetMin': '10.200.50.0', 'SubnetMax': '10.200.40.0'}, ['SubnetMin = 10.200.50.0 is above SubnetMax']),
        ({'SubnetMin': 'ten'}, ['SubnetMin = "ten"', 'is not an IP address']),
        ({'SubnetMin': 167772160}, ['SubnetMin = 167772160', 'as a string']),
        ({'SubnetMin': 'fd00::'}, ['SubnetMin = "fd00::"', 'is an IPv6 address']),
        ({'SubnetMax': '10.200.0.0/24'}, ['SubnetMax = "10.200.0.0/24"', 'is not an IP address']),
    ],
)
def test_subnet_min_max(changes, fragments):
    only(problems(**changes), *fragments)


def test_subnet_min_alignment_uses_flannels_default_length():
    # no SubnetLen: a /16 gets /24 subnets; a /24 gets /26 ones
    only(network_config_problems({'Network': '10.200.0.0/16', 'SubnetMin': '10.200.0.64',
                                  'Backend': {'Type': 'vxlan'}}), 'not on a /24 boundary', 'defaults to 24')
    assert network_config_problems({'Network': '10.0.0.0/24', 'SubnetMin': '10.0.0.64',
                                    'Backend': {'Type': 'vxlan'}}) == []
    only(network_config_problems({'Network': '10.0.0.0/24', 'SubnetMin': '10.0.0.32',
                                  'Backend': {'Type': 'vxlan'}}), 'not on a /26 boundary')


# ------------------------------------------------------------------ IPv6 and the switches
def test_enable_switches():
    only(problems(EnableIPv4='yes'), 'EnableIPv4 = "yes"', 'true or false')
    only(problems(EnableIPv6=1), 'EnableIPv6 = 1', 'true or false')
    only(problems(EnableNFTables='true'), 'EnableNFTables = "true"')
    only(problems(EnableIPv4=False), 'both false')


@pytest.mark.parametrize(
    'changes, fragments',
    [
        ({}, ['IPv6Network is missing']),
        ({'IPv6Network': '10.0.0.0/8'}, ['IPv6Network = "10.0.0.0/8"', 'is an IPv4 network']),
        ({'IPv6Network': 'fd00::1/48'}, ['has host bits set', 'fd00::/48']),
        ({'IPv6Network': 'fd00::/125'}, ['too small', '/124']),
        ({'IPv6Network': 'fd00::/48', 'IPv6SubnetLen': 127}, ['IPv6SubnetLen = 127', 'at most 126']),
        ({'IPv6Network': 'fd00::/48', 'IPv6SubnetLen': 49}, ['IPv6SubnetLen = 49', 'at least 50']),
        ({'IPv6Network': 'fd00::/48', 'IPv6SubnetMin': 'fd01::'}, ['IPv6SubnetMin = fd01::', 'is not in']),
        ({'IPv6Network': 'fd00::/48', 'IPv6SubnetMax': 'fd00::1'}, ['IPv6SubnetMax = fd00::1', '/64 boundary']),
        ({'IPv6Network': 'fd00::/48', 'IPv6SubnetMin': '10.0.0.0'}, ['IPv6SubnetMin = "10.0.0.0"', 'IPv4 address']),
    ],
)
def test_ipv6(changes, fragments):
    doc = dict({'EnableIPv6': True, 'Network': '10.200.0.0/16', 'Backend': {'Type': 'vxlan'}}, **changes)
    only(network_config_problems(doc), *fragments)


def test_ipv6_fields_are_only_decoded_while_ipv6_is_off():
    # flannel ignores the IPv6 network then, but still decodes it
    assert problems(IPv6Network='fd00::/48', IPv6SubnetLen=200) == []
    only(problems(IPv6Network='nope'), 'IPv6Network = "nope"')
    only(problems(IPv6SubnetLen='64'), 'IPv6SubnetLen = "64"')


# ------------------------------------------------------------------ Backend
@pytest.mark.parametrize(
    'backend, fragments',
    [
        ('vxlan', ['Backend = "vxlan"', 'must be an object']),
        ({}, ['Backend.Type = (missing)']),
        ({'Type': 'aws-vpc'}, ['Backend.Type = "aws-vpc"', 'no such backend', 'vxlan', 'host-gw']),
        ({'Type': 'udp', 'Port': 0}, ['Backend.Port = 0', '1 to 65535']),
        ({'Type': 'udp', 'VNI': 1}, ['Backend.VNI', 'the udp backend has no such field']),
        ({'Type': 'VXLAN'}, ['Backend.Type = "VXLAN"']),
        ({'Type': 'hostgw'}, ['Backend.Type = "hostgw"', 'host-gw']),
        ({'Type': 1}, ['Backend.Type = 1']),
        ({'Type': 'vxlan', 'VNI': -1}, ['Backend.VNI = -1', '24 bits']),
        ({'Type': 'vxlan', 'VNI': 16777216}, ['Backend.VNI = 16777216', '24 bits']),
        ({'Type': 'vxlan', 'VNI': 10000000}, ['Backend.VNI = 10000000', 'flannel.10000000', '15 characters',
                                              'at most 9999999']),
        ({'Type': 'vxlan', 'VNI': '1'}, ['Backend.VNI = "1"', 'whole number']),
        ({'Type': 'vxlan', 'VNI': 1.5}, ['Backend.VNI = 1.5', 'whole number']),
        ({'Type': 'vxlan', 'Port': 65536}, ['Backend.Port = 65536', '65535']),
        ({'Type': 'vxlan', 'Port': -1}, ['Backend.Port = -1', '65535']),
        ({'Type': 'vxlan', 'Port': '8472'}, ['Backend.Port = "8472"', 'whole number']),
        ({'Type': 'vxlan', 'DirectRouting': 'true'}, ['Backend.DirectRouting = "true"', 'true or false']),
        ({'Type': 'vxlan', 'MTU': -5}, ['Backend.MTU = -5', 'at least 118']),
        ({'Type': 'vxlan', 'MTU': 0}, ['Backend.MTU = 0', 'at least 118', 'leave MTU out']),
        ({'Type': 'vxlan', 'MTU': 117}, ['Backend.MTU = 117']),
        ({'Type': 'vxlan', 'MTU': '1450'}, ['Backend.MTU = "1450"', 'whole number']),
        ({'Type': 'vxlan', 'MacPrefix': '0E-2A'}, ['Backend.MacPrefix', 'the vxlan backend has no such field']),
    ],
)
def test_backend(backend, fragments):
    only(problems(Backend=backend), *fragments)


def test_vxlan_vni_with_ipv6_device_name():
    doc = {'EnableIPv6': True, 'Network': '10.200.0.0/16', 'IPv6Network': 'fd00::/48',
           'Backend': {'Type': 'vxlan', 'VNI': 10000}}
    only(network_config_problems(doc), 'flannel-v6.10000', 'at most 9999 with EnableIPv6')
