# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Benchmark callback: per-task wall time and changed counts, written as JSON.

Enabled by the benchmark only (ANSIBLE_CALLBACKS_ENABLED=hardway_timer) and
writes to the file named by HARDWAY_TIMER_OUT when the playbook ends.

With HARDWAY_BYTES_OUT set, it also counts the bytes the controller sends to
each host over the lab's connection (community.docker.docker): every command
and its input (module payloads, pipelined) and every file put. The connection
class is wrapped here, in the main process, before Ansible forks its workers,
which inherit the wrapper; each worker appends "<host> <bytes>" lines to that
file, which the benchmark sums per host.
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


def _count_bytes(path):
    """Wrap the docker connection so that each call appends the bytes it sends to ``path``."""
    try:
        from ansible_collections.community.docker.plugins.connection import docker
    except ImportError:
        return
    cls = docker.Connection
    if getattr(cls, "_hardway_counted", False):
        return

    def record(conn, sent):
        host = conn.get_option("remote_addr") or "?"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{host} {sent}\n".encode())
        finally:
            os.close(fd)

    exec_command, put_file = cls.exec_command, cls.put_file

    def counted_exec(self, cmd, in_data=None, sudoable=False):
        record(self, len(cmd) + len(in_data or b""))
        return exec_command(self, cmd, in_data=in_data, sudoable=sudoable)

    def counted_put(self, in_path, out_path):
        record(self, os.path.getsize(in_path))
        return put_file(self, in_path, out_path)

    cls.exec_command, cls.put_file, cls._hardway_counted = counted_exec, counted_put, True


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
        if os.environ.get("HARDWAY_BYTES_OUT"):
            _count_bytes(os.environ["HARDWAY_BYTES_OUT"])

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
