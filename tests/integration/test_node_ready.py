"""hardway.kubernetes.node_ready against a real kube-apiserver (and etcd) on 127.0.0.1.

There is no kubelet: the tests register Node objects through the API and set their
Ready condition through the status subresource, as a kubelet would.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time

import pytest


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def register(apiserver, name):
    status, body = apiserver['request'](
        'POST', '/api/v1/nodes', {'apiVersion': 'v1', 'kind': 'Node', 'metadata': {'name': name}}
    )
    assert status == 201, body


def set_ready(apiserver, name, ready, reason='KubeletReady', message='kubelet is posting ready status'):
    conditions = [
        {
            'type': t,
            'status': 'False',
            'reason': f'KubeletHasNo{t}',
            'message': 'fine',
            'lastHeartbeatTime': now(),
            'lastTransitionTime': now(),
        }
        for t in ('MemoryPressure', 'DiskPressure', 'PIDPressure')
    ]
    conditions.append(
        {
            'type': 'Ready',
            'status': 'True' if ready else 'False',
            'reason': reason,
            'message': message,
            'lastHeartbeatTime': now(),
            'lastTransitionTime': now(),
        }
    )
    status, body = apiserver['request'](
        'PATCH',
        f'/api/v1/nodes/{name}/status',
        {'status': {'conditions': conditions}},
        content_type='application/merge-patch+json',
    )
    assert status == 200, body


def args(apiserver, cert_args, **extra):
    out = {'api_server': apiserver['url'], 'interval': 0.3}
    out.update(cert_args('admin'))
    out.update(extra)
    return out


@pytest.fixture(scope='module')
def cluster(apiserver):
    """Nodes: ready-1 and ready-2 Ready; sick NotReady with a reason; fresh registered without status."""
    for name in ('ready-1', 'ready-2', 'sick', 'fresh'):
        register(apiserver, name)
    set_ready(apiserver, 'ready-1', True)
    set_ready(apiserver, 'ready-2', True)
    set_ready(
        apiserver,
        'sick',
        False,
        'KubeletNotReady',
        'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady',
    )
    return apiserver


def test_ready_nodes_succeed(module, cluster, cert_args):
    result = module('node_ready', args(cluster, cert_args, names=['ready-1', 'ready-2'], timeout=30))
    assert result['rc'] == 0 and not result.get('failed'), result
    assert result['changed'] is False
    assert {'ready-1', 'ready-2'} <= set(result['ready'])
    assert result['missing'] == [] and result['last_error'] is None
    assert result['nodes']['ready-1'] == {'ready': True, 'conditions': []}
    assert result['elapsed'] < 10


def test_waits_while_a_node_becomes_ready(background_module, cluster, cert_args):
    register(cluster, 'late')
    run = background_module('node_ready', args(cluster, cert_args, names=['ready-1', 'late'], timeout=40))
    time.sleep(2.0)
    assert run.running(), 'the module should still be waiting for "late"'
    set_ready(cluster, 'late', True)
    result = run.result(timeout=60)
    assert result['rc'] == 0 and not result.get('failed'), result
    # It was still waiting when "late" became Ready (above); how long its own
    # start took depends on the machine's load, so elapsed only has to be > 0.
    assert 'late' in result['ready'] and result['elapsed'] > 0


def test_waits_for_a_node_to_register(background_module, cluster, cert_args):
    run = background_module('node_ready', args(cluster, cert_args, names=['newcomer'], timeout=40))
    time.sleep(1.5)
    assert run.running()
    register(cluster, 'newcomer')
    set_ready(cluster, 'newcomer', True)
    result = run.result(timeout=60)
    assert result['rc'] == 0 and 'newcomer' in result['ready'], result


def test_timeout_reports_each_node(module, cluster, cert_args):
    result = module(
        'node_ready', args(cluster, cert_args, names=['ready-1', 'sick', 'fresh', 'ghost'], timeout=2)
    )
    assert result['rc'] == 1 and result['failed']
    assert result['missing'] == ['ghost']
    assert result['nodes']['ready-1']['ready'] is True
    sick = result['nodes']['sick']
    assert sick['ready'] is False
    assert sick['conditions'] == [
        {
            'type': 'Ready',
            'status': 'False',
            'reason': 'KubeletNotReady',
            'message': 'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady',
        }
    ]
    assert result['nodes']['fresh']['conditions'][0]['reason'] == 'NoReadyCondition'
    msg = result['msg']
    assert msg.startswith('gave up waiting for nodes after ')
    assert 'sick is not Ready (Ready=False KubeletNotReady: container runtime network not ready' in msg
    assert 'fresh is not Ready (Ready=Unknown NoReadyCondition' in msg
    assert 'never registered: ghost' in msg
    assert 'ready-1' not in msg
    assert 2 <= result['elapsed'] < 10


def test_min_count(module, cluster, cert_args):
    result = module('node_ready', args(cluster, cert_args, min_count=2, timeout=10))
    assert result['rc'] == 0, result
    ready = len(result['ready'])
    result = module('node_ready', args(cluster, cert_args, min_count=ready + 1, timeout=1))
    assert result['failed'] and f'{ready} node(s) Ready, want at least {ready + 1}' in result['msg']
    assert len(result['ready']) == ready


def test_kubeconfig(module, cluster, pki, tmp_path):
    path = str(tmp_path / 'admin.kubeconfig')
    made = module(
        'kubeconfig',
        {
            'path': path,
            'server': cluster['url'],
            'ca_file': os.path.join(pki, 'ca.pem'),
            'client_cert_file': os.path.join(pki, 'admin.pem'),
            'client_key_file': os.path.join(pki, 'admin-key.pem'),
            'user': 'admin',
        },
    )
    assert made['rc'] == 0 and made['changed'], made
    result = module('node_ready', {'kubeconfig': path, 'names': ['ready-1'], 'timeout': 20})
    assert result['rc'] == 0 and 'ready-1' in result['ready'], result


def test_rejected_credentials_are_retried_and_reported(module, cluster, cert_args):
    result = module(
        'node_ready',
        dict(args(cluster, cert_args, names=['ready-1'], timeout=2), **cert_args('stranger-admin')),
    )
    assert result['failed'] and result['nodes'] == {} and result['missing'] == ['ready-1']
    # an unknown client certificate makes the request anonymous: 401, or 403 when anonymous access is on
    assert 'HTTP 401' in result['last_error'] or 'HTTP 403' in result['last_error'], result['last_error']
    assert 'last error: the API server at' in result['msg']


def test_unreachable_api_server(module, cluster, cert_args, unused_port):
    url = f'https://127.0.0.1:{unused_port()}'
    result = module('node_ready', args(cluster, cert_args, api_server=url, names=['ready-1'], timeout=1))
    assert result['failed'] and result['last_error'].startswith(f'connection refused by {url}')


def test_check_mode_checks_once(module, cluster, cert_args):
    result = module('node_ready', args(cluster, cert_args, names=['sick'], timeout=60), check=True)
    assert result['rc'] == 0 and not result.get('failed') and result['elapsed'] < 5
    assert 'sick is not Ready' in result['msg']


def test_through_ansible_on_an_old_python(ansible_adhoc, old_python, cluster, pki, cert_args, tmp_path):
    """On a bare Python (no PyYAML): certificate options and a JSON kubeconfig work, YAML fails clearly."""
    rc, result = ansible_adhoc(
        'node_ready', args(cluster, cert_args, names=['ready-1'], timeout=20), python=old_python
    )
    assert rc == 0 and 'ready-1' in result['ready'], result
    config = {
        'apiVersion': 'v1',
        'kind': 'Config',
        'current-context': 'it',
        'clusters': [
            {'name': 'it', 'cluster': {'server': cluster['url'], 'certificate-authority': f'{pki}/ca.pem'}}
        ],
        'users': [
            {
                'name': 'admin',
                'user': {'client-certificate': f'{pki}/admin.pem', 'client-key': f'{pki}/admin-key.pem'},
            }
        ],
        'contexts': [{'name': 'it', 'context': {'cluster': 'it', 'user': 'admin'}}],
    }
    (tmp_path / 'kubeconfig.json').write_text(json.dumps(config))
    rc, result = ansible_adhoc(
        'node_ready',
        {'kubeconfig': str(tmp_path / 'kubeconfig.json'), 'names': ['ready-1'], 'timeout': 20},
        python=old_python,
    )
    assert rc == 0 and 'ready-1' in result['ready'], result
    probe = subprocess.run([old_python, '-c', 'import yaml'], capture_output=True, check=False)
    if probe.returncode != 0:
        (tmp_path / 'kubeconfig.yaml').write_text('apiVersion: v1\nkind: Config\n')
        rc, result = ansible_adhoc(
            'node_ready', {'kubeconfig': str(tmp_path / 'kubeconfig.yaml'), 'min_count': 1}, python=old_python
        )
        assert rc != 0 and 'needs PyYAML' in result['msg'], result
