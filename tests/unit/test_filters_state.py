"""The state directory filters in plugins/filter/state.py."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import state as S
from hardway_testlib import run_adhoc

STATE = '/srv/inv/.hardway/kubernetes'


def test_registered():
    assert set(S.FilterModule().filters()) == {'state_path', 'credential_files', 'changed_credentials', 'reissued'}


@pytest.mark.parametrize('kind, name, expected', [
    ('pki', None, STATE + '/pki'),
    ('kubeconfigs', None, STATE + '/kubeconfigs'),
    ('cert', 'kubernetes-ca', STATE + '/pki/kubernetes-ca.pem'),
    ('bundle', 'kubernetes-ca', STATE + '/pki/kubernetes-ca-bundle.pem'),
    ('key', 'kubelet-w1', STATE + '/pki/kubelet-w1-key.pem'),
    ('pub', 'service-account', STATE + '/pki/service-account.pub'),
    ('kubeconfig', 'kube-proxy', STATE + '/kubeconfigs/kube-proxy.kubeconfig'),
    ('admin_kubeconfig', None, STATE + '/admin.kubeconfig'),
    ('encryption_key', None, STATE + '/encryption-key'),
    ('etcd_admin_password', None, STATE + '/etcd-admin-password'),
    ('artifacts_lock', None, STATE + '/artifacts.lock'),
    ('backups', None, STATE + '/backups'),
])
def test_state_path(kind, name, expected):
    assert S.state_path(STATE, kind, name) == expected
    assert S.state_path(STATE + '/', kind, name) == expected


@pytest.mark.parametrize('args, message', [
    ((STATE, 'certificate', 'x'), "unknown kind 'certificate'"),
    ((STATE, 'cert'), 'the name of a cert must be a non-empty string'),
    ((STATE, 'cert', ''), 'the name of a cert must be a non-empty string'),
    ((STATE, 'pki', 'x'), "kind pki takes no name (got 'x')"),
    (('', 'pki'), 'the state directory must be a non-empty string'),
    ((None, 'pki'), 'the state directory must be a non-empty string'),
])
def test_state_path_errors(args, message):
    with pytest.raises(AnsibleFilterError, match='state_path'):
        S.state_path(*args)
    with pytest.raises(AnsibleFilterError) as err:
        S.state_path(*args)
    assert message in str(err.value)


def test_credential_files_paths_and_modes():
    items = [{'ca': 'kubernetes-ca'}, {'cert': 'kubelet-w1'}, {'key': 'service-account'},
             {'pub': 'service-account'}, {'kubeconfig': 'kubelet-w1', 'as': 'kubelet'}, {'kubeconfig': 'kube-proxy'}]
    assert S.credential_files(items, STATE, '/etc/kubernetes/pki/', '/etc/kubernetes') == [
        {'src': STATE + '/pki/kubernetes-ca-bundle.pem', 'dest': '/etc/kubernetes/pki/kubernetes-ca.pem',
         'mode': '0644'},
        {'src': STATE + '/pki/kubelet-w1.pem', 'dest': '/etc/kubernetes/pki/kubelet-w1.pem', 'mode': '0644'},
        {'src': STATE + '/pki/kubelet-w1-key.pem', 'dest': '/etc/kubernetes/pki/kubelet-w1-key.pem', 'mode': '0600'},
        {'src': STATE + '/pki/service-account-key.pem', 'dest': '/etc/kubernetes/pki/service-account-key.pem',
         'mode': '0600'},
        {'src': STATE + '/pki/service-account.pub', 'dest': '/etc/kubernetes/pki/service-account.pub', 'mode': '0644'},
        {'src': STATE + '/kubeconfigs/kubelet-w1.kubeconfig', 'dest': '/etc/kubernetes/kubelet.kubeconfig',
         'mode': '0600'},
        {'src': STATE + '/kubeconfigs/kube-proxy.kubeconfig', 'dest': '/etc/kubernetes/kube-proxy.kubeconfig',
         'mode': '0600'},
    ]
    assert S.credential_files([], STATE, '/p', '/c') == []


@pytest.mark.parametrize('items, message', [
    ('ca: x', 'expects a list of credentials, got str'),
    ([{'cert': 'a', 'key': 'a'}], 'must name one credential'),
    ([{'certificate': 'a'}], 'must name one credential'),
    ([{'cert': 'a', 'as': 'b'}], 'must name one credential'),
    (['kubernetes-ca'], 'must name one credential'),
    ([{'cert': ''}], 'the name of a cert must be a non-empty string'),
    ([{'kubeconfig': 'a', 'as': ''}], 'as must be a non-empty string'),
])
def test_credential_files_errors(items, message):
    with pytest.raises(AnsibleFilterError) as err:
        S.credential_files(items, STATE, '/p', '/c')
    assert message in str(err.value)


PKI_RESULT = {
    'authorities': {'kubernetes-ca': {'action': 'unchanged', 'path': STATE + '/pki/kubernetes-ca.pem',
                                      'key_path': STATE + '/pki/kubernetes-ca-key.pem'}},
    'certificates': {
        'kubelet-w1': {'action': 'reissued', 'path': STATE + '/pki/kubelet-w1.pem',
                       'key_path': STATE + '/pki/kubelet-w1-key.pem'},
        'admin': {'action': 'unchanged', 'path': STATE + '/pki/admin.pem', 'key_path': STATE + '/pki/admin-key.pem'},
        'kube-proxy': {'action': 'created', 'path': STATE + '/pki/kube-proxy.pem',
                       'key_path': STATE + '/pki/kube-proxy-key.pem'},
    },
    'keypairs': {'service-account': {'action': 'unchanged', 'path': STATE + '/pki/service-account.pub',
                                     'key_path': STATE + '/pki/service-account-key.pem'}},
}
KUBECONFIG_RESULT = {'kubeconfigs': {STATE + '/kubeconfigs/kubelet-w1.kubeconfig': {'changed': True},
                                     STATE + '/kubeconfigs/admin.kubeconfig': {'changed': False}}}


def test_changed_credentials():
    assert S.changed_credentials(PKI_RESULT, KUBECONFIG_RESULT) == [
        STATE + '/kubeconfigs/kubelet-w1.kubeconfig',
        STATE + '/pki/kube-proxy-key.pem', STATE + '/pki/kube-proxy.pem',
        STATE + '/pki/kubelet-w1-key.pem', STATE + '/pki/kubelet-w1.pem',
    ]
    assert S.changed_credentials(PKI_RESULT) == [
        STATE + '/pki/kube-proxy-key.pem', STATE + '/pki/kube-proxy.pem',
        STATE + '/pki/kubelet-w1-key.pem', STATE + '/pki/kubelet-w1.pem']
    # a skipped or failed task registers no outcomes
    assert S.changed_credentials({'skipped': True}, {}) == []
    assert S.changed_credentials(None, None) == []


def test_reissued():
    result = {'changed': False, 'files': [
        {'dest': '/etc/systemd/system/kubelet.service', 'src': None, 'changed': False},
        {'dest': '/etc/kubernetes/pki/kubernetes-ca.pem', 'src': STATE + '/pki/kubernetes-ca.pem', 'changed': False},
        {'dest': '/etc/kubernetes/pki/kubelet-w1.pem', 'src': STATE + '//pki/./kubelet-w1.pem', 'changed': False},
    ]}
    assert S.reissued(result, [STATE + '/pki/kubelet-w1.pem'])
    assert S.reissued(result, [STATE + '/pki/kubernetes-ca.pem', STATE + '/pki/admin.pem'])
    assert not S.reissued(result, [STATE + '/pki/kubelet-w2.pem'])
    assert not S.reissued(result, [])
    assert not S.reissued(result, None)
    assert not S.reissued({'skipped': True}, [STATE + '/pki/kubelet-w1.pem'])


def test_through_jinja(tmp_path):
    """By their collection name in a real template (the collection found through ANSIBLE_COLLECTIONS_PATH)."""
    expr = ("{{ '/s' | hardway.kubernetes.state_path('key', 'admin') }} "
            "{{ ([{'kubeconfig': 'kubelet-n1', 'as': 'kubelet'}] | hardway.kubernetes.credential_files('/s', '/p', "
            "'/c'))[0].dest }} "
            "{{ {'files': [{'src': '/s/pki/a.pem'}]} | hardway.kubernetes.reissued(['/s/pki/a.pem']) }}")
    rc, result, output = run_adhoc('ansible.builtin.debug', {'msg': expr}, tmp_path, pythonpath=False)
    assert rc == 0, output
    assert result['msg'] == '/s/pki/admin-key.pem /c/kubelet.kubeconfig True', output
