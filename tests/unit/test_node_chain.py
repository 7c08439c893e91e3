"""site.yml imports the node chain from roles/cluster/tasks/node.yml; upgrade.yml and certificates.yml loop
over cluster_node_roles. Both name the same roles in the same order."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_node_chain_matches_cluster_node_roles():
    tasks = yaml.safe_load((REPO / 'roles/cluster/tasks/node.yml').read_text())
    imported = []
    for task in tasks:
        step = task.get('ansible.builtin.import_role') or task.get('ansible.builtin.include_role')
        assert step is not None, task
        assert step.get('rolespec_validate') is False, task  # the preflight play checks every role
        imported.append((step['name'].split('.')[-1], step.get('tasks_from', 'main')))
    listed = yaml.safe_load((REPO / 'roles/cluster/vars/main.yml').read_text())['cluster_node_roles']
    in_list = [(role, tasks or 'main') for role, tasks in
               re.findall(r"\{'role': '(\w+)'(?:, 'tasks': '(\w+)')?\}", listed)]
    assert imported == in_list


def test_site_validates_no_role_per_play():
    """The preflight play checks every role's options; no play of site.yml validates a role again per host."""
    plays = yaml.safe_load((REPO / 'playbooks/site.yml').read_text())
    for play in plays:
        assert [r for r in play.get('roles', []) if r != 'hardway.kubernetes.cluster'] == [], play['name']
        for task in play.get('tasks', []):
            step = task.get('ansible.builtin.import_role') or task.get('ansible.builtin.include_role')
            if step:
                assert step.get('rolespec_validate') is False, task['name']
    specs = yaml.safe_load((REPO / 'roles/cluster/meta/argument_specs.yml').read_text())['argument_specs']
    assert 'main' not in specs  # a "main" spec would be validated in every play that pulls the role in
