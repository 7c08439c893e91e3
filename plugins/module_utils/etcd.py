# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""etcd v3 through its JSON gateway (standard library only), and the value logic of etcd_key.

The gateway speaks JSON over HTTP(S): ``POST /v3/kv/range``, ``/v3/kv/put`` and
``/v3/kv/deleterange``, with keys and values base64-encoded.
"""

from __future__ import annotations

import base64
import json

from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import (
    ConfigError,
    Endpoint,
    RequestError,
    make_context,
    request,
)

# gRPC status codes the gateway puts in its error bodies
GRPC_PERMISSION_DENIED = 7
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16


class EtcdError(Exception):
    """An etcd request failed; ``kind`` tells how (see tlsclient.RequestError, plus ``auth``, ``etcd``)."""

    def __init__(self, message, kind='etcd', endpoint=None):
        super().__init__(message)
        self.kind = kind
        self.endpoint = endpoint


# --------------------------------------------------------------------------
# Values (pure functions)


def encode_value(value):
    """The string stored for a ``value`` option: strings as they are, anything else as compact sorted JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode('utf-8')
    return json.dumps(value, sort_keys=True, separators=(',', ':'))


def parse_json(text):
    """``(True, parsed)`` when ``text`` is JSON, else ``(False, None)``."""
    if not isinstance(text, str):
        return False, None
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def strict_equal(a, b):
    """Equality of parsed JSON that does not let ``true == 1`` or ``1 == 1.0``; dict key order is ignored."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return a == b


def values_equal(current, desired):
    """Whether the stored string ``current`` already holds ``desired`` (the raw option value).

    Identical text is equal. When ``desired`` is a dict or list, or when both sides
    parse as JSON, the parsed documents are compared, so key order and spacing
    do not matter.
    """
    if current is None:
        return False
    encoded = encode_value(desired)
    if current == encoded:
        return True
    ok_current, parsed_current = parse_json(current)
    if not ok_current:
        return False
    if isinstance(desired, (dict, list)):
        return strict_equal(parsed_current, desired)
    ok_desired, parsed_desired = parse_json(encoded)
    return ok_desired and strict_equal(parsed_current, parsed_desired)


def backend_type(document):
    """``Backend.Type`` of a flannel network config (parsed JSON), or None."""
    if isinstance(document, dict):
        backend = document.get('Backend')
        if isinstance(backend, dict) and isinstance(backend.get('Type'), str):
            return backend['Type']
    return None


def backend_change(current, desired):
    """``(old, new)`` when both values are flannel configs whose backend types differ, else None."""
    if current is None:
        return None
    parsed_desired = desired if isinstance(desired, (dict, list)) else parse_json(encode_value(desired))[1]
    old = backend_type(parse_json(current)[1])
    new = backend_type(parsed_desired)
    if old is not None and new is not None and old != new:
        return old, new
    return None


def backend_change_message(key, old, new):
    return ('refusing to change the flannel backend in %s from %r to %r: flanneld only reads its backend at '
            'start, so every flanneld must be restarted (and the old backend\'s interfaces removed) for the '
            'change to take effect, and nodes running different backends cannot reach each other in between. '
            'Set force: true to write it anyway.' % (key, old, new))


def pretty(value):
    """Text for diffs: JSON pretty-printed with sorted keys, anything else as it is."""
    if value is None:
        return ''
    ok, parsed = parse_json(value)
    if ok and isinstance(parsed, (dict, list)):
        return json.dumps(parsed, indent=2, sort_keys=True) + '\n'
    return value if value.endswith('\n') else value + '\n'


def prefix_end(prefix):
    """The ``range_end`` selecting every key that starts with ``prefix`` (bytes)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xff:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b'\0'  # every key


def _b64(data):
    return base64.b64encode(data).decode('ascii')


def _unb64(text):
    return base64.b64decode(text or '')


def to_bytes(text):
    return text.encode('utf-8') if isinstance(text, str) else bytes(text)


def decode(data):
    return data.decode('utf-8', errors='replace')


# --------------------------------------------------------------------------
# Client


def gateway_error(response):
    """``(grpc code or None, message)`` from an error answer of the gateway."""
    body = response.json if isinstance(response.json, dict) else {}
    code = body.get('code')
    message = body.get('message') or body.get('error') or response.text or response.reason
    return (code if isinstance(code, int) else None), message


class EtcdClient:
    """Talks to the first endpoint that answers and then sticks to it."""

    def __init__(self, endpoints, ca_cert=None, client_cert=None, client_key=None, timeout=10.0):
        if not endpoints:
            raise ConfigError('endpoints: give at least one endpoint')
        self.endpoints = []
        for url in endpoints:
            try:
                self.endpoints.append(Endpoint(url, default_port=2379))
            except ConfigError as exc:
                raise ConfigError('endpoints: %s' % exc) from None
        self.timeout = timeout
        self.context = None
        if any(e.scheme == 'https' for e in self.endpoints):
            self.context = make_context(ca_cert, client_cert, client_key)
        elif ca_cert or client_cert or client_key:
            make_context(ca_cert, client_cert, client_key)  # still report missing files
        self.endpoint = None

    def call(self, path, payload):
        """POST ``payload`` to ``path``; returns the parsed answer. Raises EtcdError."""
        candidates = [self.endpoint] if self.endpoint else self.endpoints
        errors = []
        for endpoint in candidates:
            try:
                response = request(endpoint, 'POST', path, payload, self.context, self.timeout)
            except RequestError as exc:
                errors.append(exc)
                continue
            if response.status == 200 and isinstance(response.json, dict):
                self.endpoint = endpoint
                return response.json
            code, message = gateway_error(response)
            if response.status in (401, 403) or code in (GRPC_PERMISSION_DENIED, GRPC_UNAUTHENTICATED):
                raise EtcdError(
                    'etcd at %s denied the request (HTTP %d: %s): the client certificate (client_cert) is '
                    'not allowed to do this; with etcd authentication enabled its common name must be a user '
                    'with the needed role' % (endpoint, response.status, message), 'auth', str(endpoint))
            if response.status == 404:
                errors.append(RequestError('%s does not serve the etcd v3 JSON gateway (HTTP 404 for %s)'
                                           % (endpoint, path), 'protocol', endpoint))
                continue
            if response.status >= 500 or code == GRPC_UNAVAILABLE:
                errors.append(RequestError('etcd at %s cannot serve the request (HTTP %d: %s)'
                                           % (endpoint, response.status, message), 'etcd', endpoint))
                continue
            raise EtcdError('etcd at %s rejected %s (HTTP %d: %s)'
                            % (endpoint, path, response.status, message), 'etcd', str(endpoint))
        if len(errors) == 1:
            raise EtcdError(str(errors[0]), errors[0].kind, str(errors[0].endpoint))
        raise EtcdError('no etcd endpoint answered: %s' % '; '.join(str(e) for e in errors),
                        errors[-1].kind if errors else 'etcd')

    @property
    def endpoint_url(self):
        return str(self.endpoint) if self.endpoint else None

    def get(self, key):
        """The value of ``key`` as a string, or None when the key does not exist."""
        answer = self.call('/v3/kv/range', {'key': _b64(to_bytes(key))})
        for kv in answer.get('kvs') or []:
            return decode(_unb64(kv.get('value')))
        return None

    def list(self, prefix):
        """Every key under ``prefix``, as an ordered dict of key -> value strings."""
        raw = to_bytes(prefix)
        answer = self.call('/v3/kv/range', {'key': _b64(raw or b'\0'), 'range_end': _b64(prefix_end(raw))})
        out = {}
        for kv in answer.get('kvs') or []:
            out[decode(_unb64(kv.get('key')))] = decode(_unb64(kv.get('value')))
        return out

    def put(self, key, value):
        self.call('/v3/kv/put', {'key': _b64(to_bytes(key)), 'value': _b64(to_bytes(value))})

    def delete(self, key):
        answer = self.call('/v3/kv/deleterange', {'key': _b64(to_bytes(key))})
        return int(answer.get('deleted') or 0)
