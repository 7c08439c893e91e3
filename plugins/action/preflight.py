# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin behind hardway.kubernetes.preflight: it reads, on the controller, and changes nothing.

``scope: host`` runs on every host: it reads each checked role's argument
spec, takes the value of every option as this host sees it (inventory, extra
vars, or the role's default rendered for this host), checks it against the
spec and the preflight rules, checks the rules that tie this host's values
together, and returns the problems and the values; it never fails.

``scope: cluster`` runs once: it collects what every host returned, adds
the rules across hosts and groups, and fails with every problem at once.
The logic lives in plugin_utils/preflight.py.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from ansible.plugins.action import ActionBase

from ansible_collections.hardway.kubernetes.plugins.plugin_utils import preflight as checks

# Values the cross-host and cross-field rules read, besides every cluster_* option.
_CROSS_FIELD = ('etcd_client_port', 'etcd_peer_port', 'etcd_metrics_url', 'kubelet_fail_swap_on',
                'node_disable_swap', 'flannel_iface', 'flannel_public_ip', 'flannel_backend',
                'flannel_backend_overrides', 'preflight_reserved_networks', 'etcd_extra_flags', 'etcd_auth_enabled',
                'kube_apiserver_flags', 'kube_apiserver_extra_flags', 'cert_manager_webhook_host_network',
                'artifacts_download_on', 'artifacts_mirror')


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(('scope', 'roles', 'rules', 'config_fields', 'removed', 'result_var', 'supported_os',
                             'reach_var'))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        scope = args.get('scope', 'host')
        if scope == 'host':
            result.update(self._host(task_vars, args))
        elif scope == 'cluster':
            result.update(self._cluster(task_vars, args))
        else:
            result.update(failed=True, msg='scope must be host or cluster, not %r' % scope)
        result['changed'] = False
        return result

    # -------------------------------------------------------------- one host

    def _load(self, path):
        try:
            return self._loader.load_from_file(path, trusted_as_template=True)
        except TypeError:  # ansible-core 2.18: no data tagging, everything is a template
            return self._loader.load_from_file(path)

    def _role_dir(self, task_vars, role):
        return os.path.join(os.path.dirname(task_vars['role_path']), role)

    def _roles(self, task_vars, roles, host):
        """The roles to check, and a problem when preflight_checked_roles itself is wrong.

        When the list is wrong, every role of the collection is checked, so
        that one mistake does not hide the others.
        """
        base = os.path.dirname(task_vars['role_path'])
        every = sorted(r for r in os.listdir(base) if r not in ('cluster', 'preflight')
                       and os.path.isfile(os.path.join(base, r, 'meta', 'argument_specs.yml')))
        if not isinstance(roles, list):
            return every, [checks.problem('preflight_checked_roles', _plain(roles), 'must be a list of roles', host)]
        unknown = [r for r in roles if r not in every]
        if unknown:
            return every, [checks.problem('preflight_checked_roles', _plain(roles), 'names roles this collection '
                                          'does not have: %s' % ', '.join(str(r) for r in unknown), host)]
        return roles, []

    def _specs(self, task_vars, roles):
        """{option: (role, spec)} for the cluster role and every checked role."""
        specs = {}
        for role in ['cluster', 'preflight'] + [r for r in roles if r not in ('cluster', 'preflight')]:
            path = os.path.join(self._role_dir(task_vars, role), 'meta', 'argument_specs.yml')
            data = self._load(path) or {}
            entry = 'settings' if role == 'cluster' else 'main'  # see roles/cluster/meta/argument_specs.yml
            for name, spec in (data.get('argument_specs', {}).get(entry, {}).get('options') or {}).items():
                specs[name] = (role, spec)
        return specs

    def _defaults(self, task_vars, role):
        base = os.path.join(self._role_dir(task_vars, role), 'defaults')
        files = [os.path.join(base, 'main.yml')]
        if os.path.isdir(os.path.join(base, 'main')):
            files = [os.path.join(base, 'main', f) for f in sorted(os.listdir(os.path.join(base, 'main')))]
        out = {}
        for path in files:
            if os.path.exists(path):
                out.update(self._load(path) or {})
        return out

    def _renderer(self, task_vars, defaults):
        """A templar that sees the roles' defaults under everything the host's variables set."""
        variables = dict(defaults)
        variables.update(task_vars)
        try:
            templar = self._templar.copy_with_new_env(available_variables=variables)
        except (AttributeError, TypeError):  # ansible-core 2.18
            templar = self._templar
            templar.available_variables = variables
        return templar.template

    def _host(self, task_vars, args):
        host = task_vars.get('inventory_hostname')
        roles, problems = self._roles(task_vars, args.get('roles'), host)
        rules = dict(args.get('rules') or {})
        for name, rule in list(rules.items()):
            if isinstance(rule, dict) and isinstance(rule.get('fields'), str):
                names = (args.get('config_fields') or {}).get(rule['fields'], [])
                rules[name] = dict(rule, fields={'type': rule['fields'], 'names': names})
        specs = self._specs(task_vars, roles)
        defaults = {}
        for role in set(role for role, _spec in specs.values()):
            defaults.update(self._defaults(task_vars, role))
        render = self._renderer(task_vars, defaults)
        values = {}
        wanted = set(_CROSS_FIELD) | set(n for n in specs if n.startswith('cluster_'))
        wanted |= set(rules.get('_cluster_wide', []))
        for name, (role, spec) in sorted(specs.items()):
            # An option is in the task's variables when the inventory or the
            # command line sets it (the preflight role's own defaults too).
            # Otherwise its default is rendered only when a rule needs it, and a
            # problem there is the problem of the value it was built from.
            user_set = name in task_vars
            if not user_set and name not in wanted:
                continue
            raw = task_vars[name] if user_set else defaults.get(name)
            try:
                value = render(raw)
            except Exception as exc:  # pylint: disable=broad-except  # a broken template can raise anything
                problems.append(checks.problem(name, _plain(raw), 'could not be evaluated: %s' % _first_line(exc),
                                               host))
                continue
            converted, option_problems = checks.option_problems(name, value, spec, rules.get(name))
            # The cluster role's defaults come from the host (its name, its
            # address), so they are checked as if set; the API address is the
            # first control-plane host's, which the cluster half checks.
            if user_set or role == 'cluster' and name != 'cluster_apiserver_address':
                for text in option_problems:
                    problems.append(checks.problem(name, _plain(value), text, host))
            if name in wanted and not option_problems:
                values[name] = _plain(converted)
        facts = task_vars.get('ansible_facts') or {}
        groups = task_vars.get('groups') or {}

        def member(var):
            return host in (groups.get(values.get(var)) or [])

        kubelet_on_control_plane = values.get('cluster_control_plane_kubelet') is True
        runs_pods = member('cluster_worker_group') or kubelet_on_control_plane and member('cluster_control_plane_group')
        joins_pod_network = runs_pods or values.get('cluster_control_plane_pod_network') is not False \
            and member('cluster_control_plane_group')
        problems += checks.host_problems(host, values, facts, runs_pods, member('cluster_control_plane_group'),
                                         member('cluster_etcd_group'), joins_pod_network)
        for name, instead in sorted((args.get('removed') or {}).items()):
            if name in task_vars:
                problems.append(checks.problem(name, _plain(task_vars[name]), 'is no longer read by this collection: %s'
                                               % instead, host))
        if not re.match(r'^[A-Za-z0-9][A-Za-z0-9._-]*$', host or ''):
            problems.append(checks.problem('host', host, 'the inventory name names etcd members and files on the '
                                           'hosts: use letters, digits, ".", "_" and "-"', host))
        if facts.get('service_mgr') and facts['service_mgr'] != 'systemd':
            problems.append(checks.problem('host', host, 'the service manager is "%s"; every component runs as a '
                                           'systemd service' % facts['service_mgr'], host))
        supported = args.get('supported_os') or {}
        family = facts.get('distribution')
        if supported and family and str(facts.get('distribution_major_version')) not in \
                [str(v) for v in supported.get(family, [])]:
            problems.append(checks.problem('host', host, 'runs %s %s, which this collection does not support '
                                           '(supported: %s)' % (family, facts.get('distribution_major_version'),
                                                                _os_list(supported)), host))
        network = ''
        default = facts.get('default_ipv4') or {}
        if default.get('network') and default.get('prefix'):
            network = '%s/%s' % (default['network'], default['prefix'])
        return {'problems': [list(p) for p in problems], 'values': values, 'network': network,
                'msg': '%d problem(s) on %s' % (len(problems), host)}

    # -------------------------------------------------------------- all hosts

    def _cluster(self, task_vars, args):
        result_var = args.get('result_var', '_preflight_host')
        hostvars = task_vars.get('hostvars') or {}
        play_hosts = task_vars.get('ansible_play_hosts_all') or []
        groups = {k: list(v) for k, v in (task_vars.get('groups') or {}).items()}
        hosts = {}
        problems = []
        for host in play_hosts:
            data = hostvars[host].get(result_var) if host in hostvars else None
            if not data or 'values' not in data:
                hosts[host] = {'reachable': False}
                continue
            data = _plain(data)
            hosts[host] = {'values': data['values'], 'network': data.get('network', ''), 'reachable': True}
            problems += [checks.Problem(*p) for p in data.get('problems', [])]
            problems += _reach_problems(host, hostvars[host].get(args.get('reach_var') or '_artifacts_reach'))
        reached = [h for h in play_hosts if hosts[h].get('reachable')]
        if not reached:
            return {'failed': True, 'msg': 'preflight: no host answered'}
        first = hostvars[reached[0]][result_var]['values']
        wide = set(n for n in first if n.startswith('cluster_')) | set(args.get('rules', {}).get('_cluster_wide', []))
        settings = {n: first[n] for n in wide if n in first}
        cluster_hosts = {h: {'values': {k: v for k, v in d.get('values', {}).items() if k in wide or k in
                                        ('cluster_node_address', 'cluster_node_name')},
                             'network': d.get('network', ''), 'reachable': d.get('reachable', False)}
                         for h, d in hosts.items()}
        problems += checks.cluster_problems(cluster_hosts, groups, settings)
        lines = checks.render(problems, play_hosts)
        if lines:
            return {'failed': True, 'problems': lines,
                    'msg': 'preflight found %d problem(s); nothing has been changed:\n- %s'
                           % (len(lines), '\n- '.join(lines))}
        return {'msg': 'preflight: every input and every host checked, no problem', 'problems': []}


def _reach_problems(host, reach):
    """A problem per server the host could not get its probe file from (roles/artifacts/tasks/reach.yml)."""
    problems = []
    for answer in (reach or {}).get('results') or []:
        if answer.get('skipped') or not isinstance(answer.get('item'), dict):
            continue
        status = answer.get('status')
        if status == 200:
            continue
        url = str(answer['item'].get('url'))
        if isinstance(status, int) and status > 0:
            why = 'HTTP %s' % status
        else:  # no answer at all: the reason urllib gave, without the uri module's wrapping
            why = str(answer.get('msg') or 'no answer').strip().splitlines()[0]
            why = re.sub(r'^.*Request failed: (<\w+ error )?(\[Errno -?\d+\] )?', '', why).rstrip('>')[:200]
        parts = urlsplit(url)
        problems.append(checks.problem(str(answer['item'].get('var') or 'artifacts_mirror'),
                                       '%s://%s' % (parts.scheme, parts.netloc),
                                       'this host downloads its files itself (artifacts_download_on: hosts) but '
                                       'cannot fetch %s: %s' % (url, why), host))
    return problems


def _first_line(exc):
    return str(getattr(exc, 'message', None) or exc).strip().splitlines()[0][:300]


def _plain(value):
    """Plain Python data (no Ansible wrappers) for values handed between hosts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _os_list(supported):
    return ', '.join('%s %s' % (k, '/'.join(str(v) for v in vs)) for k, vs in sorted(supported.items()))
