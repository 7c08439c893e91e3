"""The preflight checks (plugins/plugin_utils/preflight.py) on plain data.

Every bad value that tests/unit/preflight_cases.py generates from the argument
specs and the rules is refused here on its own, with a message naming the
option and the value; the lab test sends the same values through site.yml.
"""

from __future__ import annotations

import pytest
from ansible_collections.hardway.kubernetes.plugins.plugin_utils import preflight as checks
from preflight_cases import generated_cases, load_defaults, load_rules, load_specs

SPECS = load_specs()
RULES = load_rules()
CASES = generated_cases()


def messages(name, value):
    spec = SPECS[name][1]
    _converted, problems = checks.option_problems(name, value, spec, RULES.get(name))
    return checks.render([checks.Problem(name, value, p, None) for p in problems], [])


@pytest.mark.parametrize('case', CASES, ids=[c.name for c in CASES])
def test_every_generated_bad_value_is_refused(case):
    (name, value), = (case.group_vars or case.host_vars[1]).items()
    lines = messages(name, value)
    assert lines, f'no problem found for {name} = {value!r}'
    for expected in case.expect:
        assert any(expected in line for line in lines), (expected, lines)


def test_every_option_has_generated_cases():
    covered = {c.option for c in CASES}
    assert set(SPECS) - covered == set(), 'options without a generated bad value'
    assert len(CASES) > 200


def test_defaults_pass_their_own_checks():
    defaults = load_defaults()
    for name, (_role, spec) in SPECS.items():
        value = defaults.get(name)
        if value is None or isinstance(value, str) and '{{' in value or _templated(value):
            continue
        _converted, problems = checks.option_problems(name, value, spec, RULES.get(name))
        assert problems == [], (name, value, problems)


def _templated(value):
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    return isinstance(value, str) and '{{' in value


@pytest.mark.parametrize('value,ok', [
    (True, True), ('yes', True), ('false', True), (1, True), ('maybe', False), (2, False), ('', False),
])
def test_bool_is_read_like_ansible(value, ok):
    assert (checks.as_bool(value) is not None) == ok


def test_int_accepts_digits_from_the_command_line():
    assert checks.convert('6443', 'int') == (True, 6443)
    assert checks.convert(True, 'int') == (False, None)
    assert checks.convert('a,b', 'list') == (False, 'a,b')


@pytest.mark.parametrize('fmt,good', [
    ('ipv4', '172.29.0.11'), ('ipv4_network', '10.200.0.0/16'), ('dns_subdomain', 'cluster.local'),
    ('image', 'registry.k8s.io/pause:3.10.2'), ('image', 'hardway.local/busybox:1.35.0'),
    ('image', 'localhost:5000/a/b@sha256:' + 'a' * 64), ('quantity', '256Mi'), ('quantity', 100),
    ('url', 'https://dl.k8s.io'), ('url', 'http://127.0.0.1:2381'), ('mirror', 'file:///srv/mirror'),
    ('mirror', '/srv/mirror'), ('etcd_prefix', '/coreos.com/network'), ('qualified_name', 'node-role.kubernetes.io/x'),
    ('coredns_upstream', '/etc/resolv.conf'), ('coredns_upstream', '192.0.2.53 192.0.2.54:5353'),
    ('hostname', '*.apps.example.com'), ('toml', '[plugins]\nx = 1\n'), ('sysctl_name', 'net.ipv4.ip_forward'),
    ('package', 'iptables'), ('flag_value', ['a', 'b']), ('flag_value', None), ('dir', '/var/lib/etcd'),
    ('user_name', 'etcd'), ('user_name', 'root'),
])
def test_formats_accept_good_values(fmt, good):
    assert checks.format_problem(fmt, good) is None


FLANNEL = {'cluster_pod_cidr': '10.200.0.0/16', 'cluster_pod_subnet_len': 24,
           'flannel_backend': {'Type': 'vxlan', 'VNI': 1, 'Port': 8472}, 'flannel_backend_overrides': {}}


def test_flannel_backend_against_flannels_rules_named_by_where_it_is_set():
    assert checks.flannel_problems(FLANNEL) == []
    assert checks.flannel_problems(dict(FLANNEL, flannel_backend_overrides={'VNI': 10000000})) == [
        ('flannel_backend_overrides', 'Backend.VNI = 10000000: flannel names its device flannel.10000000, longer '
         'than the 15 characters of a Linux interface name (so the VNI can be at most 9999999)')]
    found = checks.flannel_problems(dict(FLANNEL, flannel_backend={'Type': 'vxlan', 'VNI': 1, 'Port': '8472'}))
    assert found == [('flannel_backend', 'Backend.Port = "8472": must be a whole number (flannel cannot read a '
                      'string)')]
    # host-gw has no VNI or port: the overrides must leave them out
    found = checks.flannel_problems(dict(FLANNEL, flannel_backend_overrides={'Type': 'host-gw'}))
    assert [var for var, _rule in found] == ['flannel_backend', 'flannel_backend']
    assert found[0][1] == ('Backend.VNI: the host-gw backend has no such field (known: none); '
                           'flannel_backend_overrides sets Type host-gw: set VNI: ~ there too, to leave it out')
    assert checks.flannel_problems(dict(FLANNEL, flannel_backend_overrides={'Type': 'host-gw', 'VNI': None,
                                                                            'Port': None})) == []
    # the pod network's own problems are the pod network's rules, not the backend's
    assert checks.flannel_problems(dict(FLANNEL, cluster_pod_subnet_len=31)) == []


def test_flannel_port():
    assert checks.flannel_port(FLANNEL) == ('flannel_backend', 8472)
    assert checks.flannel_port(dict(FLANNEL, flannel_backend_overrides={'Port': 8473})) == (
        'flannel_backend_overrides', 8473)
    assert checks.flannel_port(dict(FLANNEL, flannel_backend_overrides={'Port': None})) == (
        'flannel_backend_overrides', 8472)
    assert checks.flannel_port(dict(FLANNEL, flannel_backend={'Type': 'host-gw'})) == (None, None)


HOSTS = {
    'cp1': {'values': {'cluster_node_address': '172.29.0.11', 'cluster_node_name': 'cp1'}, 'network': '172.29.0.0/24'},
    'w1': {'values': {'cluster_node_address': '172.29.0.21', 'cluster_node_name': 'w1'}, 'network': '172.29.0.0/24'},
    'w2': {'values': {'cluster_node_address': '172.29.0.22', 'cluster_node_name': 'w2'}, 'network': '172.29.0.0/24'},
}
GROUPS = {'control_plane': ['cp1'], 'etcd': ['cp1'], 'workers': ['w1', 'w2']}
SETTINGS = {'cluster_control_plane_group': 'control_plane', 'cluster_etcd_group': 'etcd',
            'cluster_worker_group': 'workers', 'cluster_control_plane_kubelet': False,
            'cluster_pod_cidr': '10.200.0.0/16', 'cluster_pod_subnet_len': 24, 'cluster_service_cidr': '10.32.0.0/24'}


def cluster(hosts=None, groups=None, **settings):
    problems = checks.cluster_problems(hosts or HOSTS, groups or GROUPS, dict(SETTINGS, **settings))
    return checks.render(problems, list(hosts or HOSTS))


def test_a_good_cluster_has_no_problem():
    assert cluster() == []


def test_groups_and_etcd_size():
    assert cluster(groups={'control_plane': ['cp1'], 'etcd': ['cp1', 'w1'], 'workers': ['w1', 'w2']}) == [
        'cluster_etcd_group = "etcd": group "etcd" has 2 members (cp1, w1): etcd needs an odd number (1, 3, 5) '
        'to keep quorum']
    lines = cluster(groups={'control_plane': ['cp1'], 'etcd': ['cp1']})
    assert lines == ['cluster_worker_group = "workers": names the inventory group "workers", which is missing '
                     '(a cluster needs at least one host in it)']
    assert cluster(groups={'control_plane': ['cp1'], 'etcd': ['cp1']}, cluster_control_plane_kubelet=True) == []


def test_networks_and_room_for_nodes():
    assert any('overlaps cluster_service_cidr' in line for line in cluster(cluster_service_cidr='10.200.1.0/24'))
    assert any('overlaps the network of host' in line for line in cluster(cluster_pod_cidr='172.29.0.0/16'))
    assert any('leaves room for 2 node subnets' in line
               for line in cluster(cluster_pod_cidr='10.200.0.0/22', cluster_pod_subnet_len=24,
                                   groups=dict(GROUPS, workers=['w1', 'w2', 'w3'])))
    lines = cluster(preflight_reserved_networks={'vpn': '10.32.0.0/20'})
    assert lines == ['cluster_service_cidr = "10.32.0.0/24": overlaps preflight_reserved_networks.vpn 10.32.0.0/20']


def test_a_control_plane_that_joins_the_pod_network_takes_a_subnet():
    """Two workers fit a /22 of /24s (room for 2); the control plane's flanneld makes it 3, unless it stays out."""
    small = {'cluster_pod_cidr': '10.200.0.0/22', 'cluster_pod_subnet_len': 24}
    assert cluster(**small, cluster_control_plane_pod_network=False) == []
    assert cluster(**small) == [
        'cluster_pod_subnet_len = 24: leaves room for 2 node subnets in cluster_pod_cidr 10.200.0.0/22 (flannel keeps '
        'the first and the last), but 3 hosts take one (the nodes, and the control planes that join the pod network)']


def test_flannel_inputs_are_checked_where_flanneld_runs():
    values = {'flannel_iface': 'eth9'}
    facts = {'interfaces': ['eth0', 'lo']}
    assert checks.host_problems('cp1', values, facts, False, True, True, joins_pod_network=False) == []
    lines = checks.render(checks.host_problems('cp1', values, facts, False, True, True, joins_pod_network=True),
                          ['cp1', 'w1'])
    assert lines == ['host cp1: flannel_iface = "eth9": is neither an address nor an interface of this host '
                     '(interfaces: eth0, lo)']


def test_hosts_must_differ_and_settings_must_not():
    hosts = dict(HOSTS, w2={'values': {'cluster_node_address': '172.29.0.21', 'cluster_node_name': 'w1',
                                       'cluster_pod_cidr': '10.100.0.0/16'}, 'network': ''})
    lines = cluster(hosts=hosts)
    assert 'cluster_node_address = "172.29.0.21": is the same on hosts w1, w2: each host needs its own' in lines
    assert 'cluster_node_name = "w1": is the same on hosts w1, w2: each host needs its own' in lines
    assert any(line.startswith('cluster_pod_cidr = "10.200.0.0/16": is cluster-wide but differs on w2')
               for line in lines)


def test_unreachable_host_is_named():
    hosts = dict(HOSTS, w2={'reachable': False})
    assert cluster(hosts=hosts) == ['host w2: did not answer (unreachable or facts not gathered): every host must '
                                    'be reachable']


VERSIONS = {'cluster_default_versions': {'etcd': '3.6.16', 'runc': '1.4.3'}, 'cluster_versions': {},
            'cluster_default_known_versions': {'etcd': ['3.6.16', '3.6.15'], 'runc': ['1.4.3']},
            'cluster_known_versions': {}}


def versions(**changes):
    """The cluster's problems with the version settings above, some changed."""
    return cluster(**dict(VERSIONS, **changes))


def test_versions():
    assert versions() == []
    # one pin moved: the others stay the collection's
    assert versions(cluster_versions={'etcd': '3.6.15'}) == []
    lines = versions(cluster_versions={'etcd': '3.6.1', 'flannel': '1'})
    assert lines == ['cluster_versions.etcd = "3.6.1": is not a version this collection knows checksums for '
                     '(known: 3.6.16, 3.6.15); add it to cluster_known_versions',
                     'cluster_versions.flannel = "1": is not a component of this collection (components: etcd, runc)']
    # a version the operator adds is accepted; a known component without a pin is named
    assert versions(cluster_versions={'etcd': '3.6.17'}, cluster_known_versions={'etcd': ['3.6.17']}) == []
    lines = versions(cluster_known_versions={'cilium': ['1.18.0']})
    assert lines == ['cluster_versions = "cilium": has no pin for cilium (pins known: 1.18.0)']
    # the collection's own pins, replaced without one
    lines = versions(cluster_default_versions={'etcd': '3.6.16'})
    assert lines == ['cluster_versions = "runc": has no pin for runc (pins known: 1.4.3)']
    lines = versions(cluster_default_versions={'etcd': '3.6.0', 'runc': '1.4.3'})
    assert lines == ['cluster_default_versions.etcd = "3.6.0": is not a version this collection knows checksums '
                     'for (known: 3.6.16, 3.6.15); add it to cluster_known_versions']
    # a dict of the wrong type is the option's problem, not this rule's
    assert versions(cluster_versions='etcd=3.6.15') == []


def test_merged_dicts_take_null_to_remove_a_default():
    assert messages('node_sysctls', {'net.ipv4.ip_forward': None}) == []
    assert messages('kubelet_system_reserved', {'memory': None, 'cpu': '200m'}) == []
    assert messages('node_default_sysctls', {'net.ipv4.ip_forward': None}) != []
    assert messages('kubelet_system_reserved', {'memory': 'lots'}) != []


def test_host_rules():
    values = {'cluster_node_address': '10.0.0.5', 'kubelet_fail_swap_on': True, 'node_disable_swap': False,
              'flannel_iface': 'eth7', 'etcd_client_port': 2379, 'etcd_peer_port': 2379,
              'etcd_metrics_url': 'http://127.0.0.1:2381', 'cluster_apiserver_port': 6443,
              'flannel_backend': {'Type': 'vxlan', 'Port': 6443}, 'cluster_etcd_client_port': 2379}
    facts = {'all_ipv4_addresses': ['10.0.0.6'], 'interfaces': ['lo', 'eth0']}
    lines = checks.render(checks.host_problems('h', values, facts, True, True, True), ['h', 'x'])
    assert 'host h: cluster_node_address = "10.0.0.5": is not an address of this host (it has 10.0.0.6); set ' \
           'cluster_node_address to the one other hosts reach' in lines
    assert any('kubelet_fail_swap_on = True: is true while node_disable_swap is false' in line for line in lines)
    assert any('flannel_iface = "eth7": is neither an address nor an interface' in line for line in lines)
    assert any('etcd_peer_port = 2379: is the same port as etcd_client_port' in line for line in lines)
    assert any("flannel_backend = {'Type': 'vxlan', 'Port': 6443}: is the same port as cluster_apiserver_port" in line
               for line in lines)


def test_settings_that_must_agree():
    values = {'cluster_service_cidr': '10.0.0.0/8', 'etcd_client_port': 2479, 'cluster_etcd_client_port': 2379,
              'pki_renew_before_days': 400, 'pki_cert_lifetime_days': 365, 'pki_ca_lifetime_days': 300}
    found = dict(checks.setting_problems(values))
    assert set(found) == {'cluster_service_cidr', 'etcd_client_port', 'pki_renew_before_days',
                          'pki_cert_lifetime_days'}


def test_anonymous_auth_flag_beside_the_authentication_config():
    flags = {'authentication-config': '/etc/kubernetes/authentication-config.yaml'}
    assert checks.setting_problems({'kube_apiserver_flags': flags}) == []
    found = dict(checks.setting_problems({'kube_apiserver_flags': flags,
                                          'kube_apiserver_extra_flags': {'anonymous-auth': False}}))
    assert 'kube_apiserver_anonymous_paths instead' in found['kube_apiserver_extra_flags']
    # without the file (removed with ~), the flag is the way to say it
    assert checks.setting_problems({'kube_apiserver_flags': flags, 'kube_apiserver_extra_flags': {
        'authentication-config': None, 'anonymous-auth': False}}) == []


def test_render_folds_hosts():
    problems = [checks.Problem('x', 1, 'is bad', 'a'), checks.Problem('x', 1, 'is bad', 'b'),
                checks.Problem('y', 2, 'is bad', 'a')]
    assert checks.render(problems, ['a', 'b']) == ['x = 1: is bad', 'host a: y = 2: is bad']
    assert checks.render(problems, ['a', 'b', 'c']) == ['hosts a, b: x = 1: is bad', 'host a: y = 2: is bad']


ADDONS = {'cluster_ingress_enabled': True, 'cluster_cert_manager_enabled': True,
          'cert_manager_cluster_issuers': [{'name': 'letsencrypt', 'type': 'acme', 'preset': 'letsencrypt',
                                            'email': 'ops@example.org'}, {'name': 'internal', 'type': 'ca'}],
          'ingress_gateway_annotations': {'cert-manager.io/cluster-issuer': 'letsencrypt'}}


def test_addons_known_issuer_passes():
    assert checks.addon_problems(ADDONS) == []
    assert checks.addon_problems(dict(ADDONS, ingress_gateway_annotations={})) == []


def test_addons_unknown_issuer_is_named_with_the_defined_ones():
    settings = dict(ADDONS, ingress_gateway_annotations={'cert-manager.io/cluster-issuer': 'letsencrypt-prod'})
    assert checks.addon_problems(settings) == [(
        'ingress_gateway_annotations.cert-manager.io/cluster-issuer', 'letsencrypt-prod',
        'names the ClusterIssuer "letsencrypt-prod", which cert_manager_cluster_issuers does not define '
        '(defined: internal, letsencrypt)')]


def test_addons_issuer_while_cert_manager_is_off():
    problems = checks.addon_problems(dict(ADDONS, cluster_cert_manager_enabled=False))
    assert [p[2] for p in problems] == [
        'names a cert-manager issuer, but cert-manager is off (cluster_cert_manager_enabled: false)']
    assert checks.addon_problems(dict(ADDONS, cluster_cert_manager_enabled=False, cluster_ingress_enabled=False)) == []


def test_addons_duplicate_issuer_names():
    issuers = ADDONS['cert_manager_cluster_issuers'] + [{'name': 'internal', 'type': 'acme'}]
    assert checks.addon_problems(dict(ADDONS, cert_manager_cluster_issuers=issuers)) == [
        ('cert_manager_cluster_issuers', 'internal', 'names the ClusterIssuer "internal" 2 times: each name once')]


def test_cert_manager_needs_aggregator_routing_without_a_control_plane_kubelet():
    values = {'cluster_cert_manager_enabled': True, 'cluster_control_plane_kubelet': False,
              'kube_apiserver_flags': {'enable-aggregator-routing': True}, 'kube_apiserver_extra_flags': {}}
    assert checks.webhook_route_problems(values) == []
    off = dict(values, kube_apiserver_extra_flags={'enable-aggregator-routing': None})
    assert [v for v, _rule in checks.webhook_route_problems(off)] == ['kube_apiserver_extra_flags']
    assert 'enable-aggregator-routing=true' in checks.webhook_route_problems(off)[0][1]
    assert checks.webhook_route_problems(dict(off, cluster_control_plane_kubelet=True)) == []
    assert checks.webhook_route_problems(dict(off, cluster_cert_manager_enabled=False)) == []


def test_addons_issuer_fields_checked_as_the_role_renders_them():
    issuers = [{'name': 'letsencrypt', 'type': 'acme', 'preset': 'letsencrypt'}]
    problems = checks.addon_problems(dict(ADDONS, cert_manager_cluster_issuers=issuers,
                                          ingress_gateway_annotations={}))
    assert len(problems) == 1
    var, _value, rule = problems[0]
    assert var == 'cert_manager_cluster_issuers'
    assert 'item 1 (letsencrypt), field email' in rule, rule


def test_version_pins_may_differ_by_host_within_the_skew_policy():
    groups = {'control_plane': ['cp1'], 'etcd': ['cp1'], 'workers': ['w1', 'w2']}
    settings = {'cluster_control_plane_group': 'control_plane', 'cluster_etcd_group': 'etcd',
                'cluster_worker_group': 'workers', 'cluster_default_versions': {'kubernetes': '1.37.1'}}

    def problems(w2):
        hosts = {'cp1': {'values': {'cluster_versions': {'kubernetes': '1.36.5'}}, 'reachable': True},
                 'w1': {'values': {'cluster_versions': {'kubernetes': '1.36.5'}}, 'reachable': True},
                 'w2': {'values': {'cluster_versions': w2}, 'reachable': True}}
        return checks.render(checks.cluster_problems(hosts, groups, dict(settings, cluster_versions={})), list(hosts))

    assert problems({'kubernetes': '1.36.3'}) == []  # a patch apart, or a minor behind: allowed
    assert problems({'kubernetes': '1.37.1'}) == [
        "host w2: cluster_versions = {'kubernetes': '1.37.1'}: its kubelet would be 1.37.1, newer than the API "
        "server of cp1 (1.36.5): a kubelet may not be newer than any API server"]
    # no pin of its own: the collection's (1.37.1), newer than the control plane's
    assert len(problems({})) == 1 and 'its kubelet would be 1.37.1' in problems({})[0]
