# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Taking a component off a host (the teardown module): the parts that read the host's state.

- ``mounts_under(mountinfo, paths)``: the mount points below ``paths`` in ``/proc/self/mountinfo``
  (the path itself only when bound onto itself), deepest first (the order they can be unmounted in).
- ``mount_points(mountinfo)``: every mount point.
- ``iptables_cleanup(save_text, prefixes)``: from one table's ``iptables-save``, the
  ``iptables-restore --noflush`` input that deletes the chains whose names start with one of
  ``prefixes`` and every rule elsewhere that jumps to them, and nothing else: other rules and
  the built-in chains' policies stay as they are.
- ``aside_path(path, stamp, exists)``: where a directory kept aside goes (``<path>.removed-<stamp>``).

Standard library only; the module runs on the host.
"""

from __future__ import annotations

import re
import shlex

# Tables iptables-save shows; a table the kernel has not loaded yet is left out of its output.
TABLES = ('filter', 'nat', 'mangle', 'raw', 'security')

_OCTAL = re.compile(r'\\([0-7]{3})')


def _unescape(field):
    """A mountinfo path field: spaces, tabs, newlines and backslashes are octal escapes."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _below(path, root):
    root = root.rstrip('/') or '/'
    return path == root or path.startswith(root + '/')


def _mounts(mountinfo):
    """``[(mount point, root within its filesystem)]`` of ``/proc/self/mountinfo``, in mount order."""
    out = []
    for line in (mountinfo or '').splitlines():
        fields = line.split()
        if len(fields) >= 5:
            out.append((_unescape(fields[4]), _unescape(fields[3])))
    return out


def self_bound(point, root):
    """Whether a mount is a directory bind-mounted onto itself (kubelet does that to its root directory):
    its root within the filesystem is the end of its own path. A disk (root ``/``) or a volume from
    elsewhere is not."""
    return root not in ('/', '') and point.rstrip('/').endswith(root.rstrip('/'))


def mounts_under(mountinfo, paths):
    """Mount points below any of ``paths``, deepest first (a path mounted twice is listed twice: each
    umount takes one layer). The path itself only when it is bound onto itself: a disk or a volume
    mounted there is the host's, and stays."""
    found = []
    for point, root in _mounts(mountinfo):
        for path in paths:
            if _below(point, path) and (point.rstrip('/') != path.rstrip('/') or self_bound(point, root)):
                found.append(point)
                break
    # deepest first; among equal depth the later mount (on top) first
    order = sorted(range(len(found)), key=lambda i: (-found[i].count('/'), -i))
    return [found[i] for i in order]


def mount_points(mountinfo):
    """Every mount point (a set)."""
    return {point.rstrip('/') or '/' for point, _root in _mounts(mountinfo)}


def _target(args):
    """The chain a rule jumps or goes to (-j/--jump, -g/--goto), or None."""
    for i, arg in enumerate(args[:-1]):
        if arg in ('-j', '--jump', '-g', '--goto'):
            return args[i + 1]
    return None


def _owned(chain, prefixes):
    return any(chain.startswith(prefix) for prefix in prefixes)


def iptables_cleanup(save_text, prefixes):
    """What to remove from the tables in ``save_text`` (``iptables-save`` output, one table or all).

    Returns ``(restore_text, actions)``: the input for ``iptables-restore --noflush`` (empty when
    there is nothing to remove) and one line per table saying what goes. Per table: the rules in
    other chains that jump to an owned chain are deleted (each by its exact specification), then
    every owned chain is flushed, then deleted; rules inside owned chains go with their chain.
    """
    prefixes = [p for p in prefixes or [] if p]
    if not prefixes:
        return '', []
    tables = []  # (name, chains, jump rules)
    current = None
    for raw in (save_text or '').splitlines():
        line = raw.strip()
        if line.startswith('*'):
            current = (line[1:], [], [])
            tables.append(current)
        elif current is None or not line or line.startswith('#') or line == 'COMMIT':
            continue
        elif line.startswith(':'):
            chain = line[1:].split()[0]
            if _owned(chain, prefixes):
                current[1].append(chain)
        elif line.startswith('-A '):
            args = shlex.split(line)
            chain = args[1] if len(args) > 1 else ''
            target = _target(args)
            if target and _owned(target, prefixes) and not _owned(chain, prefixes):
                current[2].append('-D ' + line[3:])
    out, actions = [], []
    for name, chains, jumps in tables:
        if not chains and not jumps:
            continue
        out.append('*' + name)
        out.extend(jumps)
        out.extend('-F ' + chain for chain in chains)
        out.extend('-X ' + chain for chain in chains)
        out.append('COMMIT')
        actions.append('iptables table %s: delete %d jump rule(s) and chain(s) %s'
                       % (name, len(jumps), ', '.join(chains) or '(none)'))
    return ('\n'.join(out) + '\n') if out else '', actions


def aside_path(path, stamp, exists):
    """``<path>.removed-<stamp>``, with ``-2``, ``-3``, ... when that exists already (``exists``: a predicate)."""
    base = '%s.removed-%s' % (path.rstrip('/'), stamp)
    candidate, n = base, 1
    while exists(candidate):
        n += 1
        candidate = '%s-%d' % (base, n)
    return candidate
