"""etcd authentication: permission ranges, the plan, the client's login, and etcd_auth end to end
against an in-memory stand-in for etcd's JSON gateway (the real etcd is in tests/integration)."""

from __future__ import annotations

import base64
import json
import os

import pytest
import yaml
from ansible_collections.hardway.kubernetes.plugins.module_utils import etcd as E
from ansible_collections.hardway.kubernetes.plugins.module_utils.tlsclient import RequestError, Response

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL = 'http://etcd.test:2379'


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def unb64(text):
    return base64.b64decode(text or '')


class FakeGateway:
    """The parts of etcd's JSON gateway the collection uses, with etcd's auth rules and error texts.

    Like the real gateway it never maps a client certificate to a user: with
    authentication on, a request needs a token from /v3/auth/authenticate.
    """

    def __init__(self):
        self.kv = {}
        self.enabled = False
        self.users = {}  # name -> {'password': str or None, 'roles': set}
        self.roles = {}  # name -> {(key, range_end): type}
        self.tokens = {}
        self.requests = []
        self.down = set()

    # -- transport
    def __call__(self, endpoint, method, path, payload=None, context=None, timeout=10.0, headers=None, names=None):
        if str(endpoint) in self.down:
            error = RequestError(f'connection refused by {endpoint}', 'refused', endpoint)
            error.connecting = True
            raise error
        token = (headers or {}).get('Authorization')
        self.requests.append((str(endpoint), path, token))
        try:
            answer = self.handle(path, payload or {}, token)
        except GatewayError as exc:
            body = {'error': 'etcdserver: ' + exc.message, 'code': exc.code, 'message': 'etcdserver: ' + exc.message}
            return Response(exc.status, 'error', json.dumps(body).encode())
        return Response(200, 'OK', json.dumps(answer).encode())

    # -- etcd
    def user_of(self, token):
        if not self.enabled:
            return None
        if token is None:  # etcd 3.6's gateway without a login
            raise GatewayError(7, 403, 'permission denied')
        if token not in self.tokens:
            raise GatewayError(16, 401, 'invalid auth token')
        return self.tokens[token]

    def admin(self, token):
        user = self.user_of(token)
        if user is not None and 'root' not in self.users[user]['roles']:
            raise GatewayError(7, 403, 'permission denied')

    def allowed(self, user, key, range_end, write):
        if user is None or 'root' in self.users[user]['roles']:
            return True
        for role in self.users[user]['roles']:
            for (pkey, pend), kind in self.roles.get(role, {}).items():
                if kind == ('write' if write else 'read') or kind == 'readwrite':
                    if (pkey, pend) == (b'\0', b'\0'):
                        return True
                    if not pend and not range_end and key == pkey:
                        return True
                    if pend and pkey <= key and (pend == b'\0' or (range_end or key + b'\0') <= pend):
                        return True
        return False

    def handle(self, path, body, token):
        if path == '/v3/auth/authenticate':
            if not self.enabled:
                raise GatewayError(9, 400, 'authentication is not enabled')
            user = self.users.get(body['name'])
            if not user or user['password'] is None or user['password'] != body['password']:
                raise GatewayError(3, 400, 'authentication failed, invalid user ID or password')
            token = f'tok-{len(self.tokens) + 1}'
            self.tokens[token] = body['name']
            return {'token': token}
        if path == '/v3/auth/status':
            return {'enabled': self.enabled} if self.enabled else {}
        if path.startswith('/v3/kv/'):
            user = self.user_of(token)
            key, range_end = unb64(body.get('key')), unb64(body.get('range_end'))
            if not self.allowed(user, key, range_end, path != '/v3/kv/range'):
                raise GatewayError(7, 403, 'permission denied')
            if path == '/v3/kv/put':
                self.kv[key] = unb64(body.get('value'))
                return {}
            if path == '/v3/kv/range':
                keys = [k for k in sorted(self.kv) if k == key or (range_end and key <= k < range_end)]
                return {'kvs': [{'key': b64(k), 'value': b64(self.kv[k])} for k in keys]} if keys else {}
            raise AssertionError(path)
        self.admin(token)
        if path == '/v3/auth/user/list':
            return {'users': sorted(self.users)} if self.users else {}
        if path == '/v3/auth/role/list':
            return {'roles': sorted(self.roles)} if self.roles else {}
        if path == '/v3/auth/user/get':
            if body['name'] not in self.users:
                raise GatewayError(9, 400, 'user name not found')
            roles = sorted(self.users[body['name']]['roles'])
            return {'roles': roles} if roles else {}
        if path == '/v3/auth/role/get':
            if body['role'] not in self.roles:
                raise GatewayError(9, 400, 'role name not found')
            perms = []
            for (key, range_end), kind in sorted(self.roles[body['role']].items()):
                perm = {'key': b64(key), 'range_end': b64(range_end)}
                if kind != 'read':  # like the gateway, which leaves out the default enum value
                    perm['permType'] = kind.upper()
                perms.append(perm)
            return {'perm': perms} if perms else {}
        if path == '/v3/auth/role/add':
            if body['name'] in self.roles:
                raise GatewayError(9, 400, 'role name already exists')
            self.roles[body['name']] = {}
            return {}
        if path == '/v3/auth/role/grant':
            perm = body['perm']
            self.roles[body['name']][(unb64(perm['key']), unb64(perm.get('range_end')))] = perm['permType'].lower()
            return {}
        if path == '/v3/auth/role/revoke':
            self.roles[body['role']].pop((unb64(body['key']), unb64(body.get('range_end'))))
            return {}
        if path == '/v3/auth/user/add':
            if body['name'] in self.users:
                raise GatewayError(9, 400, 'user name already exists')
            no_password = (body.get('options') or {}).get('no_password')
            self.users[body['name']] = {'password': None if no_password else body.get('password', ''),
                                        'roles': set()}
            return {}
        if path == '/v3/auth/user/changepw':
            self.users[body['name']]['password'] = body['password']
            return {}
        if path == '/v3/auth/user/grant':
            if body['role'] != 'root' and body['role'] not in self.roles:
                raise GatewayError(9, 400, 'role name not found')
            self.users[body['user']]['roles'].add(body['role'])
            return {}
        if path == '/v3/auth/user/revoke':
            self.users[body['name']]['roles'].discard(body['role'])
            return {}
        if path == '/v3/auth/enable':
            if 'root' not in self.users:
                raise GatewayError(9, 400, 'root user does not exist')
            if 'root' not in self.users['root']['roles']:
                raise GatewayError(9, 400, 'root user does not have root role')
            self.enabled = True
            return {}
        if path == '/v3/auth/disable':
            self.enabled = False
            return {}
        raise AssertionError(f'unexpected path {path}')


class GatewayError(Exception):
    def __init__(self, code, status, message):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


@pytest.fixture
def gateway(monkeypatch):
    fake = FakeGateway()
    monkeypatch.setattr(E, 'request', fake)
    return fake


ROLES = [
    {'name': 'kube-apiserver', 'permissions': [{'key': '', 'prefix': True, 'type': 'readwrite'}]},
    {'name': 'flannel', 'permissions': [{'key': '/coreos.com/network/', 'prefix': True, 'type': 'readwrite'}]},
]
USERS = [
    {'name': 'root', 'roles': ['root']},
    {'name': 'etcd-admin', 'roles': ['root']},
    {'name': 'kube-apiserver-etcd-client', 'roles': ['kube-apiserver']},
    {'name': 'flannel', 'roles': ['flannel']},
]


def client(user='etcd-admin', password='s3cret', endpoints=(URL,)):
    return E.EtcdClient(list(endpoints), user=user, password=password)


def run(gateway, roles=None, users=None, enabled=True, user='etcd-admin', password='s3cret', check=False,
        diff=True):
    roles = ROLES if roles is None else roles
    users = USERS if users is None else users
    return E.run_auth(client(user, password), roles, users, enabled, user, password, check, diff)


# ------------------------------------------------------------------ pure pieces
def test_permission_range():
    assert E.permission_range('/coreos.com/network/', True) == (b'/coreos.com/network/', b'/coreos.com/network0')
    assert E.permission_range('', True) == (b'\0', b'\0')
    assert E.permission_range('compact_rev_key', False) == (b'compact_rev_key', b'')
    assert E.permission_range('a\xff', True) == (b'a\xc3\xbf', b'a\xc3\xc0')  # UTF-8 bytes
    assert E.permission_range(b'\xff', True) == (b'\xff', b'\0')  # open-ended


def test_describe():
    assert E.describe_perm((b'\0', b'\0', 'readwrite')) == 'readwrite on every key'
    assert E.describe_perm((b'/a/', b'/a0', 'read')) == "read on keys under '/a/'"
    assert E.describe_perm((b'k', b'', 'write')) == "write on key 'k'"
    assert E.describe_perm((b'k', b'\0', 'read')) == "read on every key from 'k' on"
    assert E.describe_perm((b'a', b'c', 'read')) == "read on keys from 'a' to 'c'"
    assert E.describe_perm((b'', b'\0', 'readwrite')) == 'readwrite on every key'  # the root role's own
    assert E.describe_step(('user_add', 'flannel', False)) == 'add user flannel (certificate only)'
    assert E.describe_step(('user_add', 'etcd-admin', True)) == 'add user etcd-admin (logs in with the password)'
    assert E.describe_step(('enable',)) == 'enable authentication'
    assert E.describe_step(('user_password', 'x')) == 'set the password of user x'


def test_perm_from_gateway_reads_every_spelling():
    assert E.perm_from_gateway({'key': b64('/a/'), 'range_end': b64('/a0'), 'permType': 'READWRITE'}) == (
        b'/a/', b'/a0', 'readwrite')
    assert E.perm_from_gateway({'key': b64('k')}) == (b'k', b'', 'read')  # READ is the default, left out
    assert E.perm_from_gateway({'key': b64('k'), 'rangeEnd': b64('l'), 'perm_type': 1}) == (b'k', b'l', 'write')


@pytest.mark.parametrize(
    'roles, message',
    [
        ([{'name': ''}], 'roles[0].name: give the role a name'),
        ([{'name': 'root'}], 'roles[0].name: root is etcd\'s built-in role'),
        ([{'name': 'a'}, {'name': 'a'}], "roles[1].name: role 'a' is listed twice"),
        ([{'name': 'a', 'permissions': [{'key': None}]}], 'roles[0].permissions[0].key: give the key'),
        ([{'name': 'a', 'permissions': [{'key': ''}]}], 'only valid with prefix: true'),
        ([{'name': 'a', 'permissions': [{'key': 'k', 'type': 'all'}]}], "roles[0].permissions[0].type: 'all'"),
        ([{'name': 'a', 'permissions': [{'key': 'k'}, {'key': 'k', 'type': 'read'}]}], "has key 'k' twice"),
    ],
)
def test_desired_roles_errors(roles, message):
    with pytest.raises(E.AuthSpecError, match=None) as info:
        E.desired_roles(roles)
    assert message in str(info.value)


@pytest.mark.parametrize(
    'users, message',
    [
        ([{'name': None}], 'users[0].name: give the user a name'),
        ([{'name': 'a'}, {'name': 'a'}], "users[1].name: user 'a' is listed twice"),
        ([{'name': 'a', 'roles': ['']}], 'users[0].roles: role names are non-empty strings'),
    ],
)
def test_desired_users_errors(users, message):
    with pytest.raises(E.AuthSpecError) as info:
        E.desired_users(users)
    assert message in str(info.value)


EMPTY = {'enabled': False, 'roles': {}, 'users': {}, 'all_roles': set()}


def plan(current=None, roles=None, users=None, enabled=True, login='etcd-admin'):
    current = EMPTY if current is None else current
    roles = ROLES if roles is None else roles
    users = USERS if users is None else users
    return E.plan_auth(current, E.desired_roles(roles), E.desired_users(users), enabled, login)


def test_plan_from_nothing_grants_before_enabling():
    steps = plan()
    assert [E.describe_step(s) for s in steps] == [
        'add role flannel',
        'add role kube-apiserver',
        "grant readwrite on keys under '/coreos.com/network/' to role flannel",
        'grant readwrite on every key to role kube-apiserver',
        'add user etcd-admin (logs in with the password)',
        'add user flannel (certificate only)',
        'add user kube-apiserver-etcd-client (certificate only)',
        'add user root (certificate only)',
        'grant role root to user etcd-admin',
        'grant role flannel to user flannel',
        'grant role kube-apiserver to user kube-apiserver-etcd-client',
        'grant role root to user root',
        'enable authentication',
    ]


def test_plan_is_empty_when_everything_is_in_place():
    current = E.state_after(EMPTY, plan())
    current['all_roles'] = set(current['roles'])
    assert current['enabled'] is True
    assert plan(current) == []
    # leaving the switch alone
    assert plan(dict(current, enabled=False), enabled=None) == []


def test_plan_makes_roles_and_users_exact_and_grants_before_revoking():
    current = {
        'enabled': True,
        'roles': {'flannel': {(b'/coreos.com/network/', b'/coreos.com/network0'): 'read', (b'\0', b'\0'): 'readwrite'},
                  'kube-apiserver': {(b'\0', b'\0'): 'readwrite'}},
        'users': {'root': ['root'], 'etcd-admin': ['root'], 'kube-apiserver-etcd-client': ['kube-apiserver'],
                  'flannel': ['flannel', 'kube-apiserver']},
        'all_roles': {'flannel', 'kube-apiserver', 'other'},
    }
    steps = plan(current)
    assert [E.describe_step(s) for s in steps] == [
        "grant readwrite on keys under '/coreos.com/network/' to role flannel",  # read -> readwrite in place
        'revoke readwrite on every key from role flannel',
        'revoke role kube-apiserver from user flannel',
    ]


def test_plan_leaves_unlisted_roles_and_users_alone():
    current = {'enabled': False, 'roles': {}, 'users': {'someone': ['x']}, 'all_roles': {'x'}}
    steps = plan(current, roles=[], users=[{'name': 'root', 'roles': ['root']}, {'name': 'etcd-admin',
                                                                                 'roles': ['root']}])
    assert not any('someone' in E.describe_step(s) for s in steps)


def test_plan_sets_an_existing_login_users_password_before_enabling():
    current = {'enabled': False, 'roles': {}, 'users': {'root': ['root'], 'etcd-admin': ['root']},
               'all_roles': set()}
    steps = plan(current, roles=[], users=USERS[:2])
    assert steps == [('user_password', 'etcd-admin'), ('enable',)]
    # not again once authentication is on (the login proved the password)
    assert plan(dict(current, enabled=True), roles=[], users=USERS[:2]) == []


def test_plan_disable():
    current = {'enabled': True, 'roles': {}, 'users': {'root': ['root']}, 'all_roles': set()}
    assert plan(current, roles=[], users=[], enabled=False) == [('disable',)]


@pytest.mark.parametrize(
    'users, login, message',
    [
        ([{'name': 'etcd-admin', 'roles': ['root']}], 'etcd-admin', 'user root exists with role root'),
        ([{'name': 'root', 'roles': []}, {'name': 'etcd-admin', 'roles': ['root']}], 'etcd-admin',
         'user root exists with role root'),
        (USERS, None, 'give the user (and password)'),
        ([{'name': 'root', 'roles': ['root']}], 'etcd-admin', "'etcd-admin' must be listed in users with role root"),
        ([{'name': 'root', 'roles': ['root']}, {'name': 'etcd-admin', 'roles': ['flannel']}], 'etcd-admin',
         "'etcd-admin' must be listed in users with role root"),
        ([{'name': 'root', 'roles': ['root']}, {'name': 'x', 'roles': ['nope']}], 'root',
         "user 'x' needs role 'nope', which is neither listed in roles nor in etcd"),
    ],
)
def test_plan_refuses_what_cannot_work(users, login, message):
    with pytest.raises(E.AuthSpecError) as info:
        plan(users=users, login=login)
    assert message in str(info.value)


def test_plan_accepts_roots_existing_root_role_and_existing_roles():
    current = {'enabled': False, 'roles': {}, 'users': {'root': ['root']}, 'all_roles': {'legacy'}}
    steps = plan(current, roles=[], users=[{'name': 'etcd-admin', 'roles': ['root']},
                                           {'name': 'old', 'roles': ['legacy']}])
    assert steps[-1] == ('enable',)


def test_state_text():
    after = E.state_after(EMPTY, plan())
    text = E.auth_state_text(after, ['flannel', 'kube-apiserver'], ['flannel', 'etcd-admin'])
    assert text == (
        'authentication: enabled\n'
        'role flannel:\n'
        "  readwrite on keys under '/coreos.com/network/'\n"
        'role kube-apiserver:\n'
        '  readwrite on every key\n'
        'user etcd-admin: root\n'
        'user flannel: flannel\n'
        'user root: root\n'
    )
    assert E.auth_state_text(EMPTY, ['flannel'], ['flannel']) == 'authentication: disabled\n'


# ------------------------------------------------------------------ the client's login
def test_client_without_auth_sends_no_token(gateway):
    c = client()
    c.put('/a', 'b')
    assert c.get('/a') == 'b'
    assert c.auth_enabled is False
    assert [r[1:] for r in gateway.requests] == [
        ('/v3/auth/authenticate', None), ('/v3/kv/put', None), ('/v3/kv/range', None)]


def test_client_logs_in_once_and_sends_the_token(gateway):
    run(gateway)
    gateway.requests.clear()
    c = client()
    c.put('/a', 'b')
    assert c.get('/a') == 'b'
    assert c.auth_enabled is True
    assert [r[1:] for r in gateway.requests] == [
        ('/v3/auth/authenticate', None), ('/v3/kv/put', 'tok-1'), ('/v3/kv/range', 'tok-1')]


def test_client_logs_in_again_when_the_token_is_stale(gateway):
    run(gateway)
    c = client()
    c.put('/a', 'b')
    gateway.tokens.clear()  # expired (etcd's simple tokens live 5 minutes) or issued before an auth change
    assert c.get('/a') == 'b'
    assert [r[1] for r in gateway.requests[-3:]] == ['/v3/kv/range', '/v3/auth/authenticate', '/v3/kv/range']


def test_client_logs_in_when_authentication_went_on_after_its_login(gateway):
    c = client()
    c.put('/a', 'b')  # authentication off: no token
    run(gateway)
    assert c.get('/a') == 'b'
    assert [r[1:] for r in gateway.requests[-3:]] == [
        ('/v3/kv/range', None), ('/v3/auth/authenticate', None), ('/v3/kv/range', 'tok-1')]


def test_client_login_refused(gateway):
    run(gateway)
    with pytest.raises(E.EtcdError) as info:
        client(password='wrong').get('/a')
    assert info.value.kind == 'auth'
    assert "refused the login of user 'etcd-admin'" in str(info.value) and 'password is wrong' in str(info.value)
    with pytest.raises(E.EtcdError) as info:
        client(user='flannel').get('/a')  # a certificate-only user has no password to log in with
    assert 'certificate-only user' in str(info.value)


def test_client_without_credentials_once_auth_is_on(gateway):
    run(gateway)
    with pytest.raises(E.EtcdError) as info:
        client(user=None, password=None).get('/a')
    assert info.value.kind == 'auth'
    assert 'need a user and password' in str(info.value) and 'permission denied' in str(info.value)
    # a user without a password does not log in either (etcd_auth in check mode before the first run)
    assert client(user='etcd-admin', password='').user is None


def test_client_permission_denied_names_the_user(gateway):
    run(gateway)
    gateway.users['reader'] = {'password': 'pw', 'roles': {'flannel'}}
    c = client(user='reader', password='pw')
    c.put('/coreos.com/network/config', '{}')
    with pytest.raises(E.EtcdError) as info:
        c.get('/registry/secrets/x')
    assert info.value.kind == 'auth' and "user 'reader'" in str(info.value) and 'permission denied' in str(info.value)


def test_client_logs_in_on_the_endpoint_that_answers(gateway):
    dead, live = 'http://dead.test:2379', URL
    gateway.down.add(dead)
    run(gateway)
    c = client(endpoints=(dead, live))
    c.put('/x', 'y')
    assert c.endpoint_url == live and list(c.tokens) == [live]


# ------------------------------------------------------------------ run_auth end to end (fake etcd)
def test_run_auth_switches_on_then_is_idempotent(gateway):
    check = run(gateway, check=True)
    assert check['changed'] and check['enabled'] is True and check['previously_enabled'] is False
    assert gateway.users == {} and gateway.enabled is False  # check mode wrote nothing
    assert check['diff']['before'] == 'authentication: disabled\n'
    assert 'authentication: enabled' in check['diff']['after']

    first = run(gateway)
    assert first['actions'] == check['actions'] and first['changed']
    assert gateway.enabled and gateway.users['etcd-admin']['password'] == 's3cret'
    assert gateway.users['flannel']['password'] is None  # certificate only
    assert gateway.users['kube-apiserver-etcd-client']['roles'] == {'kube-apiserver'}

    again = run(gateway)
    assert again['changed'] is False and again['actions'] == [] and again['enabled'] is True
    assert again['diff']['before'] == again['diff']['after']
    assert run(gateway, check=True)['changed'] is False


def test_run_auth_repairs_drift(gateway):
    run(gateway)
    token = client()._login(E.Endpoint(URL, 2379))
    gateway.handle('/v3/auth/user/grant', {'user': 'flannel', 'role': 'kube-apiserver'}, token)
    gateway.handle('/v3/auth/role/grant', {'name': 'flannel', 'perm': {
        'key': b64('/registry/'), 'range_end': b64('/registry0'), 'permType': 'READ'}}, token)
    result = run(gateway)
    assert result['actions'] == ["revoke read on keys under '/registry/' from role flannel",
                                 'revoke role kube-apiserver from user flannel']
    assert run(gateway)['changed'] is False


def test_run_auth_refuses_before_changing_anything(gateway):
    with pytest.raises(E.AuthSpecError):
        run(gateway, users=USERS[1:])  # no root user
    assert gateway.users == {} and gateway.roles == {}
    with pytest.raises(E.AuthSpecError) as info:
        run(gateway, password='')
    assert 'must not be empty' in str(info.value)
    assert gateway.users == {}
    # check mode can still show the plan without the password
    assert run(gateway, password='', check=True)['changed']


def test_run_auth_recovers_a_half_done_switch(gateway):
    """A run that stopped after creating the users: the next one sets the password and enables."""
    for step in plan()[:-1]:
        E.apply_step(client(), step, 'old-password')
    result = run(gateway)
    assert result['actions'] == ['set the password of user etcd-admin', 'enable authentication']
    assert gateway.users['etcd-admin']['password'] == 's3cret'
    assert run(gateway)['changed'] is False


def test_flannel_user_is_limited_to_its_prefix(gateway):
    run(gateway)
    assert gateway.allowed('flannel', b'/coreos.com/network/config', b'', write=True)
    assert gateway.allowed('flannel', b'/coreos.com/network/subnets/', b'/coreos.com/network/subnets0', write=False)
    assert not gateway.allowed('flannel', b'/registry/secrets/default/x', b'', write=False)
    assert not gateway.allowed('flannel', b'/coreos.com/networkX', b'', write=False)
    assert gateway.allowed('kube-apiserver-etcd-client', b'/registry/secrets/default/x', b'', write=True)
    assert gateway.allowed('kube-apiserver-etcd-client', b'compact_rev_key', b'', write=True)


# ------------------------------------------------------------------ the module
def module_args(**extra):
    args = {'endpoints': [URL], 'user': 'etcd-admin', 'password': 's3cret', 'roles': ROLES, 'users': USERS,
            'enabled': True}
    args.update(extra)
    return args


def test_module(gateway, run_module):
    result = run_module('etcd_auth', module_args(), check=True, diff=True)
    assert result['rc'] == 0 and result['changed'] and 'diff' in result and gateway.users == {}
    result = run_module('etcd_auth', module_args())
    assert result['rc'] == 0 and result['changed'] and result['endpoint'] == URL
    assert 's3cret' not in json.dumps(result)
    result = run_module('etcd_auth', module_args())
    assert result['rc'] == 0 and result['changed'] is False


def test_module_defaults_of_permissions(gateway, run_module):
    roles = [{'name': 'flannel', 'permissions': [{'key': '/coreos.com/network/', 'prefix': True}]}]
    result = run_module('etcd_auth', module_args(roles=roles, users=USERS[:2] + USERS[3:]))
    assert result['rc'] == 0, result
    assert gateway.roles['flannel'] == {(b'/coreos.com/network/', b'/coreos.com/network0'): 'readwrite'}


def test_module_errors(gateway, run_module):
    result = run_module('etcd_auth', module_args(user=None))
    assert result['failed'] and 'user' in result['msg']
    result = run_module('etcd_auth', module_args(users=USERS[1:]))
    assert result['failed'] and 'user root exists with role root' in result['msg']
    result = run_module('etcd_auth', module_args(timeout=0))
    assert result['failed'] and 'timeout must be greater than 0' in result['msg']
    result = run_module('etcd_auth', module_args(roles=[{'name': 'x', 'permissions': [{'key': 'k', 'type': 'all'}]}]))
    assert result['failed'] and 'type' in result['msg']
    gateway.down.add(URL)
    result = run_module('etcd_auth', module_args())
    assert result['failed'] and result['error_kind'] == 'refused'


# ------------------------------------------------------------------ the roles' wiring
def load(path):
    with open(os.path.join(REPO, path)) as handle:
        return yaml.safe_load(handle)


def test_etcd_users_match_the_certificates_the_pki_role_issues():
    """Each etcd user the etcd role creates for a client certificate is that certificate's common name, and
    the collection's own gateway certificate has none (etcd's gateway refuses one that has)."""
    certs = {c['name']: c for c in load('roles/pki/vars/main.yml')['_pki_static_certificates']}
    etcd = load('roles/etcd/vars/main.yml')
    assert certs['etcd-client-admin']['common_name'] == etcd['_etcd_admin_user']
    assert certs['etcd-client-gateway']['common_name'] == '' and certs['etcd-client-gateway']['organization']
    assert certs['etcd-client-gateway']['ca'] == 'etcd-ca'
    assert "state_path('cert', 'etcd-client-gateway')" in etcd['_etcd_gateway_cert_file']
    assert "state_path('key', 'etcd-client-gateway')" in etcd['_etcd_gateway_key_file']
    users = {u['name']: u['roles'] for u in etcd['_etcd_auth_users']}
    assert users == {
        'root': ['root'],
        '{{ _etcd_admin_user }}': ['root'],
        certs['kube-apiserver-etcd-client']['common_name']: ['root'],  # etcd 3.6: only root compacts
        certs['etcd-client-flannel']['common_name']: ['flannel'],
    }
    roles = {r['name']: r['permissions'] for r in etcd['_etcd_auth_roles']}
    assert list(roles) == ['flannel']
    assert [(p['prefix'], p['type']) for p in roles['flannel']] == [(True, 'readwrite')]
    assert 'cluster_flannel_etcd_prefix' in roles['flannel'][0]['key']


def test_collection_talks_to_etcd_with_the_gateway_certificate_and_a_login():
    etcd_tasks = load('roles/etcd/tasks/main.yml')
    block = next(t for t in etcd_tasks if 'block' in t)['block']
    auth = next(t for t in block if 'hardway.kubernetes.etcd_auth' in t)['hardway.kubernetes.etcd_auth']
    assert auth['client_cert'] == '{{ _etcd_gateway_cert_file }}'
    assert auth['client_key'] == '{{ _etcd_gateway_key_file }}'
    assert auth['user'] == '{{ _etcd_admin_user }}' and auth['enabled'] == '{{ etcd_auth_enabled }}'
    member = next(t for t in etcd_tasks if 'hardway.kubernetes.etcd_member' in t)['hardway.kubernetes.etcd_member']
    assert member['client_cert'] == '{{ _etcd_gateway_cert_file }}' and member['user'] == '{{ _etcd_admin_user }}'
    flannel = [t['hardway.kubernetes.flannel_network'] for path in ('network', 'main')
               for t in load(f'roles/flannel/tasks/{path}.yml') if 'hardway.kubernetes.flannel_network' in t]
    assert len(flannel) == 2  # the writer and each node's wait
    for network in flannel:
        assert "state_path('cert', 'etcd-client-gateway')" in network['client_cert']
        assert network['user'] == 'etcd-admin' and "state_path('etcd_admin_password')" in network['password_file']
