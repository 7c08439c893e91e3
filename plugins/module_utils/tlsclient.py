# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""A small JSON-over-HTTPS client with client certificates and clear error messages.

Standard library only: it runs on managed hosts (etcd_key) as well as on the
controller (node_ready). Errors are raised as :class:`RequestError` whose
message names the endpoint and the option to look at, and whose ``kind`` says
what went wrong (``tls``, ``client-cert``, ``refused``, ``timeout``, ``dns``,
``connection``, ``protocol``).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import tempfile
from urllib.parse import urlsplit

CLIENT_CERT_ALERTS = (
    'CERTIFICATE_REQUIRED', 'BAD_CERTIFICATE', 'UNKNOWN_CA', 'CERTIFICATE_UNKNOWN', 'ACCESS_DENIED',
    'CERTIFICATE_EXPIRED', 'CERTIFICATE_REVOKED', 'UNSUPPORTED_CERTIFICATE', 'HANDSHAKE_FAILURE',
)


class ConfigError(Exception):
    """Bad client-side configuration (missing or unusable files); names the option."""


class RequestError(Exception):
    """A request that did not get an HTTP answer."""

    def __init__(self, message, kind, endpoint=None):
        super().__init__(message)
        self.kind = kind
        self.endpoint = endpoint
        # True when it failed before the connection (TCP and TLS) was up, so nothing was sent
        self.connecting = False


class Endpoint:
    """A parsed base URL: scheme, host, port and path prefix."""

    def __init__(self, url, default_port=443):
        text = str(url).strip()
        if '://' not in text:
            text = 'https://' + text
        parts = urlsplit(text)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ConfigError('%r is not an http(s) URL' % url)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError('%r has an invalid port' % url) from None
        self.url = text.rstrip('/')
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (default_port if parts.scheme == 'https' else 80)
        self.prefix = parts.path.rstrip('/')

    def __str__(self):
        return self.url


def _check_file(path, option):
    if not path:
        return
    if not os.path.exists(path):
        raise ConfigError('%s: %s does not exist' % (option, path))
    if not os.path.isfile(path):
        raise ConfigError('%s: %s is not a file' % (option, path))
    if not os.access(path, os.R_OK):
        raise ConfigError('%s: %s is not readable' % (option, path))


def make_context(ca_file=None, cert_file=None, key_file=None, ca_data=None, cert_data=None, key_data=None,
                 insecure=False, names=('ca_cert', 'client_cert', 'client_key')):
    """An SSLContext verifying the server with the given CA and presenting the client certificate.

    Files are checked first so that a missing one is reported with its option
    name (``names`` gives the three option names used in messages). Data given
    in memory (from a kubeconfig) is used as is; client certificate data is
    written to a private temporary directory only while it is loaded.
    """
    ca_opt, cert_opt, key_opt = names
    for path, option in ((ca_file, ca_opt), (cert_file, cert_opt), (key_file, key_opt)):
        _check_file(path, option)
    has_cert = bool(cert_file or cert_data)
    has_key = bool(key_file or key_data)
    if has_cert != has_key:
        raise ConfigError('%s and %s must be given together' % (cert_opt, key_opt))

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if ca_file or ca_data:
        try:
            if ca_file:
                context.load_verify_locations(cafile=ca_file)
            else:
                context.load_verify_locations(cadata=ca_data.decode('ascii', errors='replace'))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError('%s: %s does not hold a PEM CA certificate (%s)'
                              % (ca_opt, ca_file or 'the data', exc)) from None
    if has_cert:
        tmpdir = None
        try:
            if cert_data is not None or key_data is not None:
                tmpdir = tempfile.mkdtemp(prefix='hardway-tls-')
                if cert_data is not None:
                    cert_file = _write_private(tmpdir, 'cert.pem', cert_data)
                if key_data is not None:
                    key_file = _write_private(tmpdir, 'key.pem', key_data)
            context.load_cert_chain(certfile=cert_file, keyfile=key_file)
        except ssl.SSLError as exc:
            if 'KEY_VALUES_MISMATCH' in str(exc):
                raise ConfigError('%s and %s do not belong together (the key does not match the certificate)'
                                  % (cert_opt, key_opt)) from None
            raise ConfigError('%s/%s: cannot load the client certificate and key (%s)'
                              % (cert_opt, key_opt, exc)) from None
        finally:
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
    return context


def _write_private(directory, name, data):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as handle:
        handle.write(data)
    return path


def classify(exc, endpoint, timeout, names=('ca_cert', 'client_cert', 'client_key')):
    """Turn a low-level exception into a RequestError with an actionable message."""
    ca_opt, cert_opt, key_opt = names
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, 'verify_message', None) or str(exc)
        return RequestError(
            'TLS verification of %s failed (%s): the server certificate is not trusted by %s or does not '
            'name this address; check that %s is the CA that signed the server certificate and that the '
            'certificate lists the host of the endpoint' % (endpoint, detail, ca_opt, ca_opt),
            'tls', endpoint)
    if isinstance(exc, ssl.SSLError):
        text = '%s %s' % (getattr(exc, 'reason', '') or '', exc)
        if 'WRONG_VERSION_NUMBER' in text or 'record layer failure' in text.lower():
            return RequestError('%s does not speak TLS on that port (is it plain http, or another service?): '
                                '%s' % (endpoint, exc), 'protocol', endpoint)
        if any(alert in text.upper() for alert in CLIENT_CERT_ALERTS):
            return RequestError(
                '%s rejected the client certificate (%s): check that %s/%s hold a certificate signed by the '
                'CA the server trusts for clients'
                % (endpoint, getattr(exc, 'reason', None) or exc, cert_opt, key_opt),
                'client-cert', endpoint)
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) or 'EOF' in text.upper():
            return RequestError(
                '%s closed the TLS connection (%s); if it requires client certificates, check %s/%s'
                % (endpoint, exc, cert_opt, key_opt), 'connection', endpoint)
        return RequestError('TLS error talking to %s: %s' % (endpoint, exc), 'tls', endpoint)
    if isinstance(exc, ConnectionRefusedError):
        return RequestError('connection refused by %s: nothing listens there (wrong endpoint or port, or the '
                            'service is not running)' % endpoint, 'refused', endpoint)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return RequestError('no answer from %s within %s seconds (timeout)' % (endpoint, timeout),
                            'timeout', endpoint)
    if isinstance(exc, socket.gaierror):
        return RequestError('cannot resolve the host of %s: %s' % (endpoint, exc.strerror or exc),
                            'dns', endpoint)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        if getattr(endpoint, 'scheme', None) == 'http':
            return RequestError('%s closed the connection (%s); if the server speaks TLS, use an https:// URL'
                                % (endpoint, exc), 'connection', endpoint)
        return RequestError(
            '%s closed the connection (%s); if it requires client certificates, check %s/%s'
            % (endpoint, exc, cert_opt, key_opt), 'connection', endpoint)
    if isinstance(exc, http.client.HTTPException):
        return RequestError('%s sent an invalid HTTP answer: %s' % (endpoint, exc), 'protocol', endpoint)
    if isinstance(exc, OSError):
        return RequestError('cannot connect to %s: %s' % (endpoint, exc.strerror or exc),
                            'connection', endpoint)
    return RequestError('request to %s failed: %s' % (endpoint, exc), 'connection', endpoint)


class Response:
    """Status, raw body and (when it parses) the JSON body of an HTTP answer."""

    def __init__(self, status, reason, body):
        self.status = status
        self.reason = reason
        self.body = body
        try:
            self.json = json.loads(body.decode('utf-8')) if body else None
        except ValueError:
            self.json = None

    @property
    def text(self):
        return self.body.decode('utf-8', errors='replace').strip()


def request(endpoint, method, path, payload=None, context=None, timeout=10.0, headers=None,
            names=('ca_cert', 'client_cert', 'client_key')):
    """Send one request to ``endpoint`` (an :class:`Endpoint`); returns a :class:`Response`.

    Raises :class:`RequestError` when no HTTP answer arrives.
    """
    body = None
    all_headers = {'Accept': 'application/json'}
    if payload is not None:
        body = json.dumps(payload).encode('utf-8')
        all_headers['Content-Type'] = 'application/json'
    all_headers.update(headers or {})
    if endpoint.scheme == 'https':
        conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        conn.connect()
    except (OSError, http.client.HTTPException) as exc:
        error = classify(exc, endpoint, timeout, names)
        error.connecting = True
        conn.close()
        raise error from None
    try:
        conn.request(method, endpoint.prefix + path, body=body, headers=all_headers)
        answer = conn.getresponse()
        data = answer.read()
        return Response(answer.status, answer.reason, data)
    except (OSError, http.client.HTTPException) as exc:
        raise classify(exc, endpoint, timeout, names) from None
    finally:
        conn.close()
