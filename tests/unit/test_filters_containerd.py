"""containerd's registry mirrors: containerd_registry_mirrors as hosts.toml files, and the preflight rules."""

from __future__ import annotations

import base64

import pytest
import tomllib
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import containerd as C
from ansible_collections.hardway.kubernetes.plugins.plugin_utils import preflight as P

CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
D = '/etc/containerd/certs.d'


def files_of(mirrors, config_dir=D):
    out = C.containerd_hosts_files(mirrors, config_dir)
    return out, {f['dest']: f for f in out['files']}


def test_filters_exported():
    assert set(C.FilterModule().filters()) == {'containerd_hosts_files'}


def test_no_mirrors_no_files():
    assert C.containerd_hosts_files([], D) == {'directories': [], 'files': []}
    assert C.containerd_hosts_files(None, D) == {'directories': [], 'files': []}


def test_one_mirror_then_the_registry_itself():
    out, files = files_of([{'registry': 'registry.k8s.io', 'endpoints': [{'url': 'http://172.29.0.5:5000'}]}])
    assert out['directories'] == [{'path': D + '/registry.k8s.io', 'mode': '0755'}]
    hosts = files[D + '/registry.k8s.io/hosts.toml']
    assert hosts['mode'] == '0644' and hosts['diff'] is True
    parsed = tomllib.loads(hosts['content'])
    # No server: containerd falls back to the registry itself after the hosts.
    assert 'server' not in parsed
    assert parsed['host'] == {'http://172.29.0.5:5000': {'capabilities': ['pull', 'resolve']}}


def test_mirrors_keep_their_order_and_options():
    out, files = files_of([{'registry': 'docker.io', 'endpoints': [
        {'url': 'https://a.example:5000', 'ca': CA, 'capabilities': ['pull']},
        {'url': 'https://b.example/cache/v2', 'skip_verify': True, 'override_path': True}]}], D + '/')
    text = files[D + '/docker.io/hosts.toml']['content']
    assert text.index('a.example') < text.index('b.example')
    parsed = tomllib.loads(text)
    assert parsed['host']['https://a.example:5000'] == {'capabilities': ['pull'],
                                                        'ca': D + '/docker.io/a.example_5000.crt'}
    assert parsed['host']['https://b.example/cache/v2'] == {'capabilities': ['pull', 'resolve'],
                                                            'skip_verify': True, 'override_path': True}
    assert files[D + '/docker.io/a.example_5000.crt'] == {'dest': D + '/docker.io/a.example_5000.crt',
                                                          'content': CA, 'mode': '0644'}


def test_without_upstream_the_last_mirror_is_the_server():
    _out, files = files_of([{'registry': 'quay.io', 'upstream': False, 'endpoints': [
        {'url': 'https://first.example'}, {'url': 'https://last.example', 'ca': CA}]}])
    parsed = tomllib.loads(files[D + '/quay.io/hosts.toml']['content'])
    assert parsed['server'] == 'https://last.example'
    assert parsed['ca'] == D + '/quay.io/last.example.crt'
    assert list(parsed['host']) == ['https://first.example']


def test_credentials_make_a_private_file_never_diffed():
    _out, files = files_of([{'registry': 'registry.example:5000', 'endpoints': [
        {'url': 'https://m.example', 'username': 'puller', 'password': 's3cret'}]}])
    hosts = files[D + '/registry.example:5000/hosts.toml']
    assert hosts['mode'] == '0600' and hosts['diff'] is False
    header = tomllib.loads(hosts['content'])['host']['https://m.example']['header']
    assert header == {'authorization': 'Basic ' + base64.b64encode(b'puller:s3cret').decode()}


def test_empty_endpoints_send_pulls_back_to_the_registry():
    _out, files = files_of([{'registry': '_default', 'endpoints': []}])
    assert tomllib.loads(files[D + '/_default/hosts.toml']['content']) == {}


@pytest.mark.parametrize('mirrors, message', [
    ('registry.k8s.io', 'must be a list'),
    ([{'registry': 'https://r.example', 'endpoints': []}], r'\[0\].registry = "https://r.example" must be'),
    ([{'registry': 'r.example:99999', 'endpoints': []}], 'must be a registry host'),
    ([{'registry': 'r.example', 'endpoints': [{'url': 'ftp://m'}]}], r'endpoints\[0\].url = "ftp://m"'),
    ([{'registry': 'r.example', 'endpoints': [{'url': 'http://m', 'ca': CA}]}], 'uses no TLS'),
    ([{'registry': 'r.example', 'endpoints': [{'url': 'https://m', 'ca': 'not pem'}]}], 'PEM text'),
    ([{'registry': 'r.example', 'endpoints': [{'url': 'https://m', 'password': 'p'}]}], 'both username'),
    ([{'registry': 'r.example', 'endpoints': []}, {'registry': 'r.example', 'endpoints': []}], 'listed twice'),
    ([{'registry': 'r.example', 'endpoints': [], 'upstream': False}], 'nothing would be left|no registry'),
])
def test_bad_input_is_refused_with_its_place(mirrors, message):
    with pytest.raises(AnsibleFilterError, match=message):
        C.containerd_hosts_files(mirrors, D)


def test_preflight_formats():
    assert P.format_problem('registry_host', 'registry.k8s.io') is None
    assert P.format_problem('registry_host', '10.0.0.5:5000') is None
    assert P.format_problem('registry_host', '_default') is None
    assert 'no scheme' in P.format_problem('registry_host', 'http://r.example')
    assert P.format_problem('registry_endpoints', [{'url': 'https://m.example:5000/x'}]) is None
    assert 'url' in P.format_problem('registry_endpoints', [{'url': 'https://m.example:0'}])
    assert 'must be a list' in P.format_problem('registry_endpoints', 'https://m.example')


def test_preflight_cross_rules():
    assert P.registry_mirror_problems([{'registry': 'a', 'endpoints': []}, {'registry': 'a', 'endpoints': []}]) == [
        ('containerd_registry_mirrors', '[1].registry = "a" is listed twice: each registry has one hosts.toml')]
    assert P.registry_mirror_problems([{'registry': 'a', 'endpoints': [], 'upstream': 'no'}]) == [
        ('containerd_registry_mirrors', '[0] has no endpoints and upstream false: "a" would have nothing left to '
         'pull from')]
    assert P.registry_mirror_problems('not a list') == []
