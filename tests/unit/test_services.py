"""services: reading systemctl show, deciding what to do, and a run against a systemctl double.

The double is a small script standing in for systemctl on PATH, holding unit
states in a JSON file; the real systemd is exercised by the molecule scenario.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap

import pytest
from ansible_collections.hardway.kubernetes.plugins.modules import services as S

FAKE = textwrap.dedent("""\
    #!{python}
    import json, sys
    path = {state!r}
    with open(path) as f:
        state = json.load(f)
    args = [a for a in sys.argv[1:] if a != '--']
    state['calls'].append(args)
    if args[0] == 'show':
        blocks = []
        for unit in args[2:]:
            u = state['units'].get(unit)
            if u is None:
                blocks.append('Id=%s\\nLoadState=not-found\\nActiveState=inactive' % unit)
            else:
                blocks.append('Id=%s\\nLoadState=loaded\\nActiveState=%s\\nUnitFileState=%s\\nNeedDaemonReload=%s'
                              % (unit, u['active'], u['enabled'], 'yes' if state['stale'] else 'no'))
        print('\\n\\n'.join(blocks))
    elif args[0] == 'daemon-reload':
        state['stale'] = False
    elif args[0] in ('start', 'stop', 'enable'):
        u = state['units'][args[1]]
        if args[0] == 'enable':
            u['enabled'] = 'enabled'
        else:
            u['active'] = 'active' if args[0] == 'start' else 'inactive'
    with open(path, 'w') as f:
        json.dump(state, f)
""")


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    state_file = tmp_path / 'state.json'
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    fake = bindir / 'systemctl'
    fake.write_text(FAKE.format(python=sys.executable, state=str(state_file)))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('PATH', f"{bindir}:{os.environ['PATH']}")

    class Systemd:
        def set(self, units, stale=False):
            state_file.write_text(json.dumps({'units': units, 'stale': stale, 'calls': []}))

        @property
        def state(self):
            return json.loads(state_file.read_text())

        def changes(self):
            return [c for c in self.state['calls'] if c[0] != 'show']

    return Systemd()


def test_parse_show_keeps_the_order_and_checks_the_count():
    text = 'Id=a.service\nActiveState=active\n\nId=b.service\nActiveState=failed\nUnitFileState=disabled\n'
    assert S.parse_show(text, 2) == [
        {'Id': 'a.service', 'ActiveState': 'active'},
        {'Id': 'b.service', 'ActiveState': 'failed', 'UnitFileState': 'disabled'},
    ]
    with pytest.raises(ValueError, match='2 blocks for 3 units'):
        S.parse_show(text, 3)


@pytest.mark.parametrize('found, enabled, state, actions', [
    ({'ActiveState': 'active', 'UnitFileState': 'enabled'}, True, 'started', []),
    ({'ActiveState': 'failed', 'UnitFileState': 'enabled'}, True, 'started', ['start']),
    ({'ActiveState': 'inactive', 'UnitFileState': 'disabled'}, True, 'started', ['enable', 'start']),
    ({'ActiveState': 'activating', 'UnitFileState': 'static'}, True, 'started', []),
    ({'ActiveState': 'inactive', 'UnitFileState': 'disabled'}, False, 'started', ['start']),
    ({'ActiveState': 'active', 'UnitFileState': 'enabled'}, False, 'stopped', ['stop']),
    ({'ActiveState': 'inactive', 'UnitFileState': 'enabled'}, False, 'stopped', []),
])
def test_plan(found, enabled, state, actions):
    found = dict(found, LoadState='loaded', NeedDaemonReload='no')
    reload_needed, steps, problems = S.plan(['x.service'], [found], enabled, state)
    assert (reload_needed, problems) == (False, []) and steps[0][2] == actions


def test_unit_names():
    assert S.unit_name('kubelet') == 'kubelet.service'
    assert S.unit_name(' kubelet.service ') == 'kubelet.service'
    assert S.unit_name('docker.socket') == 'docker.socket'


def test_nothing_to_do_changes_nothing(systemd, run_module):
    systemd.set({'kubelet.service': {'active': 'active', 'enabled': 'enabled'}})
    result = run_module('services', {'names': ['kubelet']})
    assert result['rc'] == 0 and not result['changed'] and systemd.changes() == []
    assert result['services'] == [{'name': 'kubelet.service', 'active': 'active', 'enabled': 'enabled',
                                   'actions': [], 'replaced': False}]


def test_enables_and_starts_in_order_after_a_reload(systemd, run_module):
    systemd.set({'containerd.service': {'active': 'active', 'enabled': 'enabled'},
                 'kubelet.service': {'active': 'failed', 'enabled': 'disabled'},
                 'kube-proxy.service': {'active': 'inactive', 'enabled': 'enabled'}}, stale=True)
    names = ['containerd', 'kubelet', 'kube-proxy', 'kubelet']
    result = run_module('services', {'names': names}, check=True, diff=True)
    assert result['changed'] and result['daemon_reloaded'] and systemd.changes() == []
    assert result['diff']['before'] == ('kubelet.service: failed, disabled\nkube-proxy.service: inactive, enabled\n'
                                        'systemd: unit files changed on disk\n')
    result = run_module('services', {'names': names})
    assert result['changed'] and systemd.changes() == [
        ['daemon-reload'], ['enable', 'kubelet.service'], ['start', 'kubelet.service'], ['start', 'kube-proxy.service']]
    assert not run_module('services', {'names': names})['changed']


def test_unknown_unit_fails_before_any_change(systemd, run_module):
    systemd.set({'kubelet.service': {'active': 'inactive', 'enabled': 'enabled'}})
    result = run_module('services', {'names': ['kubelet', 'kubelte']})
    assert result.failed and result['msg'] == 'kubelte.service: systemd does not know this unit (LoadState=not-found)'
    assert systemd.changes() == []


def test_stop(systemd, run_module):
    systemd.set({'kubelet.service': {'active': 'active', 'enabled': 'enabled'}})
    result = run_module('services', {'names': ['kubelet'], 'state': 'stopped', 'enabled': False})
    assert result['changed'] and systemd.changes() == [['stop', 'kubelet.service']]
    assert systemd.state['units']['kubelet.service'] == {'active': 'inactive', 'enabled': 'enabled'}


def test_unknown_unit_in_check_mode_is_a_warning(systemd):
    # in a fresh process: in this one, earlier tests may have routed warnings to the display
    from hardway_testlib import run_module_subprocess

    systemd.set({'kubelet.service': {'active': 'inactive', 'enabled': 'enabled'}})
    result = run_module_subprocess('services', {'names': ['kubelet', 'etcd']}, check=True)
    assert not result.failed and result['changed']
    assert [s['name'] for s in result['services']] == ['kubelet.service']
    assert 'etcd.service: systemd does not know this unit' in json.dumps(result['warnings'])
    assert systemd.changes() == []


def _readlink(target):
    return lambda path: target


@pytest.mark.parametrize('found, restart, target, actions', [
    # a running unit whose binary was replaced since it started: restarted only when asked
    ({'ActiveState': 'active', 'MainPID': '42'}, True, '/usr/local/bin/kubelet (deleted)', ['restart']),
    ({'ActiveState': 'active', 'MainPID': '42'}, False, '/usr/local/bin/kubelet (deleted)', []),
    # the binary it runs is the one on disk
    ({'ActiveState': 'active', 'MainPID': '42'}, True, '/usr/local/bin/kubelet', []),
    # not running: started, not restarted
    ({'ActiveState': 'failed', 'MainPID': '0'}, True, '/usr/local/bin/kubelet (deleted)', ['start']),
])
def test_plan_restarts_only_units_running_a_replaced_binary(found, restart, target, actions):
    found = dict(found, LoadState='loaded', NeedDaemonReload='no', UnitFileState='enabled')
    _reload, steps, _problems = S.plan(['x.service'], [found], True, 'started', restart, _readlink(target))
    assert steps[0][2] == actions


def test_runs_replaced_binary_without_a_process_or_proc_entry():
    assert not S.runs_replaced_binary({'MainPID': '0'}, _readlink('x (deleted)'))
    assert not S.runs_replaced_binary({}, _readlink('x (deleted)'))

    def gone(path):
        raise FileNotFoundError(path)
    assert not S.runs_replaced_binary({'MainPID': '7'}, gone)
