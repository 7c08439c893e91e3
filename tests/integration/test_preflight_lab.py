"""Every generated bad input, sent through site.yml against the lab hosts, stops in preflight.

The cases come from tests/unit/preflight_cases.py: bad values for every option
of every role's argument spec (by its type, elements, suboptions, choices and
its preflight rule), and the rules that tie values together (networks,
groups, hosts, ports, versions). Cases that set different variables share
one run of site.yml (preflight reports every problem at once), so about
fifteen runs cover them all. For each run the test asserts: the play recap
shows no change and the run stopped in the preflight play; every case of
the run is named by a problem line with its option (and value); no lab host
changed (`docker diff` and every unit's start time and restart count, before
and after); the controller's state dir was not created.

The lab hosts are the test bed's set "itest" (tests/testbed/lab.py): three
bare systemd hosts, brought up when missing and left running for the other
integration tests (`make test` removes them at the end).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'unit'))

sys.path.insert(0, str(REPO / 'tests' / 'testbed'))

import lab  # noqa: E402  # tests/testbed/lab.py
from preflight_cases import Case, batches, cross_cases, generated_cases  # noqa: E402

LAB_SET = 'itest'
LAB = [sys.executable, str(REPO / 'tests' / 'testbed' / 'lab.py')]


@pytest.fixture(scope='module')
def lab_hosts():
    """[(name, address)] of the itest set, control plane first; brought up when not running."""
    subprocess.run(LAB + ['up', '--name', LAB_SET, '--workers', '2'], check=True, capture_output=True, text=True,
                   timeout=900)
    inventory = yaml.safe_load(subprocess.run(LAB + ['inventory', '--name', LAB_SET, '--workers', '2'], check=True,
                                              capture_output=True, text=True).stdout)
    hosts = []
    for group in ('control_plane', 'workers'):
        for name, hostvars in inventory['all']['children'][group]['hosts'].items():
            hosts.append((name, hostvars['cluster_node_address']))
    return hosts


def snapshot(hosts):
    """What would show a change on the hosts: docker diff, and each unit's start time and restart count."""
    out = {}
    for name, _address in hosts:
        diff = subprocess.run(['docker', 'diff', name], check=True, capture_output=True, text=True).stdout
        units = subprocess.run(
            ['docker', 'exec', name, 'sh', '-c',
             'systemctl show -p Id -p ActiveEnterTimestampMonotonic -p NRestarts -p ActiveState '
             '$(systemctl list-units --all --plain --no-legend --type=service | cut -d" " -f1)'],
            check=True, capture_output=True, text=True).stdout
        # The journal and the random seed change on a running host by themselves.
        kept = sorted(line for line in diff.splitlines()
                      if not re.search(r'/var/log/journal|/var/lib/systemd/(random-seed|timers)', line))
        out[name] = (kept, units)
    return out


def write_inventory(tmp: Path, hosts, cases: list[Case], extra_hosts=()):
    lab_vars = yaml.safe_load((REPO / 'inventories' / 'lab' / 'group_vars' / 'all.yml').read_text())
    group_vars = dict(lab_vars, cluster_state_dir=str(tmp / 'state'))
    host_vars = {i: {} for i in range(len(hosts))}
    groups = {'control_plane': [0], 'etcd': [0], 'workers': list(range(1, len(hosts)))}
    for case in cases:
        group_vars.update(case.group_vars)
        for index, values in case.host_vars.items():
            host_vars[index].update(values)
        if case.groups is not None:
            groups = case.groups
    children = {}
    for group, members in groups.items():
        children[group] = {'hosts': {}}
        for index in members:
            name, address = hosts[index]
            children[group]['hosts'][name] = dict({'cluster_node_address': address}, **host_vars[index])
    for group, name in extra_hosts:
        children[group]['hosts'][name] = {'cluster_node_address': '192.0.2.250'}
    inventory = {'all': {'vars': {'ansible_connection': 'community.docker.docker',
                                  'ansible_python_interpreter': '/usr/bin/python3'},
                         'children': children}}
    (tmp / 'group_vars').mkdir(exist_ok=True)
    (tmp / 'hosts.yml').write_text(yaml.safe_dump(inventory, sort_keys=False))
    (tmp / 'group_vars' / 'all.yml').write_text(yaml.safe_dump(group_vars, sort_keys=False))
    return tmp / 'hosts.yml'


def site(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='default')
    return subprocess.run(['ansible-playbook', '-i', str(inventory), str(REPO / 'playbooks' / 'site.yml'), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


def problem_lines(out: str) -> list[str]:
    """The problem lines of preflight's report."""
    match = re.search(r'preflight found \d+ problem\(s\); nothing has been changed:\n(.*?)\nOrigin:', out, re.S)
    assert match, out[-4000:]
    return [line[2:] for line in match.group(1).splitlines() if line.startswith('- ')]


def assert_stopped_unchanged(proc, before, after, state: Path):
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert 'Put binaries, certificates and kubeconfigs' not in out, 'the run went past preflight'
    recap = out.split('PLAY RECAP', 1)[1]
    assert re.findall(r'changed=(\d+)', recap) and set(re.findall(r'changed=(\d+)', recap)) == {'0'}, recap
    assert before == after, 'a lab host changed'
    assert not state.exists(), 'the controller state dir was written'


ALL_CASES = generated_cases()
LAB_ADDRESSES = [address for _name, address in lab.host_names(2, LAB_SET)]
CROSS_BATCHES = batches(cross_cases(LAB_ADDRESSES))


def test_a_good_inventory_passes_preflight(lab_hosts, tmp_path):
    proc = site(write_inventory(tmp_path, lab_hosts, []), '--tags', 'preflight')
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert 'failed=0' in proc.stdout.split('PLAY RECAP', 1)[1]
    assert not (tmp_path / 'state').exists()


def _run_batch(lab_hosts, tmp_path, batch):
    before = snapshot(lab_hosts)
    proc = site(write_inventory(tmp_path, lab_hosts, batch))
    after = snapshot(lab_hosts)
    assert_stopped_unchanged(proc, before, after, tmp_path / 'state')
    lines = problem_lines(proc.stdout + proc.stderr)
    missing = [(case.name, expected) for case in batch for expected in case.expect
               if not any(expected in line for line in lines)]
    assert not missing, 'cases not named:\n{}\nproblems:\n{}'.format(missing, '\n'.join(lines))
    return len(batch)


@pytest.mark.parametrize('index', range(len(batches(ALL_CASES))))
def test_generated_bad_values_stop_in_preflight(lab_hosts, tmp_path, index):
    assert _run_batch(lab_hosts, tmp_path, batches(ALL_CASES)[index])


@pytest.mark.parametrize('index', range(len(CROSS_BATCHES)))
def test_cross_field_rules_stop_in_preflight(lab_hosts, tmp_path, index):
    assert [address for _name, address in lab_hosts] == LAB_ADDRESSES
    assert _run_batch(lab_hosts, tmp_path, CROSS_BATCHES[index])


def test_an_unreachable_host_stops_the_run(lab_hosts, tmp_path):
    before = snapshot(lab_hosts)
    proc = site(write_inventory(tmp_path, lab_hosts, [], extra_hosts=[('workers', f'{LAB_SET}-gone')]))
    after = snapshot(lab_hosts)
    assert_stopped_unchanged(proc, before, after, tmp_path / 'state')
    assert f'{LAB_SET}-gone' in proc.stdout + proc.stderr
