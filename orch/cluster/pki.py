"""The cluster's certificates and join tokens, as swarmkit's ca package has them.

- A cluster CA (ECDSA P-256, CN `swarm-ca`) signs every node's certificate. The subject names
  the node: CN = node id, OU = role (`swarm-manager` or `swarm-worker`), O = cluster id; the
  dispatcher reads the role from a verified peer certificate with `role_of`.
- Issuance is CSR-based: a joiner makes its own key and sends a CSR with its join token; a
  manager checks the token and signs with the role the token grants. The CSR's own subject
  is ignored (swarmkit ignores it too): the CA decides who the certificate names.
- Join tokens are docker's `SWMTKN-1-<digest>-<secret>`: the digest is the SHA-256 of the CA
  certificate's PEM in base 36, padded to 50 characters, and the secret 16 random bytes in
  base 36, padded to 25 (swarmkit's GenerateJoinToken). The cluster stores only the SHA-256 of
  each role's secret; rotation makes a new secret, so old tokens stop working. A joiner that
  fetched the CA certificate over an unverified connection pins it with `pin_ca` before it
  trusts anything signed by it.
- etcd gets a CA of its own (`orch-etcd-ca`) that only managers hold: a worker's certificate
  is signed by the cluster CA, so etcd (which trusts only the etcd CA) refuses it at the TLS
  handshake, whatever its subject says.

Everything here is pure and fast (an ECDSA P-256 key or signature takes well under a
millisecond), so trio code may call it directly; writing the PEM files is the caller's I/O.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import random
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orch.errors import InvalidArgument, PermissionDenied

MANAGER = "swarm-manager"
WORKER = "swarm-worker"
ROLES = (MANAGER, WORKER)

TOKEN_PREFIX = "SWMTKN-1-"
DIGEST_LEN = 50  # swarmkit's base36DigestLen: a SHA-256 in base 36 takes at most 50 digits
SECRET_LEN = 25  # swarmkit's maxGeneratedSecretLength: 16 bytes in base 36
SECRET_BYTES = 16

CA_VALIDITY = datetime.timedelta(days=20 * 365)  # swarmkit's root CA: 20 years
NODE_VALIDITY = datetime.timedelta(days=30)  # short-ish; nodes renew between 50% and 80% of it
BACKDATE = datetime.timedelta(minutes=5)  # a little clock skew between hosts does not refuse new certs

_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgument("private key is not an ECDSA key; orch's certificates use ECDSA P-256")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise InvalidArgument(f"not a PEM certificate: {err}") from None


@dataclass(frozen=True)
class Issued:
    """A certificate and the key it certifies, both PEM (what a node writes to its disk)."""

    cert_pem: bytes
    key_pem: bytes


class CA:
    """A certificate authority: its certificate and its signing key."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, common_name: str = "swarm-ca", *, validity: datetime.timedelta = CA_VALIDITY) -> CA:
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert: bytes, key: bytes) -> CA:
        return cls(load_cert(cert), load_key(key))

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def digest(self) -> str:
        """The CA's digest as join tokens carry it."""
        return ca_digest(self.cert_pem)

    def _sign(self, subject: x509.Name, public_key, *, validity: datetime.timedelta, client: bool, server: bool,
              hosts: tuple[str, ...] = ()) -> x509.Certificate:
        now = _now()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + validity, self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def sign_node_csr(self, csr_pem: bytes, *, node_id: str, role: str, cluster_id: str,
                      validity: datetime.timedelta = NODE_VALIDITY, hosts: tuple[str, ...] = ()) -> bytes:
        """Sign a node's CSR: the subject is the CA's choice (node id, role, cluster id), not
        the CSR's. The certificate serves both ends of a TLS session (the dispatcher listens,
        workers connect), so it carries both extended key usages."""
        if role not in ROLES:
            raise InvalidArgument(f"unknown node role {role!r}: use {MANAGER} or {WORKER}")
        csr = _load_csr(csr_pem)
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, node_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
        ])
        return cert_pem(self._sign(subject, csr.public_key(), validity=validity, client=True, server=True, hosts=hosts))

    def issue(self, common_name: str, *, client: bool = True, server: bool = False, hosts: tuple[str, ...] = (),
              organization: str | None = None, unit: str | None = None,
              validity: datetime.timedelta = NODE_VALIDITY) -> Issued:
        """Make a key and a certificate for it here (etcd's server, peer and client certificates,
        which a manager makes for itself and so needs no CSR)."""
        key = new_key()
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if unit:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
        if organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        cert = self._sign(x509.Name(attrs), key.public_key(), validity=validity, client=client, server=server, hosts=hosts)
        return Issued(cert_pem(cert), key_pem(key))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as err:
        raise InvalidArgument(f"certificate signing request is not valid PEM: {err}") from None
    if not csr.is_signature_valid:
        raise InvalidArgument("certificate signing request's signature does not match its key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidArgument("certificate signing request must be for an ECDSA P-256 key")
    return csr


def make_csr(key: ec.EllipticCurvePrivateKey, node_hint: str = "") -> bytes:
    """A joiner's CSR. The subject is only a hint: the CA names the node."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_hint or "orch-node")]))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# -- reading verified certificates ----------------------------------------------------------

def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if len(values) == 1 else None


def role_of(cert: x509.Certificate | bytes) -> str:
    """The role a node certificate grants (OU). Call it on a peer certificate that TLS has
    verified against the cluster CA; anything without exactly one known role is refused."""
    cert = load_cert(cert) if isinstance(cert, bytes) else cert
    role = _attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if role not in ROLES:
        raise PermissionDenied(f"certificate of {node_id_of(cert) or 'an unknown node'} names no node role "
                               f"({MANAGER} or {WORKER}); it is not a node certificate of this cluster")
    return role


def node_id_of(cert: x509.Certificate | bytes) -> str:
    cert = load_cert(cert) if isinstance(cert, bytes) else cert
    return _attr(cert, NameOID.COMMON_NAME) or ""


def cluster_id_of(cert: x509.Certificate | bytes) -> str:
    cert = load_cert(cert) if isinstance(cert, bytes) else cert
    return _attr(cert, NameOID.ORGANIZATION_NAME) or ""


def require_role(cert: x509.Certificate | bytes, role: str) -> str:
    """The node id of a verified peer certificate that must have `role` (a worker's
    certificate where a manager's is needed is refused). Returns the node id."""
    have = role_of(cert)
    if have != role:
        raise PermissionDenied(f"node {node_id_of(cert)} is a {have.removeprefix('swarm-')}; "
                               f"this needs a {role.removeprefix('swarm-')}'s certificate")
    return node_id_of(cert)


def verify_signed_by(cert: x509.Certificate | bytes, ca_cert: x509.Certificate, *, now: datetime.datetime | None = None) -> None:
    """Check that `cert` is signed by `ca_cert` and valid now (TLS does this for peers; this is
    for certificates that arrive as data, e.g. a renewed one before it is installed)."""
    cert = load_cert(cert) if isinstance(cert, bytes) else cert
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PermissionDenied(f"certificate of {node_id_of(cert) or 'an unknown node'} is not signed by this cluster's CA") from None
    now = now or _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise PermissionDenied(f"certificate of {node_id_of(cert)} is not valid now "
                               f"(valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)")


def renew_at(cert: x509.Certificate | bytes, rng: random.Random | None = None) -> datetime.datetime:
    """When a node should ask for a new certificate: a random point between 50% and 80% of
    its validity, so a cluster's nodes do not all renew at once (swarmkit's calculateRandomExpiry)."""
    cert = load_cert(cert) if isinstance(cert, bytes) else cert
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    fraction = (rng or random.SystemRandom()).uniform(0.5, 0.8)
    return start + (end - start) * fraction


# -- join tokens ----------------------------------------------------------------------------

def _base36(n: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALNUM[r])
    return "".join(reversed(out)) or "0"


def ca_digest(ca_cert_pem: bytes) -> str:
    """The CA's SHA-256 in base 36, zero-padded to 50 digits, as a token carries it."""
    return _base36(int.from_bytes(hashlib.sha256(ca_cert_pem).digest(), "big")).rjust(DIGEST_LEN, "0")


def secret_hash(secret: str) -> str:
    """What the cluster stores of a token's secret: never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class JoinToken:
    token: str  # SWMTKN-1-<digest>-<secret>: what `swarm join-token` prints
    secret_hash: str  # what the cluster record stores


def new_join_token(ca_cert_pem: bytes) -> JoinToken:
    """A new token for one role; rotating a role's token is making a new one and storing its hash."""
    secret = _base36(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big")).rjust(SECRET_LEN, "0")
    return JoinToken(f"{TOKEN_PREFIX}{ca_digest(ca_cert_pem)}-{secret}", secret_hash(secret))


def parse_token(token: str) -> tuple[str, str]:
    """(CA digest, secret) of a token, or a one-line error saying what is wrong with it."""
    token = token.strip()
    parts = token.split("-")
    if len(parts) != 4 or f"{parts[0]}-{parts[1]}-" != TOKEN_PREFIX:
        raise InvalidArgument("invalid join token: it should look like SWMTKN-1-<digest>-<secret>; "
                              "copy it again from `orch swarm join-token worker` on a manager")
    digest, secret = parts[2], parts[3]
    if len(digest) != DIGEST_LEN or len(secret) != SECRET_LEN or not (digest + secret).isalnum() or not (digest + secret).islower():
        raise InvalidArgument("invalid join token: its digest or secret has the wrong length or characters; "
                              "copy it again from `orch swarm join-token worker` on a manager")
    return digest, secret


def role_for_token(token: str, *, ca_cert_pem: bytes, worker_hash: str, manager_hash: str) -> str:
    """The role a presented token grants, checked against the stored hashes in constant time
    (both hashes are always compared). A rotated token's secret matches neither."""
    digest, secret = parse_token(token)
    presented = secret_hash(secret).encode()
    is_worker = hmac.compare_digest(presented, worker_hash.encode())
    is_manager = hmac.compare_digest(presented, manager_hash.encode())
    if not hmac.compare_digest(digest.encode(), ca_digest(ca_cert_pem).encode()):
        raise PermissionDenied("join token is for another cluster (its CA digest does not match this cluster's CA)")
    if is_manager:
        return MANAGER
    if is_worker:
        return WORKER
    raise PermissionDenied("join token is not valid: it may have been rotated; "
                           "get the current one with `orch swarm join-token worker|manager` on a manager")


def pin_ca(token: str, ca_cert_pem: bytes) -> x509.Certificate:
    """The joiner's first step: a CA certificate fetched over an unverified connection is
    trusted only if its digest is the one the token carries (so a man in the middle cannot
    substitute his own CA)."""
    digest, _secret = parse_token(token)
    if not hmac.compare_digest(digest.encode(), ca_digest(ca_cert_pem).encode()):
        raise PermissionDenied("the manager's CA certificate does not match the join token's digest; "
                               "the token is for another cluster, or someone is in between")
    cert = load_cert(ca_cert_pem)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise PermissionDenied("the certificate the manager sent as its CA is not a CA certificate")
    return cert
