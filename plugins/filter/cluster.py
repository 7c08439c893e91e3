# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""What the cluster's hosts make: node records, per-node certificates and kubeconfigs, etcd's members.

- ``node_records(hosts, hostvars)``: ``{host, name, address}`` of each host (its inventory name,
  Kubernetes node name and cluster address).
- ``pki_node_certificates(pod_nodes, etcd_nodes)``: the certificate requests of the pki module for
  each kubelet and each etcd member.
- ``kubelet_kubeconfigs(pod_nodes, server)``: a kubeconfig request per kubelet.
- ``kubeconfig_files(kubeconfigs, state_dir)``: kubeconfig requests as the kubeconfig module takes
  them, with every path in the controller's state directory.
- ``etcd_initial_cluster(etcd_nodes, peer_port)``: etcd's ``--initial-cluster`` value.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.hardway.kubernetes.plugins.filter.state import state_path


def _records(nodes, filter_name):
    if not isinstance(nodes, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.%s expects a list of node records (node_records), got %s'
                                 % (filter_name, type(nodes).__name__))
    for node in nodes:
        if not isinstance(node, dict) or not all(node.get(k) for k in ('host', 'name', 'address')):
            raise AnsibleFilterError('hardway.kubernetes.%s: %r is not a node record {host, name, address}'
                                     % (filter_name, node))
    return nodes


def hosts_variables(hosts, hostvars, filter_name):
    """``[(host, its variables)]`` for a list of inventory hosts; a filter's error for anything else."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.%s expects a list of hosts, got %s'
                                 % (filter_name, type(hosts).__name__))
    out = []
    for host in hosts:
        try:
            out.append((host, hostvars[host]))
        except KeyError:
            raise AnsibleFilterError('hardway.kubernetes.%s: %s is not in the inventory'
                                     % (filter_name, host)) from None
    return out


def node_records(hosts, hostvars):
    """``{host, name, address}`` per host: ``cluster_node_name`` (default: the host) and ``cluster_node_address``."""
    out = []
    for host, variables in hosts_variables(hosts, hostvars, 'node_records'):
        address = variables.get('cluster_node_address') if 'cluster_node_address' in variables else None
        if not address:
            raise AnsibleFilterError('hardway.kubernetes.node_records: host %s has no cluster_node_address (the '
                                     'preflight play sets it for every host it reaches)' % host)
        name = variables.get('cluster_node_name') if 'cluster_node_name' in variables else None
        out.append({'host': str(host), 'name': str(name or host), 'address': str(address)})
    return out


def pki_node_certificates(pod_nodes, etcd_nodes):
    """Certificate requests: ``kubelet-<node>`` per pod node, ``etcd-server-<host>`` and ``etcd-peer-<host>``
    per etcd member (server and client usage: members talk to each other as clients too)."""
    out = []
    for node in _records(pod_nodes, 'pki_node_certificates'):
        out.append({'name': 'kubelet-' + node['name'], 'ca': 'kubernetes-ca', 'common_name': 'system:node:'
                    + node['name'], 'organization': ['system:nodes'], 'usage': ['client', 'server'],
                    'dns_names': [node['name']], 'ip_addresses': [node['address']]})
    for node in _records(etcd_nodes, 'pki_node_certificates'):
        for kind in ('server', 'peer'):
            out.append({'name': 'etcd-%s-%s' % (kind, node['host']), 'ca': 'etcd-ca', 'common_name': node['host'],
                        'usage': ['server', 'client'], 'dns_names': [node['host'], 'localhost'],
                        'ip_addresses': [node['address'], '127.0.0.1']})
    return out


def kubelet_kubeconfigs(pod_nodes, server):
    """A kubeconfig request ``{name, cert, server}`` per pod node, named like its certificate."""
    return [{'name': 'kubelet-' + n['name'], 'cert': 'kubelet-' + n['name'], 'server': server}
            for n in _records(pod_nodes, 'kubelet_kubeconfigs')]


def kubeconfig_files(kubeconfigs, state_dir):
    """``{name, cert, server[, path]}`` -> the kubeconfig module's ``{path, server, user, client_cert_file,
    client_key_file}``: user ``name``, certificate ``cert`` from the state, written to ``path`` (default: the
    state's kubeconfig of that name)."""
    if not isinstance(kubeconfigs, (list, tuple)):
        raise AnsibleFilterError('hardway.kubernetes.kubeconfig_files expects a list, got %s'
                                 % type(kubeconfigs).__name__)
    out = []
    for k in kubeconfigs:
        if not isinstance(k, dict) or not all(k.get(key) for key in ('name', 'cert', 'server')):
            raise AnsibleFilterError('hardway.kubernetes.kubeconfig_files: %r needs name, cert and server' % (k,))
        out.append({'path': k.get('path') or state_path(state_dir, 'kubeconfig', k['name']), 'server': k['server'],
                    'user': k.get('user') or k['name'],
                    'client_cert_file': state_path(state_dir, 'cert', k['cert']),
                    'client_key_file': state_path(state_dir, 'key', k['cert'])})
    return out


def etcd_initial_cluster(etcd_nodes, peer_port):
    """``host=https://address:port,...`` for every etcd member, in inventory order."""
    return ','.join('%s=https://%s:%s' % (n['host'], n['address'], peer_port)
                    for n in _records(etcd_nodes, 'etcd_initial_cluster'))


class FilterModule:
    """hardway.kubernetes filters for what the cluster's hosts make."""

    def filters(self):
        return {
            'node_records': node_records,
            'pki_node_certificates': pki_node_certificates,
            'kubelet_kubeconfigs': kubelet_kubeconfigs,
            'kubeconfig_files': kubeconfig_files,
            'etcd_initial_cluster': etcd_initial_cluster,
        }
