# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""What versions a host runs (hardway.kubernetes.versions); standard library only.

``parse_version`` reads the first ``X.Y.Z`` in a program's version output;
``binary_versions`` runs each installed binary with its version flag;
``api_versions`` asks the API server (through kubectl) for its own version and
the version of every registered node's kubelet; ``runs_replaced_binary`` (also
the services module's) and ``stale_units`` find services whose running process
uses a binary replaced on disk. The runner is injectable for tests.
"""

from __future__ import annotations

import json
import os
import re

# How each binary the collection installs tells its version (the upgrade
# filters map binaries to their pins).
BINARIES = {
    'kube-apiserver': ['--version'],
    'kube-controller-manager': ['--version'],
    'kube-scheduler': ['--version'],
    'kubelet': ['--version'],
    'kube-proxy': ['--version'],
    'kubectl': ['version', '--client=true'],
    'etcd': ['--version'],
    'containerd': ['--version'],
    'runc': ['--version'],
    'flanneld': ['--version'],
    'crictl': ['--version'],
    'coredns': ['-version'],
}

_VERSION = re.compile(r'v?(\d+)\.(\d+)\.(\d+)')


def parse_version(text):
    """The first ``X.Y.Z`` (with or without a leading v) in ``text``, as a string; None when none."""
    match = _VERSION.search(text or '')
    return '%s.%s.%s' % match.groups() if match else None


def binary_versions(bin_dir, names, run):
    """``({name: version}, {name: problem})`` for the binaries in ``names`` found in ``bin_dir``.

    A binary that is not there is left out of both (the host does not run it).
    """
    found, problems = {}, {}
    for name in names:
        if name not in BINARIES:
            problems[name] = 'unknown binary (known: %s)' % ', '.join(sorted(BINARIES))
            continue
        path = os.path.join(bin_dir, name)
        if not os.path.exists(path):
            continue
        rc, out, err = run([path] + BINARIES[name])
        version = parse_version(out) or parse_version(err)
        if rc != 0 or version is None:
            problems[name] = 'could not read its version (exit %s): %s' % (rc, (err or out).strip()[:200])
        else:
            found[name] = version
    return found, problems


def api_versions(kubectl, kubeconfig, run, annotation=None):
    """What the API server reports, through kubectl: ``{server, nodes, marked, problem}``.

    ``server`` is its version (None when it did not answer), ``nodes`` the kubelet version of every
    registered node by name, ``marked`` the nodes that carry the annotation ``annotation`` (those a
    playbook took out of service), ``problem`` None when both answers came, else what went wrong.
    """
    result = {'server': None, 'nodes': {}, 'marked': [], 'problem': None}
    base = [kubectl, '--kubeconfig=' + kubeconfig, '--request-timeout=10s']
    rc, out, err = run(base + ['version', '--output=json'])
    if rc == 0:
        try:
            result['server'] = parse_version(json.loads(out).get('serverVersion', {}).get('gitVersion'))
        except ValueError:
            pass
    if result['server'] is None:
        result['problem'] = 'the API server did not tell its version: %s' % (err or out).strip()[:300]
        return result
    rc, out, err = run(base + ['get', 'nodes', '--output=json'])
    try:
        items = json.loads(out).get('items', []) if rc == 0 else None
    except ValueError:
        items = None
    if items is None:
        result['problem'] = 'the API server did not list the nodes: %s' % (err or out).strip()[:300]
        return result
    for item in items:
        meta = item.get('metadata', {})
        name = meta.get('name')
        version = parse_version(item.get('status', {}).get('nodeInfo', {}).get('kubeletVersion'))
        if name and version:
            result['nodes'][name] = version
        if name and annotation and annotation in (meta.get('annotations') or {}):
            result['marked'].append(name)
    return result


def runs_replaced_binary(pid, readlink=os.readlink):
    """Whether process ``pid`` (a unit's MainPID, as text) runs an executable that was replaced on disk
    since it started: its ``/proc/<pid>/exe`` names a deleted file. False without a process."""
    pid = str(pid or '0')
    if not pid.isdigit() or int(pid) == 0:
        return False
    try:
        return readlink('/proc/%s/exe' % pid).endswith(' (deleted)')
    except OSError:
        return False


def stale_units(units, run, readlink=os.readlink):
    """The units of ``units`` whose main process runs a binary replaced on disk since it started."""
    units = [u if '.' in u else u + '.service' for u in units]
    if not units:
        return []
    rc, out, _err = run(['systemctl', 'show', '--property=Id,MainPID', '--'] + units)
    if rc != 0:
        return []
    stale = []
    for block in out.strip('\n').split('\n\n'):
        props = dict(line.partition('=')[::2] for line in block.splitlines() if '=' in line)
        if runs_replaced_binary(props.get('MainPID'), readlink):
            stale.append(props.get('Id', '').replace('.service', ''))
    return stale
