"""kube_apply's logic over a scripted kubectl: diff first, apply only what differs, wait for CRDs and rollouts."""

from __future__ import annotations

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import kube_apply as K


class Script:
    """A kubectl stand-in: answers by subcommand and file, records every call."""

    def __init__(self, diffs=None, fail=None, crds=None):
        self.diffs = diffs or {}      # path -> rc of kubectl diff
        self.fail = fail or {}        # subcommand -> (rc, stderr)
        self.crds = crds or {}        # path -> names kubectl get prints
        self.calls = []

    def __call__(self, argv):
        assert argv[:2] == ['/bin/kubectl', '--kubeconfig=/k']
        cmd, args = argv[2], argv[3:]
        self.calls.append([cmd] + args)
        if cmd in self.fail:
            rc, err = self.fail[cmd]
            return rc, '', err
        path = next((a.split('=', 1)[1] for a in args if a.startswith('--filename=')), None)
        if cmd == 'diff':
            rc = self.diffs.get(path, 0)
            return rc, ('-old\n+new\n' if rc == 1 else ''), ('error: no such namespace' if rc > 1 else '')
        if cmd == 'get' and path:
            return 0, '\n'.join(self.crds.get(path, [])), ''
        return 0, 'ok', ''

    def commands(self):
        return [c[0] for c in self.calls]


def kubectl(script):
    return K.Kubectl('/bin/kubectl', '/k', script)


def test_nothing_differs_nothing_applied_but_rollouts_still_awaited():
    s = Script()
    result = K.converge(kubectl(s), [{'path': '/a.yaml'}, {'path': '/b.yaml'}], ['traefik/daemonset/traefik'])
    assert result == {'changed': False, 'applied': [], 'diffs': [], 'notes': []}
    assert s.commands() == ['diff', 'diff', 'rollout']
    assert s.calls[-1] == ['rollout', 'status', '--namespace=traefik', 'daemonset/traefik', '--timeout=300s']


def test_only_the_differing_file_is_applied_server_side():
    s = Script(diffs={'/b.yaml': 1})
    result = K.converge(kubectl(s), [{'path': '/a.yaml'}, {'path': '/b.yaml'}])
    assert result['changed'] is True
    assert result['applied'] == ['/b.yaml']
    assert result['diffs'] == [{'path': '/b.yaml', 'diff': '-old\n+new\n'}]
    assert ['apply', '--server-side', '--force-conflicts', '--field-manager=hardway', '--filename=/b.yaml'] in s.calls
    assert s.commands() == ['diff', 'diff', 'apply']


def test_crds_are_awaited_after_apply_and_when_already_applied():
    s = Script(diffs={'/crds.yaml': 1},
               crds={'/crds.yaml': ['customresourcedefinition.apiextensions.k8s.io/gateways.gateway.networking.k8s.io',
                                    'validatingadmissionpolicy.admissionregistration.k8s.io/safe-upgrades']})
    K.converge(kubectl(s), [{'path': '/crds.yaml', 'crds': True}, {'path': '/app.yaml'}], timeout=60)
    assert s.commands() == ['diff', 'apply', 'get', 'wait', 'diff']
    assert s.calls[3] == ['wait', '--for=condition=Established', '--timeout=60s',
                          'customresourcedefinition.apiextensions.k8s.io/gateways.gateway.networking.k8s.io']
    s2 = Script(crds={'/crds.yaml': ['customresourcedefinition.apiextensions.k8s.io/x.y']})
    assert K.converge(kubectl(s2), [{'path': '/crds.yaml', 'crds': True}])['changed'] is False
    assert s2.commands() == ['diff', 'get', 'wait']


def test_check_mode_compares_only_and_counts_what_cannot_be_compared_as_a_change():
    s = Script(diffs={'/a.yaml': 1, '/b.yaml': 2})
    result = K.converge(kubectl(s), [{'path': '/a.yaml', 'crds': True}, {'path': '/b.yaml'}],
                        ['ns/deployment/x'], check_mode=True)
    assert result['changed'] is True
    assert result['applied'] == ['/a.yaml', '/b.yaml']
    assert result['notes'] == ['/b.yaml: cannot compare with the cluster (error: no such namespace); '
                               'a run would apply it']
    assert s.commands() == ['diff', 'diff']


def test_check_mode_with_nothing_to_do_reports_no_change():
    s = Script()
    assert K.converge(kubectl(s), [{'path': '/a.yaml'}], ['ns/deployment/x'], check_mode=True)['changed'] is False
    assert s.commands() == ['diff']


def test_a_file_that_cannot_be_compared_is_applied_in_a_real_run():
    s = Script(diffs={'/a.yaml': 2})
    result = K.converge(kubectl(s), [{'path': '/a.yaml'}])
    assert result['applied'] == ['/a.yaml'] and result['diffs'] == []
    assert s.commands() == ['diff', 'apply']


@pytest.mark.parametrize('failing, message', [
    ('apply', 'kubectl apply of /a.yaml failed: denied'),
    ('wait', 'CustomResourceDefinitions not Established within 300s: denied'),
])
def test_failures_name_the_file_or_the_wait(failing, message):
    s = Script(diffs={'/a.yaml': 1}, crds={'/a.yaml': ['customresourcedefinition.apiextensions.k8s.io/x.y']})
    s.fail = {failing: (1, 'denied')}
    with pytest.raises(K.ApplyError, match=message):
        K.converge(kubectl(s), [{'path': '/a.yaml', 'crds': True}])


def test_a_rollout_timeout_lists_the_pods():
    s = Script()

    def run(argv):
        if argv[2] == 'rollout':
            return 1, '', 'timed out waiting for the condition'
        if argv[2] == 'get':
            return 0, 'NAME READY\ntraefik-abc 0/1\n', ''
        return s(argv)

    with pytest.raises(K.ApplyError, match=r'(?s)traefik/daemonset/traefik did not roll out within 5s: timed out.*'
                                           r'pods in traefik:\nNAME READY\ntraefik-abc 0/1'):
        K.converge(K.Kubectl('/bin/kubectl', '/k', run), [], ['traefik/daemonset/traefik'], timeout=5)
