# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""etcd v3 through its JSON gateway (standard library only): the client, the value logic of etcd_key
(a plain key/value module), and etcd authentication (users, roles, key permissions) for etcd_auth.

The gateway speaks JSON over HTTP(S): ``POST /v3/kv/range``, ``/v3/kv/put`` and
``/v3/kv/deleterange``, ``/v3/auth/...``, ``/v3/cluster/...``, with keys and values base64-encoded.

With authentication enabled, etcd maps the common name of a gRPC client's
certificate to the user of that name (``--client-cert-auth``), but never for
requests through the JSON gateway (it dials etcd with the server's own
certificate): etcd 3.6 even refuses gateway requests whose client certificate
has a common name. Gateway clients present a certificate without one, log in
with a user name and password (``/v3/auth/authenticate``) and send the token
in the ``Authorization`` header; :class:`EtcdClient` does that when it is given
``user`` and ``password``, and talks without a token while authentication is
still off.
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

# etcd's error texts (api/v3rpc/rpctypes) that the client reacts to
ERR_AUTH_NOT_ENABLED = 'authentication is not enabled'
ERR_AUTH_FAILED = 'authentication failed'
ERR_USER_EMPTY = 'user name is empty'
ERR_INVALID_TOKEN = 'invalid auth token'
ERR_OLD_REVISION = 'revision of auth store is old'
ERR_PERMISSION_DENIED = 'permission denied'
# etcd's gateway (embed/serve.go), while authentication is on, to a client certificate with a common name
ERR_GATEWAY_CN = 'CommonName of client sending a request against gateway'
# a learner's client URL, to every request of the gateway but /health (a member that joined and is not
# promoted yet): another endpoint serves it
ERR_LEARNER_RPC = 'rpc not supported for learner'
# a token to fetch again (expired, or issued before an auth change) or missing
TOKEN_ERRORS = (ERR_INVALID_TOKEN, ERR_OLD_REVISION, ERR_USER_EMPTY)


class EtcdError(Exception):
    """An etcd request failed; ``kind`` tells how (see tlsclient.RequestError, plus ``auth``, ``etcd``)."""

    def __init__(self, message, kind='etcd', endpoint=None, errors=None):
        super().__init__(message)
        self.kind = kind
        self.endpoint = endpoint
        # the request errors of the endpoints tried (tlsclient.RequestError), when that is how it failed
        self.errors = errors or []


# --------------------------------------------------------------------------
# Values (pure functions)


def etcd_connection_spec():
    """The argument spec of how a module reaches etcd (documented by the doc fragment hardway.kubernetes.etcd)."""
    return {
        'endpoints': {'type': 'list', 'elements': 'str', 'required': True},
        'ca_cert': {'type': 'path'},
        'client_cert': {'type': 'path'},
        'client_key': {'type': 'path', 'no_log': False},
    }


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


def _has(message, text):
    return text in (message or '')


class EtcdClient:
    """Talks to the first endpoint that answers and then sticks to it.

    With ``user`` and ``password`` it logs in on each endpoint it uses (once;
    again when etcd says the token is stale) and sends the token with every
    request; while authentication is off in etcd it sends none.
    """

    def __init__(self, endpoints, ca_cert=None, client_cert=None, client_key=None, timeout=10.0,
                 user=None, password=None):
        if not endpoints:
            raise ConfigError('endpoints: give at least one endpoint')
        self.endpoints = []
        for url in endpoints:
            try:
                self.endpoints.append(Endpoint(url, default_port=2379))
            except ConfigError as exc:
                raise ConfigError('endpoints: %s' % exc) from None
        self.timeout = timeout
        # without a password there is nothing to log in with (etcd_auth in check mode before the first run)
        self.user = user if user and password else None
        self.password = password
        self.tokens = {}  # endpoint URL -> token, or None while authentication is off
        self.auth_enabled = None  # learned when logging in
        self.context = None
        if any(e.scheme == 'https' for e in self.endpoints):
            self.context = make_context(ca_cert, client_cert, client_key)
        elif ca_cert or client_cert or client_key:
            make_context(ca_cert, client_cert, client_key)  # still report missing files
        self.endpoint = None

    # -- one endpoint

    def _post(self, endpoint, path, payload, token=None):
        headers = {'Authorization': token} if token else None
        return request(endpoint, 'POST', path, payload, self.context, self.timeout, headers)

    def _login(self, endpoint):
        """The token for ``endpoint`` (None while authentication is off). Raises RequestError/EtcdError."""
        key = str(endpoint)
        if key in self.tokens:
            return self.tokens[key]
        response = self._post(endpoint, '/v3/auth/authenticate', {'name': self.user, 'password': self.password})
        if response.status == 200 and isinstance(response.json, dict) and response.json.get('token'):
            token = response.json['token']
            self.auth_enabled = True
        else:
            code, message = gateway_error(response)
            if _has(message, ERR_AUTH_NOT_ENABLED):
                token = None
                self.auth_enabled = False
            elif _has(message, ERR_AUTH_FAILED):
                raise EtcdError(
                    'etcd at %s refused the login of user %r (%s): the password is wrong, the user does not '
                    'exist, or it is a certificate-only user' % (endpoint, self.user, message), 'auth', key)
            else:
                self._raise_or_skip(endpoint, '/v3/auth/authenticate', response, code, message)
        self.tokens[key] = token
        return token

    def _raise_or_skip(self, endpoint, path, response, code, message):
        """Raise EtcdError for an answer that another endpoint would not change; RequestError to try the next."""
        if _has(message, ERR_LEARNER_RPC):
            raise RequestError('etcd at %s is a learner (a member not promoted yet), which serves no requests '
                               '(HTTP %d: %s)' % (endpoint, response.status, message), 'learner', endpoint)
        if _has(message, ERR_GATEWAY_CN):
            raise EtcdError(
                'etcd at %s refused the client certificate (HTTP %d: %s): with authentication on, etcd\'s JSON '
                'gateway only takes client certificates without a common name; give client_cert/client_key of '
                'such a certificate, and user/password' % (endpoint, response.status, message), 'auth', str(endpoint))
        if response.status == 404:
            raise RequestError('%s does not serve the etcd v3 JSON gateway (HTTP 404 for %s)'
                               % (endpoint, path), 'protocol', endpoint)
        if response.status >= 500 or code == GRPC_UNAVAILABLE:
            raise RequestError('etcd at %s cannot serve the request (HTTP %d: %s)'
                               % (endpoint, response.status, message), 'etcd', endpoint)
        if (response.status in (401, 403) or code in (GRPC_PERMISSION_DENIED, GRPC_UNAUTHENTICATED)
                or any(_has(message, text) for text in TOKEN_ERRORS)):
            if self.user:
                why = ('user %r (logged in with the password) lacks the permission for %s'
                       % (self.user, path))
            else:
                why = ('authentication is on in etcd, and requests through its JSON gateway need a user and '
                       'password of a user with the permission (etcd takes client certificate names for users '
                       'only over gRPC)')
            raise EtcdError('etcd at %s denied the request (HTTP %d: %s): %s'
                            % (endpoint, response.status, message, why), 'auth', str(endpoint))
        raise EtcdError('etcd at %s rejected %s (HTTP %d: %s)'
                        % (endpoint, path, response.status, message), 'etcd', str(endpoint))

    def _call_one(self, endpoint, path, payload):
        """The parsed answer of ``endpoint``; raises RequestError (try another endpoint) or EtcdError."""
        for attempt in (1, 2):
            token = self._login(endpoint) if self.user else None
            response = self._post(endpoint, path, payload, token)
            if response.status == 200 and isinstance(response.json, dict):
                return response.json
            code, message = gateway_error(response)
            stale = any(_has(message, text) for text in TOKEN_ERRORS)
            # no token yet because authentication was off at login, and it is on now
            late = token is None and (code == GRPC_PERMISSION_DENIED or _has(message, ERR_PERMISSION_DENIED))
            if self.user and attempt == 1 and (stale or late):
                self.tokens.pop(str(endpoint), None)  # log in again: the token expired or predates a change
                continue
            self._raise_or_skip(endpoint, path, response, code, message)
        raise AssertionError('unreachable')  # pragma: no cover

    # -- any endpoint

    def call(self, path, payload):
        """POST ``payload`` to ``path``; returns the parsed answer. Raises EtcdError."""
        candidates = [self.endpoint] if self.endpoint else self.endpoints
        errors = []
        for endpoint in candidates:
            try:
                answer = self._call_one(endpoint, path, payload)
            except RequestError as exc:
                errors.append(exc)
                continue
            self.endpoint = endpoint
            return answer
        if len(errors) == 1:
            raise EtcdError(str(errors[0]), errors[0].kind, str(errors[0].endpoint), errors)
        raise EtcdError('no etcd endpoint answered: %s' % '; '.join(str(e) for e in errors),
                        errors[-1].kind if errors else 'etcd', errors=errors)

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

    def count(self, prefix):
        """How many keys start with ``prefix``."""
        raw = to_bytes(prefix)
        answer = self.call('/v3/kv/range', {'key': _b64(raw or b'\0'), 'range_end': _b64(prefix_end(raw)),
                                            'count_only': True})
        return int(answer.get('count') or 0)

    def put(self, key, value):
        self.call('/v3/kv/put', {'key': _b64(to_bytes(key)), 'value': _b64(to_bytes(value))})

    def delete(self, key):
        answer = self.call('/v3/kv/deleterange', {'key': _b64(to_bytes(key))})
        return int(answer.get('deleted') or 0)


# --------------------------------------------------------------------------
# Authentication: users, roles and key permissions (etcd_auth)

ROOT = 'root'  # etcd's built-in role (every permission, and auth management) and the user auth needs
PERMISSION_TYPES = ('read', 'write', 'readwrite')
_PERM_TYPE_NAMES = {'READ': 'read', 'WRITE': 'write', 'READWRITE': 'readwrite', 0: 'read', 1: 'write',
                    2: 'readwrite'}
EVERY_KEY = (b'\0', b'\0')  # etcd's range for "all keys"


class AuthSpecError(ValueError):
    """The desired users/roles are inconsistent; the message names the option."""


def permission_range(key, prefix):
    """``(key, range_end)`` bytes etcd stores for a permission on ``key``, or on every key under it.

    A prefix permission on ``''`` covers every key; a prefix ending in 0xff
    bytes is open-ended, like etcd's ``--from-key``.
    """
    raw = to_bytes(key)
    if not prefix:
        return raw, b''
    if not raw:
        return EVERY_KEY
    return raw, prefix_end(raw)


def perm_from_gateway(perm):
    """``(key, range_end, type)`` of a permission as RoleGet returns it."""
    kind = perm.get('permType', perm.get('perm_type', 0))
    key = _unb64(perm.get('key'))
    range_end = _unb64(perm.get('range_end', perm.get('rangeEnd')))
    return key, range_end, _PERM_TYPE_NAMES.get(kind, str(kind).lower())


def describe_range(key, range_end):
    """Words for a permission's key range."""
    if (key, range_end) == EVERY_KEY or (not key and range_end == b'\0'):
        return 'every key'
    if not range_end:
        return 'key %r' % decode(key)
    if range_end == b'\0':
        return 'every key from %r on' % decode(key)
    if prefix_end(key) == range_end:
        return 'keys under %r' % decode(key)
    return 'keys from %r to %r' % (decode(key), decode(range_end))


def describe_perm(perm):
    key, range_end, kind = perm
    return '%s on %s' % (kind, describe_range(key, range_end))


def desired_roles(roles):
    """``{name: {(key, range_end): type}}`` from the ``roles`` option. Raises AuthSpecError."""
    out = {}
    for index, role in enumerate(roles or []):
        where = 'roles[%d]' % index
        name = role.get('name')
        if not isinstance(name, str) or not name:
            raise AuthSpecError('%s.name: give the role a name' % where)
        if name == ROOT:
            raise AuthSpecError('%s.name: root is etcd\'s built-in role (every permission); grant it to '
                                'users instead of listing it' % where)
        if name in out:
            raise AuthSpecError('%s.name: role %r is listed twice' % (where, name))
        perms = {}
        for pindex, perm in enumerate(role.get('permissions') or []):
            pwhere = '%s.permissions[%d]' % (where, pindex)
            key = perm.get('key')
            if not isinstance(key, str):
                raise AuthSpecError('%s.key: give the key (a string; with prefix: true, "" is every key)' % pwhere)
            prefix = bool(perm.get('prefix'))
            if not key and not prefix:
                raise AuthSpecError('%s.key: an empty key is only valid with prefix: true (every key)' % pwhere)
            kind = perm.get('type') or 'readwrite'
            if kind not in PERMISSION_TYPES:
                raise AuthSpecError('%s.type: %r is not one of %s' % (pwhere, kind, ', '.join(PERMISSION_TYPES)))
            span = permission_range(key, prefix)
            if span in perms:
                raise AuthSpecError('%s: role %r has %s twice' % (pwhere, name, describe_range(*span)))
            perms[span] = kind
        out[name] = perms
    return out


def desired_users(users):
    """``{name: sorted roles}`` from the ``users`` option. Raises AuthSpecError."""
    out = {}
    for index, user in enumerate(users or []):
        where = 'users[%d]' % index
        name = user.get('name')
        if not isinstance(name, str) or not name:
            raise AuthSpecError('%s.name: give the user a name (a client certificate\'s common name)' % where)
        if name in out:
            raise AuthSpecError('%s.name: user %r is listed twice' % (where, name))
        roles = user.get('roles') or []
        if any(not isinstance(r, str) or not r for r in roles):
            raise AuthSpecError('%s.roles: role names are non-empty strings' % where)
        out[name] = sorted(set(roles))
    return out


def read_auth_state(client, role_names, user_names):
    """What etcd holds now, for the named roles and users (plus root).

    ``{'enabled': bool, 'roles': {name: {(key, range_end): type}}, 'users': {name: [roles]},
    'all_roles': set of every role name}``; roles and users that do not exist are left out.
    """
    status = client.call('/v3/auth/status', {})
    state = {'enabled': bool(status.get('enabled')), 'roles': {}, 'users': {}}
    existing_roles = set(client.call('/v3/auth/role/list', {}).get('roles') or [])
    existing_users = set(client.call('/v3/auth/user/list', {}).get('users') or [])
    state['all_roles'] = existing_roles
    for name in sorted(set(role_names) & existing_roles):
        answer = client.call('/v3/auth/role/get', {'role': name})
        perms = {}
        for perm in answer.get('perm') or []:
            key, range_end, kind = perm_from_gateway(perm)
            perms[(key, range_end)] = kind
        state['roles'][name] = perms
    for name in sorted((set(user_names) | {ROOT}) & existing_users):
        answer = client.call('/v3/auth/user/get', {'name': name})
        state['users'][name] = sorted(answer.get('roles') or [])
    return state


def plan_auth(current, roles, users, enabled, login_user=None):
    """The steps from ``current`` (see read_auth_state) to the desired roles, users and auth switch.

    Roles and users not named are left alone; a named role gets exactly its
    permissions, a named user exactly its roles. Grants come before revocations
    (no moment without the access that stays) and switching authentication on
    or off comes last. Steps are tuples: ``('role_add', role)``,
    ``('grant', role, perm)``, ``('user_add', user, with_password)``,
    ``('user_grant', user, role)``, ``('revoke', role, perm)``,
    ``('user_revoke', user, role)``, ``('user_password', user)`` (set the login
    user's password just before turning authentication on, when the user
    existed already), ``('enable',)``, ``('disable',)``, where a
    perm is ``(key, range_end, type)``. Raises AuthSpecError for a plan that
    cannot work, before anything is changed.
    """
    known_roles = set(current.get('all_roles') or ()) | set(roles) | {ROOT}
    for name, wanted in sorted(users.items()):
        for role in wanted:
            if role not in known_roles:
                raise AuthSpecError('users: user %r needs role %r, which is neither listed in roles nor in etcd'
                                    % (name, role))
    final_users = dict(current['users'])
    final_users.update(users)
    if enabled:
        if ROOT not in final_users.get(ROOT, ()):
            raise AuthSpecError('users: etcd only turns on authentication when user root exists with role root; '
                                'list {name: root, roles: [root]}')
        if not login_user:
            raise AuthSpecError('user: with enabled: true, give the user (and password) this module logs in as, '
                                'or it could not manage etcd any more')
        if ROOT not in final_users.get(login_user, ()):
            raise AuthSpecError('user: %r must be listed in users with role root: once authentication is on, '
                                'only root users manage it' % login_user)

    grants, revokes, steps = [], [], []
    for name, wanted in sorted(roles.items()):
        have = current['roles'].get(name)
        if have is None:
            steps.append(('role_add', name))
            have = {}
        for span, kind in sorted(wanted.items()):
            if have.get(span) != kind:
                grants.append(('grant', name, span + (kind,)))
        for span, kind in sorted(have.items()):
            if span not in wanted:
                revokes.append(('revoke', name, span + (kind,)))
    steps += grants
    user_grants, user_revokes = [], []
    for name, wanted in sorted(users.items()):
        have = current['users'].get(name)
        if have is None:
            steps.append(('user_add', name, name == login_user))
            have = []
        user_grants += [('user_grant', name, role) for role in wanted if role not in have]
        user_revokes += [('user_revoke', name, role) for role in have if role not in wanted]
    steps += user_grants + revokes + user_revokes
    if enabled is True and not current['enabled']:
        if login_user in current['users']:
            # it may have been made with another password; etcd cannot tell before auth is on
            steps.append(('user_password', login_user))
        steps.append(('enable',))
    elif enabled is False and current['enabled']:
        steps.append(('disable',))
    return steps


def describe_step(step):
    """One line for a step of plan_auth."""
    kind = step[0]
    if kind == 'role_add':
        return 'add role %s' % step[1]
    if kind == 'grant':
        return 'grant %s to role %s' % (describe_perm(step[2]), step[1])
    if kind == 'revoke':
        return 'revoke %s from role %s' % (describe_perm(step[2]), step[1])
    if kind == 'user_add':
        return 'add user %s (%s)' % (step[1], 'logs in with the password' if step[2] else 'certificate only')
    if kind == 'user_grant':
        return 'grant role %s to user %s' % (step[2], step[1])
    if kind == 'user_revoke':
        return 'revoke role %s from user %s' % (step[2], step[1])
    if kind == 'user_password':
        return 'set the password of user %s' % step[1]
    return '%s authentication' % kind


def apply_step(client, step, password=None):
    """Carry out one step of plan_auth."""
    kind = step[0]
    if kind == 'role_add':
        client.call('/v3/auth/role/add', {'name': step[1]})
    elif kind == 'grant':
        key, range_end, perm_type = step[2]
        client.call('/v3/auth/role/grant', {'name': step[1], 'perm': {
            'permType': perm_type.upper(), 'key': _b64(key), 'range_end': _b64(range_end)}})
    elif kind == 'revoke':
        key, range_end = step[2][:2]
        client.call('/v3/auth/role/revoke', {'role': step[1], 'key': _b64(key), 'range_end': _b64(range_end)})
    elif kind == 'user_add':
        if step[2]:
            client.call('/v3/auth/user/add', {'name': step[1], 'password': password})
        else:
            client.call('/v3/auth/user/add', {'name': step[1], 'options': {'no_password': True}})
    elif kind == 'user_grant':
        client.call('/v3/auth/user/grant', {'user': step[1], 'role': step[2]})
    elif kind == 'user_revoke':
        client.call('/v3/auth/user/revoke', {'name': step[1], 'role': step[2]})
    elif kind == 'user_password':
        client.call('/v3/auth/user/changepw', {'name': step[1], 'password': password})
    elif kind == 'enable':
        client.call('/v3/auth/enable', {})
    elif kind == 'disable':
        client.call('/v3/auth/disable', {})
    else:
        raise ValueError('unknown step %r' % (step,))


def auth_state_text(state, role_names, user_names):
    """The named roles and users (and the auth switch) as text, for diffs."""
    lines = ['authentication: %s' % ('enabled' if state['enabled'] else 'disabled')]
    for name in sorted(role_names):
        perms = state['roles'].get(name)
        if perms is None:
            continue
        lines.append('role %s:' % name)
        lines += ['  %s' % describe_perm(span + (kind,)) for span, kind in sorted(perms.items())] or ['  (nothing)']
    for name in sorted(set(user_names) | {ROOT}):
        roles = state['users'].get(name)
        if roles is None:
            continue
        lines.append('user %s: %s' % (name, ', '.join(roles) or '(no roles)'))
    return '\n'.join(lines) + '\n'


def state_after(current, steps):
    """``current`` with ``steps`` applied (for the diff's after side)."""
    state = {'enabled': current['enabled'], 'roles': {k: dict(v) for k, v in current['roles'].items()},
             'users': {k: list(v) for k, v in current['users'].items()}}
    for step in steps:
        kind = step[0]
        if kind == 'role_add':
            state['roles'][step[1]] = {}
        elif kind == 'grant':
            state['roles'][step[1]][step[2][:2]] = step[2][2]
        elif kind == 'revoke':
            state['roles'][step[1]].pop(step[2][:2], None)
        elif kind == 'user_add':
            state['users'][step[1]] = []
        elif kind == 'user_grant':
            state['users'][step[1]] = sorted(state['users'][step[1]] + [step[2]])
        elif kind == 'user_revoke':
            state['users'][step[1]] = [r for r in state['users'][step[1]] if r != step[2]]
        elif kind in ('enable', 'disable'):
            state['enabled'] = kind == 'enable'
    return state


def run_auth(client, roles, users, enabled, login_user=None, password=None, check_mode=False, diff=False):
    """etcd_auth's work: read, plan, and (unless ``check_mode``) apply. Returns the module result.

    Raises AuthSpecError (bad options, nothing changed) and EtcdError.
    """
    wanted_roles = desired_roles(roles)
    wanted_users = desired_users(users)
    current = read_auth_state(client, wanted_roles, wanted_users)
    steps = plan_auth(current, wanted_roles, wanted_users, enabled, login_user)
    if not check_mode and not password and any(s[0] == 'user_password' or (s[0] == 'user_add' and s[2])
                                               for s in steps):
        raise AuthSpecError('password: user %r logs in with it, so it must not be empty' % login_user)
    after = state_after(current, steps)
    result = {'changed': bool(steps), 'actions': [describe_step(s) for s in steps],
              'enabled': after['enabled'], 'previously_enabled': current['enabled']}
    if diff:
        result['diff'] = {
            'before': auth_state_text(current, wanted_roles, wanted_users),
            'after': auth_state_text(after, wanted_roles, wanted_users),
            'before_header': 'etcd authentication', 'after_header': 'etcd authentication',
        }
    if not check_mode:
        for step in steps:
            apply_step(client, step, password)
    return result
