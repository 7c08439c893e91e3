# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Waiting for Kubernetes nodes to be Ready (hardway.kubernetes.node_ready); standard library only.

``node_status`` and ``evaluate`` are pure functions over the JSON the API
server returns; ``wait`` is the polling loop (with injectable clock, sleep and
fetch for tests) and ``ApiClient`` fetches ``/api/v1/nodes``.
"""

from __future__ import annotations

import time

from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import (
    ConfigError,
    Endpoint,
    RequestError,
    make_context,
    request,
)

# Conditions that are fine when False (the kubelet sets them True when something is wrong).
OK_WHEN_FALSE = ('MemoryPressure', 'DiskPressure', 'PIDPressure', 'NetworkUnavailable')


class ApiError(Exception):
    """The API server answered, but not with a node list."""

    def __init__(self, message, kind='api'):
        super().__init__(message)
        self.kind = kind


def _condition(cond):
    return {
        'type': cond.get('type'),
        'status': cond.get('status'),
        'reason': cond.get('reason') or '',
        'message': cond.get('message') or '',
    }


def node_status(node):
    """``{'ready': bool, 'conditions': [conditions that are not OK]}`` for one Node object."""
    conditions = ((node or {}).get('status') or {}).get('conditions') or []
    ready = False
    seen_ready = False
    bad = []
    for cond in conditions:
        if not isinstance(cond, dict):
            continue
        kind, status = cond.get('type'), cond.get('status')
        if kind == 'Ready':
            seen_ready = True
            ready = status == 'True'
            if not ready:
                bad.append(_condition(cond))
        elif kind in OK_WHEN_FALSE and status != 'False':
            bad.append(_condition(cond))
    if not seen_ready:
        bad.insert(0, {'type': 'Ready', 'status': 'Unknown', 'reason': 'NoReadyCondition',
                       'message': 'the node has not reported a Ready condition yet'})
    return {'ready': ready, 'conditions': bad}


def evaluate(node_list, names=(), min_count=0):
    """Check a NodeList against the wait conditions.

    Returns ``done`` (every named node Ready and at least ``min_count`` Ready),
    ``nodes`` (name -> node_status for every node listed), ``ready`` (names of
    Ready nodes), ``missing`` (named nodes not registered) and ``problems``
    (human-readable reasons for not being done).
    """
    items = (node_list or {}).get('items') or []
    nodes = {}
    for node in items:
        name = ((node or {}).get('metadata') or {}).get('name')
        if name:
            nodes[name] = node_status(node)
    ready = sorted(n for n, s in nodes.items() if s['ready'])
    missing = [n for n in names if n not in nodes]
    problems = []
    for name in names:
        if name in nodes and not nodes[name]['ready']:
            problems.append('%s is not Ready (%s)' % (name, describe_conditions(nodes[name]['conditions'])))
    if missing:
        problems.append('never registered: %s' % ', '.join(missing))
    if len(ready) < min_count:
        problems.append('%d node(s) Ready, want at least %d' % (len(ready), min_count))
    return {'done': not problems, 'nodes': nodes, 'ready': ready, 'missing': missing, 'problems': problems}


def describe_conditions(conditions):
    parts = []
    for cond in conditions:
        text = '%s=%s' % (cond['type'], cond['status'])
        detail = ': '.join(x for x in (cond.get('reason'), cond.get('message')) if x)
        parts.append(text + (' ' + detail if detail else ''))
    return '; '.join(parts) or 'no conditions'


def wait(fetch, names=(), min_count=0, timeout=300, interval=2.0, clock=time.monotonic, sleep=time.sleep,
         once=False):
    """Poll ``fetch()`` (returns a NodeList dict, raises RequestError/ApiError) until done or timeout.

    Returns the last ``evaluate`` result plus ``elapsed``, ``timed_out``,
    ``last_error`` (message of the last failed fetch, None after a success) and
    ``message``. With ``once`` it checks a single time.
    """
    start = clock()
    deadline = start + timeout
    state = evaluate({}, names, min_count)
    state['problems'] = ['no answer from the API server yet']
    last_error = None
    seen_answer = False
    while True:
        try:
            node_list = fetch()
        except (RequestError, ApiError) as exc:
            last_error = str(exc)
        else:
            last_error = None
            seen_answer = True
            state = evaluate(node_list, names, min_count)
            if state['done']:
                break
        now = clock()
        if once or now >= deadline:
            break
        sleep(max(0.0, min(interval, deadline - now)))
    elapsed = round(clock() - start, 2)
    state.update(elapsed=elapsed, timed_out=not state['done'] and not once, last_error=last_error)
    if state['done']:
        state['message'] = '%d node(s) Ready after %.1fs' % (len(state['ready']), elapsed)
    else:
        problems = list(state['problems']) if seen_answer else []
        if last_error:
            problems.append('last error: %s' % last_error)
        state['message'] = '%s waiting for nodes after %.1fs: %s' % (
            'gave up' if not once else 'not ready', elapsed, '; '.join(problems))
    return state


class ApiClient:
    """GET /api/v1/nodes with client certificates (or a bearer token)."""

    def __init__(self, server, ca_file=None, cert_file=None, key_file=None, ca_data=None, cert_data=None,
                 key_data=None, insecure=False, token=None, timeout=10.0, names=None,
                 server_option='api_server'):
        try:
            self.endpoint = Endpoint(server, default_port=443)
        except ConfigError as exc:
            raise ConfigError('%s: %s' % (server_option, exc)) from None
        self.names = names or ('ca_cert', 'client_cert', 'client_key')
        self.context = make_context(ca_file, cert_file, key_file, ca_data, cert_data, key_data, insecure,
                                    names=self.names)
        self.token = token
        self.timeout = timeout

    def nodes(self, timeout=None):
        headers = {'Authorization': 'Bearer %s' % self.token} if self.token else None
        response = request(self.endpoint, 'GET', '/api/v1/nodes', context=self.context,
                           timeout=timeout or self.timeout, headers=headers, names=self.names)
        body = response.json if isinstance(response.json, dict) else {}
        if response.status == 200 and body.get('kind') == 'NodeList':
            return body
        message = body.get('message') or response.text[:300] or response.reason
        if response.status == 401:
            raise ApiError('the API server at %s rejected the credentials (HTTP 401 %s): check that %s/%s '
                           'are signed by the CA given to the API server as --client-ca-file'
                           % (self.endpoint, message, self.names[1], self.names[2]), 'auth')
        if response.status == 403:
            raise ApiError('the API server at %s does not allow this user to list nodes (HTTP 403): %s'
                           % (self.endpoint, message), 'auth')
        raise ApiError('the API server at %s answered HTTP %d for /api/v1/nodes: %s'
                       % (self.endpoint, response.status, message))
