# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Fail a check-mode run that would change anything (the molecule scenario's ``check`` step).

molecule's ``check`` step runs the converge playbook with ``--check`` and only
looks at the exit status, which is 0 whatever the run would change. Enabled
(``callbacks_enabled``), this callback makes ``ansible-playbook --check`` exit
with status 3 after the recap when any task or handler reported a change,
listing them. Runs without ``--check`` are not affected, so it can stay
enabled for every step of the scenario.
"""

from __future__ import annotations

import json
import sys

from ansible import context
from ansible.playbook.handler import Handler
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: check_exact
type: aggregate
short_description: Fail a check-mode run that reports any change
description:
  - In a run with C(--check), records every task and handler result that reports a change and,
    after the recap, ends C(ansible-playbook) with exit status 3 when there was any, naming each.
  - Without C(--check) it does nothing.
requirements:
  - enabled in C(callbacks_enabled)
options:
  report:
    description:
      - A file to write the changes to, as JSON (C(hosts) with each host's recap counts,
        C(changes) with host, task, role, handler, action and the changed files of each change).
        Never holds a diff or a file's content.
    type: path
    env:
      - name: HARDWAY_CHECK_REPORT
  allow_changes:
    description:
      - Only record (and write O(report)); do not fail. For a test that makes a change on purpose.
    type: bool
    default: false
    env:
      - name: HARDWAY_CHECK_ALLOW_CHANGES
"""

EXIT_CHANGED = 3


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'check_exact'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._changes = []

    @staticmethod
    def _check_mode():
        return bool(context.CLIARGS.get('check'))

    def v2_runner_on_ok(self, result):
        if not (self._check_mode() and result.is_changed()):
            return
        task, data = result.task, result.result
        role = task._role.get_name(include_role_fqcn=False) if task._role else None
        change = {'host': result.host.get_name(), 'task': task.name or task.action, 'role': role,
                  'handler': isinstance(task, Handler), 'action': task.action}
        # install_files says which files and directories differ (paths only, never content)
        if isinstance(data.get('files'), list):
            change['files'] = [f.get('dest') for f in data['files'] if isinstance(f, dict) and f.get('changed')]
        if isinstance(data.get('directories'), list):
            change['directories'] = [d.get('path') for d in data['directories']
                                     if isinstance(d, dict) and d.get('changed')]
        self._changes.append(change)

    def v2_playbook_on_stats(self, stats):
        if not self._check_mode():
            return
        report = self.get_option('report')
        if report:
            hosts = {host: stats.summarize(host) for host in sorted(stats.processed)}
            with open(report, 'w') as handle:
                json.dump({'hosts': hosts, 'changes': self._changes}, handle, indent=2)
        changed = sorted(host for host in stats.processed if stats.summarize(host)['changed'])
        if not changed or self.get_option('allow_changes'):
            return
        lines = [f"{c['host']}: {'handler ' if c['handler'] else ''}{c['role'] + ' : ' if c['role'] else ''}{c['task']}"
                 for c in self._changes]
        self._display.error(f"check mode: {len(changed)} host(s) would change ({', '.join(changed)}); "
                            'a converged cluster must report changed=0:\n  ' + '\n  '.join(lines))
        sys.stdout.flush()
        # A callback cannot set ansible-playbook's exit status; SystemExit passes through the
        # callback dispatch and the command line's handlers (they catch Exception only).
        raise SystemExit(EXIT_CHANGED)
