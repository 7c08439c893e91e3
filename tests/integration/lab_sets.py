"""The lab set "itest": bare lab hosts for the integration tests that run playbooks/site.yml.

:func:`ensure_up` starts the set (``python3 tests/testbed/lab.py up --name itest --workers 2``:
itest-cp1, itest-w1, itest-w2, systemd as PID 1, on their own internal network) when it is not
running, and leaves it running afterwards, so that every test of the session, and the next
session, reuses it; ``make test`` removes it at its end (``lab.py down --name itest``). Tests
that use it must leave the hosts as they found them (bare: nothing of the collection installed).

A uniquely named module rather than conftest.py, so that test files can import it (see
tests/unit/hardway_testlib.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LAB_PY = REPO / 'tests' / 'testbed' / 'lab.py'
LAB_SET = 'itest'
WORKERS = 2
# Where the collection puts files on a host (README, "Files on the hosts"); a test
# that must change no host lists these before and after.
INSTALL_DIRS = ('/usr/local/bin', '/opt/cni', '/etc/kubernetes', '/etc/cni', '/etc/systemd/system',
                '/var/lib/kubelet', '/var/lib/kube-proxy', '/var/lib/etcd', '/var/lib/hardway',
                '/var/cache/hardway', '/etc/containerd', '/run/flannel')
# Paths that change on a host that merely answers Ansible (facts, module runs) or keeps running.
NOISE = ('/root/.ansible', '/var/log', '/var/lib/systemd', '/var/cache/ldconfig', '/var/tmp', '/tmp', '/run')


def host_names():
    return [f'{LAB_SET}-cp1'] + [f'{LAB_SET}-w{i}' for i in range(1, WORKERS + 1)]


def _run(argv, timeout=120, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f'{" ".join(argv)} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}')
    return proc


def _running(name):
    proc = _run(['docker', 'inspect', '-f', '{{.State.Running}}', name], check=False)
    return None if proc.returncode != 0 else proc.stdout.strip() == 'true'


def _booted(name):
    proc = _run(['docker', 'exec', name, 'systemctl', 'is-system-running'], check=False)
    return proc.stdout.strip() in ('running', 'degraded')


class LabSet:
    """The running hosts of the set, and what a test needs to run playbooks against them."""

    def __init__(self, hosts, inventory_text):
        self.hosts = hosts
        self.inventory_text = inventory_text

    def write_inventory(self, directory, group_vars=None):
        """An inventory directory: the set's hosts, the lab's group_vars, then ``group_vars`` over them.

        Returns the path of hosts.yml. group_vars/all/ holds 00-lab.yml (inventories/lab's
        all.yml) and 50-test.yml (``group_vars``), read in that order.
        """
        directory = Path(directory)
        (directory / 'group_vars' / 'all').mkdir(parents=True, exist_ok=True)
        (directory / 'hosts.yml').write_text(self.inventory_text)
        lab_vars = (REPO / 'inventories' / 'lab' / 'group_vars' / 'all.yml').read_text()
        (directory / 'group_vars' / 'all' / '00-lab.yml').write_text(lab_vars)
        (directory / 'group_vars' / 'all' / '50-test.yml').write_text(
            yaml.safe_dump({k: str(v) if isinstance(v, Path) else v for k, v in (group_vars or {}).items()}))
        return directory / 'hosts.yml'

    def exec(self, host, *argv, check=False):
        return _run(['docker', 'exec', host, *argv], check=check)

    def exists(self, host, path):
        return self.exec(host, 'test', '-e', path).returncode == 0

    def docker_diff(self, host):
        """``docker diff`` of a host without the paths that change by themselves (NOISE)."""
        lines = _run(['docker', 'diff', host]).stdout.splitlines()
        return sorted(line for line in lines
                      if not any(line[2:] == p or line[2:].startswith(p + '/') for p in NOISE)
                      # a directory changed only because a noisy path below it came (/root for /root/.ansible)
                      and not (line.startswith('C ') and any(p.startswith(line[2:] + '/') for p in NOISE)))

    def listing(self, host):
        """Every path below INSTALL_DIRS with its size and mtime (directories that exist)."""
        script = 'for d in "$@"; do [ -e "$d" ] && find "$d" -printf "%p %s %T@\\n"; done; true'
        return self.exec(host, 'sh', '-c', script, 'sh', *INSTALL_DIRS, check=True).stdout.splitlines()

    def snapshot(self):
        """What a run must not change: per host, its docker diff and the listing of INSTALL_DIRS."""
        return {host: {'diff': self.docker_diff(host), 'listing': self.listing(host)} for host in self.hosts}


def ensure_up():
    """The lab set "itest", started if needed (see the module's docstring)."""
    hosts = host_names()
    states = {name: _running(name) for name in hosts}
    for name, running in states.items():
        if running is False:  # stopped (a reboot of this machine, say): start it again
            _run(['docker', 'start', name])
    if None in states.values() or not all(_booted(name) for name in hosts) or not _running(f'{LAB_SET}-mirror'):
        # Starts what is missing (the set's mirror server too) and waits until every host has booted.
        _run([sys.executable, str(LAB_PY), 'up', '--name', LAB_SET, '--workers', str(WORKERS)], timeout=1800)
    inventory = _run([sys.executable, str(LAB_PY), 'inventory', '--name', LAB_SET,
                      '--workers', str(WORKERS)]).stdout
    return LabSet(hosts, inventory)


def ansible_env():
    """The environment of the Makefile's targets for running ansible-playbook from a test."""
    env = dict(os.environ)
    venv_bin = os.path.dirname(sys.executable)
    env['PATH'] = venv_bin + os.pathsep + env.get('PATH', '')
    env.setdefault('ANSIBLE_COLLECTIONS_PATH', os.path.join(
        os.environ.get('HARDWAY_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'hardway'),
        'collections'))
    env.update(ANSIBLE_CONFIG=str(REPO / 'ansible.cfg'), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_STDOUT_CALLBACK='default')
    return env
