#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: services
short_description: Make sure several systemd services are enabled and running, in one step
description:
  - Reads the state of every unit in O(names) with one C(systemctl show), then enables the ones
    that are not enabled and starts the ones that are not active, in the order given. A loop of
    M(ansible.builtin.systemd_service) costs one module run per unit; this module costs one per
    host.
  - Reloads systemd's configuration first when a unit file changed on disk since systemd last read
    it (C(NeedDaemonReload=yes)), so that a start uses the file as it is now.
  - Never restarts a running service, except with O(restart_replaced); restarts on configuration
    changes are for handlers.
  - Finds, for every running unit, whether its main process still runs a binary that has been
    replaced on disk since it started (C(/proc/PID/exe) names a deleted file). With
    O(restart_replaced) those units are restarted, in the order given; without it, a warning names
    them (an upgrade installs binaries; C(playbooks/upgrade.yml) restarts them one host at a time).
  - A unit that systemd does not know fails the task, naming the unit, before anything is changed. In
    check mode it only causes a warning, since the task that would install it did not run.
  - Uses only the Python standard library and C(systemctl).
author:
  - hardway.kubernetes developers (@hardway)
options:
  names:
    description:
      - Service units, with or without the C(.service) suffix. Duplicates are ignored.
    type: list
    elements: str
    required: true
  enabled:
    description:
      - Whether the services must start at boot. V(false) leaves the boot setting alone.
    type: bool
    default: true
  state:
    description:
      - V(started) starts the services that are not active. V(stopped) stops the ones that are.
    type: str
    choices: [started, stopped]
    default: started
  restart_replaced:
    description:
      - Restart the running units whose main process runs a replaced binary (with O(state=started)).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description:
      - Reports what would be reloaded, enabled, started or stopped, and changes nothing.
      - Units systemd does not know yet are warned about and left out of the result.
  diff_mode:
    support: full
    description: Before and after, one line per unit whose state changes (active state, enablement).
  platform:
    support: full
    platforms: posix
    description: Hosts run by systemd.
notes:
  - A service started here may still fail a moment later; this module checks that systemd accepted
    the start, as C(systemctl start) does. Roles wait for the health of what they run.
seealso:
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
- name: Make sure the node's services are enabled and running
  hardway.kubernetes.services:
    names: [containerd, flanneld, kubelet, kube-proxy]

- name: Stop kubelet and kube-proxy for maintenance, leaving their boot setting alone
  hardway.kubernetes.services:
    names: [kubelet, kube-proxy]
    state: stopped
    enabled: false
"""

RETURN = r"""
services:
  description: What was found and done, per unit, in the order of O(names).
  returned: always
  type: list
  elements: dict
  sample:
    - name: kubelet.service
      active: inactive
      enabled: enabled
      actions: [start]
    - name: kube-proxy.service
      active: active
      enabled: enabled
      actions: []
  contains:
    name:
      description: The unit.
      type: str
    active:
      description: Its C(ActiveState) before the module acted (V(active), V(inactive), V(failed), ...).
      type: str
    enabled:
      description: Its C(UnitFileState) before the module acted (V(enabled), V(disabled), ...).
      type: str
    actions:
      description: What was done (or would be, in check mode) to it, among V(enable), V(start), V(stop),
        V(restart).
      type: list
      elements: str
    replaced:
      description: Whether its main process ran a binary replaced on disk since it started.
      type: bool
daemon_reloaded:
  description: Whether systemd's configuration was reloaded (or would be, in check mode).
  returned: always
  type: bool
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.versions import (  # noqa: E402
    runs_replaced_binary as replaced_binary,
)

PROPERTIES = ('Id', 'LoadState', 'ActiveState', 'UnitFileState', 'NeedDaemonReload', 'MainPID')
# Active states in which a start is not needed.
RUNNING = ('active', 'activating', 'reloading', 'refreshing')
# Boot settings that need no "enable".
ENABLED = ('enabled', 'enabled-runtime', 'static', 'alias', 'indirect', 'generated', 'transient')


def unit_name(name):
    name = name.strip()
    return name if '.' in name else name + '.service'


def parse_show(text, count):
    """Split ``systemctl show`` output (blank-line separated blocks) into ``count`` property dicts."""
    units = []
    for block in text.strip('\n').split('\n\n'):
        props = {}
        for line in block.splitlines():
            key, sep, value = line.partition('=')
            if sep:
                props[key] = value
        units.append(props)
    if len(units) != count:
        raise ValueError('systemctl show returned %d blocks for %d units' % (len(units), count))
    return units


def runs_replaced_binary(props, readlink=os.readlink):
    """Whether the unit's main process runs an executable that was replaced (deleted) since it started."""
    return replaced_binary(props.get('MainPID'), readlink)


def plan(units, props, enabled, state, restart_replaced=False, readlink=os.readlink):
    """What to do: ``(reload, [(unit, props, actions)], problems)``."""
    problems = []
    reload_needed = False
    steps = []
    for unit, found in zip(units, props):
        if found.get('LoadState') != 'loaded':
            problems.append('%s: systemd does not know this unit (LoadState=%s)'
                            % (unit, found.get('LoadState') or 'unknown'))
            continue
        reload_needed = reload_needed or found.get('NeedDaemonReload') == 'yes'
        actions = []
        if enabled and found.get('UnitFileState') not in ENABLED:
            actions.append('enable')
        active = found.get('ActiveState')
        if state == 'started' and active not in RUNNING:
            actions.append('start')
        elif state == 'started' and restart_replaced and runs_replaced_binary(found, readlink):
            actions.append('restart')
        elif state == 'stopped' and active in RUNNING:
            actions.append('stop')
        steps.append((unit, found, actions))
    return reload_needed, steps, problems


def main():
    module = AnsibleModule(
        argument_spec={
            'names': {'type': 'list', 'elements': 'str', 'required': True},
            'enabled': {'type': 'bool', 'default': True},
            'state': {'type': 'str', 'choices': ['started', 'stopped'], 'default': 'started'},
            'restart_replaced': {'type': 'bool', 'default': False},
        },
        supports_check_mode=True,
    )
    units = list(dict.fromkeys(unit_name(n) for n in module.params['names'] if n and n.strip()))
    if not units:
        module.exit_json(changed=False, services=[], daemon_reloaded=False)
    systemctl = module.get_bin_path('systemctl', required=True)

    def run(*args):
        rc, out, err = module.run_command([systemctl] + list(args))
        if rc != 0:
            module.fail_json(msg='systemctl %s failed (rc %d): %s' % (' '.join(args), rc, (err or out).strip()),
                             rc=rc)
        return out

    try:
        props = parse_show(run('show', '--property=' + ','.join(PROPERTIES), '--', *units), len(units))
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    reload_needed, steps, problems = plan(units, props, module.params['enabled'], module.params['state'],
                                          module.params['restart_replaced'])
    if problems and module.check_mode:
        # In check mode the task that would install the unit did not run: say so, and go on.
        for problem in problems:
            module.warn(problem + '; in check mode that is expected when an earlier task installs it')
    elif problems:
        module.fail_json(msg='; '.join(problems))

    if module.params['restart_replaced'] and module.params['state'] == 'started':  # plan() looked: its restarts
        replaced = [unit for unit, _found, actions in steps if 'restart' in actions]
    else:
        replaced = [unit for unit, found, _actions in steps
                    if found.get('ActiveState') in RUNNING and runs_replaced_binary(found)]
    left = [unit for unit in replaced if not module.params['restart_replaced']]
    if left and module.params['state'] == 'started':
        module.warn('%s still run%s a binary replaced since %s started; run playbooks/upgrade.yml, which '
                    'restarts them one host at a time' % (', '.join(left), 's' if len(left) == 1 else '',
                                                          'it' if len(left) == 1 else 'they'))
    changed = reload_needed or any(actions for _unit, _found, actions in steps)
    if changed and not module.check_mode:
        if reload_needed:
            run('daemon-reload')
        for unit, _found, actions in steps:
            for action in actions:
                run(action, '--', unit)

    result = {
        'changed': changed,
        'daemon_reloaded': reload_needed,
        'services': [{'name': unit, 'active': found.get('ActiveState', ''),
                      'enabled': found.get('UnitFileState', ''), 'actions': actions,
                      'replaced': unit in replaced}
                     for unit, found, actions in steps],
    }
    if module._diff and changed:
        before, after = [], []
        for unit, found, actions in steps:
            if not actions:
                continue
            was_enabled = found.get('UnitFileState', '')
            was_active = found.get('ActiveState', '')
            before.append('%s: %s, %s' % (unit, was_active, was_enabled))
            now_active = ('active' if {'start', 'restart'} & set(actions)
                          else 'inactive' if 'stop' in actions else was_active)
            after.append('%s: %s, %s' % (unit, now_active, 'enabled' if 'enable' in actions else was_enabled))
        if reload_needed:
            before.append('systemd: unit files changed on disk')
            after.append('systemd: configuration reloaded')
        result['diff'] = {'before': '\n'.join(before) + '\n', 'after': '\n'.join(after) + '\n'}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
