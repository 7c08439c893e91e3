# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Filters that turn a daemon's flag dict into its command line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def _render(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join("%s=%s" % (k, _render(v)) for k, v in sorted(value.items()))
    return str(value)


def to_flags(flags, *overrides):
    """Merge flag dicts (later wins) and return sorted ``--name=value`` strings.

    A flag whose merged value is None (``~`` in YAML) is dropped, so a user
    dict can remove a default flag.
    """
    merged = {}
    for d in (flags,) + overrides:
        if d is None:
            continue
        if not isinstance(d, dict):
            raise AnsibleFilterError("to_flags expects dicts of flags, got %s" % type(d).__name__)
        merged.update(d)
    return ["--%s=%s" % (name, _render(value)) for name, value in sorted(merged.items()) if value is not None]


def exec_start(binary, flags, *overrides):
    """An ExecStart= value: the binary and one flag per continued line."""
    return " \\\n  ".join([binary] + to_flags(flags, *overrides))


class FilterModule(object):
    def filters(self):
        return {"exec_start": exec_start, "to_flags": to_flags}
