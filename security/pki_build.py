"""Building and signing certificates for the development PKI (no files, no CA state).

`sign_certificate` is the one place where certificates are assembled: every profile (CA,
intermediate, member signing, TLS, OCSP responder) passes its subject and extensions, and gets
the key identifiers and the revocation pointers (AIA OCSP URL, CRL distribution point) added
the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID

from security.pki_keys import SigningKey

__all__ = ["Extensions", "ca_extensions", "sign_certificate"]

Extensions = Sequence[tuple[x509.ExtensionType, bool]]
"""Extensions of a certificate to issue, each with its criticality."""


def sign_certificate(
    issuer_key: SigningKey,
    issuer_cert: x509.Certificate | None,
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: datetime,
    not_after: datetime,
    extensions: Extensions,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> x509.Certificate:
    """Build and sign one certificate (self-signed when ``issuer_cert`` is None).

    Adds the subject and authority key identifiers, and the AIA OCSP and CRL distribution
    point URLs when given, to ``extensions``.
    """
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer_cert is None:
        issuer_name, issuer_ski = subject, ski
    else:
        issuer_name = issuer_cert.subject
        issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    builder = builder.add_extension(ski, critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
        critical=False,
    )
    if ocsp_url is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    # Ed25519 signs its message itself; the other algorithms take a hash.
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm)


def ca_extensions(path_length: int | None) -> Extensions:
    """basicConstraints CA (with ``path_length``) and keyCertSign/cRLSign, both critical."""
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return [(x509.BasicConstraints(ca=True, path_length=path_length), True), (usage, True)]
