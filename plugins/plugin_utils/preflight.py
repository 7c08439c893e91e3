# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""The checks behind the preflight action: every input, every rule, all problems at once.

Pure functions of plain data (argument specs, rules, values, facts), so that
they are unit-tested without Ansible. The action plugin
(plugins/action/preflight.py) gathers the values and calls them.

Three layers:

- ``option_problems``: one option against its argument spec (type, elements,
  suboptions, choices) and its preflight rule (range, format, keys).
- ``host_problems``: the rules that tie one host's values together (its
  address is one of its own, swap and kubelet agree, ports do not collide).
- ``cluster_problems``: the rules across hosts and groups (groups present,
  etcd size, networks, unique names and addresses, room for every node's pod
  subnet, cluster-wide settings equal on every host, version pins).

Every problem is a ``Problem`` naming the variable, the value and the rule;
``render`` folds equal problems of several hosts into one line.
"""

from __future__ import annotations

import ipaddress
import re
from collections import namedtuple
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import cert_manager as cert_manager_filters
from ansible_collections.hardway.kubernetes.plugins.filter import containerd as containerd_filters
from ansible_collections.hardway.kubernetes.plugins.filter import upgrade as upgrade_filters
from ansible_collections.hardway.kubernetes.plugins.module_utils import flannel_config as flannel_rules

try:
    import tomllib
except ImportError:  # Python < 3.11 on the controller: TOML is then not parsed
    tomllib = None

Problem = namedtuple('Problem', 'var value rule host')

BOOL_TRUE = frozenset(['y', 'yes', 'on', '1', 'true', 't'])
BOOL_FALSE = frozenset(['n', 'no', 'off', '0', 'false', 'f'])

_LABEL = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?'
_SUBDOMAIN_RE = re.compile(r'^%s(\.%s)*$' % (_LABEL, _LABEL))
_LABEL_RE = re.compile(r'^%s$' % _LABEL)
_HOSTNAME_RE = re.compile(r'^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$')
_FLAG_RE = re.compile(r'^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)*$')
_OPTION_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9-]+)*$')
_SYSCTL_RE = re.compile(r'^[a-z0-9_][a-z0-9_-]*([./][a-z0-9_][a-z0-9_.-]*)+$')
_PACKAGE_RE = re.compile(r'^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$')
_MODULE_RE = re.compile(r'^[A-Za-z0-9_-]+$')
_USER_RE = re.compile(r'^[a-z_][a-z0-9_-]{0,31}$')
_PATH_RE = re.compile(r'^/[A-Za-z0-9._/@+:-]*$')
_QUANTITY_RE = re.compile(r'^([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))([eE][-+]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$')
_IMAGE_RE = re.compile(
    r'^((?:[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?'
    r'[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*'
    r'(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$')
_QUALIFIED_RE = re.compile(r'^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?'
                           r'[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')
_LABEL_VALUE_RE = re.compile(r'^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$')
_VERSION_RE = re.compile(r'^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$')


# ------------------------------------------------------------------ formats
# Each returns None when the value is fine, or what it should be.

def _ipv4(value):
    try:
        addr = ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        return 'must be an IPv4 address such as 192.0.2.10'
    if addr.is_unspecified or addr.is_multicast or str(addr) == '255.255.255.255':
        return 'must be a host address (not 0.0.0.0, a multicast or the broadcast address)'
    return None


def _ip(value):
    try:
        ipaddress.ip_address(value)
    except (ValueError, TypeError):
        return 'must be an IP address'
    return None


def _ipv4_network(value):
    if '/' not in value:
        return 'must be an IPv4 network in CIDR form such as 10.200.0.0/16'
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        return 'must be an IPv4 network in CIDR form such as 10.200.0.0/16'
    if str(net) != value:
        return 'has host bits set: the network is %s' % net
    return None


def _network(value):
    if '/' not in value:
        return 'must be a network in CIDR form such as 192.168.0.0/24'
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return 'must be a network in CIDR form such as 192.168.0.0/24'
    if str(net) != value:
        return 'has host bits set: the network is %s' % net
    return None


def _dns_subdomain(value):
    if len(value) > 253 or not _SUBDOMAIN_RE.match(value) or any(len(p) > 63 for p in value.split('.')):
        return ('must be a DNS name: lower-case letters, digits, "-" and ".", labels of at most 63 characters, '
                'at most 253 in all')
    return None


def _dns_label(value):
    if len(value) > 63 or not _LABEL_RE.match(value):
        return 'must be a DNS label: lower-case letters, digits and "-", at most 63 characters'
    return None


def _node_name(value):
    if len(value) > 63 or not _SUBDOMAIN_RE.match(value):
        return ('is the Kubernetes node name and must be lower-case letters, digits, "-" and "." '
                '(at most 63 characters)')
    return None


def _hostname(value):
    if len(value) > 253 or not _HOSTNAME_RE.match(value):
        return 'must be a DNS name (a leading "*." is allowed)'
    return None


def _host(value):
    if _ip(value) is None or _hostname(value) is None:
        return None
    return 'must be an IP address or a DNS name'


def _abs_path(value):
    if not _PATH_RE.match(value) or '//' in value or '/../' in value + '/' or '/./' in value + '/':
        return ('must be an absolute path of letters, digits and ._-@+: (no spaces, no "..", no "//"), '
                'since it is written into unit files and configs')
    if value != '/' and value.endswith('/'):
        return 'must not end with "/"'
    return None


def _dir(value):
    problem = _abs_path(value)
    if problem is None and value == '/':
        return 'must not be "/"'
    return problem


def _url(value, schemes=('http', 'https')):
    match = re.match(r'^([a-z][a-z0-9+.-]*)://([^/?#\s]*)([^\s]*)$', value)
    if not match or match.group(1) not in schemes:
        return 'must be a URL starting with %s' % ' or '.join(s + '://' for s in schemes)
    if match.group(1) != 'file' and not match.group(2):
        return 'must name a host'
    if match.group(1) != 'file':
        host, _sep, port = match.group(2).rpartition(':')
        if _sep and not host.endswith(']'):
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                return 'has an invalid port %r' % port
    return None


def _http_url(value):
    return _url(value)


def _endpoint(value):
    """An API endpoint: https://<address or DNS name>[:port], nothing after it."""
    problem = _url(value, ('https',))
    if problem:
        return problem
    rest = value[len('https://'):]
    hostport, _slash, path = rest.partition('/')
    if path:
        return 'must not have a path (https://<host>[:port])'
    if hostport.startswith('['):
        host = hostport[1:].partition(']')[0]
    else:
        host = hostport.partition(':')[0]
    if _host(host) is not None:
        return 'names %r, which is neither an IP address nor a DNS name' % host
    return None


def _mirror(value):
    if value == '' or value.startswith('/'):
        return None if value == '' else _abs_path(value.rstrip('/') or '/')
    return _url(value, ('http', 'https', 'file'))


def _image(value):
    if len(value) > 255 or not _IMAGE_RE.match(value):
        return 'must be an image reference such as registry.k8s.io/pause:3.10.2'
    return None


def _quantity(value):
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not _QUANTITY_RE.match(str(value)):
        return 'must be a Kubernetes quantity such as 100m, 256Mi or 2'
    return None


def _command_line_name(pattern, wanted):
    """A check for the names of a flag dict: written without dashes, matching ``pattern``."""
    def check(value):
        if value.startswith('-'):
            return 'is written without the leading "--"'
        if not pattern.match(value):
            return 'must be ' + wanted
        return None
    return check


_flag_name = _command_line_name(_FLAG_RE, 'a flag name: lower-case letters, digits and "-"')
_option_name = _command_line_name(
    _OPTION_RE, 'an option path: letters, digits and "-", parts joined by "." (entryPoints.web.address)')


def _flag_value(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        if isinstance(value, str) and ('\n' in value or '\r' in value):
            return 'must be on one line'
        return None
    if isinstance(value, (list, dict)):
        items = value if isinstance(value, list) else list(value.keys()) + list(value.values())
        if all(isinstance(v, (str, int, float, bool)) for v in items):
            return None
    return 'must be a string, number, boolean, ~ (to remove the flag), or a flat list or dict of those'


def _sysctl_name(value):
    if not _SYSCTL_RE.match(value):
        return 'must be a sysctl name such as net.ipv4.ip_forward'
    return None


def _sysctl_value(value):
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and (
            not value.strip() or '\n' in value)):
        return 'must be a number or a one-line string'
    return None


def _package(value):
    if not _PACKAGE_RE.match(value):
        return 'must be a Debian package name (optionally name=version)'
    return None


def _kernel_module(value):
    if not _MODULE_RE.match(value):
        return 'must be a kernel module name (letters, digits, "_" and "-")'
    return None


def _user_name(value):
    if not _USER_RE.match(value):
        return 'must be a system user name (lowercase letters, digits, "_" and "-", up to 32, not starting with "-")'
    return None


def _etcd_prefix(value):
    if not re.match(r'^(/[A-Za-z0-9._-]+)+$', value):
        return 'must be an etcd key prefix such as /coreos.com/network: starting with "/", no trailing "/", no spaces'
    if value == '/registry' or value.startswith('/registry/'):
        return 'must lie outside /registry, where the API server keeps the cluster'
    return None


def _qualified_name(value):
    name = value.rsplit('/', 1)[-1]
    if len(name) > 63 or len(value) > 316 or not _QUALIFIED_RE.match(value):
        return 'must be a qualified name such as node-role.kubernetes.io/control-plane'
    return None


def _label_value(value):
    if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
        return 'must be a label value: at most 63 letters, digits, "-", "_" and "."'
    return None


def _toml(value):
    if tomllib is None or not value.strip():
        return None
    try:
        tomllib.loads(value)
    except tomllib.TOMLDecodeError as exc:
        return 'is not valid TOML (%s)' % exc
    return None


def _coredns_upstream(value):
    if value == '' or value.startswith('/'):
        return None if value == '' else _abs_path(value)
    for item in value.split():
        target = re.sub(r'^(dns|tls)://', '', item)
        host, _sep, port = target.rpartition(':') if target.count(':') == 1 else (target, '', '')
        if _ip(host) is not None or (port and (not port.isdigit() or not 1 <= int(port) <= 65535)):
            return ('must be empty, a resolv.conf path, or addresses such as "192.0.2.53 192.0.2.54:53" '
                    '(%r is none of those)' % item)
    return None


def _sha256(value):
    if not re.match(r'^[0-9a-f]{64}$', value):
        return 'must be a sha256 digest: 64 lower-case hexadecimal digits'
    return None


def _artifact_path(value):
    if not re.match(r'^[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9._+-]+)+$', value) or '/../' in value + '/':
        return ('must be an artifact path below its download site, as in the lock file, such as '
                'dl.k8s.io/release/v1.37.1/bin/linux/amd64/kubelet')
    return None


def _version(value):
    if not _VERSION_RE.match(value):
        return 'must be a version such as 1.37.1'
    return None


def _registry_host(value):
    return containerd_filters.registry_problem(value)


def _registry_endpoints(value):
    problems = containerd_filters.endpoint_problems(value)
    return '; '.join(problems) if problems else None


FORMATS = {
    'ipv4': _ipv4, 'ip': _ip, 'ipv4_network': _ipv4_network, 'network': _network,
    'dns_subdomain': _dns_subdomain, 'dns_label': _dns_label, 'node_name': _node_name,
    'hostname': _hostname, 'host': _host, 'abs_path': _abs_path, 'dir': _dir,
    'url': _http_url, 'endpoint': _endpoint, 'mirror': _mirror, 'image': _image, 'quantity': _quantity,
    'flag_name': _flag_name, 'flag_value': _flag_value, 'sysctl_name': _sysctl_name,
    'sysctl_value': _sysctl_value, 'package': _package, 'kernel_module': _kernel_module, 'user_name': _user_name,
    'etcd_prefix': _etcd_prefix, 'qualified_name': _qualified_name, 'label_value': _label_value,
    'toml': _toml, 'coredns_upstream': _coredns_upstream, 'version': _version, 'sha256': _sha256,
    'artifact_path': _artifact_path, 'option_name': _option_name,
    'registry_host': _registry_host, 'registry_endpoints': _registry_endpoints,
}
# Formats that judge any value, not only strings.
_ANY_TYPE_FORMATS = frozenset(['flag_value', 'quantity', 'sysctl_value', 'registry_endpoints'])


def format_problem(fmt, value):
    """What is wrong with ``value`` for the named format, or None."""
    check = FORMATS[fmt]
    if fmt not in _ANY_TYPE_FORMATS and not isinstance(value, str):
        return 'must be a string'
    return check(value)


# ------------------------------------------------------------------ types

def as_bool(value):
    """The boolean Ansible reads from ``value``, or None when it is none."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in BOOL_TRUE | BOOL_FALSE:
        return value.strip().lower() in BOOL_TRUE
    return None


def as_int(value):
    """The integer in ``value`` (an int, or a string of digits from the command line), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.match(r'^\s*[-+]?[0-9]+\s*$', value):
        return int(value)
    return None


_TYPE_WORDS = {'str': 'a string', 'int': 'a whole number', 'bool': 'a boolean (true or false)',
               'list': 'a list', 'dict': 'a dict', 'float': 'a number', 'path': 'a path (a string)',
               'raw': 'any value'}


def convert(value, type_name):
    """(ok, converted) for ``value`` read as the argument-spec type ``type_name``, strictly.

    Stricter than Ansible's own conversion on purpose: the roles use the
    variable as it is, so a string where a list belongs would be iterated
    letter by letter, and a dict where a string belongs printed as text.
    """
    if type_name in ('str', 'path'):
        if isinstance(value, str):
            return True, value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)
        return False, None
    if type_name == 'int':
        number = as_int(value)
        return number is not None, number
    if type_name == 'float':
        if isinstance(value, bool):
            return False, None
        try:
            return True, float(value)
        except (TypeError, ValueError):
            return False, None
    if type_name == 'bool':
        flag = as_bool(value)
        return flag is not None, flag
    if type_name == 'list':
        return isinstance(value, list), value
    if type_name == 'dict':
        return isinstance(value, dict), value
    return True, value


def kind(value):
    """The YAML word for the type of ``value`` (whatever wrapper class carries it)."""
    for word, types in (('a boolean', bool), ('a whole number', int), ('a number', float), ('a string', str),
                        ('a list', (list, tuple)), ('a dict', dict)):
        if isinstance(value, types):
            return word
    return 'null' if value is None else type(value).__name__


def short(value, limit=60):
    """``value`` as it appears in a message: quoted strings, cut when long."""
    text = repr(value) if not isinstance(value, str) else '"%s"' % value.replace('\n', '\\n').replace('\r', '\\r')
    return text if len(text) <= limit else text[:limit - 3] + '...'


def spec_problems(name, value, spec):
    """(problems, converted) for a value against its argument spec: type, elements, options, choices."""
    problems = []
    type_name = spec.get('type', 'str')
    ok, converted = convert(value, type_name)
    if not ok:
        return ['must be %s, not %s' % (_TYPE_WORDS.get(type_name, type_name), kind(value))], None
    choices = spec.get('choices')
    if choices and type_name != 'list' and converted not in choices:
        problems.append('must be one of %s' % ', '.join(str(c) for c in choices))
    if type_name == 'list':
        elements = spec.get('elements')
        fixed = []
        for index, item in enumerate(converted):
            where = '%s[%d]' % (name, index)
            if elements:
                item_ok, item = convert(item, elements)
                if not item_ok:
                    problems.append('%s = %s must be %s' % (where, short(item), _TYPE_WORDS.get(elements, elements)))
                    continue
            if choices and item not in choices:
                problems.append('%s = %s must be one of %s' % (where, short(item), ', '.join(str(c) for c in choices)))
            if elements == 'dict' and spec.get('options'):
                for sub in suboption_problems(where, item, spec['options']):
                    problems.append(sub)
            fixed.append(item)
        converted = fixed
    elif type_name == 'dict' and spec.get('options'):
        problems.extend(suboption_problems(name, converted, spec['options']))
    return problems, converted


def suboption_problems(where, item, options):
    problems = []
    unknown = sorted(set(item) - set(options))
    if unknown:
        problems.append('%s has unknown keys %s (known: %s)'
                        % (where, ', '.join(map(str, unknown)), ', '.join(sorted(options))))
    for key, sub in options.items():
        if key not in item or item[key] is None:
            if sub.get('required'):
                problems.append('%s needs the key %s' % (where, key))
            continue
        sub_problems, _converted = spec_problems('%s.%s' % (where, key), item[key], sub)
        problems.extend('%s.%s %s' % (where, key, p) if not p.startswith(where) else p for p in sub_problems)
    return problems


# ------------------------------------------------------------------ rules

def rule_problems(name, value, rule):
    """What breaks the preflight rule of one option (its value already has the right type)."""
    problems = []
    if value is None:
        return problems
    if 'min' in rule and value < rule['min'] or 'max' in rule and value > rule['max']:
        problems.append('must be from %s to %s%s' % (rule.get('min', '-'), rule.get('max', '-'),
                                                     ' (%s)' % rule['why'] if rule.get('why') else ''))
    if rule.get('format'):
        allow_empty = rule.get('empty') and value == ''
        problem = None if allow_empty else format_problem(rule['format'], value)
        if problem:
            problems.append(problem)
    if rule.get('nonempty') and not value:
        problems.append('must not be empty')
    if isinstance(value, dict) and isinstance(rule.get('fields'), dict):
        known = rule['fields']['names']
        for key in value:
            if key not in known:
                problems.append('sets %s, which %s does not have: the daemon would refuse its configuration file'
                                % (short(key), rule['fields']['type']))
    if isinstance(value, dict):
        for key, item in value.items():
            if rule.get('keys') and key not in rule['keys']:
                problems.append('has the unknown key %s (known: %s)' % (short(key), ', '.join(rule['keys'])))
                continue
            if rule.get('key_format'):
                problem = format_problem(rule['key_format'], key) if isinstance(key, str) else 'must be a string'
                if problem:
                    problems.append('key %s %s' % (short(key), problem))
            # ~ takes a default out where the dict is merged over defaults: only its key is checked
            if rule.get('value_format') and not (item is None and rule.get('null_removes')):
                problem = format_problem(rule['value_format'], item)
                if problem:
                    problems.append('%s = %s %s' % (short(key), short(item), problem))
    if isinstance(value, list):
        for index, item in enumerate(value):
            if rule.get('element_format'):
                problem = format_problem(rule['element_format'], item)
                if problem:
                    problems.append('[%d] = %s %s' % (index, short(item), problem))
            if isinstance(item, dict):
                for key, fmt in (rule.get('element_keys') or {}).items():
                    if key in item and item[key] is not None:
                        problem = format_problem(fmt, item[key])
                        if problem:
                            problems.append('[%d].%s = %s %s' % (index, key, short(item[key]), problem))
    return problems


def option_problems(name, value, spec, rule=None):
    """Every problem of one option as (converted value, [rule text]); the text does not repeat name and value."""
    problems, converted = spec_problems(name, value, spec)
    if not problems and rule:
        problems = rule_problems(name, converted, rule)
    return converted, problems


# ------------------------------------------------------------------ flannel

# vxlan's port when the backend leaves it out (0 too: the kernel's default); udp's
FLANNEL_DEFAULT_PORTS = {'vxlan': 8472, 'udp': 8285}


def _flannel_var(values, field):
    """The variable a backend option comes from: the overrides when they set it, else flannel_backend."""
    overrides = values.get('flannel_backend_overrides')
    if isinstance(overrides, dict) and field in overrides:
        return 'flannel_backend_overrides'
    return 'flannel_backend'


def flannel_backend(values):
    """The backend the flannel role writes (flannel_backend with the overrides merged), or None."""
    backend, overrides = values.get('flannel_backend'), values.get('flannel_backend_overrides')
    if not isinstance(backend, dict) or overrides is not None and not isinstance(overrides, dict):
        return None
    return flannel_rules.merge_backend(backend, overrides)


def flannel_problems(values):
    """[(variable, rule)]: the backend against flannel's own rules, in the network config the flannel role
    builds from cluster_pod_cidr and cluster_pod_subnet_len (module_utils/flannel_config.py, which the
    flannel_network module also applies before it writes). The pod network and the subnet length have
    rules of their own."""
    backend = flannel_backend(values)
    if backend is None:
        return []
    config = flannel_rules.network_config(values.get('cluster_pod_cidr'), values.get('cluster_pod_subnet_len'),
                                          backend)
    out = []
    overrides = values.get('flannel_backend_overrides') or {}
    for text in flannel_rules.network_config_problems(config):
        field = re.match(r'^Backend\.(\w+)', text)
        if field:
            var = _flannel_var(values, field.group(1))
            if var == 'flannel_backend' and 'Type' in overrides and 'has no such field' in text:
                text += ('; flannel_backend_overrides sets Type %s: set %s: ~ there too, to leave it out'
                         % (overrides['Type'], field.group(1)))
            out.append((var, text))
        elif text.startswith('Backend'):
            out.append(('flannel_backend', text))
    return out


def flannel_port(values):
    """(variable, UDP port) flannel's backend listens on, or (None, None) when it listens on none."""
    backend = flannel_backend(values)
    if not backend or backend.get('Type') not in FLANNEL_DEFAULT_PORTS:
        return None, None
    port = backend.get('Port') or FLANNEL_DEFAULT_PORTS[backend['Type']]
    return _flannel_var(values, 'Port'), port


# ------------------------------------------------------------------ hosts

def address_problems(address, facts):
    """Whether ``address`` is one of the host's own IPv4 addresses (from its facts)."""
    own = facts.get('all_ipv4_addresses')
    if not own or address in own:
        return []
    return ['is not an address of this host (it has %s)' % ', '.join(own)]


def host_problems(host, values, facts, runs_pods, is_control_plane, is_etcd, joins_pod_network=None):
    """Rules that tie one host's effective values together; ``values`` are already of the right types.

    ``joins_pod_network``: the host runs flanneld (every pod host, and a control plane that joins the pod
    network without a kubelet); by default, whether it runs pods.
    """
    out = []
    if joins_pod_network is None:
        joins_pod_network = runs_pods

    def add(var, rule):
        out.append(Problem(var, values.get(var), rule, host))

    addr = values.get('cluster_node_address')
    if isinstance(addr, str) and _ipv4(addr) is None:
        for problem in address_problems(addr, facts):
            add('cluster_node_address', problem + '; set cluster_node_address to the one other hosts reach')
    if runs_pods:
        if values.get('kubelet_fail_swap_on') is True and values.get('node_disable_swap') is False:
            add('kubelet_fail_swap_on', 'is true while node_disable_swap is false: kubelet would refuse to start '
                'on a host with swap on')
    if joins_pod_network:
        iface = values.get('flannel_iface')
        if isinstance(iface, str) and iface:
            if _ip(iface) is None:
                for problem in address_problems(iface, facts):
                    add('flannel_iface', problem)
            elif facts.get('interfaces') and iface not in facts['interfaces']:
                add('flannel_iface', 'is neither an address nor an interface of this host (interfaces: %s)'
                    % ', '.join(sorted(facts['interfaces'])))
        public = values.get('flannel_public_ip')
        if public is not None and not isinstance(public, str) or isinstance(public, str) and _ipv4(public):
            add('flannel_public_ip', 'must be an IPv4 address')
    out.extend(Problem(var, values.get(var), rule, host) for var, rule in setting_problems(values))
    mirror = values.get('artifacts_mirror')
    if values.get('artifacts_download_on') == 'hosts' and isinstance(mirror, str) and mirror \
            and urlsplit(mirror).scheme.lower() not in ('http', 'https'):
        add('artifacts_mirror', 'is a directory or file:// URL on the controller, which the hosts cannot download '
            'from (artifacts_download_on: hosts): serve it over http(s), or set artifacts_download_on: controller')
    # Ports of the collection's daemons on one host must differ.
    ports = {}
    if is_etcd:
        ports['etcd_client_port'] = values.get('etcd_client_port')
        ports['etcd_peer_port'] = values.get('etcd_peer_port')
        metrics = values.get('etcd_metrics_url')
        if isinstance(metrics, str):
            port = re.match(r'^https?://[^/]*:([0-9]+)', metrics)
            if port:
                ports['etcd_metrics_url'] = int(port.group(1))
    if is_control_plane:
        ports['cluster_apiserver_port'] = values.get('cluster_apiserver_port')
        out.extend(Problem(var, values.get(var), rule, host) for var, rule in webhook_route_problems(values))
    if runs_pods and values.get('cluster_apiserver_endpoint') == '':  # the local API load balancer runs
        ports['cluster_apiserver_lb_port'] = values.get('cluster_apiserver_lb_port')
    if joins_pod_network:
        var, port = flannel_port(values)
        if var:
            ports[var] = port
    seen = {}
    for var, port in ports.items():
        if isinstance(port, int):
            if port in seen:
                add(var, 'is the same port as %s (%d); each daemon on a host needs its own' % (seen[port], port))
            else:
                seen[port] = var
    return out


def webhook_route_problems(values):
    """cert-manager's webhook on a node's host network needs kube-apiserver's aggregator routing."""
    if not values.get('cluster_cert_manager_enabled') or values.get('cluster_control_plane_kubelet') \
            or values.get('cert_manager_webhook_host_network') is False:
        return []
    flags = dict(values.get('kube_apiserver_flags') or {})
    flags.update(values.get('kube_apiserver_extra_flags') or {})
    if flags.get('enable-aggregator-routing') in (True, 'true'):
        return []
    return [('kube_apiserver_extra_flags', 'leaves out enable-aggregator-routing=true, which cert-manager needs '
             'here: the control plane runs no kubelet, so the API server reaches the webhook only at its node\'s '
             'address (remove the override, or set cluster_control_plane_kubelet: true)')]


def setting_problems(values):
    """[(variable, rule)] for settings that must agree with each other or with what a component accepts."""
    out = []
    service = _as_network(values.get('cluster_service_cidr'))
    if service is not None and not 12 <= service.prefixlen <= 28:
        out.append(('cluster_service_cidr', 'must be a /12 to /28: kube-apiserver refuses a larger range, and '
                    'cluster DNS takes its tenth address'))
    client, cluster_client = values.get('etcd_client_port'), values.get('cluster_etcd_client_port')
    if isinstance(client, int) and isinstance(cluster_client, int) and client != cluster_client:
        out.append(('etcd_client_port', 'differs from cluster_etcd_client_port (%d), which the API server and '
                    'flannel connect to: set cluster_etcd_client_port instead' % cluster_client))
    extra = values.get('etcd_extra_flags')
    if values.get('etcd_auth_enabled') is not False and isinstance(extra, dict) and 'client-cert-auth' in extra \
            and as_bool(extra['client-cert-auth']) is not True:
        out.append(('etcd_extra_flags', 'turns client-cert-auth off while etcd_auth_enabled is true: etcd would '
                    'take no certificate for a user, and the API server and flannel would be locked out'))
    flags = dict(values.get('kube_apiserver_flags') or {})
    flags.update(values.get('kube_apiserver_extra_flags') or {})
    if flags.get('authentication-config') is not None and flags.get('anonymous-auth') is not None:
        out.append(('kube_apiserver_extra_flags', 'sets anonymous-auth beside authentication-config, whose file says '
                    'who may ask anonymously (kube_apiserver_anonymous_paths): kube-apiserver refuses to start with '
                    'both; set kube_apiserver_anonymous_paths instead ([] turns anonymous requests off)'))
    renew = values.get('pki_renew_before_days')
    for var in ('pki_cert_lifetime_days', 'pki_ca_lifetime_days'):
        lifetime = values.get(var)
        if isinstance(renew, int) and isinstance(lifetime, int) and renew >= lifetime:
            out.append(('pki_renew_before_days', 'must be shorter than %s (%d), or every run would re-issue'
                        % (var, lifetime)))
    cert, ca = values.get('pki_cert_lifetime_days'), values.get('pki_ca_lifetime_days')
    if isinstance(cert, int) and isinstance(ca, int) and cert > ca:
        out.append(('pki_cert_lifetime_days', 'is longer than pki_ca_lifetime_days (%d): a certificate cannot '
                    'outlive the CA that signs it' % ca))
    out.extend(flannel_problems(values))
    out.extend(registry_mirror_problems(values.get('containerd_registry_mirrors')))
    return out


def registry_mirror_problems(mirrors):
    """[(variable, rule)]: a registry listed twice, or one left with nothing to pull from."""
    out = []
    if not isinstance(mirrors, list):
        return out
    seen = set()
    for index, entry in enumerate(mirrors):
        if not isinstance(entry, dict):
            continue
        registry = entry.get('registry')
        if isinstance(registry, str) and registry in seen:
            out.append(('containerd_registry_mirrors', '[%d].registry = %s is listed twice: each registry has '
                        'one hosts.toml' % (index, short(registry))))
        seen.add(registry)
        if entry.get('endpoints') == [] and as_bool(entry.get('upstream', True)) is False:
            out.append(('containerd_registry_mirrors', '[%d] has no endpoints and upstream false: %s would have '
                        'nothing left to pull from' % (index, short(registry))))
    return out


# ------------------------------------------------------------------ cluster

def overlap_problems(named):
    """Overlaps between named networks: [(name_a, cidr_a, name_b, cidr_b)]."""
    nets = []
    for name, cidr in named:
        try:
            nets.append((name, cidr, ipaddress.ip_network(cidr, strict=False)))
        except (ValueError, TypeError):
            continue
    out = []
    for i, (name_a, cidr_a, net_a) in enumerate(nets):
        for name_b, cidr_b, net_b in nets[i + 1:]:
            if net_a.version == net_b.version and net_a.overlaps(net_b):
                out.append((name_a, cidr_a, name_b, cidr_b))
    return out


def cluster_problems(hosts, groups, settings):
    """Rules across hosts and groups.

    ``hosts``: {host: {'values': {...}, 'network': CIDR or '', 'reachable': bool}}; ``groups``:
    the inventory's groups; ``settings``: the effective cluster-wide values (of the first host).
    """
    out = []

    def add(var, value, rule, host=None):
        out.append(Problem(var, value, rule, host))

    cp_group = settings.get('cluster_control_plane_group')
    etcd_group = settings.get('cluster_etcd_group')
    worker_group = settings.get('cluster_worker_group')
    required = [('cluster_control_plane_group', cp_group), ('cluster_etcd_group', etcd_group)]
    if not settings.get('cluster_control_plane_kubelet'):
        required.append(('cluster_worker_group', worker_group))
    for var, group in required:
        if not isinstance(group, str):
            continue
        if group not in groups:
            add(var, group, 'names the inventory group "%s", which is missing (a cluster needs at least one '
                'host in it)' % group)
        elif not groups[group]:
            add(var, group, 'names the inventory group "%s", which is empty (a cluster needs at least one host '
                'in it)' % group)
    etcd = groups.get(etcd_group) or []
    if etcd and len(etcd) % 2 == 0:
        add('cluster_etcd_group', etcd_group, 'group "%s" has %d members (%s): etcd needs an odd number (1, 3, 5) '
            'to keep quorum' % (etcd_group, len(etcd), ', '.join(etcd)))
    if len(etcd) > 7:
        add('cluster_etcd_group', etcd_group, 'group "%s" has %d members: more than 7 etcd members slow every '
            'write down; use 3 or 5' % (etcd_group, len(etcd)))
    unreachable = sorted(h for h, data in hosts.items() if not data.get('reachable', True))
    for host in unreachable:
        add('host', host, 'did not answer (unreachable or facts not gathered): every host must be reachable',
            host)

    # Cluster-wide values must be the same on every host; version pins may differ within the
    # version-skew policy (one node ahead of the others, say), checked below.
    for var in sorted(settings):
        if var in ('cluster_node_address', 'cluster_node_name', 'cluster_versions'):
            continue
        differing = sorted(h for h, data in hosts.items()
                           if var in data.get('values', {}) and data['values'][var] != settings[var])
        if differing:
            add(var, settings[var], 'is cluster-wide but differs on %s: set it once for every host (group_vars/all)'
                % ', '.join(differing))

    out += version_skew_problems(hosts, groups, settings)

    pod_cidr = settings.get('cluster_pod_cidr')
    service_cidr = settings.get('cluster_service_cidr')
    subnet_len = settings.get('cluster_pod_subnet_len')
    pod_net = _as_network(pod_cidr)
    if pod_net is not None and isinstance(subnet_len, int):
        if subnet_len < pod_net.prefixlen + 2:
            add('cluster_pod_subnet_len', subnet_len, 'must be at least two longer than the prefix of cluster_pod_cidr '
                '(%s): flannel wants room for four node subnets at least' % pod_cidr)
        elif subnet_len - pod_net.prefixlen < 24:
            room = 2 ** (subnet_len - pod_net.prefixlen) - 2
            lease_hosts = _lease_hosts(groups, settings)
            if len(lease_hosts) > room:
                add('cluster_pod_subnet_len', subnet_len, 'leaves room for %d node subnets in cluster_pod_cidr %s '
                    '(flannel keeps the first and the last), but %d hosts take one (the nodes, and the control '
                    'planes that join the pod network)' % (max(room, 0), pod_cidr, len(lease_hosts)))
    named = [('cluster_pod_cidr', pod_cidr), ('cluster_service_cidr', service_cidr)]
    for name, cidr in sorted((settings.get('preflight_reserved_networks') or {}).items()):
        named.append(('preflight_reserved_networks.%s' % name, cidr))
    host_nets = [('the network of host %s' % h, data['network']) for h, data in sorted(hosts.items())
                 if data.get('network')]
    for name_a, cidr_a, name_b, cidr_b in overlap_problems(named + host_nets):
        if name_a.startswith('the network of host') and name_b.startswith('the network of host'):
            continue
        if name_a.startswith('the network of host'):
            name_a, cidr_a, name_b, cidr_b = name_b, cidr_b, name_a, cidr_a
        add(name_a, cidr_a, 'overlaps %s %s' % (name_b, cidr_b))
    for h, data in sorted(hosts.items()):
        addr = data.get('values', {}).get('cluster_node_address')
        for var, cidr in (('cluster_pod_cidr', pod_cidr), ('cluster_service_cidr', service_cidr)):
            net = _as_network(cidr)
            if net is not None and isinstance(addr, str) and _ipv4(addr) is None \
                    and ipaddress.ip_address(addr) in net:
                add('cluster_node_address', addr, 'lies inside %s %s' % (var, cidr), h)
    # Names and addresses identify one host each.
    for var in ('cluster_node_name', 'cluster_node_address'):
        owners = {}
        for h, data in sorted(hosts.items()):
            value = data.get('values', {}).get(var)
            if isinstance(value, str) and value:
                owners.setdefault(value, []).append(h)
        for value, members in sorted(owners.items()):
            if len(members) > 1:
                add(var, value, 'is the same on hosts %s: each host needs its own' % ', '.join(members))

    for var, value, rule in version_problems(settings):
        add(var, value, rule)
    for var, value, rule in addon_problems(settings):
        add(var, value, rule)
    return out


ISSUER_ANNOTATIONS = ('cert-manager.io/cluster-issuer',)


def addon_problems(settings):
    """(variable, value, rule) for addon settings that refer to what does not exist.

    An issuer named where the collection puts annotations (the Gateway's) must be one of
    cert_manager_cluster_issuers, with cert-manager on; issuer names are unique.
    """
    out = []
    issuers = settings.get('cert_manager_cluster_issuers') or []
    names = [i.get('name') for i in issuers if isinstance(i, dict)]
    duplicates = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    for name in duplicates:
        out.append(('cert_manager_cluster_issuers', name, 'names the ClusterIssuer "%s" %d times: each name once'
                    % (name, names.count(name))))
    if settings.get('cluster_cert_manager_enabled') and not duplicates:
        # The fields each type needs: the role's filter checks them the same way when it renders.
        try:
            cert_manager_filters.cert_manager_issuers(issuers)
        except AnsibleFilterError as exc:
            message = str(exc).split(': ', 1)[-1]
            out.append(('cert_manager_cluster_issuers', issuers, message))
    annotations = settings.get('ingress_gateway_annotations') or {}
    if not settings.get('cluster_ingress_enabled') or not isinstance(annotations, dict):
        return out
    for key in ISSUER_ANNOTATIONS:
        issuer = annotations.get(key)
        if issuer is None:
            continue
        var = 'ingress_gateway_annotations.%s' % key
        if not settings.get('cluster_cert_manager_enabled'):
            out.append((var, issuer, 'names a cert-manager issuer, but cert-manager is off '
                        '(cluster_cert_manager_enabled: false)'))
        elif issuer not in names:
            out.append((var, issuer, 'names the ClusterIssuer "%s", which cert_manager_cluster_issuers does not '
                        'define (defined: %s)' % (issuer, ', '.join(sorted(n for n in names if isinstance(n, str)))
                                                  or 'none')))
    return out


def version_problems(settings):
    """(variable, value, rule) for every pin that is missing, unknown or of an unknown component.

    The pins are ``cluster_default_versions`` with the operator's ``cluster_versions`` merged over
    them, the known versions ``cluster_default_known_versions`` with ``cluster_known_versions``'s
    lists added: a problem names the variable the pin comes from.
    """
    defaults = settings.get('cluster_default_versions')
    versions = settings.get('cluster_versions')
    known_defaults = settings.get('cluster_default_known_versions')
    known_extra = settings.get('cluster_known_versions')
    if not all(isinstance(d, dict) for d in (defaults, versions, known_defaults, known_extra)):
        return []  # the type problem is reported with the option
    known = {c: [str(v) for v in known_defaults.get(c) or []] for c in known_defaults}
    for component, extra in known_extra.items():
        known.setdefault(component, [])
        known[component] += [str(v) for v in extra or [] if str(v) not in known[component]]
    pins = dict(defaults, **versions)
    out = []
    for component in sorted(set(known) - set(pins)):
        out.append(('cluster_versions', component, 'has no pin for %s (pins known: %s)'
                    % (component, ', '.join(known[component]))))
    for component, version in sorted(pins.items()):
        var = '%s.%s' % ('cluster_versions' if component in versions else 'cluster_default_versions', component)
        if component not in known:
            out.append((var, version, 'is not a component of this collection (components: %s)'
                        % ', '.join(sorted(known))))
        elif str(version) not in known[component]:
            out.append((var, version, 'is not a version this collection knows checksums for (known: '
                        '%s); add it to cluster_known_versions' % ', '.join(known[component])))
    return out


def _as_network(cidr):
    if not isinstance(cidr, str) or _ipv4_network(cidr):
        return None
    return ipaddress.IPv4Network(cidr)


def version_skew_problems(hosts, groups, settings):
    """The Kubernetes version each host is pinned to (its cluster_versions over the collection's pins), held
    against the version-skew policy across hosts: a kubelet newer than an API server or more than three
    minors older, API servers more than one minor apart (the running versions are upgrade.yml's to check)."""
    default = (settings.get('cluster_default_versions') or {}).get('kubernetes')
    planes = set(groups.get(settings.get('cluster_control_plane_group')) or [])
    pods = set(_pod_hosts(groups, settings))
    records, pinned = [], {}
    for host, data in sorted(hosts.items()):
        versions = data.get('values', {}).get('cluster_versions')
        version = (versions or {}).get('kubernetes') if isinstance(versions, dict) else None
        version = version or default
        if not isinstance(version, str) or not re.match(r'^\d+\.\d+\.\d+$', version):
            continue  # a malformed pin is the host's own problem, reported with its inputs
        pinned[host] = versions
        records.append({'host': host, 'node': host, 'control_plane': host in planes, 'etcd': False,
                        'nodes': host in pods, 'target': {'kubernetes': version}, 'binaries': {}, 'stale': [],
                        'api': {}})
    out = []
    for message in upgrade_filters.skew_problems(records):
        host = message.split(':', 1)[0]
        out.append(Problem('cluster_versions', pinned.get(host, {}), message.split(': ', 1)[1]
                           if host in pinned else message, host if host in pinned else None))
    return out


def _lease_hosts(groups, settings):
    """The hosts that take a pod subnet lease (run flanneld): those that run pods, and the control planes that
    join the pod network without a kubelet (cluster_control_plane_pod_network, true unless set false)."""
    hosts = _pod_hosts(groups, settings)
    if settings.get('cluster_control_plane_pod_network') is not False:
        hosts += [h for h in groups.get(settings.get('cluster_control_plane_group')) or [] if h not in hosts]
    return hosts


def _pod_hosts(groups, settings):
    """The hosts that run pods (a kubelet): the workers, and the control planes with cluster_control_plane_kubelet."""
    hosts = list(groups.get(settings.get('cluster_worker_group')) or [])
    if settings.get('cluster_control_plane_kubelet'):
        hosts += [h for h in groups.get(settings.get('cluster_control_plane_group')) or [] if h not in hosts]
    return hosts


# ------------------------------------------------------------------ messages

def problem(var, value, rule, host=None):
    return Problem(var, value, rule, host)


def render(problems, all_hosts):
    """Message lines: one per distinct (variable, value, rule), naming the hosts unless it is every host."""
    grouped = {}
    order = []
    for p in problems:
        key = (p.var, short(p.value, 80), p.rule)
        if key not in grouped:
            grouped[key] = []
            order.append(key)
        if p.host is not None and p.host not in grouped[key]:
            grouped[key].append(p.host)
    lines = []
    everyone = sorted(all_hosts)
    for key in order:
        var, value, rule = key
        hosts = grouped[key]
        prefix = ''
        if hosts and (sorted(hosts) != everyone or len(everyone) == 1):
            prefix = '%s %s: ' % ('host' if len(hosts) == 1 else 'hosts', ', '.join(hosts))
        if var == 'host':
            lines.append('%s%s' % (prefix, rule))
        else:
            lines.append('%s%s = %s: %s' % (prefix, var, value, rule))
    return lines
