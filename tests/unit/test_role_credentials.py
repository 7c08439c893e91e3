"""How the roles put certificates, keys and kubeconfigs on the hosts, read from the roles' files.

The pki role only issues on the controller; each component role installs
what its own service reads in the same install_files step as its unit, which
notifies that role's restart handler and counts a file the pki role
re-issued in this run (one that another role may have put on the host
first). Together the roles give each kind of host exactly the files it had
when the pki role spread them; no unit carries a hash of certificates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.hardway.kubernetes.plugins.filter.state import credential_files

REPO = Path(__file__).resolve().parents[2]
# role -> (tasks file, restart handler)
ROLES = {
    'etcd': ('main.yml', 'Restart etcd'),
    'kube_apiserver': ('main.yml', 'Restart kube-apiserver'),
    'kube_controller_manager': ('main.yml', 'Restart kube-controller-manager'),
    'kube_scheduler': ('main.yml', 'Restart kube-scheduler'),
    'flannel': ('main.yml', 'Restart flanneld'),
    'kubelet': ('main.yml', 'Restart kubelet'),
    'kube_proxy': ('main.yml', 'Restart kube-proxy'),
    'coredns': ('node.yml', 'Restart coredns'),
}
# What each kind of host had from the pki role before the roles installed their own (f981db1).
CONTROL_PLANE = {
    'pki/' + f: '/etc/kubernetes/pki/' + f for f in (
        'kubernetes-ca.pem', 'etcd-ca.pem', 'front-proxy-ca.pem', 'kube-apiserver.pem', 'kube-apiserver-key.pem',
        'kube-apiserver-kubelet-client.pem', 'kube-apiserver-kubelet-client-key.pem',
        'kube-apiserver-etcd-client.pem', 'kube-apiserver-etcd-client-key.pem', 'front-proxy-client.pem',
        'front-proxy-client-key.pem', 'service-account-key.pem', 'service-account.pub')}
CONTROL_PLANE.update({f'kubeconfigs/{k}.kubeconfig': f'/etc/kubernetes/{k}.kubeconfig'
                      for k in ('admin-local', 'kube-controller-manager', 'kube-scheduler')})
ETCD = {'pki/' + f: '/etc/kubernetes/pki/' + f for f in (
    'etcd-ca.pem', 'etcd-server-h.pem', 'etcd-server-h-key.pem', 'etcd-peer-h.pem', 'etcd-peer-h-key.pem')}
NODE = {'pki/' + f: '/etc/kubernetes/pki/' + f for f in (
    'kubernetes-ca.pem', 'etcd-ca.pem', 'kubelet-n.pem', 'kubelet-n-key.pem', 'etcd-client-flannel.pem',
    'etcd-client-flannel-key.pem')}
NODE.update({'kubeconfigs/kubelet-n.kubeconfig': '/etc/kubernetes/kubelet.kubeconfig',
             'kubeconfigs/kube-proxy.kubeconfig': '/etc/kubernetes/kube-proxy.kubeconfig'})
SYSTEMD_DNS = {'kubeconfigs/coredns.kubeconfig': '/etc/kubernetes/coredns.kubeconfig'}
# The same host files, each CA now from its trust bundle (which holds two CAs during a rotation).
for _files in (CONTROL_PLANE, ETCD, NODE):
    for _ca in ('kubernetes-ca', 'etcd-ca', 'front-proxy-ca'):
        if f'pki/{_ca}.pem' in _files:
            _files[f'pki/{_ca}-bundle.pem'] = _files.pop(f'pki/{_ca}.pem')


def load(path):
    return yaml.safe_load((REPO / path).read_text())


def credentials(role, name='h', node='n'):
    """A role's credentials, its few templates rendered for a host ``name`` with node name ``node``."""
    items = load(f'roles/{role}/vars/main.yml')[f'_{role}_credentials']
    out = []
    for item in items:
        out.append({k: v.replace('{{ inventory_hostname }}', name).replace('{{ cluster_node_name }}', node)
                    for k, v in item.items()})
    return out


def installed(*roles, extra=()):
    items = [c for role in roles for c in credentials(role)] + list(extra)
    files = credential_files(items, '/state', '/etc/kubernetes/pki', '/etc/kubernetes')
    out = {}
    for f in files:
        src = f['src'].removeprefix('/state/')
        assert out.get(src, f['dest']) == f['dest']
        out[src] = f['dest']
        secret = f['dest'].endswith('-key.pem') or f['dest'].endswith('.kubeconfig')
        assert f['mode'] == ('0600' if secret else '0644'), f
    return out


def test_each_kind_of_host_gets_what_it_had():
    assert installed('kube_apiserver', 'kube_controller_manager', 'kube_scheduler',
                     extra=[{'kubeconfig': 'admin-local'}]) == CONTROL_PLANE
    assert installed('etcd') == ETCD
    assert installed('kubelet', 'kube_proxy', 'flannel') == NODE
    assert installed('coredns') == SYSTEMD_DNS


def test_no_ca_key_and_no_other_hosts_files():
    for role in ROLES:
        for item in credentials(role):
            kind, name = next((k, v) for k, v in item.items() if k != 'as')
            assert not (name.endswith('-ca') and kind in ('cert', 'key')), (role, item)  # a CA: its certificate only
            # a per-host credential is this host's (its node name, its inventory name)
            assert not name.startswith('kubelet-') or name == 'kubelet-n', (role, item)
            assert not name.startswith(('etcd-server-', 'etcd-peer-')) or name.endswith('-h'), (role, item)


def test_admin_kubeconfig_restarts_nothing():
    """kubectl's kubeconfig goes to the control plane in a step of its own: kube-apiserver does not read it."""
    tasks = load('roles/kube_apiserver/tasks/main.yml')
    admin = next(t for t in tasks if t.get('hardway.kubernetes.install_files', {}).get('files')
                 == '{{ _kube_apiserver_admin_files }}')
    assert 'notify' not in admin


@pytest.mark.parametrize('role', sorted(ROLES))
def test_installed_with_the_unit_and_restarting_the_service(role):
    tasks_file, handler = ROLES[role]
    tasks = load(f'roles/{role}/tasks/{tasks_file}')
    step = next(t for t in tasks if f'_{role}_credential_files' in
                str(t.get('hardway.kubernetes.install_files', {}).get('files', '')))
    files = step['hardway.kubernetes.install_files']['files']
    assert files.startswith(f'{{{{ _{role}_files'), files  # with the unit and the role's other files
    units = [f['dest'] for f in step['vars'][f'_{role}_files'] if f['dest'].endswith('.service')]
    assert len(units) == 1, units
    assert step['notify'] == handler
    register = step['register']
    assert register == f'_{role}_installed'
    assert ' '.join(step['changed_when'].split()) == (
        f'{register} is changed or {register} | hardway.kubernetes.reissued(pki_changed_files | default([]))')
    handlers = load(f'roles/{role}/handlers/main.yml')
    assert handler in [h['name'] for h in handlers]


def test_pki_issues_only_and_notes_what_it_reissued():
    tasks = load('roles/pki/tasks/main.yml')
    assert len(tasks) == 1 and tasks[0]['delegate_to'] == 'localhost' and tasks[0]['run_once'] is True
    block = tasks[0]['block']
    modules = [next(k for k in t if k.startswith(('hardway.', 'ansible.'))) for t in block]
    assert modules.count('hardway.kubernetes.pki') == 1 and modules.count('hardway.kubernetes.kubeconfig') == 1
    assert 'hardway.kubernetes.install_files' not in modules
    note = next(t for t in block if 'ansible.builtin.set_fact' in t)['ansible.builtin.set_fact']
    assert 'changed_credentials' in note['pki_changed_files']


def test_no_unit_hashes_inputs():
    for unit in REPO.glob('roles/*/templates/*.service.j2'):
        text = unit.read_text()
        assert 'hash(' not in text and 'cluster_state_dir' not in text, unit


def test_vars_files_hold_data_not_programs():
    for path in list(REPO.glob('roles/*/vars/**/*.yml')) + list(REPO.glob('roles/*/defaults/**/*.yml')):
        text = path.read_text()
        assert '{%' not in text, f'{path.relative_to(REPO)}: a Jinja statement; use a filter (plugins/filter)'
