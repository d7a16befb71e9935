"""Development PKI: a CA, the gateway's signing certificate and member signing certificates.

For development and tests only (SPEC 5.4, ``obmin pki``): private keys are written as
unencrypted PKCS#8 PEM files with mode 0600. The identity fields follow X-Road: a member's
signing certificate names the member in its subject ``serialNumber`` (OID 2.5.4.5) as
``INSTANCE/CLASS/MEMBERCODE`` and carries the nonRepudiation and digitalSignature key usages.

Layout under the PKI directory::

    ca/ca.crt  ca/ca.key                 the development CA (EC P-256)
    gateway/sign.crt  gateway/sign.key   the gateway's own signing certificate (RSA-2048)
    members/MEMBERCODE/sign.crt|key      member signing certificates (RSA-2048 by default)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from registry.identifiers import MemberId
from security.errors import PkiError

__all__ = [
    "GATEWAY_MEMBER_CLASS",
    "GATEWAY_MEMBER_CODE",
    "IssuedCert",
    "KeyType",
    "KeyUsageProfile",
    "PkiLayout",
    "SigningKey",
    "init_pki",
    "issue_member_cert",
    "load_certificate",
    "load_private_key",
]

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""The private key types obmin signs with."""

_SIGNING_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)

KeyType = Literal["rsa", "ec", "ed25519"]
"""Key algorithm of an issued certificate: RSA-2048, EC P-256 or Ed25519."""

KeyUsageProfile = Literal["signing", "encipherment"]
"""``signing`` is the right one; ``encipherment`` (keyEncipherment only) exists for tests."""

GATEWAY_MEMBER_CLASS = "GOV"
GATEWAY_MEMBER_CODE = "00000000"

# Backdate notBefore a little so that a certificate made just now is valid on a peer whose
# clock runs slightly behind.
_BACKDATE = timedelta(minutes=5)
_CA_DAYS = 3650


@dataclass(frozen=True, slots=True)
class PkiLayout:
    """Where the files of a development PKI live."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate (the trust anchor to configure)."""
        return self.root / "ca" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA private key."""
        return self.root / "ca" / "ca.key"

    @property
    def gateway_cert(self) -> Path:
        """The gateway's signing certificate."""
        return self.root / "gateway" / "sign.crt"

    @property
    def gateway_key(self) -> Path:
        """The gateway's signing key."""
        return self.root / "gateway" / "sign.key"

    def member_dir(self, member: MemberId) -> Path:
        """The default directory of a member's signing certificate and key."""
        return self.root / "members" / member.member_code


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate and key written by `issue_member_cert`."""

    cert_path: Path
    key_path: Path
    certificate: x509.Certificate


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise PkiError("now must be timezone-aware")
    return now


def _new_key(key_type: KeyType) -> SigningKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _write_key(path: Path, key: SigningKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with 0600 from the start (no window in which the key is world-readable), and
    # tighten an existing file that a previous run left with other bits.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_ca(instance: str, now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "obmin"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"obmin development CA ({instance})"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _key_usage(profile: KeyUsageProfile) -> x509.KeyUsage:
    signing = profile == "signing"
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=signing,
        key_encipherment=not signing,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    ca_key: SigningKey,
    ca_cert: x509.Certificate,
    member: MemberId,
    *,
    name: str,
    key: SigningKey,
    not_before: datetime,
    not_after: datetime,
    key_usage: KeyUsageProfile,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(member)),
        ]
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    # Ed25519 signs its message itself; the other algorithms take a hash.
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, algorithm)
    )


def init_pki(
    directory: Path,
    instance: str = "SEVDEIR-TEST",
    *,
    now: datetime | None = None,
    force: bool = False,
) -> PkiLayout:
    """Create a development CA and the gateway's signing certificate under ``directory``.

    Refuses (`PkiError`) to replace an existing CA unless ``force`` is true: every
    certificate issued by the old CA would silently stop being trusted.
    """
    current = _now(now)
    layout = PkiLayout(Path(directory))
    if layout.ca_cert.exists() and not force:
        raise PkiError(f"a CA already exists at {layout.ca_cert}; pass force=True to replace it")
    gateway = MemberId(instance, GATEWAY_MEMBER_CLASS, GATEWAY_MEMBER_CODE)
    ca_key, ca_cert = _make_ca(instance, current)
    gateway_key = _new_key("rsa")
    gateway_cert = _issue(
        ca_key,
        ca_cert,
        gateway,
        name="obmin gateway",
        key=gateway_key,
        not_before=current - _BACKDATE,
        not_after=current + timedelta(days=825),
        key_usage="signing",
    )
    try:
        _write_key(layout.ca_key, ca_key)
        _write_cert(layout.ca_cert, ca_cert)
        _write_key(layout.gateway_key, gateway_key)
        _write_cert(layout.gateway_cert, gateway_cert)
    except OSError as exc:
        raise PkiError(f"cannot write the development PKI under {directory}: {exc}") from exc
    return layout


def issue_member_cert(
    layout_or_dir: PkiLayout | Path,
    member: MemberId,
    *,
    name: str,
    out_dir: Path | None = None,
    days: int = 365,
    now: datetime | None = None,
    not_before: datetime | None = None,
    key_type: KeyType = "rsa",
    key_usage: KeyUsageProfile = "signing",
) -> IssuedCert:
    """Issue a signing certificate for ``member`` from the development CA.

    The files go to ``out_dir`` (default ``members/MEMBERCODE`` under the PKI) as
    ``sign.crt`` and ``sign.key``. The certificate is valid from ``not_before`` (default a
    few minutes before ``now``) for ``days`` days, so an already expired certificate is
    ``not_before=now - 60 days, days=30``. ``key_usage="encipherment"`` issues one that must
    not be accepted for signatures.
    """
    current = _now(now)
    if days <= 0:
        raise PkiError("days must be positive")
    layout = layout_or_dir if isinstance(layout_or_dir, PkiLayout) else PkiLayout(layout_or_dir)
    ca_key = load_private_key(layout.ca_key)
    ca_cert = load_certificate(layout.ca_cert)
    start = not_before if not_before is not None else current - _BACKDATE
    key = _new_key(key_type)
    cert = _issue(
        ca_key,
        ca_cert,
        member,
        name=name,
        key=key,
        not_before=start,
        not_after=start + timedelta(days=days),
        key_usage=key_usage,
    )
    target = out_dir if out_dir is not None else layout.member_dir(member)
    cert_path, key_path = target / "sign.crt", target / "sign.key"
    try:
        _write_key(key_path, key)
        _write_cert(cert_path, cert)
    except OSError as exc:
        raise PkiError(f"cannot write the certificate for {member} to {target}: {exc}") from exc
    return IssuedCert(cert_path=cert_path, key_path=key_path, certificate=cert)


def load_private_key(path: Path) -> SigningKey:
    """Read an unencrypted PEM private key (RSA, EC or Ed25519) or raise `PkiError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read private key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise PkiError(f"{path} holds a {type(key).__name__}; expected RSA, EC or Ed25519")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """Read the first certificate of a PEM file (or a DER file) or raise `PkiError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read certificate {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM or DER X.509 certificate") from exc
