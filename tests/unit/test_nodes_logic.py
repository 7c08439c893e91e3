"""node_ready's pure logic: condition evaluation over sample Node JSON and the polling loop."""

from __future__ import annotations

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import nodes as N
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import RequestError


def node(name, ready='True', reason='KubeletReady', message='kubelet is posting ready status', **pressure):
    conditions = [
        {
            'type': t,
            'status': pressure.get(t, 'False'),
            'reason': 'KubeletHasNo' + t,
            'message': 'fine',
            'lastHeartbeatTime': '2026-01-01T00:00:00Z',
        }
        for t in ('MemoryPressure', 'DiskPressure', 'PIDPressure')
    ]
    if ready is not None:
        conditions.append({'type': 'Ready', 'status': ready, 'reason': reason, 'message': message})
    return {'kind': 'Node', 'metadata': {'name': name}, 'status': {'conditions': conditions}}


def node_list(*items):
    return {'kind': 'NodeList', 'apiVersion': 'v1', 'items': list(items)}


NOT_READY = node(
    'w2',
    'False',
    'KubeletNotReady',
    'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady',
)


def test_ready_node():
    assert N.node_status(node('w1')) == {'ready': True, 'conditions': []}


def test_not_ready_node():
    assert N.node_status(NOT_READY) == {
        'ready': False,
        'conditions': [
            {
                'type': 'Ready',
                'status': 'False',
                'reason': 'KubeletNotReady',
                'message': 'container runtime network not ready: NetworkReady=false '
                'reason:NetworkPluginNotReady',
            }
        ],
    }


def test_pressure_is_reported_but_ready_decides():
    status = N.node_status(node('w1', DiskPressure='True'))
    assert status['ready'] is True
    assert [c['type'] for c in status['conditions']] == ['DiskPressure']
    status = N.node_status(node('w1', 'Unknown', 'NodeStatusUnknown', 'Kubelet stopped posting node status.'))
    assert status['ready'] is False and status['conditions'][0]['status'] == 'Unknown'


def test_node_without_conditions():
    status = N.node_status({'metadata': {'name': 'new'}, 'status': {}})
    assert status == {
        'ready': False,
        'conditions': [
            {
                'type': 'Ready',
                'status': 'Unknown',
                'reason': 'NoReadyCondition',
                'message': 'the node has not reported a Ready condition yet',
            }
        ],
    }


def test_evaluate_names():
    state = N.evaluate(node_list(node('w1'), NOT_READY), ['w1', 'w2', 'w3'])
    assert not state['done']
    assert state['ready'] == ['w1'] and state['missing'] == ['w3']
    assert set(state['nodes']) == {'w1', 'w2'}
    assert state['problems'] == [
        'w2 is not Ready (Ready=False KubeletNotReady: container runtime network not ready: '
        'NetworkReady=false reason:NetworkPluginNotReady)',
        'never registered: w3',
    ]
    assert N.evaluate(node_list(node('w1'), NOT_READY), ['w1'])['done']


def test_evaluate_min_count():
    nodes = node_list(node('a'), node('b'), NOT_READY)
    assert N.evaluate(nodes, min_count=2)['done']
    state = N.evaluate(nodes, min_count=3)
    assert not state['done'] and state['problems'] == ['2 node(s) Ready, want at least 3']
    assert not N.evaluate(nodes, ['w2'], min_count=1)['done']
    assert N.evaluate(node_list(), [], 0)['done']


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_until_ready():
    clock = FakeClock()
    answers = [
        RequestError('connection refused by https://x', 'refused'),
        node_list(NOT_READY),
        node_list(node('w2')),
    ]

    def fetch():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    state = N.wait(fetch, ['w2'], 0, timeout=60, interval=2, clock=clock, sleep=clock.sleep)
    assert state['done'] and state['ready'] == ['w2'] and state['last_error'] is None
    assert state['elapsed'] == 4.0 and not state['timed_out']
    assert state['message'] == '1 node(s) Ready after 4.0s'


def test_wait_times_out_with_diagnostics():
    clock = FakeClock()
    calls = []

    def fetch():
        calls.append(clock.now)
        if len(calls) > 3:
            raise N.ApiError(
                'the API server at https://x rejected the credentials (HTTP 401 Unauthorized)', 'auth'
            )
        return node_list(NOT_READY)

    state = N.wait(fetch, ['w2', 'w9'], 0, timeout=10, interval=3, clock=clock, sleep=clock.sleep)
    assert not state['done'] and state['timed_out']
    assert calls == [0, 3, 6, 9, 10]  # the last poll happens at the deadline
    assert state['missing'] == ['w9'] and state['nodes']['w2']['ready'] is False
    assert state['last_error'].startswith('the API server at https://x rejected the credentials')
    assert state['message'].startswith(
        'gave up waiting for nodes after 10.0s: w2 is not Ready (Ready=False KubeletNotReady'
    )
    assert 'never registered: w9' in state['message'] and 'last error: the API server' in state['message']


def test_wait_never_answered():
    clock = FakeClock()

    def fetch():
        raise RequestError('connection refused by https://x', 'refused')

    state = N.wait(fetch, ['a'], 0, timeout=5, interval=2, clock=clock, sleep=clock.sleep)
    assert not state['done'] and state['nodes'] == {} and state['missing'] == ['a']
    assert (
        state['message']
        == 'gave up waiting for nodes after 5.0s: last error: connection refused by https://x'
    )


def test_wait_once():
    clock = FakeClock()
    state = N.wait(
        lambda: node_list(NOT_READY),
        ['w2'],
        timeout=300,
        interval=2,
        clock=clock,
        sleep=clock.sleep,
        once=True,
    )
    assert not state['done'] and not state['timed_out'] and state['elapsed'] == 0
    assert state['message'].startswith('not ready waiting for nodes')


def test_module_needs_a_server(run_module):
    result = run_module('node_ready', {'names': ['a']})
    assert result['failed'] and 'api_server' in result['msg'] and 'kubeconfig' in result['msg']
    result = run_module('node_ready', {'api_server': 'https://127.0.0.1:1', 'ca_cert': '/nonexistent.pem'})
    assert result['failed'] and result['msg'] == 'ca_cert: /nonexistent.pem does not exist'
    result = run_module('node_ready', {'api_server': 'ftp://x'})
    assert result['failed'] and result['msg'] == "api_server: 'ftp://x' is not an http(s) URL"


@pytest.mark.parametrize(
    'extra, message',
    [
        ({'timeout': -1}, 'timeout must not be negative'),
        ({'interval': 0}, 'interval must be greater than 0'),
        ({'min_count': -2}, 'min_count must not be negative'),
    ],
)
def test_module_bad_numbers(run_module, extra, message):
    result = run_module('node_ready', dict({'api_server': 'https://127.0.0.1:1'}, **extra))
    assert result['failed'] and message in result['msg']


def test_module_unreachable_reports_last_error(run_module):
    result = run_module(
        'node_ready', {'api_server': 'https://127.0.0.1:1', 'names': ['w1'], 'timeout': 1, 'interval': 0.2}
    )
    assert result['failed'] and result['missing'] == ['w1'] and result['nodes'] == {}
    assert (
        result['last_error'] == 'connection refused by https://127.0.0.1:1: nothing listens there (wrong '
        'endpoint or port, or the service is not running)'
    )
    assert result['msg'].startswith('gave up waiting for nodes after ')
    assert result['changed'] is False


def test_module_check_mode_does_not_wait_or_fail(run_module):
    result = run_module(
        'node_ready', {'api_server': 'https://127.0.0.1:1', 'names': ['w1'], 'timeout': 60}, check=True
    )
    assert result['rc'] == 0 and not result.get('failed') and result['elapsed'] < 5
    assert 'not ready' in result['msg']
