"""The flag filters: a flag dict with overrides as a command line (exec_start) or as container args (to_flags)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import flags as F


def test_filters_exported():
    assert set(F.FilterModule().filters()) == {'exec_start', 'to_flags'}


def test_to_flags_merges_in_order_drops_nulls_and_sorts():
    assert F.to_flags({'ping': True, 'log.level': 'INFO', 'b': ['x', 'y'], 'a': {'k2': 2, 'k1': False}},
                      {'log.level': None}, {'ping': False}) == [
        '--a=k1=false,k2=2', '--b=x,y', '--ping=false']
    assert F.to_flags({}, None) == []


def test_to_flags_refuses_what_is_not_a_dict():
    with pytest.raises(AnsibleFilterError, match='to_flags expects dicts of flags, got list'):
        F.to_flags({'a': 1}, ['--b=2'])


def test_exec_start_one_flag_per_continued_line():
    assert F.exec_start('/usr/local/bin/x', {'v': 1, 'config': '/etc/x.yaml'}, {'v': 2}) == \
        '/usr/local/bin/x \\\n  --config=/etc/x.yaml \\\n  --v=2'
