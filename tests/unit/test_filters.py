"""The netaddr filters in plugins/filter/address.py."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import address as A
from hardway_testlib import run_adhoc


def test_registered():
    assert set(A.FilterModule().filters()) == {
        'cidr_nth',
        'cidr_overlaps',
        'flannel_lease_cidr',
        'cidr_contains',
        'split_sans',
    }


def test_split_sans_keeps_order_and_takes_hosts_of_urls():
    names = ['10.32.0.1', '127.0.0.1', 'kubernetes', '10.0.0.11', 'Kubernetes', '10.0.0.11', '',
             'https://API.example.com:6443', 'https://10.0.0.100', 'https://[fd00::1]:6443', 'cp1']
    assert A.split_sans(names) == {
        'ip_addresses': ['10.32.0.1', '127.0.0.1', '10.0.0.11', '10.0.0.100', 'fd00::1'],
        'dns_names': ['kubernetes', 'api.example.com', 'cp1'],
    }


@pytest.mark.parametrize('names', ['cp1', [1], ['https://'], None])
def test_split_sans_refuses_what_is_not_a_list_of_names(names):
    with pytest.raises(AnsibleFilterError, match='split_sans'):
        A.split_sans(names)


@pytest.mark.parametrize(
    'cidr, n, expected',
    [
        ('10.32.0.0/24', 1, '10.32.0.1'),
        ('10.32.0.0/24', 10, '10.32.0.10'),
        ('10.32.0.0/24', '10', '10.32.0.10'),
        ('10.32.0.0/24', 0, '10.32.0.0'),
        ('10.32.0.0/24', 255, '10.32.0.255'),
        ('10.32.0.7/24', 1, '10.32.0.1'),
        ('10.96.0.0/12', 256, '10.96.1.0'),
        ('fd00:10:96::/112', 10, 'fd00:10:96::a'),
    ],
)
def test_cidr_nth(cidr, n, expected):
    assert A.cidr_nth(cidr, n) == expected


@pytest.mark.parametrize(
    'cidr, n, message',
    [
        ('10.32.0.0/24', 256, '10.32.0.0/24 has 256 addresses (0 to 255), so address #256 does not exist'),
        ('10.32.0.0/24', -1, 'address #-1 does not exist'),
        ('10.32.0.0', 1, "network '10.32.0.0' is not a CIDR"),
        ('10.32.0.0/33', 1, 'is not a valid CIDR'),
        ('10.32.0.0/24', 'x', "n must be an integer, got 'x'"),
    ],
)
def test_cidr_nth_errors(cidr, n, message):
    with pytest.raises(AnsibleFilterError) as err:
        A.cidr_nth(cidr, n)
    assert message in str(err.value)


def test_cidr_overlaps_named():
    named = {'pod CIDR': '10.200.0.0/16', 'service CIDR': '10.200.0.0/24', 'node network': '192.168.56.0/24'}
    assert A.cidr_overlaps(named) == ['pod CIDR 10.200.0.0/16 overlaps service CIDR 10.200.0.0/24']
    assert A.cidr_overlaps({'pod CIDR': '10.200.0.0/16', 'service CIDR': '10.32.0.0/24'}) == []
    # lists of networks per name, and empty values are skipped
    named = {'nodes': ['192.168.56.0/24', '192.168.57.0/24'], 'pods': '192.168.57.128/25', 'extra': None}
    assert A.cidr_overlaps(named) == ['nodes 192.168.57.0/24 overlaps pods 192.168.57.128/25']


def test_cidr_overlaps_list_and_versions():
    assert A.cidr_overlaps(['10.0.0.0/8', '10.1.0.0/16', 'fd00::/8', '172.16.0.0/12']) == [
        '10.0.0.0/8 overlaps 10.1.0.0/16'
    ]
    assert A.cidr_overlaps(['10.0.0.0/24', '10.0.1.0/24']) == []
    with pytest.raises(AnsibleFilterError, match="pods 'banana' is not a CIDR"):
        A.cidr_overlaps({'pods': 'banana'})
    with pytest.raises(AnsibleFilterError, match='expects a dict'):
        A.cidr_overlaps('10.0.0.0/8')


@pytest.mark.parametrize(
    'key, expected',
    [
        ('/coreos.com/network/subnets/10.200.52.0-24', '10.200.52.0/24'),
        ('10.200.52.0-24', '10.200.52.0/24'),
        ('/coreos.com/network/v6subnets/fd00:200:0:3400::-56', 'fd00:200:0:3400::/56'),
    ],
)
def test_flannel_lease_cidr(key, expected):
    assert A.flannel_lease_cidr(key) == expected


@pytest.mark.parametrize('key', ['/coreos.com/network/config', '', None, 'x-y'])
def test_flannel_lease_cidr_errors(key):
    with pytest.raises(AnsibleFilterError, match='flannel_lease_cidr'):
        A.flannel_lease_cidr(key)


def test_cidr_contains():
    assert A.cidr_contains('10.32.0.0/24', '10.32.0.10') is True
    assert A.cidr_contains('10.32.0.0/24', '10.33.0.10') is False
    assert A.cidr_contains('10.200.0.0/16', '10.200.52.0/24') is True
    assert A.cidr_contains('10.200.0.0/16', '10.0.0.0/8') is False
    assert A.cidr_contains('10.0.0.0/8', 'fd00::1') is False
    with pytest.raises(AnsibleFilterError, match="'nope' is not an IP address or CIDR"):
        A.cidr_contains('10.0.0.0/8', 'nope')


def test_missing_netaddr(monkeypatch):
    monkeypatch.setattr(A, 'netaddr', None)
    with pytest.raises(AnsibleFilterError, match='needs the Python library netaddr'):
        A.cidr_nth('10.0.0.0/24', 1)


def test_through_jinja(tmp_path):
    """The filters work by their collection name in a real template (the collection found through
    ANSIBLE_COLLECTIONS_PATH alone)."""
    expr = (
        "{{ '10.32.0.0/24' | hardway.kubernetes.cidr_nth(10) }} "
        "{{ {'pods': '10.200.0.0/16', 'services': '10.200.1.0/24'} | hardway.kubernetes.cidr_overlaps }}"
    )
    rc, result, output = run_adhoc('ansible.builtin.debug', {'msg': expr}, tmp_path, pythonpath=False)
    assert rc == 0, output
    assert result['msg'] == "10.32.0.10 ['pods 10.200.0.0/16 overlaps services 10.200.1.0/24']", output
