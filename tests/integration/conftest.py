"""Real etcd and kube-apiserver processes on 127.0.0.1 for the module integration tests.

The binaries come from the test bed's offline mirror ($HARDWAY_CACHE/mirror, default
~/.cache/hardway/mirror) at the versions pinned in roles/cluster/defaults/main/versions.yml.
A missing binary fails the tests (it does not skip them): build the mirror first.
Certificates are made by the collection's own pki module.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import time

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The helpers shared with the unit tests (running modules through the ansible CLI) live there.
sys.path.insert(0, os.path.join(REPO, 'tests', 'unit'))

from hardway_testlib import ansible_cli, collections_path, run_adhoc  # noqa: E402

CACHE = os.environ.get('HARDWAY_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'hardway')
MIRROR = os.path.join(CACHE, 'mirror')
MODULES = 'ansible_collections.hardway.kubernetes.plugins.modules.'


def versions():
    with open(os.path.join(REPO, 'roles', 'cluster', 'defaults', 'main', 'versions.yml')) as handle:
        return {k: str(v) for k, v in yaml.safe_load(handle)['cluster_default_versions'].items()}


def need(path, what):
    if not os.path.exists(path):
        pytest.fail(
            f'{what} is missing: {path} does not exist. Build the offline mirror first '
            f'(python3 tests/testbed/mirror.py build), as the README\'s test command does.',
            pytrace=False,
        )
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tail(path, lines=40):
    try:
        with open(path, errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError:
        return ''


# --------------------------------------------------------------------------
# Running the modules


def module_command(name, args, check=False, diff=False):
    """(argv, env, stdin) to run a module the way Ansible runs it on a host: a fresh Python, JSON in."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([collections_path()] + [p for p in sys.path if p])
    payload = json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_check_mode=check, _ansible_diff=diff)})
    return [sys.executable, '-m', MODULES + name], env, payload


def parse_result(name, proc_stdout, proc_stderr, returncode):
    try:
        result = json.loads(proc_stdout)
    except ValueError:
        raise AssertionError(
            f'module {name} printed no JSON (exit {returncode}): {proc_stdout!r} {proc_stderr!r}'
        ) from None
    result['rc'] = returncode
    return result


def run_module(name, args, check=False, diff=False, timeout=120):
    argv, env, payload = module_command(name, args, check, diff)
    proc = subprocess.run(
        argv, input=payload, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return parse_result(name, proc.stdout, proc.stderr, proc.returncode)


class Background:
    """A module run started in the background (subprocess.Popen); ``result()`` waits for it."""

    def __init__(self, name, args, check=False):
        self.name = name
        argv, env, payload = module_command(name, args, check)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        self.proc.stdin.write(payload)
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not touch it again

    def running(self):
        return self.proc.poll() is None

    def result(self, timeout=120):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        return parse_result(self.name, out, err, self.proc.returncode)


def oldest_python():
    """The oldest working Python 3.8+ on this machine (managed hosts may be that old), else this one."""
    pyenv = os.path.join(os.path.expanduser('~'), '.pyenv', 'versions')
    for minor in range(8, 14):
        candidates = []
        if os.path.isdir(pyenv):
            candidates += [
                os.path.join(pyenv, name, 'bin', 'python')
                for name in sorted(os.listdir(pyenv))
                if name.startswith(f'3.{minor}.')
            ]
        candidates += [f'/usr/bin/python3.{minor}', f'/usr/local/bin/python3.{minor}']
        for candidate in candidates:
            if not os.path.exists(candidate):
                continue
            probe = subprocess.run(
                [candidate, '-c', 'import sys, ssl; print(sys.version_info[1])'],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0 and probe.stdout.strip() == str(minor):
                return candidate
    return sys.executable


@pytest.fixture(scope='session')
def old_python():
    """Path of the oldest Python 3.8+ here, for running host-side modules as on an old managed host."""
    return oldest_python()


@pytest.fixture(scope='session')
def ansible_adhoc(tmp_path_factory):
    """ansible_adhoc(module, args, python=None, check=False) -> (rc, result): the ansible command line
    runs hardway.kubernetes.<module> on localhost, as on a managed host with that Python."""
    assert ansible_cli(), 'the ansible command line is not installed'
    home = tmp_path_factory.mktemp('ansible-home')

    def run(name, args, python=None, check=False):
        # no PYTHONPATH: the module must bring everything it needs
        rc, result, _output = run_adhoc(name, args, home, check=check, python=python, pythonpath=False)
        return rc, result

    return run


@pytest.fixture(scope='session')
def module():
    """Run a module: module(name, args, check=False, diff=False) -> result dict (with rc)."""
    return run_module


@pytest.fixture(scope='session')
def background_module():
    started = []

    def start(name, args, check=False):
        run = Background(name, args, check)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.running():
            run.proc.kill()
            run.proc.communicate()


# --------------------------------------------------------------------------
# Certificates


@pytest.fixture(scope='session')
def pki(tmp_path_factory):
    """Directory of certificates made by hardway.kubernetes.pki."""
    path = str(tmp_path_factory.mktemp('pki'))
    local = ['localhost']
    result = run_module(
        'pki',
        {
            'path': path,
            'authorities': [
                {'name': 'ca', 'common_name': 'Integration CA'},
                {'name': 'other-ca', 'common_name': 'Integration CA'},
            ],
            'certificates': [
                # etcd's gateway dials its own gRPC port with the server certificate: client use too
                {
                    'name': 'etcd-server',
                    'ca': 'ca',
                    'common_name': 'etcd',
                    'usage': ['client', 'server'],
                    'dns_names': local,
                    'ip_addresses': ['127.0.0.1'],
                },
                {'name': 'etcd-client', 'ca': 'ca', 'common_name': 'root'},
                {'name': 'stranger', 'ca': 'other-ca', 'common_name': 'root'},
                {
                    'name': 'apiserver',
                    'ca': 'ca',
                    'common_name': 'kube-apiserver',
                    'usage': ['server'],
                    'dns_names': local + ['kubernetes', 'kubernetes.default'],
                    'ip_addresses': ['127.0.0.1', '10.32.0.1'],
                },
                {'name': 'admin', 'ca': 'ca', 'common_name': 'admin', 'organization': ['system:masters']},
                {
                    'name': 'stranger-admin',
                    'ca': 'other-ca',
                    'common_name': 'admin',
                    'organization': ['system:masters'],
                },
            ],
            'keypairs': [{'name': 'service-account'}],
        },
    )
    assert result['rc'] == 0 and result['changed'], result
    return path


def cert_args_for(pki, name='etcd-client', ca='ca'):
    return {
        'ca_cert': os.path.join(pki, f'{ca}.pem'),
        'client_cert': os.path.join(pki, f'{name}.pem'),
        'client_key': os.path.join(pki, f'{name}-key.pem'),
    }


# Test files get helpers as fixtures, not by importing conftest: several conftest.py files share
# the module name "conftest", so an import could find another directory's.


@pytest.fixture(scope='session')
def cert_args(pki):
    """cert_args(name='etcd-client', ca='ca') -> the ca_cert/client_cert/client_key options."""
    return lambda name='etcd-client', ca='ca': cert_args_for(pki, name, ca)


@pytest.fixture(scope='session')
def unused_port():
    """unused_port() -> a TCP port on 127.0.0.1 that nothing listens on."""
    return free_port


# --------------------------------------------------------------------------
# etcd


@pytest.fixture(scope='session')
def etcd_binary(tmp_path_factory):
    version = versions()['etcd']
    tarball = need(
        os.path.join(
            MIRROR,
            'github.com',
            'etcd-io',
            'etcd',
            'releases',
            'download',
            f'v{version}',
            f'etcd-v{version}-linux-amd64.tar.gz',
        ),
        f'etcd {version}',
    )
    target = tmp_path_factory.mktemp('etcd-bin')
    with tarfile.open(tarball) as archive:
        member = archive.getmember(f'etcd-v{version}-linux-amd64/etcd')
        with archive.extractfile(member) as src, open(target / 'etcd', 'wb') as dst:
            shutil.copyfileobj(src, dst)
    os.chmod(target / 'etcd', 0o755)
    return str(target / 'etcd')


class Process:
    """A server we started; stopped (by its own pid) at the end of the session."""

    def __init__(self, argv, log):
        self.log = log
        self.handle = open(log, 'wb')
        self.proc = subprocess.Popen(
            argv, stdout=self.handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def check_alive(self, what):
        if self.proc.poll() is not None:
            pytest.fail(f'{what} exited with {self.proc.returncode}:\n{tail(self.log)}', pytrace=False)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()


def tls_context(pki, client='etcd-client', ca='ca'):
    ctx = ssl.create_default_context(cafile=os.path.join(pki, f'{ca}.pem'))
    ctx.load_cert_chain(os.path.join(pki, f'{client}.pem'), os.path.join(pki, f'{client}-key.pem'))
    return ctx


def https(port, method, path, body=None, context=None, headers=None, timeout=10):
    """One HTTPS request to 127.0.0.1:port; returns (status, parsed JSON or text)."""
    conn = http.client.HTTPSConnection('127.0.0.1', port, context=context, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {'Content-Type': 'application/json', 'Accept': 'application/json'}
        all_headers.update(headers or {})
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
    finally:
        conn.close()


@pytest.fixture(scope='session')
def etcd(etcd_binary, pki, tmp_path_factory):
    """A single-member etcd with TLS and client certificate authentication; yields its client URL."""
    work = tmp_path_factory.mktemp('etcd')
    client_port, peer_port = free_port(), free_port()
    url = f'https://127.0.0.1:{client_port}'
    peer = f'http://127.0.0.1:{peer_port}'
    argv = [
        etcd_binary,
        '--name',
        'it',
        '--data-dir',
        str(work / 'data'),
        '--listen-client-urls',
        url,
        '--advertise-client-urls',
        url,
        '--listen-peer-urls',
        peer,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster',
        f'it={peer}',
        '--cert-file',
        os.path.join(pki, 'etcd-server.pem'),
        '--key-file',
        os.path.join(pki, 'etcd-server-key.pem'),
        '--client-cert-auth',
        '--trusted-ca-file',
        os.path.join(pki, 'ca.pem'),
        '--log-level',
        'warn',
    ]
    proc = Process(argv, str(work / 'etcd.log'))
    ctx = tls_context(pki)
    deadline = time.monotonic() + 30
    last = None
    try:
        while True:
            proc.check_alive('etcd')
            try:
                status, body = https(client_port, 'POST', '/v3/kv/range', {'key': 'AA=='}, ctx, timeout=2)
                if status == 200:
                    break
                last = f'HTTP {status}: {body}'
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                pytest.fail(f'etcd did not answer within 30s ({last}):\n{tail(proc.log)}', pytrace=False)
            time.sleep(0.2)
        yield {'url': url, 'port': client_port}
    finally:
        proc.stop()


# --------------------------------------------------------------------------
# kube-apiserver


@pytest.fixture(scope='session')
def apiserver_binary():
    version = versions()['kubernetes']
    return need(
        os.path.join(
            MIRROR, 'dl.k8s.io', 'release', f'v{version}', 'bin', 'linux', 'amd64', 'kube-apiserver'
        ),
        f'kube-apiserver {version}',
    )


@pytest.fixture(scope='session')
def apiserver(apiserver_binary, etcd, pki, tmp_path_factory):
    """kube-apiserver on 127.0.0.1 (no kubelet, no controllers): yields its URL and an admin client."""
    work = tmp_path_factory.mktemp('apiserver')
    port = free_port()

    def p(name):
        return os.path.join(pki, name)

    argv = [
        apiserver_binary,
        f'--etcd-servers={etcd["url"]}',
        f'--etcd-cafile={p("ca.pem")}',
        f'--etcd-certfile={p("etcd-client.pem")}',
        f'--etcd-keyfile={p("etcd-client-key.pem")}',
        '--etcd-prefix=/registry-it',
        f'--secure-port={port}',
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        f'--tls-cert-file={p("apiserver.pem")}',
        f'--tls-private-key-file={p("apiserver-key.pem")}',
        f'--client-ca-file={p("ca.pem")}',
        f'--service-account-key-file={p("service-account.pub")}',
        f'--service-account-signing-key-file={p("service-account-key.pem")}',
        '--service-account-issuer=https://kubernetes.default.svc',
        '--service-cluster-ip-range=10.32.0.0/24',
        '--authorization-mode=RBAC',
        f'--cert-dir={work / "certs"}',
        '--enable-priority-and-fairness=false',
        # a loopback advertise address is only allowed without the endpoint reconciler
        '--endpoint-reconciler-type=none',
        '--v=1',
    ]
    proc = Process(argv, str(work / 'kube-apiserver.log'))
    ctx = tls_context(pki, client='admin')
    deadline = time.monotonic() + 120
    last = None
    try:
        while True:
            proc.check_alive('kube-apiserver')
            try:
                status, body = https(port, 'GET', '/api/v1/nodes', context=ctx, timeout=5)
                if status == 200:
                    break
                last = f'HTTP {status}: {body}'
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                pytest.fail(
                    f'kube-apiserver did not serve /api/v1/nodes within 120s ({last}):\n{tail(proc.log)}',
                    pytrace=False,
                )
            time.sleep(0.5)

        def request(method, path, body=None, content_type='application/json'):
            return https(port, method, path, body, ctx, headers={'Content-Type': content_type})

        yield {'url': f'https://127.0.0.1:{port}', 'port': port, 'request': request}
    finally:
        proc.stop()


# --------------------------------------------------------------------------
# Lab hosts


@pytest.fixture(scope='session')
def itest_lab():
    """The lab set "itest" (itest-cp1, itest-w1, itest-w2): bare lab hosts, started when not running
    and left running afterwards (`make test` removes them at its end). A lab_sets.LabSet: write an
    inventory for them with .write_inventory(dir, group_vars), compare .snapshot() before and after."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import lab_sets  # tests/integration/lab_sets.py

    return lab_sets.ensure_up()
