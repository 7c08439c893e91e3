"""The artifacts role's filters (plugins/filter/artifacts.py), and its real catalog through them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import artifacts as A
from hardway_testlib import run_adhoc

REPO = Path(__file__).resolve().parents[2]
CACHE = '/cache'
UPSTREAM = {'dl.k8s.io': 'https://dl.k8s.io', 'github.com': 'https://github.com/'}
KUBELET = {'name': 'kubelet', 'site': 'dl.k8s.io', 'dir': 'release/v1.37.1/bin/linux/amd64', 'file': 'kubelet',
           'checksum': '.sha256', 'install': {'kubelet': ['nodes']}}
ETCD = {'name': 'etcd', 'site': 'github.com', 'dir': 'etcd-io/etcd/releases/download/v3.6.16',
        'file': 'etcd-v3.6.16-linux-amd64.tar.gz', 'checksum': 'SHA256SUMS',
        'archive_root': 'etcd-v3.6.16-linux-amd64/',
        'install': {'etcd': ['etcd'], 'etcdctl': ['etcd', 'control_plane']}}
FLANNEL_CNI = {'name': 'flannel-cni', 'site': 'github.com', 'dir': 'flannel-io/cni-plugin/releases/download/v0.9.1',
               'file': 'cni-plugin-flannel-linux-amd64-v0.9.1.tgz', 'checksum': '.sha256', 'cni': True,
               'install': {'flannel-amd64': ['nodes']}, 'rename': {'flannel-amd64': 'flannel'}}
CATALOG = [KUBELET, ETCD, FLANNEL_CNI]
IMAGES = [{'archive': 'pause-3.10.2.tar', 'ref': 'registry.k8s.io/pause:3.10.2', 'pinned': True}]


def test_registered():
    assert set(A.FilterModule().filters()) == {'artifact_downloads', 'artifact_installs', 'image_downloads',
                                               'image_files', 'artifact_url_installs', 'images_for_host',
                                               'image_url_files', 'artifact_probe_urls'}


def test_downloads_upstream():
    kubelet, etcd, cni = A.artifact_downloads(CATALOG, CACHE, '', UPSTREAM)
    path = 'release/v1.37.1/bin/linux/amd64/kubelet'
    assert kubelet == {'name': 'kubelet', 'url': 'https://dl.k8s.io/' + path,
                       'checksum_url': 'https://dl.k8s.io/' + path + '.sha256', 'key': 'dl.k8s.io/' + path,
                       'dest': '/cache/dl.k8s.io/' + path, 'extract_dir': None}
    base = 'https://github.com/etcd-io/etcd/releases/download/v3.6.16/'
    assert etcd['url'] == base + 'etcd-v3.6.16-linux-amd64.tar.gz'
    assert etcd['checksum_url'] == base + 'SHA256SUMS'  # a checksum list beside the file
    assert etcd['extract_dir'] == '/cache/extracted/github.com/etcd-io/etcd/releases/download/v3.6.16/' \
        'etcd-v3.6.16-linux-amd64.tar.gz'
    assert cni['extract_dir'].endswith('.tgz') and cni['checksum_url'].endswith('.tgz.sha256')


def test_downloads_from_a_mirror_keep_their_keys():
    upstream = A.artifact_downloads(CATALOG, CACHE, '', UPSTREAM)
    mirrored = A.artifact_downloads(CATALOG, CACHE, 'file:///srv/mirror/', UPSTREAM)
    assert mirrored[0]['url'] == 'file:///srv/mirror/dl.k8s.io/release/v1.37.1/bin/linux/amd64/kubelet'
    assert [d['key'] for d in mirrored] == [d['key'] for d in upstream]
    assert [d['dest'] for d in mirrored] == [d['dest'] for d in upstream]
    # without a mirror, a site must have an upstream URL
    with pytest.raises(AnsibleFilterError, match='kubelet comes from dl.k8s.io, which has no URL'):
        A.artifact_downloads(CATALOG, CACHE, '', {'github.com': 'https://github.com'})
    assert A.artifact_downloads(CATALOG, CACHE, 'http://m', {})[0]['url'].startswith('http://m/dl.k8s.io/')


def test_installs_by_group():
    assert A.artifact_installs(CATALOG, CACHE, ['nodes'], '/usr/local/bin', '/opt/cni/bin') == [
        {'src': '/cache/dl.k8s.io/release/v1.37.1/bin/linux/amd64/kubelet', 'dest': '/usr/local/bin/kubelet',
         'mode': '0755'},
        {'src': '/cache/extracted/github.com/flannel-io/cni-plugin/releases/download/v0.9.1/'
                'cni-plugin-flannel-linux-amd64-v0.9.1.tgz/flannel-amd64', 'dest': '/opt/cni/bin/flannel',
         'mode': '0755'},
    ]
    etcd_dir = '/cache/extracted/github.com/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz/' \
        'etcd-v3.6.16-linux-amd64/'
    assert A.artifact_installs(CATALOG, CACHE, ['control_plane', 'etcd'], '/b', '/c') == [
        {'src': etcd_dir + 'etcd', 'dest': '/b/etcd', 'mode': '0755'},
        {'src': etcd_dir + 'etcdctl', 'dest': '/b/etcdctl', 'mode': '0755'}]
    assert A.artifact_installs(CATALOG, CACHE, ['control_plane'], '/b', '/c') == [
        {'src': etcd_dir + 'etcdctl', 'dest': '/b/etcdctl', 'mode': '0755'}]
    assert A.artifact_installs(CATALOG, CACHE, [], '/b', '/c') == []


CRDS = {'name': 'crds', 'site': 'github.com', 'dir': 'o/r/releases/download/v1.0.0', 'file': 'crds.yaml',
        'checksum': '.sha256', 'install': {'crds.yaml': ['control_plane']}, 'install_dir': '/etc/kubernetes/addons/',
        'mode': '0644'}


@pytest.mark.parametrize('enabled', [False, 'false', 'False', 'no', ''])
def test_disabled_entries_are_neither_fetched_nor_installed(enabled):
    catalog = [KUBELET, dict(CRDS, enabled=enabled)]
    assert [d['name'] for d in A.artifact_downloads(catalog, CACHE, 'http://m', {})] == ['kubelet']
    assert A.artifact_installs(catalog, CACHE, ['control_plane', 'nodes'], '/b', '/c') == [
        {'src': '/cache/dl.k8s.io/release/v1.37.1/bin/linux/amd64/kubelet', 'dest': '/b/kubelet', 'mode': '0755'}]


@pytest.mark.parametrize('enabled', [True, 'true', 'True', 'yes'])
def test_enabled_entry_installs_into_its_own_directory_with_its_mode(enabled):
    catalog = [dict(CRDS, enabled=enabled)]
    assert [d['key'] for d in A.artifact_downloads(catalog, CACHE, 'http://m', {})] == [
        'github.com/o/r/releases/download/v1.0.0/crds.yaml']
    assert A.artifact_installs(catalog, CACHE, ['control_plane'], '/b', '/c') == [
        {'src': '/cache/github.com/o/r/releases/download/v1.0.0/crds.yaml',
         'dest': '/etc/kubernetes/addons/crds.yaml', 'mode': '0644'}]


@pytest.mark.parametrize('catalog, message', [
    ({'name': 'x'}, 'expects the catalog (a list), got dict'),
    ([dict(KUBELET, checksum='')], 'catalog entry kubelet lacks checksum'),
    ([{'name': 'x', 'site': 's'}], 'catalog entry x lacks dir, file, checksum, install'),
])
def test_catalog_errors(catalog, message):
    with pytest.raises(AnsibleFilterError) as err:
        A.artifact_installs(catalog, CACHE, ['nodes'], '/b', '/c')
    assert message in str(err.value)


def test_images():
    assert A.image_downloads(IMAGES, 'file:///m/images', '/cache/images') == [
        {'name': 'registry.k8s.io/pause:3.10.2', 'url': 'file:///m/images/pause-3.10.2.tar',
         'checksum_url': 'file:///m/images/pause-3.10.2.tar.sha256', 'key': 'images/pause-3.10.2.tar',
         'dest': '/cache/images/pause-3.10.2.tar'}]
    assert A.image_files(IMAGES, '/cache/images', '/var/lib/hardway/images') == [
        {'src': '/cache/images/pause-3.10.2.tar', 'dest': '/var/lib/hardway/images/pause-3.10.2.tar', 'mode': '0644'}]
    assert A.image_files([], '/c', '/h') == []
    with pytest.raises(AnsibleFilterError, match='needs archive and ref'):
        A.image_files([{'archive': 'x.tar'}], '/c', '/h')


@pytest.mark.parametrize('addons', [False, True])
def test_the_roles_catalog(tmp_path, addons):
    """The artifacts role's own catalog, rendered by Ansible with the collection's pins, through the filters;
    the addons' CRDs only when the addons are on, into their own directory."""
    expr = ("{{ _artifacts_catalog | hardway.kubernetes.artifact_installs('/c', ['control_plane', 'etcd', 'nodes', "
            "'pod_network'], "
            "'/b', '/n') | map(attribute='dest') | list }}")
    variables = yaml.safe_load((REPO / 'roles/cluster/defaults/main/versions.yml').read_text())
    variables.update(yaml.safe_load((REPO / 'roles/artifacts/vars/main.yml').read_text()))
    variables = {k: v for k, v in variables.items() if k.startswith(('_artifacts_k8s', '_artifacts_gh',
                                                                    '_artifacts_catalog', 'cluster_'))}
    variables['cluster_dns_mode'] = 'systemd'
    variables['cluster_config_dir'] = '/etc/kubernetes'
    variables['cluster_ingress_enabled'] = variables['cluster_cert_manager_enabled'] = addons
    rc, result, output = run_adhoc('ansible.builtin.debug', {'msg': expr}, tmp_path, pythonpath=False,
                                   extra_vars=variables)
    assert rc == 0, output
    assert sorted(result['msg']) == sorted(
        ['/b/' + n for n in ('kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'kubelet',
                             'kube-proxy', 'etcd', 'etcdctl', 'etcdutl', 'containerd', 'containerd-shim-runc-v2', 'ctr',
                             'runc', 'flanneld', 'crictl', 'coredns')]
        + ['/n/' + n for n in ('bridge', 'host-local', 'loopback', 'portmap', 'flannel')]
        + (['/etc/kubernetes/addons/crds/gateway-api-v1.5.1.yaml',
            '/etc/kubernetes/addons/crds/cert-manager-v1.20.3.yaml'] if addons else [])), output


def test_a_control_plane_that_joins_the_pod_network_gets_flanneld_alone(tmp_path):
    """cluster_control_plane_pod_network: the control plane's hosts get flanneld, none of a node's binaries."""
    expr = ("{{ _artifacts_catalog | hardway.kubernetes.artifact_installs('/c', ['control_plane', 'etcd', "
            "'pod_network'], '/b', '/n') | map(attribute='dest') | list }}")
    variables = yaml.safe_load((REPO / 'roles/cluster/defaults/main/versions.yml').read_text())
    variables.update(yaml.safe_load((REPO / 'roles/artifacts/vars/main.yml').read_text()))
    variables = {k: v for k, v in variables.items() if k.startswith(('_artifacts_k8s', '_artifacts_gh',
                                                                    '_artifacts_catalog', 'cluster_'))}
    variables.update(cluster_dns_mode='deployment', cluster_config_dir='/etc/kubernetes',
                     cluster_ingress_enabled=False, cluster_cert_manager_enabled=False)
    rc, result, output = run_adhoc('ansible.builtin.debug', {'msg': expr}, tmp_path, pythonpath=False,
                                   extra_vars=variables)
    assert rc == 0, output
    assert sorted(result['msg']) == sorted(
        ['/b/' + n for n in ('kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl',
                             'etcd', 'etcdctl', 'etcdutl', 'flanneld')]), output


MIRROR = 'http://10.0.0.4:8080'
DIGESTS = {'kubelet': {'sha256': '1' * 64, 'key': 'k'}, 'etcd': {'sha256': '2' * 64}, 'flannel-cni': '3' * 64}


def test_url_installs_name_the_download_and_the_member():
    """The host downloads what it runs: a download that is the file itself has no member, an archive's file
    names its path inside; destinations are those of artifact_installs."""
    downloads = A.artifact_downloads(CATALOG, CACHE, MIRROR, UPSTREAM)
    items = A.artifact_url_installs(CATALOG, downloads, DIGESTS, ['nodes', 'etcd'], '/b', '/n')
    base = MIRROR + '/github.com/'
    assert items == [
        {'url': MIRROR + '/dl.k8s.io/release/v1.37.1/bin/linux/amd64/kubelet', 'url_sha256': '1' * 64,
         'dest': '/b/kubelet', 'mode': '0755'},
        {'url': base + 'etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz',
         'url_sha256': '2' * 64, 'dest': '/b/etcd', 'mode': '0755', 'member': 'etcd-v3.6.16-linux-amd64/etcd'},
        {'url': base + 'etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz',
         'url_sha256': '2' * 64, 'dest': '/b/etcdctl', 'mode': '0755', 'member': 'etcd-v3.6.16-linux-amd64/etcdctl'},
        {'url': base + 'flannel-io/cni-plugin/releases/download/v0.9.1/cni-plugin-flannel-linux-amd64-v0.9.1.tgz',
         'url_sha256': '3' * 64, 'dest': '/n/flannel', 'mode': '0755', 'member': 'flannel-amd64'}]
    assert [i['dest'] for i in items] == [i['dest'] for i in A.artifact_installs(CATALOG, CACHE, ['nodes', 'etcd'],
                                                                                 '/b', '/n')]
    assert A.artifact_url_installs(CATALOG, downloads, DIGESTS, ['control_plane'], '/b', '/n') == [
        dict(items[2])]


def test_url_installs_refuse_a_missing_digest():
    downloads = A.artifact_downloads(CATALOG, CACHE, MIRROR, UPSTREAM)
    with pytest.raises(AnsibleFilterError, match='no sha256 resolved for etcd'):
        A.artifact_url_installs(CATALOG, downloads, {'kubelet': '1' * 64}, ['etcd'], '/b', '/n')
    with pytest.raises(AnsibleFilterError, match='etcd is not among the downloads'):
        A.artifact_url_installs(CATALOG, downloads[:1], DIGESTS, ['etcd'], '/b', '/n')


def test_images_for_host_and_their_urls():
    test = {'archive': 'agnhost.tar', 'ref': 'hardway.local/agnhost:1', 'groups': ['testers', 'w9']}
    images = IMAGES + [test]
    assert A.images_for_host(images, ['workers', 'w1']) == IMAGES
    assert A.images_for_host(images, ['workers', 'w9']) == images
    assert A.images_for_host(images, ['testers']) == images
    assert A.image_url_files(IMAGES, MIRROR + '/images', {IMAGES[0]['ref']: {'sha256': 'a' * 64}}, '/h') == [
        {'url': MIRROR + '/images/pause-3.10.2.tar', 'url_sha256': 'a' * 64, 'dest': '/h/pause-3.10.2.tar',
         'mode': '0644'}]
    with pytest.raises(AnsibleFilterError, match='no sha256 resolved'):
        A.image_url_files(IMAGES, MIRROR + '/images', {}, '/h')


def test_probe_urls_one_per_server():
    """A mirror is one server: one probe; upstream is two; image archives add their server unless it is the same."""
    mirrored = A.artifact_downloads(CATALOG, CACHE, MIRROR, UPSTREAM)
    assert A.artifact_probe_urls(CATALOG, mirrored, ['nodes'], IMAGES, MIRROR + '/images') == [
        {'url': MIRROR + '/dl.k8s.io/release/v1.37.1/bin/linux/amd64/kubelet.sha256', 'var': 'artifacts_mirror'}]
    upstream = A.artifact_downloads(CATALOG, CACHE, '', UPSTREAM)
    assert A.artifact_probe_urls(CATALOG, upstream, ['nodes'], IMAGES, MIRROR + '/images',
                                 'artifacts_upstream') == [
        {'url': 'https://dl.k8s.io/release/v1.37.1/bin/linux/amd64/kubelet.sha256', 'var': 'artifacts_upstream'},
        {'url': 'https://github.com/flannel-io/cni-plugin/releases/download/v0.9.1/'
                'cni-plugin-flannel-linux-amd64-v0.9.1.tgz.sha256', 'var': 'artifacts_upstream'},
        {'url': MIRROR + '/images/pause-3.10.2.tar.sha256', 'var': 'artifacts_images_url'}]
    # an etcd-only host downloads from github.com alone; file:// is nothing a host is asked for
    assert [p['url'].split('/')[2] for p in A.artifact_probe_urls(CATALOG, upstream, ['etcd'])] == ['github.com']
    assert A.artifact_probe_urls(CATALOG, A.artifact_downloads(CATALOG, CACHE, 'file:///m', UPSTREAM),
                                 ['nodes']) == []
