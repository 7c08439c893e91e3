"""The HTTPS client's error messages, against real sockets and TLS servers on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading

import pytest
from ansible_collections.hardway.kubernetes.plugins.module_utils import pki as P
from ansible_collections.hardway.kubernetes.plugins.module_utils import tlsclient as T


@pytest.fixture(scope='module')
def certs(tmp_path_factory):
    path = tmp_path_factory.mktemp('tls')
    P.PKI(
        str(path),
        [{'name': 'ca', 'common_name': 'CA'}, {'name': 'other-ca', 'common_name': 'Other CA'}],
        [
            {
                'name': 'server',
                'ca': 'ca',
                'common_name': 'server',
                'usage': ['server'],
                'ip_addresses': ['127.0.0.1'],
            },
            {
                'name': 'noip',
                'ca': 'ca',
                'common_name': 'noip',
                'usage': ['server'],
                'dns_names': ['elsewhere'],
            },
            {'name': 'client', 'ca': 'ca', 'common_name': 'client'},
            {'name': 'stranger', 'ca': 'other-ca', 'common_name': 'client'},
        ],
    ).plan().apply()
    return path


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server wants
        body = json.dumps(
            {
                'path': self.path,
                'peer': bool(self.connection.getpeercert())
                if isinstance(self.connection, ssl.SSLSocket)
                else None,
            }
        ).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(certs):
    """Start an HTTP(S) server on 127.0.0.1: server(tls=True, cert='server', client_ca=None) -> Endpoint."""
    started = []

    def start(tls=True, cert='server', client_ca=None):
        httpd = http.server.HTTPServer(('127.0.0.1', 0), Handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(certs / f'{cert}.pem'), str(certs / f'{cert}-key.pem'))
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(str(certs / f'{client_ca}.pem'))
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        thread.start()
        started.append(httpd)
        scheme = 'https' if tls else 'http'
        return T.Endpoint(f'{scheme}://127.0.0.1:{httpd.server_address[1]}')

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def context(certs, ca='ca', client='client'):
    return T.make_context(
        str(certs / f'{ca}.pem'),
        str(certs / f'{client}.pem') if client else None,
        str(certs / f'{client}-key.pem') if client else None,
    )


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_success_with_client_certificate(certs, server):
    endpoint = server(client_ca='ca')
    response = T.request(endpoint, 'GET', '/x', context=context(certs))
    assert response.status == 200 and response.json == {'path': '/x', 'peer': True}


def test_prefix_and_plain_http(server):
    endpoint = server(tls=False)
    prefixed = T.Endpoint(f'{endpoint}/base/')
    assert T.request(prefixed, 'GET', '/x').json == {'path': '/base/x', 'peer': None}


def test_untrusted_server(certs, server):
    endpoint = server()
    with pytest.raises(T.RequestError) as err:
        T.request(endpoint, 'GET', '/', context=context(certs, ca='other-ca'))
    assert err.value.kind == 'tls'
    assert f'TLS verification of {endpoint} failed' in str(err.value) and 'ca_cert' in str(err.value)


def test_server_certificate_without_the_address(certs, server):
    endpoint = server(cert='noip')
    with pytest.raises(T.RequestError) as err:
        T.request(endpoint, 'GET', '/', context=context(certs))
    assert err.value.kind == 'tls' and 'mismatch' in str(err.value)


def test_client_certificate_rejected(certs, server):
    endpoint = server(client_ca='ca')
    with pytest.raises(T.RequestError) as err:
        T.request(endpoint, 'GET', '/', context=context(certs, client='stranger'), timeout=5)
    assert err.value.kind in ('client-cert', 'connection')
    assert 'client_cert' in str(err.value) and str(endpoint) in str(err.value)


def test_no_client_certificate(certs, server):
    endpoint = server(client_ca='ca')
    with pytest.raises(T.RequestError) as err:
        T.request(endpoint, 'GET', '/', context=context(certs, client=None), timeout=5)
    assert 'client_cert' in str(err.value)


def test_refused():
    endpoint = T.Endpoint(f'https://127.0.0.1:{free_port()}')
    with pytest.raises(T.RequestError) as err:
        T.request(endpoint, 'GET', '/', context=ssl.create_default_context())
    assert err.value.kind == 'refused'
    assert str(err.value).startswith(f'connection refused by {endpoint}')


def test_timeout():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(1)  # accepts the TCP connection, never answers the TLS handshake
        endpoint = T.Endpoint(f'https://127.0.0.1:{sock.getsockname()[1]}')
        with pytest.raises(T.RequestError) as err:
            T.request(endpoint, 'GET', '/', context=ssl.create_default_context(), timeout=0.3)
    assert err.value.kind == 'timeout'
    assert str(err.value) == f'no answer from {endpoint} within 0.3 seconds (timeout)'


def test_https_to_plain_http(server):
    endpoint = server(tls=False)
    tls = T.Endpoint(str(endpoint).replace('http://', 'https://'))
    with pytest.raises(T.RequestError) as err:
        T.request(tls, 'GET', '/', context=ssl.create_default_context(), timeout=5)
    assert err.value.kind == 'protocol' and 'does not speak TLS' in str(err.value)


def test_make_context_errors(certs, tmp_path):
    with pytest.raises(T.ConfigError, match='client_cert and client_key do not belong together'):
        T.make_context(None, str(certs / 'client.pem'), str(certs / 'server-key.pem'))
    with pytest.raises(T.ConfigError, match=f'client_key: {tmp_path} is not a file'):
        T.make_context(None, str(certs / 'client.pem'), str(tmp_path))
    # in-memory material (from a kubeconfig) works and leaves no files behind
    ctx = T.make_context(
        ca_data=(certs / 'ca.pem').read_bytes(),
        cert_data=(certs / 'client.pem').read_bytes(),
        key_data=(certs / 'client-key.pem').read_bytes(),
    )
    assert isinstance(ctx, ssl.SSLContext)


def test_endpoint():
    endpoint = T.Endpoint('https://[::1]:6443/prefix/')
    assert (endpoint.host, endpoint.port, endpoint.prefix, str(endpoint)) == (
        '::1',
        6443,
        '/prefix',
        'https://[::1]:6443/prefix',
    )
    assert T.Endpoint('example.org').port == 443
    with pytest.raises(T.ConfigError, match='invalid port'):
        T.Endpoint('https://x:99999')
