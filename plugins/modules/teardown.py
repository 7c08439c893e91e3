#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: teardown
short_description: Take a component off a host in one step (services, mounts, interfaces, iptables, files)
description:
  - The counterpart of M(hardway.kubernetes.install_files) and M(hardway.kubernetes.services) for
    the roles' C(remove) steps. In this order, each part only where there is something to do, and
    each action named in RV(actions).
  - Stops the O(services) in the order given, unmounts every mount below O(unmount) (deepest
    first; a disk or volume mounted on the path itself stays, a directory bound onto itself goes), deletes
    the network interfaces O(interfaces), deletes the iptables (and ip6tables) chains
    whose names start with one of O(iptables_chains) together with the rules elsewhere that jump to
    them, disables the services, removes O(files) (directories with their contents), moves each of
    O(move_aside) to C(<path>.removed-<timestamp>), removes the directories O(empty_dirs) that are
    empty, and reloads systemd when a unit file under C(/etc/systemd/system) went.
  - Never flushes a whole table, never changes a chain policy, and deletes only the rules that
    jump to an owned chain, so the host's own rules stay and it stays reachable.
author:
  - hardway.kubernetes developers (@hardway)
options:
  services:
    description: Service units to stop and disable, in this order (with or without C(.service)).
    type: list
    elements: str
    default: []
  unmount:
    description:
      - Paths whose mounts below them are unmounted; a mount on the path itself only when it is the
        directory bound onto itself (as kubelet does with its root directory).
    type: list
    elements: path
    default: []
  interfaces:
    description: Network interfaces to delete (C(ip link delete)) when they exist.
    type: list
    elements: str
    default: []
  iptables_chains:
    description:
      - Prefixes of chain names (V(KUBE-), V(FLANNEL-)) in every table of C(iptables) and
        C(ip6tables). Those chains are flushed and deleted, and the rules in other chains that jump
        to them are deleted, in one C(iptables-restore --noflush) per command.
    type: list
    elements: str
    default: []
  files:
    description:
      - Files, links and directories (with their contents) to remove; shell patterns (V(/run/netns/cni-*))
        name every match.
      - A mount point is never removed - a directory mounted there is emptied and stays, a file mounted
        there (a network namespace) is unmounted, then removed.
    type: list
    elements: path
    default: []
  move_aside:
    description:
      - Directories kept rather than removed, moved to C(<path>.removed-<UTC timestamp>) (with a
        suffix should that exist).
    type: list
    elements: path
    default: []
  empty_dirs:
    description: Directories removed only when they are empty (deepest first).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reads the host and says in RV(actions) what it would do; changes nothing.
  diff_mode:
    support: none
    description: Says what it does in RV(actions) instead.
  platform:
    support: full
    platforms: posix
    description:
      - Hosts run by systemd, with C(ip) and, for O(iptables_chains), C(iptables-save) and
        C(iptables-restore).
seealso:
  - module: hardway.kubernetes.services
  - module: hardway.kubernetes.install_files
"""

EXAMPLES = r"""
- name: Take flanneld off this host
  hardway.kubernetes.teardown:
    services: [flanneld]
    interfaces: [flannel.1, cni0]
    iptables_chains: [FLANNEL-, CNI-]
    files: [/etc/systemd/system/flanneld.service, /etc/cni/net.d/10-flannel.conflist, /run/flannel]

- name: Stop etcd and keep its data aside
  hardway.kubernetes.teardown:
    services: [etcd]
    move_aside: [/var/lib/etcd]
"""

RETURN = r"""
actions:
  description: What was done (or would be, in check mode), one line each, in order.
  returned: always
  type: list
  elements: str
  sample: ["stop flanneld", "delete interface flannel.1", "remove /etc/systemd/system/flanneld.service"]
moved:
  description: Each path of O(move_aside) that was moved, and where to.
  returned: always
  type: dict
  sample: {/var/lib/etcd: /var/lib/etcd.removed-20260101T120000Z}
"""

import glob
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hardway.kubernetes.plugins.module_utils.teardown import (
    aside_path,
    iptables_cleanup,
    mount_points,
    mounts_under,
)

UNIT_DIR = '/etc/systemd/system/'


def unit_name(name):
    return name if '.' in name else name + '.service'


class Teardown:
    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.actions = []
        self.moved = {}

    def act(self, text, *commands):
        """Record ``text``; run each command unless in check mode (the first failure fails the task)."""
        self.actions.append(('would ' if self.check else '') + text)
        if self.check:
            return
        for cmd, data in commands:
            rc, out, err = self.module.run_command(cmd, data=data, binary_data=True)
            if rc != 0:
                self.module.fail_json(msg='%s: %s failed (rc %d): %s' % (text, ' '.join(cmd), rc, (err or out).strip()),
                                      actions=self.actions)

    def unit_state(self, unit):
        systemctl = self.module.get_bin_path('systemctl', required=True)
        _rc, out, _err = self.module.run_command(
            [systemctl, 'show', '--property=LoadState,ActiveState,UnitFileState', unit])
        props = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
        return props

    def stop(self, units):
        systemctl = self.module.get_bin_path('systemctl', required=True)
        for unit in units:
            state = self.unit_state(unit)
            if state.get('ActiveState') in ('active', 'activating', 'reloading', 'deactivating'):
                self.act('stop %s' % unit, ([systemctl, 'stop', unit], None))

    def disable(self, units):
        systemctl = self.module.get_bin_path('systemctl', required=True)
        for unit in units:
            if self.unit_state(unit).get('UnitFileState') in ('enabled', 'enabled-runtime', 'linked'):
                self.act('disable %s' % unit, ([systemctl, 'disable', unit], None))

    def unmount(self, paths):
        if not paths:
            return
        with open('/proc/self/mountinfo') as handle:
            points = mounts_under(handle.read(), paths)
        umount = self.module.get_bin_path('umount', required=True)
        for point in points:
            self.actions.append(('would ' if self.check else '') + 'unmount %s' % point)
            if self.check:
                continue
            rc, _out, err = self.module.run_command([umount, point])
            if rc != 0:  # busy: detach it now, the kernel frees it once unused
                rc, _out, err = self.module.run_command([umount, '--lazy', point])
                if rc != 0 and os.path.ismount(point):
                    self.module.fail_json(msg='unmount %s failed: %s' % (point, err.strip()), actions=self.actions)

    def interfaces(self, names):
        ip = self.module.get_bin_path('ip', required=bool(names))
        for name in names:
            if os.path.exists('/sys/class/net/%s' % name):
                self.act('delete interface %s' % name, ([ip, 'link', 'delete', name], None))

    def iptables(self, prefixes):
        if not prefixes:
            return
        for family in ('iptables', 'ip6tables'):
            save = self.module.get_bin_path(family + '-save')
            restore = self.module.get_bin_path(family + '-restore')
            if not save or not restore:
                continue
            rc, out, err = self.module.run_command([save])
            if rc != 0:
                if family == 'ip6tables':
                    continue  # a host without IPv6
                self.module.fail_json(msg='%s failed: %s' % (save, err.strip()), actions=self.actions)
            text, actions = iptables_cleanup(out, prefixes)
            if not text:
                continue
            self.actions.extend(('would ' if self.check else '') + family + a[len('iptables'):] for a in actions)
            if not self.check:
                rc, _out, err = self.module.run_command([restore, '--noflush', '--wait'], data=text, binary_data=True)
                if rc != 0:
                    self.module.fail_json(msg='%s failed: %s' % (restore, err.strip()), input=text,
                                          actions=self.actions)

    def remove(self, patterns):
        reload = False
        with open('/proc/self/mountinfo') as handle:
            points = mount_points(handle.read())
        paths = []
        for pattern in patterns:
            paths += sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for path in paths:
            if not os.path.lexists(path):
                continue
            reload = reload or path.startswith(UNIT_DIR)
            isdir = os.path.isdir(path) and not os.path.islink(path)
            mounted = os.path.normpath(path) in points
            if mounted and isdir:
                if not os.listdir(path):
                    continue
                self.actions.append(('would ' if self.check else '') + 'empty %s (a mount point: it stays)' % path)
            else:
                self.actions.append(('would ' if self.check else '') + ('unmount and ' if mounted else '')
                                    + 'remove %s' % path)
            if self.check:
                continue
            if mounted and isdir:
                for entry in os.listdir(path):
                    inner = os.path.join(path, entry)
                    if os.path.isdir(inner) and not os.path.islink(inner):
                        shutil.rmtree(inner)
                    else:
                        os.unlink(inner)
                continue
            if mounted:
                self.act('unmount %s' % path, ([self.module.get_bin_path('umount', required=True), path], None))
                self.actions.pop()
            if isdir:
                shutil.rmtree(path)
            else:
                os.unlink(path)
        return reload

    def move_aside(self, paths):
        stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
        for path in paths:
            if not os.path.lexists(path):
                continue
            dest = aside_path(path, stamp, os.path.lexists)
            self.moved[path] = dest
            self.actions.append(('would ' if self.check else '') + 'move %s to %s' % (path, dest))
            if not self.check:
                os.rename(path, dest)

    def empty_dirs(self, paths):
        for path in sorted(paths, key=lambda p: -p.rstrip('/').count('/')):
            if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
                self.actions.append(('would ' if self.check else '') + 'remove empty directory %s' % path)
                if not self.check:
                    os.rmdir(path)


def main():
    module = AnsibleModule(
        argument_spec={
            'services': {'type': 'list', 'elements': 'str', 'default': []},
            'unmount': {'type': 'list', 'elements': 'path', 'default': []},
            'interfaces': {'type': 'list', 'elements': 'str', 'default': []},
            'iptables_chains': {'type': 'list', 'elements': 'str', 'default': []},
            'files': {'type': 'list', 'elements': 'path', 'default': []},
            'move_aside': {'type': 'list', 'elements': 'path', 'default': []},
            'empty_dirs': {'type': 'list', 'elements': 'path', 'default': []},
        },
        supports_check_mode=True,
    )
    params = module.params
    for name in ('files', 'move_aside', 'empty_dirs', 'unmount'):
        bad = [p for p in params[name] if not os.path.isabs(p) or os.path.normpath(p) == '/']
        if bad:
            module.fail_json(msg='%s: %s must be absolute paths below /' % (name, ', '.join(bad)))
    if any(not p.strip() for p in params['iptables_chains']):
        module.fail_json(msg='iptables_chains: an empty prefix would name every chain')
    units = [unit_name(s) for s in params['services']]
    work = Teardown(module)
    work.stop(units)
    work.unmount(params['unmount'])
    work.interfaces(params['interfaces'])
    work.iptables(params['iptables_chains'])
    work.disable(units)
    reload = work.remove(params['files'])
    work.move_aside(params['move_aside'])
    work.empty_dirs(params['empty_dirs'])
    if reload:
        systemctl = module.get_bin_path('systemctl', required=True)
        work.act('reload systemd', ([systemctl, 'daemon-reload'], None))
        if not module.check_mode:
            module.run_command([systemctl, 'reset-failed'] + units)
    module.exit_json(changed=bool(work.actions), actions=work.actions, moved=work.moved)


if __name__ == '__main__':
    main()
