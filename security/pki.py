"""Development PKI: a CA, the gateway's signing certificate and member signing certificates.

For development and tests only (SPEC 5.4, ``obmin pki``). Private keys are PKCS#8 PEM files
with mode 0600, encrypted with the passphrase passed in (``obmin pki`` requires one, from
``OBMIN_PKI_PASSPHRASE`` or a passphrase file, unless told ``--no-encryption``; see
`security.pki_keys.pki_passphrase`). The library functions write a clear key when given no
passphrase, which the test suite uses and nothing else should.

The identity fields follow X-Road: a member's signing certificate names the member in its
subject ``serialNumber`` (OID 2.5.4.5) as ``INSTANCE/CLASS/MEMBERCODE`` and carries the
nonRepudiation and digitalSignature key usages.

Layout under the PKI directory::

    ca/ca.crt  ca/ca.key                 the development CA (EC P-256)
    ca/index.txt                         every issued certificate, OpenSSL ``ca`` index format
    ca/crl.pem  ca/crlnumber             the CA's CRL (``security.pki_revoke``)
    gateway/sign.crt  gateway/sign.key   the gateway's own signing certificate (RSA-2048)
    gateway/log.key                      the gateway's audit log key (Ed25519, signs checkpoints)
    gateway/tls.crt  gateway/tls.key     the gateway's TLS server certificate
    members/MEMBERCODE/sign.crt|key      member signing certificates (RSA-2048 by default)
    members/MEMBERCODE/SUBSYSTEM/sign.*  subsystem signing certificates (pinned in the registry)
    members/MEMBERCODE/SUBSYSTEM/tls.*   TLS client certificates of subsystems
    ocsp/ocsp.crt  ocsp/ocsp.key         the OCSP responder's certificate

TLS and OCSP responder certificates are issued by ``security.pki_certs``; revocation and the
CRL are ``security.pki_revoke``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.identifiers import ClientId, MemberId
from security.errors import PkiError
from security.pki_build import Extensions, ca_extensions, sign_certificate
from security.pki_index import append_issued
from security.pki_keys import (
    KeyType,
    SigningKey,
    load_certificate,
    load_private_key,
)
from security.pki_keys import (
    new_key as _new_key,
)
from security.pki_keys import (
    write_cert as _write_cert,
)
from security.pki_keys import (
    write_key as _write_key,
)

__all__ = [
    "GATEWAY_MEMBER_CLASS",
    "GATEWAY_MEMBER_CODE",
    "IssuedCert",
    "KeyType",
    "KeyUsageProfile",
    "PkiLayout",
    "SigningKey",
    "init_pki",
    "issue_certificate",
    "issue_member_cert",
    "issue_subsystem_cert",
    "load_certificate",
    "load_private_key",
]

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

    @property
    def log_key(self) -> Path:
        """The gateway's audit log key (Ed25519): it signs the log's checkpoints."""
        return self.root / "gateway" / "log.key"

    def member_dir(self, member: MemberId) -> Path:
        """The default directory of a member's signing certificate and key."""
        return self.root / "members" / member.member_code

    @property
    def ca_index(self) -> Path:
        """The CA's certificate database (OpenSSL ``ca`` index format)."""
        return self.root / "ca" / "index.txt"

    @property
    def ca_crl(self) -> Path:
        """The CA's current CRL (PEM)."""
        return self.root / "ca" / "crl.pem"

    @property
    def ca_crl_number(self) -> Path:
        """The number of the last CRL issued, in hex (as ``openssl ca`` keeps it)."""
        return self.root / "ca" / "crlnumber"

    @property
    def tls_server_cert(self) -> Path:
        """The gateway's TLS server certificate."""
        return self.root / "gateway" / "tls.crt"

    @property
    def tls_server_key(self) -> Path:
        """The gateway's TLS server key."""
        return self.root / "gateway" / "tls.key"

    @property
    def ocsp_cert(self) -> Path:
        """The OCSP responder's certificate."""
        return self.root / "ocsp" / "ocsp.crt"

    @property
    def ocsp_key(self) -> Path:
        """The OCSP responder's key."""
        return self.root / "ocsp" / "ocsp.key"


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate and key written by one of the ``issue_*`` functions."""

    cert_path: Path
    key_path: Path
    certificate: x509.Certificate


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise PkiError("now must be timezone-aware")
    return now


def _layout(layout_or_dir: PkiLayout | Path) -> PkiLayout:
    return layout_or_dir if isinstance(layout_or_dir, PkiLayout) else PkiLayout(layout_or_dir)


def _make_ca(instance: str, now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "obmin"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"obmin development CA ({instance})"),
        ]
    )
    cert = sign_certificate(
        key,
        None,
        subject=name,
        public_key=key.public_key(),
        not_before=now - _BACKDATE,
        not_after=now + timedelta(days=_CA_DAYS),
        extensions=ca_extensions(None),
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


def _member_subject(member: MemberId, name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(member)),
        ]
    )


def _member_extensions(key_usage: KeyUsageProfile) -> Extensions:
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(key_usage), True),
    ]


def init_pki(
    directory: Path,
    instance: str = "SEVDEIR-TEST",
    *,
    now: datetime | None = None,
    force: bool = False,
    passphrase: bytes | None = None,
) -> PkiLayout:
    """Create a development CA, the gateway's signing certificate and its audit log key
    (Ed25519, ``gateway/log.key``) under ``directory``.

    Refuses (`PkiError`) to replace an existing CA unless ``force`` is true: every
    certificate issued by the old CA would silently stop being trusted. The keys are
    encrypted with ``passphrase`` when one is given.
    """
    current = _now(now)
    layout = PkiLayout(Path(directory))
    if layout.ca_cert.exists() and not force:
        raise PkiError(f"a CA already exists at {layout.ca_cert}; pass force=True to replace it")
    gateway = MemberId(instance, GATEWAY_MEMBER_CLASS, GATEWAY_MEMBER_CODE)
    ca_key, ca_cert = _make_ca(instance, current)
    gateway_key = _new_key("rsa")
    gateway_cert = sign_certificate(
        ca_key,
        ca_cert,
        subject=_member_subject(gateway, "obmin gateway"),
        public_key=gateway_key.public_key(),
        not_before=current - _BACKDATE,
        not_after=current + timedelta(days=825),
        extensions=_member_extensions("signing"),
    )
    try:
        _write_key(layout.ca_key, ca_key, passphrase)
        _write_cert(layout.ca_cert, ca_cert)
        _write_key(layout.gateway_key, gateway_key, passphrase)
        _write_cert(layout.gateway_cert, gateway_cert)
        _write_key(layout.log_key, _new_key("ed25519"), passphrase)
        # A replaced CA starts a new database and CRL: the old ones name another issuer.
        for stale in (layout.ca_index, layout.ca_crl, layout.ca_crl_number):
            stale.unlink(missing_ok=True)
    except OSError as exc:
        raise PkiError(f"cannot write the development PKI under {directory}: {exc}") from exc
    append_issued(layout.ca_index, gateway_cert)
    return layout


def issue_certificate(
    layout_or_dir: PkiLayout | Path,
    *,
    subject: x509.Name,
    extensions: Extensions,
    cert_path: Path,
    key_path: Path,
    days: int,
    now: datetime | None = None,
    not_before: datetime | None = None,
    key_type: KeyType = "rsa",
    passphrase: bytes | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> IssuedCert:
    """Issue one certificate from the PKI's CA, write it and its new key, record it.

    The certificate is valid from ``not_before`` (default a few minutes before ``now``) for
    ``days`` days and is appended to the CA index as valid. The new key and the CA key are
    encrypted/decrypted with ``passphrase``. The profile functions (`issue_member_cert`,
    ``security.pki_certs``) call this with their subject and extensions.
    """
    current = _now(now)
    if days <= 0:
        raise PkiError("days must be positive")
    layout = _layout(layout_or_dir)
    ca_key = load_private_key(layout.ca_key, passphrase)
    ca_cert = load_certificate(layout.ca_cert)
    start = not_before if not_before is not None else current - _BACKDATE
    key = _new_key(key_type)
    cert = sign_certificate(
        ca_key,
        ca_cert,
        subject=subject,
        public_key=key.public_key(),
        not_before=start,
        not_after=start + timedelta(days=days),
        extensions=extensions,
        ocsp_url=ocsp_url,
        crl_url=crl_url,
    )
    try:
        _write_key(key_path, key, passphrase)
        _write_cert(cert_path, cert)
    except OSError as exc:
        raise PkiError(f"cannot write the certificate {cert_path}: {exc}") from exc
    append_issued(layout.ca_index, cert)
    return IssuedCert(cert_path=cert_path, key_path=key_path, certificate=cert)


def _subsystem_subject(client: ClientId, name: str | None) -> x509.Name:
    # No serialNumber: a CA-issued certificate with one speaks for the whole member (SPEC
    # 5.4). This one speaks only for the subsystem whose registry entry pins it.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "obmin"),
            x509.NameAttribute(NameOID.COMMON_NAME, name or str(client)),
        ]
    )


def issue_subsystem_cert(
    layout_or_dir: PkiLayout | Path,
    client: ClientId,
    *,
    name: str | None = None,
    out_dir: Path | None = None,
    days: int = 365,
    now: datetime | None = None,
    key_type: KeyType = "rsa",
    passphrase: bytes | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> IssuedCert:
    """Issue a signing certificate for one subsystem, to be pinned in the registry.

    The subject's commonName is the subsystem identifier (or ``name``) and there is no
    ``serialNumber``, so the certificate speaks for no member: only for the subsystem whose
    ``signing_certificates`` list it. Written to ``out_dir/sign.crt|key``, by default
    ``members/MEMBERCODE/SUBSYSTEM/``.
    """
    if client.subsystem is None:
        raise PkiError(f"{client} is a member, not a subsystem (INSTANCE/CLASS/CODE/SUBSYSTEM)")
    layout = _layout(layout_or_dir)
    target = out_dir if out_dir is not None else layout.member_dir(client.member) / client.subsystem
    return issue_certificate(
        layout,
        subject=_subsystem_subject(client, name),
        extensions=_member_extensions("signing"),
        cert_path=target / "sign.crt",
        key_path=target / "sign.key",
        days=days,
        now=now,
        key_type=key_type,
        passphrase=passphrase,
        ocsp_url=ocsp_url,
        crl_url=crl_url,
    )


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
    passphrase: bytes | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> IssuedCert:
    """Issue a signing certificate for ``member`` from the development CA.

    The files go to ``out_dir`` (default ``members/MEMBERCODE`` under the PKI) as
    ``sign.crt`` and ``sign.key``. The certificate is valid from ``not_before`` (default a
    few minutes before ``now``) for ``days`` days, so an already expired certificate is
    ``not_before=now - 60 days, days=30``. ``key_usage="encipherment"`` issues one that must
    not be accepted for signatures. ``ocsp_url`` and ``crl_url`` go into the AIA and CRL
    distribution point extensions.
    """
    layout = _layout(layout_or_dir)
    target = out_dir if out_dir is not None else layout.member_dir(member)
    return issue_certificate(
        layout,
        subject=_member_subject(member, name),
        extensions=_member_extensions(key_usage),
        cert_path=target / "sign.crt",
        key_path=target / "sign.key",
        days=days,
        now=now,
        not_before=not_before,
        key_type=key_type,
        passphrase=passphrase,
        ocsp_url=ocsp_url,
        crl_url=crl_url,
    )
