# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Every certificate a host holds, with its expiry (hardway.kubernetes.certificates_info).

Standard library only: PEM blocks are found in ``*.pem`` files and in the ``*-data`` fields of
kubeconfigs, and each is decoded with the ``ssl`` module's certificate decoder (it reads a file,
so each block goes through a private temporary file). ``collect`` walks the given paths; the
pure helpers take text and times so that tests need no files.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import os
import re
import ssl
import tempfile
import time

PEM = re.compile(r'-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----', re.S)
# kubeconfig fields holding a base64 PEM certificate (or bundle)
KUBECONFIG_FIELD = re.compile(r'^\s*(certificate-authority-data|client-certificate-data):\s*"?([A-Za-z0-9+/=]+)"?\s*$',
                              re.M)
TIME_FORMAT = '%b %d %H:%M:%S %Y %Z'


def _name(parts):
    """``((('commonName', 'x'),), (('organizationName', 'y'),))`` -> ``CN=x,O=y``."""
    short = {'commonName': 'CN', 'organizationName': 'O', 'organizationalUnitName': 'OU'}
    out = []
    for rdn in parts or ():
        for key, value in rdn:
            out.append('%s=%s' % (short.get(key, key), value))
    return ','.join(out)


def decode_pem(block, tmpdir):
    """The ssl module's view of one PEM certificate: subject, issuer, notAfter, serial."""
    fd, path = tempfile.mkstemp(dir=tmpdir, suffix='.pem')
    try:
        with os.fdopen(fd, 'w') as out:
            out.write(block + '\n')
        return ssl._ssl._test_decode_cert(path)  # pylint: disable=protected-access
    finally:
        os.unlink(path)


def describe(decoded, source, now):
    not_after = calendar.timegm(time.strptime(decoded['notAfter'], TIME_FORMAT))
    return {
        'source': source,
        'subject': _name(decoded.get('subject')),
        'issuer': _name(decoded.get('issuer')),
        'serial': decoded.get('serialNumber', ''),
        'not_after': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(not_after)),
        'days_left': int((not_after - now) // 86400),
    }


def blocks_in(path, text):
    """``[(source, pem)]``: the certificates of a PEM file, or those embedded in a kubeconfig."""
    found = []
    if path.endswith('.pem'):
        for i, block in enumerate(PEM.findall(text)):
            found.append(('%s#%d' % (path, i) if i else path, block))
        return found
    for field, data in KUBECONFIG_FIELD.findall(text):
        try:
            decoded = base64.b64decode(data).decode('ascii')
        except (binascii.Error, UnicodeDecodeError):
            continue
        for i, block in enumerate(PEM.findall(decoded)):
            found.append(('%s:%s%s' % (path, field, '#%d' % i if i else ''), block))
    return found


def candidates(paths):
    """The ``*.pem`` and ``*.kubeconfig`` files under ``paths`` (files or directories), sorted."""
    files = set()
    for path in paths:
        if os.path.isfile(path):
            files.add(path)
            continue
        for root, _dirs, names in os.walk(path):
            for name in names:
                if name.endswith('.pem') or name.endswith('.kubeconfig') or name == 'kubeconfig':
                    files.add(os.path.join(root, name))
    return sorted(files)


def collect(paths, now=None):
    """``(certificates, problems)`` for every certificate under ``paths``; keys are never read."""
    now = time.time() if now is None else now
    certificates, problems = [], []
    tmpdir = tempfile.mkdtemp(prefix='hardway-certs-')
    try:
        for path in candidates(paths):
            try:
                with open(path) as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append('%s: %s' % (path, exc))
                continue
            if 'PRIVATE KEY' in text and 'CERTIFICATE' not in text:
                continue
            for source, block in blocks_in(path, text):
                try:
                    certificates.append(describe(decode_pem(block, tmpdir), source, now))
                except (ssl.SSLError, ValueError, KeyError) as exc:
                    problems.append('%s: not a readable certificate (%s)' % (source, exc))
    finally:
        os.rmdir(tmpdir)
    return certificates, problems
