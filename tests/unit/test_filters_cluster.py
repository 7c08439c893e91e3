"""The filters in plugins/filter/cluster.py: node records, per-node certificates and kubeconfigs, etcd's members."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import cluster as C
from hardway_testlib import run_adhoc

HOSTVARS = {
    'cp1': {'cluster_node_address': '10.0.0.11', 'cluster_node_name': 'cp1'},
    'w1': {'cluster_node_address': '10.0.0.21', 'cluster_node_name': 'node-a'},
    'w2': {'cluster_node_address': '10.0.0.22'},  # no node name: the inventory name
    'w3': {'cluster_node_name': 'w3'},
}
CP = {'host': 'cp1', 'name': 'cp1', 'address': '10.0.0.11'}
W1 = {'host': 'w1', 'name': 'node-a', 'address': '10.0.0.21'}
W2 = {'host': 'w2', 'name': 'w2', 'address': '10.0.0.22'}


def test_registered():
    assert set(C.FilterModule().filters()) == {'node_records', 'pki_node_certificates', 'kubelet_kubeconfigs',
                                               'kubeconfig_files', 'etcd_initial_cluster'}


def test_node_records():
    assert C.node_records(['cp1', 'w1', 'w2'], HOSTVARS) == [CP, W1, W2]
    assert C.node_records([], HOSTVARS) == []


@pytest.mark.parametrize('hosts, message', [
    (['w3'], 'host w3 has no cluster_node_address'),
    (['nope'], 'nope is not in the inventory'),
    ('cp1', 'expects a list of hosts, got str'),
])
def test_node_records_errors(hosts, message):
    with pytest.raises(AnsibleFilterError) as err:
        C.node_records(hosts, HOSTVARS)
    assert message in str(err.value)


def test_pki_node_certificates():
    assert C.pki_node_certificates([W1], [CP]) == [
        {'name': 'kubelet-node-a', 'ca': 'kubernetes-ca', 'common_name': 'system:node:node-a',
         'organization': ['system:nodes'], 'usage': ['client', 'server'], 'dns_names': ['node-a'],
         'ip_addresses': ['10.0.0.21']},
        {'name': 'etcd-server-cp1', 'ca': 'etcd-ca', 'common_name': 'cp1', 'usage': ['server', 'client'],
         'dns_names': ['cp1', 'localhost'], 'ip_addresses': ['10.0.0.11', '127.0.0.1']},
        {'name': 'etcd-peer-cp1', 'ca': 'etcd-ca', 'common_name': 'cp1', 'usage': ['server', 'client'],
         'dns_names': ['cp1', 'localhost'], 'ip_addresses': ['10.0.0.11', '127.0.0.1']},
    ]
    assert C.pki_node_certificates([], []) == []


def test_records_are_checked():
    with pytest.raises(AnsibleFilterError, match='is not a node record'):
        C.pki_node_certificates([{'host': 'w1', 'name': 'w1'}], [])
    with pytest.raises(AnsibleFilterError, match='expects a list of node records'):
        C.etcd_initial_cluster('cp1', 2380)


def test_kubelet_kubeconfigs():
    assert C.kubelet_kubeconfigs([W1, W2], 'https://10.0.0.11:6443') == [
        {'name': 'kubelet-node-a', 'cert': 'kubelet-node-a', 'server': 'https://10.0.0.11:6443'},
        {'name': 'kubelet-w2', 'cert': 'kubelet-w2', 'server': 'https://10.0.0.11:6443'},
    ]


def test_kubeconfig_files():
    items = [{'name': 'admin-local', 'cert': 'admin', 'server': 'https://127.0.0.1:6443'},
             {'name': 'admin', 'cert': 'admin', 'server': 'https://a:6443', 'path': '/s/admin.kubeconfig'}]
    assert C.kubeconfig_files(items, '/s') == [
        {'path': '/s/kubeconfigs/admin-local.kubeconfig', 'server': 'https://127.0.0.1:6443', 'user': 'admin-local',
         'client_cert_file': '/s/pki/admin.pem', 'client_key_file': '/s/pki/admin-key.pem'},
        {'path': '/s/admin.kubeconfig', 'server': 'https://a:6443', 'user': 'admin',
         'client_cert_file': '/s/pki/admin.pem', 'client_key_file': '/s/pki/admin-key.pem'},
    ]
    with pytest.raises(AnsibleFilterError, match='needs name, cert and server'):
        C.kubeconfig_files([{'name': 'x', 'cert': 'x'}], '/s')
    with pytest.raises(AnsibleFilterError, match='expects a list'):
        C.kubeconfig_files({'name': 'x'}, '/s')


def test_etcd_initial_cluster():
    assert C.etcd_initial_cluster([CP], 2380) == 'cp1=https://10.0.0.11:2380'
    # the member name is the inventory name, not the node name
    assert C.etcd_initial_cluster([CP, W1, W2], '2390') == \
        'cp1=https://10.0.0.11:2390,w1=https://10.0.0.21:2390,w2=https://10.0.0.22:2390'


def test_through_jinja(tmp_path):
    """With the real hostvars: the filters by their collection name in a template."""
    expr = ("{{ ['localhost'] | hardway.kubernetes.node_records(hostvars) "
            "| hardway.kubernetes.etcd_initial_cluster(2380) }}")
    rc, result, output = run_adhoc('ansible.builtin.debug', {'msg': expr}, tmp_path, pythonpath=False,
                                   extra_vars={'cluster_node_address': '127.0.0.1'})
    assert rc == 0, output
    assert result['msg'] == 'localhost=https://127.0.0.1:2380', output
