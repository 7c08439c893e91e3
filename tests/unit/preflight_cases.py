"""Bad inputs for preflight, generated from the roles' argument specs and the preflight rules.

Every option of every role preflight checks (roles/*/meta/argument_specs.yml,
entry point main) gets invalid values derived from what its spec declares
(type, elements, suboptions, choices) and from its rule in
roles/preflight/vars/main/rules.yml (range, format, keys): nothing here is a
hand-picked list of options, so a new option is covered the day it is
declared. The rules that tie values together (networks, hosts, groups,
ports, versions) get the cases in ``cross_cases``, built from the same data
(the lab's addresses, the pinned versions).

Used by tests/unit/test_preflight.py (each case through the pure checks) and
tests/integration/test_preflight_lab.py (each case through site.yml against
the lab hosts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

# A wrong value of each type: something that is plainly not of it.
WRONG_TYPE = {
    'str': [{'not': 'a string'}, ['a', 'list']],
    'path': [{'not': 'a path'}],
    'int': ['twelve', 1.5],
    'bool': ['maybe', 2],
    'list': ['a,b', {'not': 'a list'}],
    'dict': ['k=v', ['not', 'a dict']],
}

# Values each format refuses (plugins/plugin_utils/preflight.py FORMATS).
BAD_FORMAT = {
    'ipv4': ['10.0.0.300', 'node1.example', '0.0.0.0'],
    'ip': ['10.0.0.300', 'example.com'],
    'ipv4_network': ['10.300.0.0/16', '10.200.0.1/16', '10.200.0.0', 'fd00::/64'],
    'network': ['10.0.0.0/33', '10.1.2.3/8'],
    'dns_subdomain': ['Cluster.Local', 'cluster..local', 'cluster_local'],
    'dns_label': ['My_Cluster', 'a' * 64, 'my.cluster'],
    'node_name': ['Node_1', 'n' * 64],
    'hostname': ['bad name', 'under_score.example'],
    'host': ['bad name!'],
    'abs_path': ['relative/path', '/with space', '/a/../b'],
    'dir': ['relative/dir', '/', '/trailing/'],
    'url': ['ftp://example.com', 'example.com/path', 'http://host:99999'],
    'endpoint': ['http://api.example:6443', 'https://api.example:6443/path', 'https://bad_host:6443'],
    'mirror': ['ftp://example.com/mirror', 'relative/mirror'],
    'image': ['Registry/UPPER:tag', 'image:tag with space'],
    'quantity': ['lots', '1.5.5Gi'],
    'flag_name': ['--with-dashes', 'Upper_Case'],
    'option_name': ['--entryPoints.web.address', 'entry points', 'log..level'],
    'flag_value': [[{'nested': 'dict'}], 'two\nlines'],
    'sysctl_name': ['not a sysctl', 'noDots'],
    'sysctl_value': ['', [1]],
    'package': ['Not A Package'],
    'kernel_module': ['bad module'],
    'user_name': ['Etcd User', '-etcd'],
    'etcd_prefix': ['no/leading/slash', '/registry/flannel', '/trailing/'],
    'qualified_name': ['bad key!', 'example.com/'],
    'label_value': ['has space', 'v' * 64],
    'toml': ['[plugins\nbroken = '],
    'coredns_upstream': ['not-an-address', '192.0.2.1:99999'],
    'version': ['latest', 'v1'],
    'sha256': ['abc123', 'A' * 64],
    'artifact_path': ['kubelet', '/abs/kubelet'],
    'registry_host': ['https://registry.example', 'bad host:5000'],
    'registry_endpoints': [[{'url': 'ftp://mirror.example'}], [{'url': 'http://m.example', 'username': 'u'}]],
}


# What a flannel network config case depends on besides itself.
FLANNEL_INPUTS = frozenset(['flannel_backend', 'flannel_backend_overrides', 'cluster_pod_cidr',
                            'cluster_pod_subnet_len'])

# Options the lab inventory sets per host: a bad value goes to one host's vars.
HOST_SCOPED = frozenset(['cluster_node_address'])


@dataclass
class Case:
    """One bad input: variables for group_vars/all (or one host), and what the message must say."""

    name: str
    group_vars: dict = field(default_factory=dict)
    host_vars: dict = field(default_factory=dict)  # host index (0 = control plane) -> vars
    expect: list = field(default_factory=list)  # substrings of one problem line each
    # Variables the case sets or whose checks it depends on; "@groups": it
    # changes the inventory's groups, which every membership check reads, so
    # it runs alone.
    touches: frozenset = frozenset()
    groups: dict | None = None  # inventory groups to use instead of the lab's (host indexes)
    option: str = ''  # the option the case is about, for counting


def load_specs() -> dict:
    """{option: (role, spec)} of the cluster role and every role preflight checks."""
    checked = yaml.safe_load((REPO / 'roles/preflight/defaults/main.yml').read_text())['preflight_checked_roles']
    specs = {}
    for role in ['cluster', 'preflight'] + checked:
        data = yaml.safe_load((REPO / 'roles' / role / 'meta/argument_specs.yml').read_text())
        entry = 'settings' if role == 'cluster' else 'main'  # see roles/cluster/meta/argument_specs.yml
        for name, spec in data['argument_specs'][entry]['options'].items():
            specs[name] = (role, spec)
    return specs


def load_rules() -> dict:
    """The rules as the preflight action sees them (a ``fields`` name resolved to its field list)."""
    rules = yaml.safe_load((REPO / 'roles/preflight/vars/main/rules.yml').read_text())['_preflight_rules']
    fields = yaml.safe_load((REPO / 'roles/preflight/vars/main/config_fields.yml').read_text())
    for name, rule in rules.items():
        if isinstance(rule, dict) and isinstance(rule.get('fields'), str):
            rules[name] = dict(rule, fields={'type': rule['fields'],
                                             'names': fields['_preflight_config_fields'][rule['fields']]})
    return rules


def load_defaults() -> dict:
    out = {}
    for path in sorted(REPO.glob('roles/*/defaults/main.yml')) + sorted(REPO.glob('roles/*/defaults/main/*.yml')):
        out.update(yaml.safe_load(path.read_text()) or {})
    return out


def _shown(value) -> str:
    """How the value starts in a message (plugin_utils preflight.short)."""
    text = repr(value) if not isinstance(value, str) else '"{}"'.format(value.replace('\n', '\\n').replace('\r', '\\r'))
    return text if len(text) <= 60 else text[:57]


def _first_item(default):
    if isinstance(default, list) and default and isinstance(default[0], dict):
        return dict(default[0])
    return None


def option_cases(name: str, spec: dict, rule: dict | None, default) -> list[Case]:
    """Every generated bad value of one option."""
    rule = rule or {}
    type_name = spec.get('type', 'str')
    values = []

    def add(value, why, expect=None):
        values.append((value, why, expect))

    for value in WRONG_TYPE.get(type_name, []):
        add(value, 'wrong type')
    if spec.get('choices') and type_name != 'list':
        add('not-a-choice', 'not one of the choices')
    if type_name == 'list' and spec.get('choices'):
        add(['not-a-choice'], 'element not one of the choices', expect='[0] = "not-a-choice"')
    if type_name == 'list' and spec.get('elements') and spec['elements'] != 'dict':
        add([{'an': 'object'}], 'element of the wrong type', expect='[0] = ')
    if type_name == 'list' and spec.get('elements') == 'dict':
        add(['a string'], 'element not a dict', expect='[0] = ')
        options = spec.get('options') or {}
        empty = {'list': [], 'dict': {}}
        example = _first_item(default) or {k: empty.get(o.get('type'), 'x') for k, o in options.items()
                                           if o.get('required')}
        for key, sub in options.items():
            if sub.get('required'):
                item = {k: v for k, v in example.items() if k != key}
                add([item], f'element without the required key {key}', expect=f'needs the key {key}')
            if sub.get('choices'):
                add([dict(example, **{key: 'not-a-choice'})], f'element key {key} not a choice',
                    expect=f'{name}[0].{key}')
        if options:
            add([dict(example, bogus=1)], 'element with an unknown key', expect='unknown keys bogus')
        for key, fmt in (rule.get('element_keys') or {}).items():
            for bad in BAD_FORMAT[fmt][:1]:
                add([dict(example, **{key: bad})], f'element key {key}: bad {fmt}', expect=f'[0].{key}')
    if type_name == 'int':
        if 'min' in rule:
            add(rule['min'] - 1, 'below the minimum')
        if 'max' in rule:
            add(rule['max'] + 1, 'above the maximum')
    if rule.get('format'):
        for bad in BAD_FORMAT[rule['format']]:
            add(bad, 'bad {}'.format(rule['format']))
    if rule.get('nonempty'):
        add('', 'empty')
    if rule.get('fields'):
        add({'notAField': 1}, 'field the configuration does not have', expect='sets "notAField"')
    if rule.get('keys'):
        add({'not-a-key': '1'}, 'unknown key', expect='unknown key "not-a-key"')
    if rule.get('key_format'):
        for bad in BAD_FORMAT[rule['key_format']][:2]:
            add({bad: 'x'}, 'bad key ({})'.format(rule['key_format']), expect=f'key {_shown(bad)}')
    if rule.get('value_format'):
        key = (rule.get('keys') or ['some-key'])[0]
        if isinstance(default, dict) and default and not rule.get('keys'):
            key = sorted(default)[0]
        for bad in BAD_FORMAT[rule['value_format']][:2]:
            add({key: bad}, 'bad value ({})'.format(rule['value_format']), expect=f'{_shown(key)} = {_shown(bad)[:20]}')
    if rule.get('element_format'):
        for bad in BAD_FORMAT[rule['element_format']][:2]:
            add([bad], 'bad element ({})'.format(rule['element_format']), expect=f'[0] = {_shown(bad)[:20]}')
    cases = []
    for index, (value, why, expect) in enumerate(values):
        if name == 'cluster_default_versions' and isinstance(value, dict):
            continue  # it replaces every pin: a bad one of the dict is in cross_cases, through cluster_versions
        shown = f'{name} = {_shown(value)[:30]}'
        where = {'host_vars': {1: {name: value}}} if name in HOST_SCOPED else {'group_vars': {name: value}}
        cases.append(Case(name=f'{name}#{index} {why}', expect=[shown] + ([expect] if expect else []),
                          touches=frozenset([name]), option=name, **where))
    return cases


def generated_cases() -> list[Case]:
    specs = load_specs()
    rules = load_rules()
    defaults = load_defaults()
    cases = []
    for name, (_role, spec) in sorted(specs.items()):
        cases += option_cases(name, spec, rules.get(name), defaults.get(name))
    return cases


def cross_cases(addresses: list[str]) -> list[Case]:
    """The rules that tie values together. ``addresses``: the lab hosts' addresses, control plane first."""
    versions = yaml.safe_load((REPO / 'roles/cluster/defaults/main/versions.yml').read_text())
    pins = versions['cluster_default_versions']
    network = '.'.join(addresses[0].split('.')[:3]) + '.0/24'
    out = [
        Case('a variable the collection no longer reads', {'cluster_flannel_port': 8473},
             expect=['cluster_flannel_port = 8473: is no longer read by this collection'],
             touches=frozenset(['cluster_flannel_port'])),
        Case('missing worker group', {'cluster_worker_group': 'no-such-group'},
             expect=['cluster_worker_group = "no-such-group": names the inventory group "no-such-group", which is '
                     'missing'], touches=frozenset(['@groups'])),
        Case('missing etcd group', {'cluster_etcd_group': 'etcd-members'},
             expect=['cluster_etcd_group = "etcd-members": names the inventory group'],
             touches=frozenset(['@groups'])),
        Case('two etcd members', groups={'control_plane': [0], 'etcd': [0, 1], 'workers': [1, 2]},
             expect=['has 2 members', 'etcd needs an odd number'], touches=frozenset(['@groups'])),
        Case('empty worker group', groups={'control_plane': [0], 'etcd': [0], 'workers': []},
             expect=['cluster_worker_group = "workers": names the inventory group "workers", which is empty'],
             touches=frozenset(['@groups'])),
        Case('pod and service networks overlap', {'cluster_service_cidr': '10.200.8.0/24'},
             expect=['cluster_pod_cidr = "10.200.0.0/16": overlaps cluster_service_cidr 10.200.8.0/24'],
             touches=frozenset(['cluster_service_cidr', 'cluster_pod_cidr'])),
        Case('pod network overlaps the hosts', {'cluster_pod_cidr': network, 'cluster_pod_subnet_len': 28},
             expect=[f'cluster_pod_cidr = "{network}": overlaps the network of host'],
             touches=frozenset(['cluster_pod_cidr', 'cluster_pod_subnet_len'])),
        Case('reserved network overlaps', {'preflight_reserved_networks': {'vpn': '10.32.0.0/16'}},
             expect=['cluster_service_cidr = "10.32.0.0/24": overlaps preflight_reserved_networks.vpn 10.32.0.0/16'],
             touches=frozenset(['preflight_reserved_networks', 'cluster_service_cidr'])),
        Case('subnet not longer than the pod prefix', {'cluster_pod_subnet_len': 17},
             expect=['cluster_pod_subnet_len = 17: must be at least two longer than the prefix of cluster_pod_cidr'],
             touches=frozenset(['cluster_pod_subnet_len'])),
        Case('no room for every node subnet', {'cluster_pod_cidr': '10.200.0.0/22', 'cluster_pod_subnet_len': 24,
                                               'cluster_control_plane_kubelet': True},
             expect=['cluster_pod_subnet_len = 24: leaves room for 2 node subnets in cluster_pod_cidr 10.200.0.0/22 '
                     '(flannel keeps the first and the last), but 3 hosts take one'],
             touches=frozenset(['@groups'])),
        Case('no room for the control plane that joins the pod network',
             {'cluster_pod_cidr': '10.200.0.0/22', 'cluster_pod_subnet_len': 24},
             groups={'control_plane': [0], 'etcd': [0], 'workers': [1, 2]},
             expect=['cluster_pod_subnet_len = 24: leaves room for 2 node subnets in cluster_pod_cidr 10.200.0.0/22 '
                     '(flannel keeps the first and the last), but 3 hosts take one (the nodes, and the control '
                     'planes that join the pod network)'],
             touches=frozenset(['@groups'])),
        Case('etcd authentication without certificate users', {'etcd_extra_flags': {'client-cert-auth': False}},
             expect=["etcd_extra_flags = {'client-cert-auth': False}: turns client-cert-auth off"],
             touches=frozenset(['etcd_extra_flags', 'etcd_auth_enabled'])),
        Case('service network too large', {'cluster_service_cidr': '10.0.0.0/8'},
             expect=['cluster_service_cidr = "10.0.0.0/8": must be a /12 to /28'],
             touches=frozenset(['cluster_service_cidr'])),
        Case('address not the host\'s own', host_vars={1: {'cluster_node_address': '192.0.2.99'}},
             expect=['cluster_node_address = "192.0.2.99": is not an address of this host'],
             touches=frozenset(['cluster_node_address'])),
        Case('two hosts with one address', host_vars={2: {'cluster_node_address': addresses[1]}},
             expect=[f'cluster_node_address = "{addresses[1]}": is the same on hosts'],
             touches=frozenset(['cluster_node_address'])),
        Case('two hosts with one node name', host_vars={0: {'cluster_node_name': 'node-a'},
                                                        1: {'cluster_node_name': 'node-a'}},
             expect=['cluster_node_name = "node-a": is the same on hosts'], touches=frozenset(['cluster_node_name'])),
        Case('cluster setting differs between hosts', host_vars={2: {'cluster_dns_domain': 'other.local'}},
             expect=['cluster_dns_domain = "cluster.local": is cluster-wide but differs on'],
             touches=frozenset(['cluster_dns_domain'])),
        Case('kubelet wants swap off while swap stays', {'kubelet_fail_swap_on': True, 'node_disable_swap': False},
             expect=['kubelet_fail_swap_on = True: is true while node_disable_swap is false'],
             touches=frozenset(['kubelet_fail_swap_on', 'node_disable_swap'])),
        Case('etcd peer port is the client port', {'etcd_peer_port': 2379},
             expect=['etcd_peer_port = 2379: is the same port as etcd_client_port'],
             touches=frozenset(['etcd_peer_port', 'etcd_client_port'])),
        Case('etcd client port differs from the cluster\'s', {'etcd_client_port': 2479},
             expect=['etcd_client_port = 2479: differs from cluster_etcd_client_port'],
             touches=frozenset(['etcd_client_port'])),
        Case('renewal window longer than a lifetime', {'pki_renew_before_days': 400},
             expect=['pki_renew_before_days = 400: must be shorter than pki_cert_lifetime_days'],
             touches=frozenset(['pki_renew_before_days', 'pki_cert_lifetime_days'])),
        Case('Gateway names an issuer nobody defines',
             {'cluster_ingress_enabled': True, 'cluster_cert_manager_enabled': True,
              'cert_manager_cluster_issuers': [{'name': 'internal', 'type': 'ca'}],
              'ingress_gateway_annotations': {'cert-manager.io/cluster-issuer': 'letsencrypt-prod'}},
             expect=['ingress_gateway_annotations.cert-manager.io/cluster-issuer = "letsencrypt-prod": names the '
                     'ClusterIssuer "letsencrypt-prod", which cert_manager_cluster_issuers does not define '
                     '(defined: internal)'],
             touches=frozenset(['cluster_ingress_enabled', 'cluster_cert_manager_enabled',
                                'cert_manager_cluster_issuers', 'ingress_gateway_annotations'])),
        Case('certificate outlives its CA', {'pki_cert_lifetime_days': 4000},
             expect=['pki_cert_lifetime_days = 4000: is longer than pki_ca_lifetime_days'],
             touches=frozenset(['pki_cert_lifetime_days'])),
        Case('flannel backend unknown', {'flannel_backend_overrides': {'Type': 'gre'}},
             expect=["flannel_backend_overrides = {'Type': 'gre'}: flannel_backend_overrides.Type must be one of "
                     'vxlan, host-gw'], touches=FLANNEL_INPUTS),
        Case('flannel VNI too long for the device name', {'flannel_backend': {'Type': 'vxlan', 'VNI': 10000000}},
             expect=['Backend.VNI = 10000000: flannel names its device flannel.10000000, longer than the 15 '
                     'characters'], touches=FLANNEL_INPUTS),
        Case('flannel port given as a string', {'flannel_backend_overrides': {'Port': '8473'}},
             expect=['flannel_backend_overrides = {\'Port\': \'8473\'}: Backend.Port = "8473": must be a whole '
                     'number'], touches=FLANNEL_INPUTS),
        Case('host-gw with vxlan options', {'flannel_backend_overrides': {'Type': 'host-gw'}},
             expect=['Backend.VNI: the host-gw backend has no such field'], touches=FLANNEL_INPUTS),
        Case('flannel port collides with etcd', {'cluster_control_plane_kubelet': True,
                                                 'flannel_backend_overrides': {'Port': 2379}},
             expect=["flannel_backend_overrides = {'Port': 2379}: is the same port as etcd_client_port"],
             touches=frozenset(['@groups'])),
        Case('flannel interface not on the host', {'flannel_iface': 'eth9'},
             expect=['flannel_iface = "eth9": is neither an address nor an interface of this host'],
             touches=frozenset(['flannel_iface'])),
        # cluster_versions is merged over the collection's pins: one pin is a whole input.
        Case('version unknown', {'cluster_versions': {'kubernetes': '1.99.0'}},
             expect=['cluster_versions.kubernetes = "1.99.0": is not a version this collection knows'],
             touches=frozenset(['cluster_versions'])),
        Case('component unknown', {'cluster_versions': {'kubectl': pins['kubernetes']}},
             expect=[f'cluster_versions.kubectl = "{pins["kubernetes"]}": is not a component of this collection'],
             touches=frozenset(['cluster_versions'])),
        Case('known version for a component without a pin', {'cluster_known_versions': {'cilium': ['1.18.0']}},
             expect=['cluster_versions = "cilium": has no pin for cilium'],
             touches=frozenset(['cluster_known_versions'])),
        Case('API port collides with etcd', {'cluster_apiserver_port': 2379},
             expect=['cluster_apiserver_port = 2379: is the same port as etcd_client_port'],
             touches=frozenset(['cluster_apiserver_port', 'etcd_client_port', 'etcd_peer_port'])),
        Case('local API load balancer port collides with the API server on a control plane with a kubelet',
             {'cluster_apiserver_lb_port': 6443, 'cluster_control_plane_kubelet': True},
             expect=['cluster_apiserver_lb_port = 6443: is the same port as cluster_apiserver_port'],
             touches=frozenset(['cluster_apiserver_lb_port', 'cluster_apiserver_port', '@groups'])),
    ]
    for case in out:
        case.option = case.option or 'cross: ' + case.name
    return out


def batches(cases: list[Case]) -> list[list[Case]]:
    """Cases grouped so that no two in a batch touch the same variable (or the groups, or the same host)."""
    out = []
    for case in cases:
        alone = case.groups is not None or '@groups' in case.touches
        for batch in out:
            if not alone and all(not (case.touches & other.touches) and other.groups is None
                                 and '@groups' not in other.touches for other in batch):
                batch.append(case)
                break
        else:
            out.append([case])
    return out
