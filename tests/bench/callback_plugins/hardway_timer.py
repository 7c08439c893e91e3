# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Benchmark callback: per-task wall time and changed counts, written as JSON.

Enabled by the benchmark only (ANSIBLE_CALLBACKS_ENABLED=hardway_timer) and
writes to the file named by HARDWAY_TIMER_OUT when the playbook ends.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: hardway_timer
type: aggregate
short_description: per-task wall time and changed counts as JSON
description: Records how long each task took across all hosts and what changed.
requirements:
  - HARDWAY_TIMER_OUT set to the output file
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hardway_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.tasks = []
        self.current = None
        self.start = time.monotonic()

    def _close(self):
        if self.current is not None:
            self.current["seconds"] = round(time.monotonic() - self.current.pop("_t0"), 3)
            self.tasks.append(self.current)
            self.current = None

    def _open(self, task):
        self._close()
        role = task._role.get_name() if task._role else ""
        name = task.get_name()
        self.current = {"task": f"{role} : {name}" if role and role not in name else name,
                        "_t0": time.monotonic(), "hosts": 0}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._open(task)

    def _result(self, result, status):
        if self.current is not None:
            self.current["hosts"] += 1
            self.current[status] = self.current.get(status, 0) + 1

    def v2_runner_on_ok(self, result):
        self._result(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        self._close()
        hosts = sorted(stats.processed.keys())
        summary = {h: stats.summarize(h) for h in hosts}
        out = {
            "seconds": round(time.monotonic() - self.start, 3),
            "tasks_run": len(self.tasks),
            "changed": sum(s["changed"] for s in summary.values()),
            "failed": sum(s["failures"] + s["unreachable"] for s in summary.values()),
            "hosts": summary,
            "tasks": self.tasks,
        }
        path = os.environ.get("HARDWAY_TIMER_OUT")
        if path:
            with open(path, "w") as f:
                json.dump(out, f, indent=1)
