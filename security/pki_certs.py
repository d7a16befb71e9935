"""Further certificate profiles of the development PKI: TLS, OCSP responder, intermediate CA.

- TLS server: the gateway's HTTPS ports; subjectAltName ``localhost`` and ``127.0.0.1`` by
  default, extendedKeyUsage serverAuth.
- TLS client: an information system on the mTLS client port; the subject's commonName is the
  client identifier ``INSTANCE/CLASS/MEMBERCODE[/SUBSYSTEM]``, extendedKeyUsage clientAuth.
  It deliberately carries no subject ``serialNumber``: a TLS key must not be able to sign
  messages for the whole member (SPEC 5.4 binds a CA-issued certificate to the member named
  there). The registry pins it for the subsystem.
- OCSP responder: extendedKeyUsage OCSPSigning and the id-pkix-ocsp-nocheck extension
  (RFC 6960 4.2.2.2.1), so that a relying party accepts it as delegated by the CA.
- Intermediate CA: a CA of its own under another directory, issued by this one.

Each is recorded in the CA index, like every certificate the CA issues.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry.identifiers import ClientId
from security.errors import PkiError
from security.pki import IssuedCert, KeyType, PkiLayout, issue_certificate
from security.pki_build import Extensions, ca_extensions

__all__ = [
    "issue_intermediate_ca",
    "issue_ocsp_responder_cert",
    "issue_tls_client_cert",
    "issue_tls_server_cert",
]

_LOCAL_HOSTS = ("localhost", "127.0.0.1")


def _layout(layout_or_dir: PkiLayout | Path) -> PkiLayout:
    return layout_or_dir if isinstance(layout_or_dir, PkiLayout) else PkiLayout(layout_or_dir)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "obmin"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _end_entity(
    key_type: KeyType, *, encipherment: bool, purpose: x509.ObjectIdentifier
) -> Extensions:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # TLS with RSA key exchange (TLS 1.2) encrypts the premaster secret to the key.
        key_encipherment=encipherment and key_type == "rsa",
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (usage, True),
        (x509.ExtendedKeyUsage([purpose]), False),
    ]


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() or c == "/" for c in host):
        raise PkiError(f"{host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def issue_tls_server_cert(
    layout_or_dir: PkiLayout | Path,
    *,
    hosts: Sequence[str] = _LOCAL_HOSTS,
    name: str = "obmin gateway TLS",
    out_dir: Path | None = None,
    days: int = 825,
    now: datetime | None = None,
    key_type: KeyType = "ec",
    passphrase: bytes | None = None,
) -> IssuedCert:
    """Issue a TLS server certificate for ``hosts`` (DNS names and IP addresses).

    Written to ``out_dir/tls.crt|key``, by default ``gateway/tls.crt|key``.
    """
    if not hosts:
        raise PkiError("a TLS server certificate needs at least one host name or address")
    layout = _layout(layout_or_dir)
    names = [_general_name(host) for host in hosts]
    extensions = [
        *_end_entity(key_type, encipherment=True, purpose=ExtendedKeyUsageOID.SERVER_AUTH),
        (x509.SubjectAlternativeName(names), False),
    ]
    target = out_dir if out_dir is not None else layout.tls_server_cert.parent
    return issue_certificate(
        layout,
        subject=_name(name),
        extensions=extensions,
        cert_path=target / "tls.crt",
        key_path=target / "tls.key",
        days=days,
        now=now,
        key_type=key_type,
        passphrase=passphrase,
    )


def issue_tls_client_cert(
    layout_or_dir: PkiLayout | Path,
    client: ClientId,
    *,
    out_dir: Path | None = None,
    days: int = 365,
    now: datetime | None = None,
    key_type: KeyType = "ec",
    passphrase: bytes | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> IssuedCert:
    """Issue a TLS client certificate whose subject commonName is ``client``.

    Written to ``out_dir/tls.crt|key``, by default ``members/MEMBERCODE/SUBSYSTEM/`` (or
    ``members/MEMBERCODE/tls/`` for a member-level client).
    """
    layout = _layout(layout_or_dir)
    default = layout.member_dir(client.member) / (client.subsystem or "tls")
    target = out_dir if out_dir is not None else default
    return issue_certificate(
        layout,
        subject=_name(str(client)),
        extensions=_end_entity(
            key_type, encipherment=True, purpose=ExtendedKeyUsageOID.CLIENT_AUTH
        ),
        cert_path=target / "tls.crt",
        key_path=target / "tls.key",
        days=days,
        now=now,
        key_type=key_type,
        passphrase=passphrase,
        ocsp_url=ocsp_url,
        crl_url=crl_url,
    )


def issue_ocsp_responder_cert(
    layout_or_dir: PkiLayout | Path,
    *,
    name: str = "obmin OCSP responder",
    out_dir: Path | None = None,
    days: int = 365,
    now: datetime | None = None,
    key_type: KeyType = "ec",
    passphrase: bytes | None = None,
) -> IssuedCert:
    """Issue the certificate of a delegated OCSP responder for this CA.

    Written to ``out_dir/ocsp.crt|key``, by default ``ocsp/ocsp.crt|key``; use it with
    ``openssl ocsp -index ca/index.txt -CA ca/ca.crt -rsigner ocsp/ocsp.crt -rkey
    ocsp/ocsp.key -port N``.
    """
    layout = _layout(layout_or_dir)
    extensions = [
        *_end_entity(key_type, encipherment=False, purpose=ExtendedKeyUsageOID.OCSP_SIGNING),
        (x509.OCSPNoCheck(), False),
    ]
    target = out_dir if out_dir is not None else layout.ocsp_cert.parent
    return issue_certificate(
        layout,
        subject=_name(name),
        extensions=extensions,
        cert_path=target / "ocsp.crt",
        key_path=target / "ocsp.key",
        days=days,
        now=now,
        key_type=key_type,
        passphrase=passphrase,
    )


def issue_intermediate_ca(
    parent: PkiLayout | Path,
    directory: Path,
    *,
    name: str,
    days: int = 1825,
    now: datetime | None = None,
    passphrase: bytes | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> PkiLayout:
    """Create an intermediate CA under ``directory``, issued by the CA of ``parent``.

    The result is a PKI layout of its own (``ca/ca.crt`` is the intermediate, with a path
    length of 0), so `issue_member_cert` and the other issuers work on it unchanged; the
    parent's index records the intermediate. Its certificates validate with the parent's CA
    as trust anchor when the intermediate travels with the message or is configured.
    """
    child = PkiLayout(Path(directory))
    if child.ca_cert.exists():
        raise PkiError(f"a CA already exists at {child.ca_cert}")
    issue_certificate(
        _layout(parent),
        subject=_name(name),
        extensions=ca_extensions(0),
        cert_path=child.ca_cert,
        key_path=child.ca_key,
        days=days,
        now=now,
        key_type="ec",
        passphrase=passphrase,
        ocsp_url=ocsp_url,
        crl_url=crl_url,
    )
    return child
