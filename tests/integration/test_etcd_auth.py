"""hardway.kubernetes.etcd_auth against a real etcd of its own (authentication gets turned on, so not the
shared one): users, roles, the switch, idempotence, and what each certificate may do afterwards, seen by
etcdctl over gRPC, where etcd takes the certificate's common name as the user. The modules themselves go
through etcd's JSON gateway, which (with authentication on) only takes a certificate without a common name
plus a login."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
import time

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get('HARDWAY_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'hardway')
PASSWORD = 'integration-password'
PREFIX = '/coreos.com/network/'

# what roles/etcd sets up, plus a role limited to reading, for a user whose scope is checked too
ROLES = [
    {'name': 'flannel', 'permissions': [{'key': PREFIX, 'prefix': True, 'type': 'readwrite'}]},
    {'name': 'reader', 'permissions': [{'key': '/registry/', 'prefix': True, 'type': 'read'},
                                       {'key': 'compact_rev_key', 'type': 'readwrite'}]},
]
USERS = [
    {'name': 'root', 'roles': ['root']},
    {'name': 'etcd-admin', 'roles': ['root']},
    {'name': 'kube-apiserver-etcd-client', 'roles': ['root']},
    {'name': 'flannel', 'roles': ['flannel']},
    {'name': 'reader', 'roles': ['reader']},
]
# client certificate name -> common name (= etcd user)
CLIENTS = {'admin': 'etcd-admin', 'apiserver': 'kube-apiserver-etcd-client', 'flannel': 'flannel',
           'reader': 'reader', 'nobody': 'nobody'}


def etcd_tarball():
    with open(os.path.join(REPO, 'roles', 'cluster', 'defaults', 'main', 'versions.yml')) as handle:
        version = str(yaml.safe_load(handle)['cluster_default_versions']['etcd'])
    path = os.path.join(CACHE, 'mirror', 'github.com', 'etcd-io', 'etcd', 'releases', 'download', f'v{version}',
                        f'etcd-v{version}-linux-amd64.tar.gz')
    if not os.path.exists(path):
        pytest.fail(f'etcd {version} is missing: {path} does not exist. Build the offline mirror first '
                    '(python3 tests/testbed/mirror.py build).', pytrace=False)
    return path, version


@pytest.fixture(scope='module')
def binaries(tmp_path_factory):
    tarball, version = etcd_tarball()
    target = tmp_path_factory.mktemp('etcd-auth-bin')
    with tarfile.open(tarball) as archive:
        for name in ('etcd', 'etcdctl'):
            member = archive.getmember(f'etcd-v{version}-linux-amd64/{name}')
            with archive.extractfile(member) as src, open(target / name, 'wb') as dst:
                dst.write(src.read())
            os.chmod(target / name, 0o755)
    return {name: str(target / name) for name in ('etcd', 'etcdctl')}


@pytest.fixture(scope='module')
def auth_pki(module, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('etcd-auth-pki'))
    certificates = [{'name': 'server', 'ca': 'ca', 'common_name': 'etcd', 'usage': ['client', 'server'],
                     'dns_names': ['localhost'], 'ip_addresses': ['127.0.0.1']}]
    certificates += [{'name': name, 'ca': 'ca', 'common_name': cn} for name, cn in CLIENTS.items()]
    # what the modules present to the gateway: no common name
    certificates.append({'name': 'gateway', 'ca': 'ca', 'common_name': '', 'organization': ['gateway']})
    result = module('pki', {'path': path, 'authorities': [{'name': 'ca', 'common_name': 'etcd auth CA'}],
                            'certificates': certificates})
    assert result['rc'] == 0, result
    return path


@pytest.fixture(scope='module')
def etcd_auth_server(binaries, auth_pki, unused_port, tmp_path_factory):
    """An etcd of our own, started with --client-cert-auth like the collection's; stopped at the end."""
    work = tmp_path_factory.mktemp('etcd-auth')
    port, peer_port = unused_port(), unused_port()
    url, peer = f'https://127.0.0.1:{port}', f'http://127.0.0.1:{peer_port}'
    p = auth_pki
    argv = [binaries['etcd'], '--name', 'auth', '--data-dir', str(work / 'data'),
            '--listen-client-urls', url, '--advertise-client-urls', url,
            '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', f'auth={peer}',
            '--cert-file', f'{p}/server.pem', '--key-file', f'{p}/server-key.pem',
            '--trusted-ca-file', f'{p}/ca.pem', '--client-cert-auth', '--log-level', 'warn']
    log = open(work / 'etcd.log', 'wb')
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = {'url': url, 'proc': proc, 'log': str(work / 'etcd.log')}
    try:
        deadline = time.monotonic() + 30
        while etcdctl(binaries, server, auth_pki, 'admin', 'endpoint', 'health').returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(server['log'], errors='replace') as handle:
                    pytest.fail(f'etcd did not start:\n{handle.read()[-3000:]}', pytrace=False)
            time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def etcdctl(binaries, server, pki, client, *args, stdin=None):
    """etcdctl over gRPC with the named client certificate: etcd's user is its common name."""
    argv = [binaries['etcdctl'], '--endpoints', server['url'], '--cacert', f'{pki}/ca.pem',
            '--cert', f'{pki}/{client}.pem', '--key', f'{pki}/{client}-key.pem', '--command-timeout', '10s', *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope='module')
def ctl(binaries, etcd_auth_server, auth_pki):
    """ctl(client, *args) -> CompletedProcess of etcdctl with that client's certificate."""
    return lambda client, *args, stdin=None: etcdctl(binaries, etcd_auth_server, auth_pki, client, *args,
                                                     stdin=stdin)


def auth_args(server, pki, **extra):
    args = {'endpoints': [server['url']], 'ca_cert': f'{pki}/ca.pem', 'client_cert': f'{pki}/gateway.pem',
            'client_key': f'{pki}/gateway-key.pem', 'user': 'etcd-admin', 'password': PASSWORD,
            'roles': ROLES, 'users': USERS, 'enabled': True}
    args.update(extra)
    return args


@pytest.fixture(scope='module')
def switched(module, etcd_auth_server, auth_pki, ctl):
    """The etcd with some data written before the switch, then etcd_auth run (idempotent)."""
    for key, value in (('/registry/secrets/default/s', 'secret'), (f'{PREFIX}config', '{"Network":"10.0.0.0/16"}')):
        if ctl('apiserver', 'get', key, '--print-value-only').stdout.strip() != value:
            put = ctl('apiserver', 'put', key, value)
            assert put.returncode == 0, put.stderr
    result = module('etcd_auth', auth_args(etcd_auth_server, auth_pki))
    assert result['rc'] == 0, result
    return result


def test_switch_on_in_check_mode_changes_nothing(module, etcd_auth_server, auth_pki, ctl):
    result = module('etcd_auth', auth_args(etcd_auth_server, auth_pki), check=True, diff=True)
    assert result['rc'] == 0 and result['changed'], result
    assert result['actions'][-1] == 'enable authentication' and result['enabled'] is True
    assert result['diff']['before'] == 'authentication: disabled\n'
    assert 'user flannel: flannel' in result['diff']['after']
    assert 'Authentication Status: false' in ctl('nobody', 'auth', 'status').stdout
    assert ctl('admin', 'user', 'list').stdout.strip() == ''


def test_switch_on_then_idempotent(module, switched, etcd_auth_server, auth_pki, ctl):
    assert switched['changed'] and switched['previously_enabled'] is False and switched['enabled'] is True
    assert switched['actions'] == [
        'add role flannel',
        'add role reader',
        "grant readwrite on keys under '/coreos.com/network/' to role flannel",
        "grant read on keys under '/registry/' to role reader",
        "grant readwrite on key 'compact_rev_key' to role reader",
        'add user etcd-admin (logs in with the password)',
        'add user flannel (certificate only)',
        'add user kube-apiserver-etcd-client (certificate only)',
        'add user reader (certificate only)',
        'add user root (certificate only)',
        'grant role root to user etcd-admin',
        'grant role flannel to user flannel',
        'grant role root to user kube-apiserver-etcd-client',
        'grant role reader to user reader',
        'grant role root to user root',
        'enable authentication',
    ]
    assert 'Authentication Status: true' in ctl('admin', 'auth', 'status').stdout
    # only root users may ask (etcd 3.6)
    assert 'permission denied' in ctl('flannel', 'auth', 'status').stderr
    again = module('etcd_auth', auth_args(etcd_auth_server, auth_pki), diff=True)
    assert again['rc'] == 0 and again['changed'] is False and again['actions'] == [], again
    assert again['previously_enabled'] is True
    assert module('etcd_auth', auth_args(etcd_auth_server, auth_pki), check=True)['changed'] is False


def test_flannel_certificate_only_reaches_its_prefix(switched, ctl):
    denied = ctl('flannel', 'get', '/registry/', '--prefix', '--keys-only')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr, denied
    denied = ctl('flannel', 'get', '/registry/secrets/default/s')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr
    denied = ctl('flannel', 'put', '/registry/pods/default/evil', 'x')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr
    denied = ctl('flannel', 'get', '/coreos.com/networkX')  # just outside the prefix
    assert denied.returncode != 0 and 'permission denied' in denied.stderr
    config = ctl('flannel', 'get', f'{PREFIX}config', '--print-value-only')
    assert config.returncode == 0 and json.loads(config.stdout) == {'Network': '10.0.0.0/16'}, config
    # what flanneld does with its subnet lease: a lease, a put under it, a prefix read, a revoke
    lease = ctl('flannel', 'lease', 'grant', '60')
    assert lease.returncode == 0, lease.stderr
    lease_id = lease.stdout.split()[1]
    put = ctl('flannel', 'put', f'{PREFIX}subnets/10.0.5.0-24', '{"PublicIP":"10.1.1.1"}', '--lease', lease_id)
    assert put.returncode == 0, put.stderr
    leases = ctl('flannel', 'get', f'{PREFIX}subnets/', '--prefix', '--keys-only')
    assert leases.returncode == 0 and f'{PREFIX}subnets/10.0.5.0-24' in leases.stdout
    assert ctl('flannel', 'lease', 'revoke', lease_id).returncode == 0
    # and no auth management
    denied = ctl('flannel', 'user', 'list')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr


def test_compaction_needs_root(switched, ctl):
    """Why the API server's user is root: etcd 3.6 lets only root users compact, which kube-apiserver
    does every 5 minutes (after writing compact_rev_key, outside /registry)."""
    assert ctl('reader', 'put', 'compact_rev_key', '1').returncode == 0
    revision = json.loads(ctl('reader', 'get', 'compact_rev_key', '-w', 'json').stdout)['header']['revision']
    denied = ctl('reader', 'compaction', str(revision))
    assert denied.returncode != 0 and 'permission denied' in denied.stderr, denied
    compact = ctl('apiserver', 'compaction', str(revision))
    assert compact.returncode == 0, compact.stderr
    secret = ctl('apiserver', 'get', '/registry/secrets/default/s', '--print-value-only')
    assert secret.returncode == 0 and secret.stdout.strip() == 'secret', secret
    assert ctl('apiserver', 'endpoint', 'status').returncode == 0  # Status, for the storage size metric


def test_read_only_role(switched, ctl):
    assert ctl('reader', 'get', '/registry/secrets/default/s').returncode == 0
    denied = ctl('reader', 'put', '/registry/secrets/default/s', 'x')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr
    denied = ctl('reader', 'get', f'{PREFIX}config')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr


def test_unknown_certificate_name_gets_nothing(switched, ctl):
    denied = ctl('nobody', 'get', f'{PREFIX}config')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr, denied
    gateway = ctl('gateway', 'get', f'{PREFIX}config')  # no common name, no login: no user at all
    assert gateway.returncode != 0, gateway


def test_admin_certificate_is_root_over_grpc(switched, ctl):
    users = ctl('admin', 'user', 'list')
    assert users.returncode == 0 and set(users.stdout.split()) == {u['name'] for u in USERS}, users


def test_gateway_needs_a_login(switched, module, etcd_auth_server, auth_pki):
    """The JSON gateway refuses certificates with a common name (even the root one) and, with the certificate
    without one, requests without a login; with the password, etcd_key works as the root user etcd-admin."""
    base = {'endpoints': [etcd_auth_server['url']], 'ca_cert': f'{auth_pki}/ca.pem',
            'client_cert': f'{auth_pki}/gateway.pem', 'client_key': f'{auth_pki}/gateway-key.pem',
            'key': f'{PREFIX}config', 'state': 'get'}
    result = module('etcd_key', base)
    assert result['failed'] and result['error_kind'] == 'auth', result
    assert 'need a user and password' in result['msg']
    for name in ('admin', 'flannel'):
        result = module('etcd_key', dict(base, client_cert=f'{auth_pki}/{name}.pem',
                                         client_key=f'{auth_pki}/{name}-key.pem', user='etcd-admin',
                                         password=PASSWORD))
        assert result['failed'] and result['error_kind'] == 'auth', result
        assert 'only takes client certificates without a common name' in result['msg']
    result = module('etcd_key', dict(base, user='etcd-admin', password=PASSWORD))
    assert result['rc'] == 0 and result['value_json'] == {'Network': '10.0.0.0/16'}, result
    result = module('etcd_key', dict(base, user='etcd-admin', password=PASSWORD, key='/registry/x',
                                     state='present', value='y'))
    assert result['rc'] == 0 and result['changed'], result
    result = module('etcd_key', dict(base, user='etcd-admin', password='wrong'))
    assert result['failed'] and result['error_kind'] == 'auth'
    assert "refused the login of user 'etcd-admin'" in result['msg']
    # a certificate-only user cannot log in at all
    result = module('etcd_key', dict(base, user='flannel', password='anything'))
    assert result['failed'] and 'certificate-only user' in result['msg']


def test_drift_is_repaired(switched, module, etcd_auth_server, auth_pki, ctl):
    assert ctl('admin', 'role', 'grant-permission', 'flannel', 'read', '/registry/', '--prefix').returncode == 0
    assert ctl('admin', 'user', 'grant-role', 'flannel', 'reader').returncode == 0
    assert ctl('flannel', 'get', '/registry/secrets/default/s').returncode == 0  # the drift lets it in
    result = module('etcd_auth', auth_args(etcd_auth_server, auth_pki), diff=True)
    assert result['rc'] == 0 and result['changed'], result
    assert result['actions'] == ["revoke read on keys under '/registry/' from role flannel",
                                 'revoke role reader from user flannel']
    assert "'/coreos.com/network/'\n  read on keys under '/registry/'\nrole reader" in result['diff']['before']
    assert "role flannel:\n  readwrite on keys under '/coreos.com/network/'\nrole reader" in result['diff']['after']
    denied = ctl('flannel', 'get', '/registry/secrets/default/s')
    assert denied.returncode != 0 and 'permission denied' in denied.stderr
    assert module('etcd_auth', auth_args(etcd_auth_server, auth_pki))['changed'] is False


def test_refusals_change_nothing(switched, module, etcd_auth_server, auth_pki, ctl):
    before = ctl('admin', 'user', 'list').stdout
    result = module('etcd_auth', auth_args(etcd_auth_server, auth_pki, users=USERS[2:] + [
        {'name': 'new', 'roles': ['missing-role']}]))
    assert result['failed'] and "needs role 'missing-role'" in result['msg'], result
    result = module('etcd_auth', auth_args(etcd_auth_server, auth_pki, password='wrong'))
    assert result['failed'] and result['error_kind'] == 'auth'
    assert ctl('admin', 'user', 'list').stdout == before


def test_gateway_range_with_a_token(switched, etcd_auth_server, auth_pki):
    """What the module sends, by hand: authenticate, then the token in the Authorization header."""
    import http.client
    import ssl

    port = int(etcd_auth_server['url'].rsplit(':', 1)[1])

    def post(client, path, body, headers=None):
        ctx = ssl.create_default_context(cafile=f'{auth_pki}/ca.pem')
        ctx.load_cert_chain(f'{auth_pki}/{client}.pem', f'{auth_pki}/{client}-key.pem')
        conn = http.client.HTTPSConnection('127.0.0.1', port, context=ctx, timeout=10)
        conn.request('POST', path, json.dumps(body), dict({'Content-Type': 'application/json'}, **(headers or {})))
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, {'message': text}

    key = base64.b64encode(b'/registry/secrets/default/s').decode()
    status, body = post('flannel', '/v3/kv/range', {'key': key})
    assert status == 400 and 'CommonName of client' in body['message'], body
    status, body = post('gateway', '/v3/kv/range', {'key': key})  # no login
    assert status == 403 and 'permission denied' in body['message'], body
    status, body = post('gateway', '/v3/auth/authenticate', {'name': 'etcd-admin', 'password': PASSWORD})
    assert status == 200, body
    status, body = post('gateway', '/v3/kv/range', {'key': key}, {'Authorization': body['token']})
    assert status == 200 and base64.b64decode(body['kvs'][0]['value']) == b'secret'


def test_switch_off_and_on_again(switched, module, etcd_auth_server, auth_pki, ctl):
    off = module('etcd_auth', auth_args(etcd_auth_server, auth_pki, enabled=False))
    assert off['rc'] == 0 and off['actions'] == ['disable authentication'], off
    assert ctl('flannel', 'get', '/registry/secrets/default/s').returncode == 0  # everyone sees everything
    on = module('etcd_auth', auth_args(etcd_auth_server, auth_pki))
    # the login user existed already: its password is set again before authentication goes on
    assert on['rc'] == 0 and on['actions'] == ['set the password of user etcd-admin', 'enable authentication'], on
    assert ctl('flannel', 'get', '/registry/secrets/default/s').returncode != 0
    assert module('etcd_auth', auth_args(etcd_auth_server, auth_pki))['changed'] is False
