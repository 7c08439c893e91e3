# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""The certificate authority behind the hardway.kubernetes.pki module.

Everything here works without Ansible: ``normalize_*`` validate the options,
``plan_*`` decide what has to happen to one item (pure functions over already
parsed objects), and :class:`PKI` ties them together, reading every existing
file once, planning, and (outside check mode) issuing and writing.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import traceback

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.hardway.kubernetes.plugins.module_utils.files import (
    file_mode,
    read_bytes,
    write_atomic,
)

UTC = datetime.timezone(datetime.timedelta(0))
BACKDATE = datetime.timedelta(minutes=5)
KEY_TYPES = ('rsa', 'ecdsa')
USAGES = ('client', 'server')
EC_SIZES = (256, 384)
RSA_MIN_SIZE = 2048
RSA_MAX_SIZE = 16384
KEY_MODE = 0o600
CERT_MODE = 0o644
DIR_MODE = 0o700
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')

UP_TO_DATE = 'up to date'
# Rotating an authority without downtime, one step a run (see PKI): a new CA is staged and trusted
# beside the old one, then signs in its place while the old one stays trusted, then the old one goes.
ROTATION_STEPS = ('stage', 'switch', 'finish')
ROTATION_REASONS = {
    'stage': 'a new CA is staged as %(name)s-next (trusted in %(name)s-bundle.pem, not signing yet)',
    'switch': 'the staged CA signs from now on; the old one stays trusted as %(name)s-previous',
    'finish': 'the old CA (%(name)s-previous) is no longer trusted; its files are kept as %(name)s-retired-<time>',
}
NOT_SIGNED = 'not signed by the current CA'


class PKIError(Exception):
    """Bad input or a state the module refuses to fix on its own."""


# --------------------------------------------------------------------------
# Options


class KeySpec:
    """The kind of key an item wants: ``rsa`` with a size or ``ecdsa`` with a curve size."""

    __slots__ = ('key_type', 'key_size')

    def __init__(self, key_type, key_size):
        self.key_type = key_type
        self.key_size = key_size

    def __eq__(self, other):
        return isinstance(other, KeySpec) and \
            (self.key_type, self.key_size) == (other.key_type, other.key_size)

    def __hash__(self):
        return hash((self.key_type, self.key_size))

    def __repr__(self):
        return 'KeySpec(%r, %r)' % (self.key_type, self.key_size)

    def describe(self):
        if self.key_type == 'ecdsa':
            return 'ecdsa P-%d' % self.key_size
        return 'rsa %d' % self.key_size

    def matches(self, key):
        """True when ``key`` (a private or public key object) is of this kind."""
        if self.key_type == 'rsa':
            return isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and key.key_size == self.key_size
        return isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and \
            key.curve.key_size == self.key_size and key.curve.name.startswith('secp')

    def generate(self):
        if self.key_type == 'rsa':
            return rsa.generate_private_key(public_exponent=65537, key_size=self.key_size)
        curve = ec.SECP256R1() if self.key_size == 256 else ec.SECP384R1()
        return ec.generate_private_key(curve)


def describe_key(key):
    """'rsa 2048', 'ecdsa P-256', ... for an existing key object."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return 'rsa %d' % key.key_size
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return 'ecdsa %s' % key.curve.name
    return type(key).__name__


def key_spec(key_type, key_size, where):
    """Validate a key type/size pair; ``where`` names the item in error messages."""
    if key_type not in KEY_TYPES:
        raise PKIError('%s: key_type must be one of %s, got %r' % (where, ', '.join(KEY_TYPES), key_type))
    if key_type == 'rsa':
        size = RSA_MIN_SIZE if key_size is None else key_size
        if not isinstance(size, int) or isinstance(size, bool) or size < RSA_MIN_SIZE or size > RSA_MAX_SIZE:
            raise PKIError('%s: key_size %r is not valid for rsa (use %d to %d bits)'
                           % (where, key_size, RSA_MIN_SIZE, RSA_MAX_SIZE))
    else:
        size = 256 if key_size is None else key_size
        if size not in EC_SIZES or isinstance(size, bool):
            raise PKIError('%s: key_size %r is not valid for ecdsa (use 256 for P-256 or 384 for P-384)'
                           % (where, key_size))
    return KeySpec(key_type, size)


def _where(kind, index, item):
    name = item.get('name') if isinstance(item, dict) else None
    return '%s[%d]%s' % (kind, index, ' (%s)' % name if name else '')


def _check_name(value, where):
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise PKIError('%s: name must be a simple file name (letters, digits, ".", "_", "-"), got %r'
                       % (where, value))


def _check_text(item, field, where, required=True):
    value = item.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise PKIError('%s: %s must be a non-empty string' % (where, field))
    return value


def _check_lifetime(item, default, where):
    value = item.get('lifetime_days')
    value = default if value is None else value
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PKIError('%s: lifetime_days must be a positive integer, got %r' % (where, value))
    return value


def _str_list(item, field, where):
    value = item.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PKIError('%s: %s must be a list of non-empty strings' % (where, field))
    return list(value)


def normalize_authority(item, index=0):
    where = _where('authorities', index, item)
    if not isinstance(item, dict):
        raise PKIError('%s: must be a dictionary' % where)
    _check_name(item.get('name'), where)
    return {
        'name': item['name'],
        'common_name': _check_text(item, 'common_name', where),
        'key': key_spec(item.get('key_type') or 'ecdsa', item.get('key_size'), where),
        'lifetime_days': _check_lifetime(item, 3650, where),
    }


def normalize_ip(value, where):
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise PKIError('%s: ip_addresses entry %r is not an IP address' % (where, value)) from None


def normalize_certificate(item, index=0, authority_names=()):
    where = _where('certificates', index, item)
    if not isinstance(item, dict):
        raise PKIError('%s: must be a dictionary' % where)
    _check_name(item.get('name'), where)
    ca = _check_text(item, 'ca', where)
    if ca not in authority_names:
        raise PKIError('%s: ca %r is not one of the authorities (%s)'
                       % (where, ca, ', '.join(sorted(authority_names)) or 'none given'))
    usage = _str_list(item, 'usage', where) if item.get('usage') is not None else ['client']
    bad = [u for u in usage if u not in USAGES]
    if bad or not usage:
        raise PKIError('%s: usage must be a non-empty list of %s, got %r'
                       % (where, ' and '.join(USAGES), usage))
    dns_names = _str_list(item, 'dns_names', where)
    ips = [normalize_ip(v, where) for v in _str_list(item, 'ip_addresses', where)]
    organization = _str_list(item, 'organization', where)
    # no common name (a subject of organizations only): etcd's JSON gateway refuses client
    # certificates that carry one while etcd authentication is on
    if item.get('common_name') == '' and not organization:
        raise PKIError('%s: a certificate without common_name needs an organization' % where)
    return {
        'name': item['name'],
        'ca': ca,
        'common_name': '' if item.get('common_name') == '' else _check_text(item, 'common_name', where),
        'organization': organization,
        'dns_names': _dedupe(dns_names, key=str.lower),
        'ip_addresses': _dedupe(ips),
        'usage': [u for u in USAGES if u in usage],
        'key': key_spec(item.get('key_type') or 'ecdsa', item.get('key_size'), where),
        'lifetime_days': _check_lifetime(item, 365, where),
    }


def normalize_keypair(item, index=0):
    where = _where('keypairs', index, item)
    if not isinstance(item, dict):
        raise PKIError('%s: must be a dictionary' % where)
    _check_name(item.get('name'), where)
    return {
        'name': item['name'],
        'key': key_spec(item.get('key_type') or 'rsa', item.get('key_size'), where),
    }


def _dedupe(values, key=None):
    seen = set()
    out = []
    for value in values:
        marker = key(value) if key else value
        if marker not in seen:
            seen.add(marker)
            out.append(value)
    return out


def normalize_all(authorities, certificates, keypairs, renew_before_days):
    """Validate every option; returns the three normalised lists."""
    if not isinstance(renew_before_days, int) or isinstance(renew_before_days, bool) or renew_before_days < 0:
        raise PKIError('renew_before_days must be a non-negative integer, got %r' % (renew_before_days,))
    auths = [normalize_authority(a, i) for i, a in enumerate(authorities or [])]
    names = [a['name'] for a in auths]
    certs = [normalize_certificate(c, i, set(names)) for i, c in enumerate(certificates or [])]
    pairs = [normalize_keypair(k, i) for i, k in enumerate(keypairs or [])]
    seen = {}
    for kind, items in (('authorities', auths), ('certificates', certs), ('keypairs', pairs)):
        for item in items:
            if item['name'] in seen:
                raise PKIError('name %r is used twice (%s and %s): every item writes <name>.pem and '
                               '<name>-key.pem in the same directory'
                               % (item['name'], seen[item['name']], kind))
            seen[item['name']] = kind
    for kind, items in (('authorities', auths), ('certificates', certs)):
        for item in items:
            if item['lifetime_days'] <= renew_before_days:
                raise PKIError('%s %r: lifetime_days (%d) must be longer than renew_before_days (%d), '
                               'or it would be re-issued on every run'
                               % (kind, item['name'], item['lifetime_days'], renew_before_days))
    return auths, certs, pairs


# --------------------------------------------------------------------------
# Reading existing material


def load_certificate(data):
    """Parse PEM certificate bytes; ``(cert, None)`` or ``(None, why)``."""
    try:
        return x509.load_pem_x509_certificate(data), None
    except (ValueError, TypeError) as exc:
        return None, 'not a PEM certificate (%s)' % _short(exc)


def load_private_key(data):
    """Parse an unencrypted PEM private key; ``(key, None)`` or ``(None, why)``."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        return None, 'not an unencrypted PEM private key (%s)' % _short(exc)
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for odd keys
        return None, 'unsupported private key (%s)' % _short(exc)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return None, 'unsupported private key type %s' % type(key).__name__
    return key, None


def load_public_key(data):
    try:
        return serialization.load_pem_public_key(data), None
    except Exception as exc:  # ValueError, UnsupportedAlgorithm
        return None, 'not a PEM public key (%s)' % _short(exc)


def _short(exc):
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class Existing:
    """What is on disk for one file pair: parsed objects and their states."""

    __slots__ = ('cert', 'cert_state', 'key', 'key_state', 'key_mode', 'pub', 'pub_state')

    def __init__(self, cert=None, cert_state='missing', key=None, key_state='missing', key_mode=None,
                 pub=None, pub_state='missing'):
        self.cert = cert
        self.cert_state = cert_state
        self.key = key
        self.key_state = key_state
        self.key_mode = key_mode
        self.pub = pub
        self.pub_state = pub_state


def read_existing(cert_path=None, key_path=None, pub_path=None):
    """Read and parse an item's files once. States: ``ok``, ``missing`` or ``unreadable: <why>``."""
    found = Existing()
    if cert_path:
        data, state = read_bytes(cert_path)
        if data is not None:
            found.cert, why = load_certificate(data)
            state = 'ok' if found.cert is not None else 'unreadable: %s' % why
        found.cert_state = state
    if key_path:
        data, state = read_bytes(key_path)
        if data is not None:
            found.key, why = load_private_key(data)
            state = 'ok' if found.key is not None else 'unreadable: %s' % why
            found.key_mode = file_mode(key_path)
        found.key_state = state
    if pub_path:
        data, state = read_bytes(pub_path)
        if data is not None:
            found.pub, why = load_public_key(data)
            state = 'ok' if found.pub is not None else 'unreadable: %s' % why
        found.pub_state = state
    return found


# --------------------------------------------------------------------------
# Inspecting certificates


def public_der(key):
    """DER SubjectPublicKeyInfo of a private or public key (for comparisons)."""
    if hasattr(key, 'public_key'):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches_cert(key, cert):
    try:
        return public_der(key) == public_der(cert.public_key())
    except Exception:  # an exotic key type in the certificate: treat as a mismatch
        return False


def not_after(cert):
    value = getattr(cert, 'not_valid_after_utc', None)
    if value is None:  # cryptography < 42
        value = cert.not_valid_after.replace(tzinfo=UTC)
    return value


def format_time(value):
    return value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def subject_values(cert, oid):
    return [attr.value for attr in cert.subject.get_attributes_for_oid(oid)]


def _extension(cert, ext_class):
    try:
        return cert.extensions.get_extension_for_class(ext_class).value
    except x509.ExtensionNotFound:
        return None


def cert_sans(cert):
    """``(dns_names, ip_addresses)`` of a certificate (IPs as ipaddress objects)."""
    san = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return [], []
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)


def cert_usage(cert):
    """The subset of client/server the certificate's ExtendedKeyUsage allows."""
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return []
    oids = set(eku)
    out = []
    if ExtendedKeyUsageOID.CLIENT_AUTH in oids:
        out.append('client')
    if ExtendedKeyUsageOID.SERVER_AUTH in oids:
        out.append('server')
    return out


def is_ca(cert):
    constraints = _extension(cert, x509.BasicConstraints)
    return bool(constraints and constraints.ca)


def signed_by(cert, ca_cert):
    """True when ``cert`` names ``ca_cert``'s subject as issuer and its signature verifies."""
    if cert.issuer != ca_cert.subject:
        return False
    if hasattr(cert, 'verify_directly_issued_by'):
        try:
            cert.verify_directly_issued_by(ca_cert)
            return True
        except (ValueError, TypeError, InvalidSignature):
            return False
    public = ca_cert.public_key()  # pragma: no cover - cryptography < 40
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          cert.signature_hash_algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _fmt_list(values):
    return '[%s]' % ', '.join(str(v) for v in values)


def _renew_reason(cert, now, renew_before):
    expires = not_after(cert)
    if expires <= now:
        return 'expired on %s' % format_time(expires)
    if expires - now <= renew_before:
        return 'expires within the renew window (%s)' % format_time(expires)
    return None


# --------------------------------------------------------------------------
# Decisions (pure functions)


def certificate_reasons(spec, found, ca_cert, now, renew_before, ca_replaced=False):
    """Why the certificate described by ``spec`` must be (re)issued; ``[]`` when it is fine.

    ``found`` is the :class:`Existing` read for it, ``ca_cert`` the CA certificate
    that is current (``None`` or ``ca_replaced=True`` when the CA is being created
    or regenerated in this run, in which case nothing on disk can be signed by it).
    """
    reasons = []
    if found.cert_state == 'missing':
        reasons.append('certificate missing')
    elif found.cert_state != 'ok':
        reasons.append('certificate %s' % found.cert_state)
    if found.key_state == 'missing':
        reasons.append('key missing')
    elif found.key_state != 'ok':
        reasons.append('key %s' % found.key_state)
    elif not spec['key'].matches(found.key):
        reasons.append('key is %s, want %s' % (describe_key(found.key), spec['key'].describe()))
    cert = found.cert
    if cert is None:
        return reasons

    if found.key is not None and not key_matches_cert(found.key, cert):
        reasons.append('key does not match certificate')
    cns = subject_values(cert, NameOID.COMMON_NAME)
    if cns != ([spec['common_name']] if spec['common_name'] else []):
        reasons.append('common name is %s, want %s' % (_fmt_list(cns), spec['common_name'] or 'none'))
    orgs = subject_values(cert, NameOID.ORGANIZATION_NAME)
    if sorted(orgs) != sorted(spec['organization']):
        reasons.append('organization is %s, want %s' % (_fmt_list(orgs), _fmt_list(spec['organization'])))
    dns, ips = cert_sans(cert)
    have = set(d.lower() for d in dns) | set(str(ip) for ip in ips)
    want = set(d.lower() for d in spec['dns_names']) | set(str(ip) for ip in spec['ip_addresses'])
    if have != want:
        parts = []
        if want - have:
            parts.append('missing %s' % ', '.join(sorted(want - have)))
        if have - want:
            parts.append('unexpected %s' % ', '.join(sorted(have - want)))
        reasons.append('subject alternative names differ (%s)' % '; '.join(parts))
    usage = cert_usage(cert)
    if usage != spec['usage']:
        reasons.append('usage is %s, want %s' % (_fmt_list(usage), _fmt_list(spec['usage'])))
    if is_ca(cert):
        reasons.append('certificate is a CA')
    if ca_replaced or ca_cert is None or not signed_by(cert, ca_cert):
        reasons.append(NOT_SIGNED)
    renew = _renew_reason(cert, now, renew_before)
    if renew:
        reasons.append(renew)
    return reasons


def authority_problems(spec, found):
    """Why an existing CA cannot be used as it is (broken files); ``[]`` when usable."""
    problems = []
    if found.cert_state != 'ok':
        problems.append('certificate %s' % found.cert_state)
    if found.key_state != 'ok':
        problems.append('key %s' % found.key_state)
    if found.cert is not None and found.key is not None:
        if not key_matches_cert(found.key, found.cert):
            problems.append('key does not match certificate')
        if not is_ca(found.cert):
            problems.append('certificate is not a CA (BasicConstraints CA:FALSE or missing)')
    return problems


def authority_drift(spec, found, now, renew_before):
    """How a usable CA differs from what is asked (only acted on with regenerate_authorities)."""
    drift = []
    cns = subject_values(found.cert, NameOID.COMMON_NAME)
    if cns != [spec['common_name']]:
        drift.append('common name is %s, want %s' % (_fmt_list(cns), spec['common_name']))
    if not spec['key'].matches(found.key):
        drift.append('key is %s, want %s' % (describe_key(found.key), spec['key'].describe()))
    renew = _renew_reason(found.cert, now, renew_before)
    if renew:
        drift.append(renew)
    return drift


def plan_authority(spec, found, now, renew_before, regenerate, path=''):
    """``(action, reasons, warnings)`` for one authority.

    An authority is created when neither file exists. An existing one is never
    replaced unless ``regenerate`` is true: broken files raise :class:`PKIError`,
    a usable CA that differs from the request only produces warnings.
    """
    if found.cert_state == 'missing' and found.key_state == 'missing':
        return 'created', ['authority missing'], []
    problems = authority_problems(spec, found)
    if problems:
        if regenerate:
            return 'reissued', problems, []
        raise PKIError(
            'authority %r (%s): %s. Refusing to replace an existing CA, because every certificate it '
            'signed would have to be replaced too. Repair or remove the files, or set '
            'regenerate_authorities: true to create a new CA.' % (spec['name'], path, '; '.join(problems)))
    drift = authority_drift(spec, found, now, renew_before)
    if drift and regenerate:
        return 'reissued', drift, []
    warnings = []
    if drift:
        warnings.append('authority %r differs from the request (%s); it is kept, set '
                        'regenerate_authorities: true to replace it' % (spec['name'], '; '.join(drift)))
    return 'unchanged', [], warnings


def plan_keypair(spec, found):
    """``(action, reasons, new_key)`` for a bare key pair."""
    if found.key_state == 'missing':
        return 'created', ['key missing'], True
    if found.key_state != 'ok':
        return 'reissued', ['key %s' % found.key_state], True
    if not spec['key'].matches(found.key):
        return 'reissued', ['key is %s, want %s' % (describe_key(found.key), spec['key'].describe())], True
    if found.pub_state == 'missing':
        return 'reissued', ['public key missing'], False
    if found.pub_state != 'ok':
        return 'reissued', ['public key %s' % found.pub_state], False
    if public_der(found.pub) != public_der(found.key):
        return 'reissued', ['public key does not match private key'], False
    return 'unchanged', [], False


# --------------------------------------------------------------------------
# Issuing


def _name(common_name, organizations=()):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_usage(key, ca):
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=is_rsa and not ca,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False)


def build_authority(spec, key, now):
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    name = _name(spec['common_name'])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=spec['lifetime_days']))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key, True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


class Signer:
    """A CA ready to sign: its certificate, key and pre-computed identifiers."""

    def __init__(self, cert, key):
        self.cert = cert
        self.key = key
        self.subject = cert.subject
        self.not_after = not_after(cert)
        ski = _extension(cert, x509.SubjectKeyIdentifier)
        if ski is None:
            ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        self.aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def issue(self, spec, key, now):
        public = key.public_key()
        expires = min(now + datetime.timedelta(days=spec['lifetime_days']), self.not_after)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(spec['common_name'], spec['organization']))
            .issuer_name(self.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(expires)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(key, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if u == 'client' else ExtendedKeyUsageOID.SERVER_AUTH
                 for u in spec['usage']]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(self.aki, critical=False)
        )
        names = [x509.DNSName(d) for d in spec['dns_names']]
        names += [x509.IPAddress(i) for i in spec['ip_addresses']]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------
# The whole run


class Item:
    """The plan and the outcome for one authority, certificate or key pair."""

    __slots__ = ('kind', 'spec', 'path', 'key_path', 'found', 'action', 'reasons', 'new_key',
                 'fix_key_mode', 'not_after', 'rotation')

    def __init__(self, kind, spec, path, key_path, found):
        self.kind = kind
        self.spec = spec
        self.path = path
        self.key_path = key_path
        self.found = found
        self.action = 'unchanged'
        self.reasons = []
        self.new_key = False
        self.fix_key_mode = False
        self.not_after = None
        self.rotation = None  # an authority's rotation step in this run (ROTATION_STEPS)

    @property
    def name(self):
        return self.spec['name']

    @property
    def changes(self):
        return self.action != 'unchanged' or self.fix_key_mode or self.rotation is not None

    def result(self):
        if self.rotation is not None:
            reason = ROTATION_REASONS[self.rotation] % {'name': self.name}
        elif self.action == 'unchanged':
            reason = 'key file mode set to 0600' if self.fix_key_mode else UP_TO_DATE
        else:
            reason = '; '.join(self.reasons)
        return {
            'action': self.rotation or self.action,
            'reason': reason,
            'path': self.path,
            'key_path': self.key_path,
            'not_after': format_time(self.not_after) if self.not_after else None,
        }


class BundleItem:
    """An authority's trust bundle: the CA certificates that are trusted, in one PEM file.

    ``parts`` are the certificates in order, each as PEM bytes or, for one this run makes, the path
    it will be read from once made.
    """

    kind = 'bundle'
    fix_key_mode = False
    not_after = None

    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.parts = []
        self.action = 'unchanged'
        self.reasons = []

    @property
    def changes(self):
        return self.action != 'unchanged'

    def result(self):
        return {'action': self.action, 'reason': '; '.join(self.reasons) if self.reasons else UP_TO_DATE,
                'path': self.path, 'key_path': None, 'not_after': None, 'certificates': len(self.parts)}


class PKI:
    """Plan and carry out one module run.

    ``now`` can be given for tests. Call :meth:`plan` then, unless in check
    mode, :meth:`apply`; :meth:`results` gives the module's return values.
    """

    def __init__(self, path, authorities=None, certificates=None, keypairs=None, renew_before_days=30,
                 regenerate_authorities=False, now=None, durable=False, reissue=None, reissue_within_days=0,
                 rotation=None, keep_on_previous=None):
        if not HAS_CRYPTOGRAPHY:
            raise PKIError('the Python library cryptography is required')
        if not isinstance(path, str) or not path:
            raise PKIError('path must be a directory path')
        self.path = path
        self.auths, self.certs, self.pairs = normalize_all(authorities, certificates, keypairs,
                                                           renew_before_days)
        self.renew_before = datetime.timedelta(days=renew_before_days)
        self.regenerate = bool(regenerate_authorities)
        if rotation not in (None, 'none') + ROTATION_STEPS:
            raise PKIError('rotation must be one of none, %s; got %r' % (', '.join(ROTATION_STEPS), rotation))
        self.rotation = None if rotation in (None, 'none') else rotation
        if self.rotation and self.regenerate:
            raise PKIError('rotation and regenerate_authorities exclude each other: a rotation keeps the old CA '
                           'trusted until its last step, a regeneration replaces it at once')
        self.reissue = set(reissue or [])
        self.keep_on_previous = set(keep_on_previous or [])
        unknown = self.reissue - {c['name'] for c in self.certs} - {'*'}
        if unknown:
            raise PKIError('reissue names certificates that are not requested: %s' % ', '.join(sorted(unknown)))
        if not isinstance(reissue_within_days, int) or isinstance(reissue_within_days, bool) or reissue_within_days < 0:
            raise PKIError('reissue_within_days must be a non-negative integer, got %r' % (reissue_within_days,))
        self.reissue_within = datetime.timedelta(days=reissue_within_days) if reissue_within_days else None
        self.now = now or datetime.datetime.now(UTC)
        self.durable = durable
        self.items = {'authorities': [], 'certificates': [], 'keypairs': [], 'bundles': []}
        self.warnings = []
        self.create_dir = False
        self.planned = False

    def _file(self, name, suffix):
        return os.path.join(self.path, name + suffix)

    # -- planning ---------------------------------------------------------

    def plan(self):
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise PKIError('path %s exists and is not a directory' % self.path)
        self.create_dir = not os.path.isdir(self.path)
        replaced = set()
        ca_certs = {}
        previous_certs = {}  # during a rotation, the old CA that is still trusted
        for spec in self.auths:
            name = spec['name']
            cert_path, key_path = self._file(name, '.pem'), self._file(name, '-key.pem')
            step = self._rotation_step(name)
            # after a switch the staged CA is the current one: plan with its files
            source = (self._file(name, '-next.pem'), self._file(name, '-next-key.pem')) if step == 'switch' \
                else (cert_path, key_path)
            item = Item('authority', spec, cert_path, key_path, read_existing(*source))
            item.rotation = step
            item.action, item.reasons, warnings = plan_authority(
                spec, item.found, self.now, self.renew_before, self.regenerate, source[0])
            self.warnings.extend(warnings)
            previous = self._previous_after_step(name, step, cert_path)
            if previous is not None:
                previous_certs[name] = previous
            if item.action == 'unchanged':
                ca_certs[name] = item.found.cert
                item.not_after = not_after(item.found.cert)
                item.fix_key_mode = item.found.key_mode != KEY_MODE
            else:
                replaced.add(name)
                item.new_key = True
                item.not_after = self.now + datetime.timedelta(days=spec['lifetime_days'])
            self.items['authorities'].append(item)
            self.items['bundles'].append(self._plan_bundle(item))

        for spec in self.certs:
            cert_path, key_path = self._file(spec['name'], '.pem'), self._file(spec['name'], '-key.pem')
            found = read_existing(cert_path, key_path)
            item = Item('certificate', spec, cert_path, key_path, found)
            item.reasons = certificate_reasons(spec, found, ca_certs.get(spec['ca']), self.now,
                                               self.renew_before, spec['ca'] in replaced)
            if (item.reasons == [NOT_SIGNED] and spec['name'] in self.keep_on_previous
                    and spec['ca'] in previous_certs and signed_by(found.cert, previous_certs[spec['ca']])):
                item.reasons = []  # signed by the old CA, still trusted until the rotation's last step
            if not item.reasons and ('*' in self.reissue or spec['name'] in self.reissue):
                item.reasons = ['re-issue asked for']
            elif not item.reasons and self.reissue_within and not_after(found.cert) - self.now <= self.reissue_within:
                item.reasons = ['re-issue asked for what expires within %d days (%s)'
                                % (self.reissue_within.days, format_time(not_after(found.cert)))]
            if item.reasons:
                item.action = 'created' if found.cert_state == 'missing' else 'reissued'
                item.new_key = found.key is None or not spec['key'].matches(found.key)
                item.not_after = None  # known once issued (clamped to the CA's expiry)
            else:
                item.not_after = not_after(found.cert)
                item.fix_key_mode = found.key_mode != KEY_MODE
            self.items['certificates'].append(item)

        for spec in self.pairs:
            key_path, pub_path = self._file(spec['name'], '-key.pem'), self._file(spec['name'], '.pub')
            found = read_existing(key_path=key_path, pub_path=pub_path)
            item = Item('keypair', spec, pub_path, key_path, found)
            item.action, item.reasons, item.new_key = plan_keypair(spec, found)
            if item.action == 'unchanged' or not item.new_key:
                item.fix_key_mode = found.key_mode != KEY_MODE
            self.items['keypairs'].append(item)
        self._estimate_not_after()
        self.planned = True
        return self

    def _estimate_not_after(self):
        """Expiry of certificates to be issued, as they will be (for check mode and results)."""
        ca_expiry = {i.name: i.not_after for i in self.items['authorities']}
        for item in self.items['certificates']:
            if item.action != 'unchanged':
                wanted = self.now + datetime.timedelta(days=item.spec['lifetime_days'])
                item.not_after = min(wanted, ca_expiry[item.spec['ca']])

    @property
    def changed(self):
        return self.create_dir or any(i.changes for items in self.items.values() for i in items)

    # -- rotating authorities ---------------------------------------------

    def _rotation_step(self, name):
        """The rotation step this run takes for authority ``name``, or None when it has nothing to do.

        Each step is re-runnable: a step already taken is nothing to do; asking for a step out of
        order raises, naming the step that comes first.
        """
        has_next = os.path.exists(self._file(name, '-next.pem'))
        has_previous = os.path.exists(self._file(name, '-previous.pem'))
        if self.rotation == 'stage':
            if has_previous and not has_next:
                raise PKIError('authority %s: the last rotation is not finished (%s-previous.pem is still trusted): '
                               'run its finish step before staging another CA' % (name, name))
            return None if has_next else 'stage'
        if self.rotation == 'switch':
            if has_next:
                return 'switch'
            if has_previous:
                return None  # switched before
            raise PKIError('authority %s: no CA is staged to switch to (%s-next.pem): run the stage step first'
                           % (name, name))
        if self.rotation == 'finish':
            if has_next:
                raise PKIError('authority %s: a staged CA (%s-next.pem) does not sign yet: run the switch step '
                               'before finishing' % (name, name))
            return 'finish' if has_previous else None
        return None

    def _previous_after_step(self, name, step, cert_path):
        """The old CA that stays trusted once this run's step is taken (None outside a rotation)."""
        kept = self._file(name, '-previous.pem')
        if step == 'finish':
            return None
        if step == 'switch' and not os.path.exists(kept):
            return read_existing(cert_path).cert
        return read_existing(kept).cert if os.path.exists(kept) else None

    def _plan_bundle(self, authority):
        """The trust bundle of an authority: its current CA, a staged one and the previous one, as they
        will be after this run's rotation step."""
        name = authority.name
        item = BundleItem(name, self._file(name, '-bundle.pem'))
        parts = [cert_pem(authority.found.cert) if authority.action == 'unchanged' else authority.path]
        if authority.rotation == 'stage':
            parts.append(self._file(name, '-next.pem'))
        elif authority.rotation != 'switch' and os.path.exists(self._file(name, '-next.pem')):
            parts.append(read_bytes(self._file(name, '-next.pem'))[0])
        if authority.rotation == 'switch':
            # the old CA: kept by an earlier, interrupted switch, or still the current one
            kept = self._file(name, '-previous.pem')
            parts.append(read_bytes(kept if os.path.exists(kept) else authority.path)[0])
        elif authority.rotation != 'finish' and os.path.exists(self._file(name, '-previous.pem')):
            parts.append(read_bytes(self._file(name, '-previous.pem'))[0])
        item.parts = parts
        current = read_bytes(item.path)[0]
        if any(isinstance(p, str) for p in parts) or current != b''.join(parts):
            item.action = 'created' if current is None else 'written'
            item.reasons = ['the trust bundle holds %d CA(s)' % len(parts)]
        return item

    def _apply_rotation(self, item):
        """Move an authority's files for its rotation step; an interrupted move is finished by the next run."""
        name = item.name
        if item.rotation == 'stage':
            key = item.spec['key'].generate()
            cert = build_authority(item.spec, key, self.now)
            write_atomic(self._file(name, '-next-key.pem'), key_pem(key), KEY_MODE, durable=True)
            write_atomic(self._file(name, '-next.pem'), cert_pem(cert), CERT_MODE, durable=True)
        elif item.rotation == 'switch':
            # the old CA is kept first (once: an earlier, interrupted switch may have kept it already)
            if not os.path.exists(self._file(name, '-previous.pem')):
                write_atomic(self._file(name, '-previous-key.pem'), read_bytes(item.key_path)[0], KEY_MODE,
                             durable=True)
                write_atomic(self._file(name, '-previous.pem'), read_bytes(item.path)[0], CERT_MODE, durable=True)
            write_atomic(item.key_path, read_bytes(self._file(name, '-next-key.pem'))[0], KEY_MODE, durable=True)
            write_atomic(item.path, read_bytes(self._file(name, '-next.pem'))[0], CERT_MODE, durable=True)
            os.unlink(self._file(name, '-next.pem'))
            os.unlink(self._file(name, '-next-key.pem'))
        elif item.rotation == 'finish':
            stamp = self.now.strftime('%Y%m%dT%H%M%SZ')
            os.replace(self._file(name, '-previous-key.pem'), self._file(name, '-retired-%s-key.pem' % stamp))
            os.replace(self._file(name, '-previous.pem'), self._file(name, '-retired-%s.pem' % stamp))

    # -- applying ---------------------------------------------------------

    def _write_key(self, path, key):
        write_atomic(path, key_pem(key), KEY_MODE, durable=self.durable)

    def apply(self):
        if not self.planned:
            self.plan()
        if self.create_dir:
            os.makedirs(self.path, DIR_MODE)
            os.chmod(self.path, DIR_MODE)
        signers = {}
        for item in self.items['authorities']:
            if item.rotation is not None:
                self._apply_rotation(item)
            if item.action == 'unchanged':
                signers[item.name] = Signer(item.found.cert, item.found.key)
                if item.fix_key_mode:
                    os.chmod(item.key_path, KEY_MODE)
                continue
            key = item.spec['key'].generate()
            cert = build_authority(item.spec, key, self.now)
            # Authorities are rare and precious: flush them to disk before the rename.
            write_atomic(item.key_path, key_pem(key), KEY_MODE, durable=True)
            write_atomic(item.path, cert_pem(cert), CERT_MODE, durable=True)
            item.not_after = not_after(cert)
            signers[item.name] = Signer(cert, key)

        for item in self.items['bundles']:
            if item.action != 'unchanged':
                parts = [read_bytes(p)[0] if isinstance(p, str) else p for p in item.parts]
                write_atomic(item.path, b''.join(parts), CERT_MODE, durable=self.durable)

        for item in self.items['certificates']:
            if item.action == 'unchanged':
                if item.fix_key_mode:
                    os.chmod(item.key_path, KEY_MODE)
                continue
            if item.new_key:
                key = item.spec['key'].generate()
                self._write_key(item.key_path, key)
            else:
                key = item.found.key
                if item.found.key_mode != KEY_MODE:
                    os.chmod(item.key_path, KEY_MODE)
            cert = signers[item.spec['ca']].issue(item.spec, key, self.now)
            write_atomic(item.path, cert_pem(cert), CERT_MODE, durable=self.durable)
            item.not_after = not_after(cert)

        for item in self.items['keypairs']:
            if item.action != 'unchanged' and item.new_key:
                key = item.spec['key'].generate()
                self._write_key(item.key_path, key)
            else:
                key = item.found.key
                if item.fix_key_mode:
                    os.chmod(item.key_path, KEY_MODE)
            if item.action != 'unchanged':
                write_atomic(item.path, public_pem(key), CERT_MODE, durable=self.durable)
        return self

    # -- reporting --------------------------------------------------------

    def results(self):
        return {kind: {i.name: i.result() for i in items} for kind, items in self.items.items()}

    def diff(self):
        """A before/after text summary of every item that changes."""
        before, after = [], []
        if self.create_dir:
            before.append('directory %s: absent' % self.path)
            after.append('directory %s: present (0700)' % self.path)
        for kind, items in self.items.items():
            for item in items:
                if not item.changes:
                    continue
                label = '%s/%s' % (kind, item.name)
                if item.kind == 'bundle':
                    before.append('%s: %s' % (label, 'absent' if item.action == 'created' else 'other certificates'))
                    after.append('%s: %s (%s)' % (label, item.action, '; '.join(item.reasons)))
                    continue
                found = item.found
                if item.kind == 'keypair':
                    state = 'key %s, public key %s' % (found.key_state, found.pub_state)
                else:
                    state = 'certificate %s, key %s' % (found.cert_state, found.key_state)
                    if found.cert is not None:
                        state += ', not after %s' % format_time(not_after(found.cert))
                if item.fix_key_mode and found.key_mode is not None:
                    state += ', key mode %04o' % found.key_mode
                before.append('%s: %s' % (label, state))
                result = item.result()
                line = '%s: %s (%s)' % (label, result['action'], result['reason'])
                if item.kind != 'keypair' and item.not_after is not None:
                    line += ', not after %s' % format_time(item.not_after)
                after.append(line)
        return {'before': '\n'.join(before) + ('\n' if before else ''),
                'after': '\n'.join(after) + ('\n' if after else '')}
