# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Applying manifest files through kubectl with an exact change report (hardway.kubernetes.kube_apply).

Standard library only. Every file is first compared with the cluster by ``kubectl diff
--server-side``: exit status 0 means the cluster already holds it, 1 that applying would change
something. Only then is it applied (server-side, one field manager), so a converge that changes
nothing reports nothing, and check mode reports exactly what a run would apply. Server-side apply
also takes the big CustomResourceDefinitions, which client-side apply cannot annotate.

``Kubectl`` wraps the commands (its runner is injectable for tests); ``converge`` is the whole
algorithm over it.
"""

from __future__ import annotations


class ApplyError(Exception):
    """kubectl failed in a way the run cannot go past."""


class Kubectl:
    """kubectl with one kubeconfig; ``run(argv) -> (rc, stdout, stderr)``."""

    def __init__(self, binary, kubeconfig, run, field_manager='hardway'):
        self.base = [binary, '--kubeconfig=%s' % kubeconfig]
        self.run_command = run
        self.field_manager = field_manager

    def run(self, *args):
        return self.run_command(self.base + list(args))

    def diff(self, path):
        """(state, text): state 'same', 'differs' or 'unknown' (kubectl could not compare)."""
        rc, out, err = self.run('diff', '--server-side', '--force-conflicts',
                                '--field-manager=%s' % self.field_manager, '--filename=%s' % path)
        if rc == 0:
            return 'same', ''
        if rc == 1:
            return 'differs', out
        return 'unknown', (err or out).strip()

    def apply(self, path):
        rc, out, err = self.run('apply', '--server-side', '--force-conflicts',
                                '--field-manager=%s' % self.field_manager, '--filename=%s' % path)
        if rc != 0:
            raise ApplyError('kubectl apply of %s failed: %s' % (path, (err or out).strip()))
        return out

    def crd_names(self, path):
        """The CustomResourceDefinitions a file declares, as kubectl resource names."""
        rc, out, err = self.run('get', '--filename=%s' % path, '--output=name', '--ignore-not-found')
        if rc != 0:
            raise ApplyError('kubectl get of %s failed: %s' % (path, (err or out).strip()))
        return [n for n in out.split() if n.startswith('customresourcedefinition')]

    def wait_established(self, names, timeout):
        if not names:
            return
        rc, out, err = self.run('wait', '--for=condition=Established', '--timeout=%ss' % timeout, *names)
        if rc != 0:
            raise ApplyError('CustomResourceDefinitions not Established within %ss: %s'
                             % (timeout, (err or out).strip()))

    def rollout(self, target, timeout):
        namespace, _sep, name = target.partition('/')
        rc, out, err = self.run('rollout', 'status', '--namespace=%s' % namespace, name, '--timeout=%ss' % timeout)
        if rc != 0:
            rc2, pods, _err = self.run('get', 'pods', '--namespace=%s' % namespace, '--output=wide')
            raise ApplyError('%s did not roll out within %ss: %s%s'
                             % (target, timeout, (err or out).strip(),
                                ('\npods in %s:\n%s' % (namespace, pods.strip())) if rc2 == 0 else ''))


def converge(kubectl, files, rollouts=(), timeout=300, check_mode=False):
    """Diff, then apply what differs, in order; then wait for the rollouts.

    ``files``: dicts ``{path, crds}``; with ``crds`` true the run waits, after applying the file (or
    finding it applied), until every CRD in it is Established, so the next file can use them.
    ``rollouts``: ``namespace/kind/name`` strings.
    Returns ``{changed, applied, diffs, notes}``.
    """
    applied, diffs, notes = [], [], []
    for item in files:
        path = item['path']
        state, text = kubectl.diff(path)
        if state == 'same':
            if item.get('crds') and not check_mode:
                kubectl.wait_established(kubectl.crd_names(path), timeout)
            continue
        if check_mode:
            applied.append(path)
            if state == 'differs':
                diffs.append({'path': path, 'diff': text})
            else:
                notes.append('%s: cannot compare with the cluster (%s); a run would apply it' % (path, text))
            continue
        if state == 'differs':
            diffs.append({'path': path, 'diff': text})
        kubectl.apply(path)
        applied.append(path)
        if item.get('crds'):
            kubectl.wait_established(kubectl.crd_names(path), timeout)
    if not check_mode:
        for target in rollouts:
            kubectl.rollout(target, timeout)
    return {'changed': bool(applied), 'applied': applied, 'diffs': diffs, 'notes': notes}
