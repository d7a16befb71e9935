"""Offline verification of RFC 3161 time-stamp tokens over checkpoints.

A token is a CMS SignedData (RFC 5652) whose content is a TSTInfo (RFC 3161 2.4.2): the TSA
signs "this SHA-256 digest existed at genTime". `verify_timestamp` checks, in order:

1. the CMS structure: ContentInfo signedData, version 3, one signer, eContentType TSTInfo,
   digestAlgorithms naming exactly the signer's digest;
2. the signer certificate: found in the token by the signer identifier;
3. the signed attributes: contentType TSTInfo, messageDigest equal to the digest of the
   TSTInfo bytes, and an ESS signing-certificate attribute (ESSCertIDv2, RFC 5035, or
   ESSCertID, RFC 2634) whose first entry is the hash (and issuer/serial) of that certificate;
4. the signature over the DER SET OF the signed attributes, by the certificate's key;
5. the certificate: a single, critical extendedKeyUsage timeStamping (RFC 3161 2.3), and a
   path to a configured TSA CA that is valid at genTime;
6. the TSTInfo: version 1, a SHA-256 message imprint equal to SHA-256 of the data, the nonce
   (when the caller sent one).

It returns a `VerifiedTimestamp` or raises `InvalidTimestamp`, whose ``reason`` says which
check failed. Parsing is asn1crypto; every hash and signature is cryptography's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.audit.errors import InvalidCheckpoint

__all__ = [
    "InvalidTimestamp",
    "TimestampFailure",
    "TsaTrust",
    "VerifiedTimestamp",
    "timestamp_checker",
    "verify_timestamp",
]

TimestampFailure = Literal[
    "malformed",  # not a DER TimeStampToken of the expected shape
    "unsupported-algorithm",  # a digest or signature algorithm obmin does not accept
    "message-digest",  # the signed messageDigest is not the digest of the TSTInfo
    "signer-binding",  # the ESS signing-certificate attribute does not name the signer
    "signature",  # the signature over the signed attributes does not verify
    "eku",  # the signer certificate is not a time-stamping certificate
    "untrusted",  # the signer certificate does not chain to a configured TSA CA at genTime
    "imprint",  # the token is not over the data given
    "nonce",  # the token answers another request
    "time",  # the TSA's clock is far from ours (checked when a token is obtained)
]

_DIGESTS: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_ECDSA: Final = {"sha256_ecdsa": "sha256", "sha384_ecdsa": "sha384", "sha512_ecdsa": "sha512"}
_RSA: Final = {"sha256_rsa": "sha256", "sha384_rsa": "sha384", "sha512_rsa": "sha512"}
_MAX_TOKEN: Final = 256 * 1024
_MAX_CERTIFICATES: Final = 16
# What asn1crypto raises on malformed input (it parses lazily, so anywhere).
_PARSE_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError, OverflowError)


class InvalidTimestamp(InvalidCheckpoint):
    """An RFC 3161 token is malformed, not over the given data, or not from a trusted TSA.

    ``reason`` is one of `TimestampFailure` (stable, for programs); the message is for
    people. A subclass of `InvalidCheckpoint`: a checkpoint with a bad token is a bad
    checkpoint.
    """

    code: ClassVar[str] = "InvalidTimestamp"

    def __init__(self, reason: TimestampFailure, message: str) -> None:
        super().__init__(f"invalid timestamp token ({reason}): {message}")
        self.reason: TimestampFailure = reason


@dataclass(frozen=True, slots=True)
class VerifiedTimestamp:
    """What a verified token proves: ``imprint`` (SHA-256 of the data) existed at
    ``gen_time``, said the TSA holding ``tsa_certificate``."""

    token: bytes
    gen_time: datetime
    serial_number: int
    policy: str
    nonce: int | None
    imprint: bytes
    tsa_certificate: x509.Certificate


class TsaTrust:
    """The CA certificates a TSA's certificate must chain to (one or more)."""

    __slots__ = ("_store", "certificates")

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self.certificates: tuple[x509.Certificate, ...] = tuple(certificates)
        if not self.certificates:
            raise InvalidCheckpoint("no TSA CA certificate is configured")
        try:
            self._store = verification.Store(list(self.certificates))
        except (TypeError, ValueError) as exc:
            raise InvalidCheckpoint(f"the TSA CA certificates cannot be used: {exc}") from exc

    @classmethod
    def from_file(cls, path: Path, setting: str = "audit.tsa.ca_certificate") -> TsaTrust:
        """The CA certificates in a PEM file; `InvalidCheckpoint` names ``setting`` and
        the file when it cannot be read or holds no certificate."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidCheckpoint(f"{setting}: cannot read {path}: {exc.strerror}") from exc
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InvalidCheckpoint(f"{setting}: {path} holds no PEM certificate") from exc
        return cls(certificates)

    @property
    def store(self) -> verification.Store:
        """cryptography's store of the CA certificates."""
        return self._store


def _fail(reason: TimestampFailure, message: str) -> InvalidTimestamp:
    return InvalidTimestamp(reason, message)


def verify_timestamp(
    token: bytes, data: bytes, trust: TsaTrust, *, nonce: int | None = None
) -> VerifiedTimestamp:
    """Verify a DER TimeStampToken over ``data`` (for a checkpoint: its note's UTF-8 bytes).

    ``nonce``, when given, must be the token's nonce (the client passes the one it sent;
    offline verifiers pass none). Raises `InvalidTimestamp`; see the module docstring.
    """
    return verify_timestamp_digest(token, hashlib.sha256(data).digest(), trust, nonce=nonce)


def verify_timestamp_digest(
    token: bytes, imprint: bytes, trust: TsaTrust, *, nonce: int | None = None
) -> VerifiedTimestamp:
    """`verify_timestamp` given SHA-256 of the data instead of the data."""
    if len(token) > _MAX_TOKEN:
        raise _fail("malformed", f"the token is larger than {_MAX_TOKEN} bytes")
    try:
        return _verify(token, imprint, trust, nonce)
    except _PARSE_ERRORS as exc:
        raise _fail("malformed", f"the token cannot be parsed: {exc}") from exc


def _verify(token: bytes, imprint: bytes, trust: TsaTrust, nonce: int | None) -> VerifiedTimestamp:
    # 1. Structure.
    info = cms.ContentInfo.load(token, strict=True)
    if info["content_type"].native != "signed_data":
        raise _fail("malformed", "the token is not a CMS SignedData")
    signed = info["content"]
    if signed["version"].native != "v3":
        raise _fail("malformed", "a time-stamp token's SignedData has version 3")
    encap = signed["encap_content_info"]
    if encap["content_type"].native != "tst_info" or encap["content"].native is None:
        raise _fail("malformed", "the token does not hold a TSTInfo")
    signers = signed["signer_infos"]
    if len(signers) != 1:
        raise _fail("malformed", f"a time-stamp token has one signer, not {len(signers)}")
    signer = signers[0]
    digest_name = _digest_name(signer["digest_algorithm"])
    declared = [_digest_name(a) for a in signed["digest_algorithms"]]
    if declared != [digest_name]:
        raise _fail("malformed", "digestAlgorithms does not name exactly the signer's digest")
    content = encap["content"].contents  # the TSTInfo DER inside the OCTET STRING
    # 2. The signer's certificate, carried in the token (obmin always sends certReq).
    certificates = _certificates(signed)
    certificate, der = _signer_certificate(signer, certificates)
    # 3. Signed attributes.
    attrs = signer["signed_attrs"]
    if not attrs:
        raise _fail("malformed", "the signer has no signed attributes")
    if _attribute(attrs, "content_type") != "tst_info":
        raise _fail("malformed", "the signed contentType is not TSTInfo")
    expected_digest = hashlib.new(digest_name, content).digest()
    if _attribute(attrs, "message_digest") != expected_digest:
        raise _fail("message-digest", "the signed messageDigest is not that of the TSTInfo")
    _check_ess_binding(attrs, certificate, der)
    # 4. Signature over the DER SET OF the signed attributes (RFC 5652 5.4).
    signed_bytes = b"\x31" + attrs.dump()[1:]
    _check_signature(signer, digest_name, certificate, signed_bytes)
    # 6 (parsed before 5: the path is validated at genTime).
    tst = tsp.TSTInfo.load(content, strict=True)
    if tst["version"].native != "v1":
        raise _fail("malformed", "TSTInfo version is not 1")
    gen_time = tst["gen_time"].native
    if not isinstance(gen_time, datetime) or gen_time.tzinfo is None:
        raise _fail("malformed", "genTime is not a UTC time")
    # 5. The certificate: a time-stamping certificate of a trusted TSA at genTime.
    _check_eku(certificate)
    _check_path(certificate, [c for c in certificates if c != certificate], trust, gen_time)
    # 6. What the token says.
    message = tst["message_imprint"]
    if message["hash_algorithm"]["algorithm"].native != "sha256":
        raise _fail("imprint", "the message imprint is not a SHA-256 digest")
    if message["hashed_message"].native != imprint:
        raise _fail("imprint", "the token is over other data (message imprint differs)")
    token_nonce = tst["nonce"].native
    if nonce is not None and token_nonce != nonce:
        raise _fail("nonce", f"the token's nonce is {token_nonce}, the request's was {nonce}")
    return VerifiedTimestamp(
        token=token,
        gen_time=gen_time.astimezone(UTC),
        serial_number=int(tst["serial_number"].native),
        policy=str(tst["policy"].dotted),
        nonce=token_nonce,
        imprint=imprint,
        tsa_certificate=certificate,
    )


def _digest_name(algorithm: Any) -> str:
    name = algorithm["algorithm"].native
    if name not in _DIGESTS:
        raise _fail("unsupported-algorithm", f"digest algorithm {name} is not accepted")
    parameters = algorithm["parameters"]
    if parameters.native is not None:
        raise _fail("malformed", f"the {name} algorithm identifier carries parameters")
    return str(name)


def _certificates(signed: Any) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    choices = signed["certificates"]
    if choices.native is None:
        raise _fail("malformed", "the token carries no certificate (certReq was sent)")
    if len(choices) > _MAX_CERTIFICATES:
        raise _fail("malformed", f"the token carries more than {_MAX_CERTIFICATES} certificates")
    for choice in choices:
        if choice.name != "certificate":
            continue  # attribute certificates: not used here
        try:
            found.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        except x509.InvalidVersion as exc:
            raise _fail("malformed", f"a certificate in the token is malformed: {exc}") from exc
    return found


def _signer_certificate(
    signer: Any, certificates: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, bytes]:
    sid = signer["sid"]
    version = signer["version"].native
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number" and version == "v1":
            wanted = sid.chosen
            if (
                wanted["serial_number"].native == certificate.serial_number
                and wanted["issuer"].dump() == certificate.issuer.public_bytes()
            ):
                return certificate, certificate.public_bytes(Encoding.DER)
        elif sid.name == "subject_key_identifier" and version == "v3":
            try:
                ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.chosen.native:
                return certificate, certificate.public_bytes(Encoding.DER)
    raise _fail("signer-binding", "the signer's certificate is not in the token")


def _attribute(attrs: Any, name: str) -> Any:
    return _attribute_value(attrs, name).native


def _check_ess_binding(attrs: Any, certificate: x509.Certificate, der: bytes) -> None:
    """RFC 5035 / RFC 2634: the first ESSCertID(v2) identifies the signer's certificate."""
    names = [a["type"].native for a in attrs]
    if "signing_certificate_v2" in names:
        entry = _attribute_value(attrs, "signing_certificate_v2")["certs"][0]
        algorithm = entry["hash_algorithm"]["algorithm"].native
        if algorithm not in _DIGESTS:
            raise _fail("unsupported-algorithm", f"ESSCertIDv2 hash {algorithm} is not accepted")
        expected = hashlib.new(algorithm, der).digest()
    elif "signing_certificate" in names:
        entry = _attribute_value(attrs, "signing_certificate")["certs"][0]
        expected = hashlib.sha1(der, usedforsecurity=False).digest()  # ESSCertID is SHA-1
    else:
        raise _fail("signer-binding", "no ESS signing-certificate attribute")
    if entry["cert_hash"].native != expected:
        raise _fail("signer-binding", "the ESS certificate hash is not the signer's certificate")
    issuer_serial = entry["issuer_serial"]
    if issuer_serial.native is None:
        return
    names_ = issuer_serial["issuer"]
    directory = [n.chosen.dump() for n in names_ if n.name == "directory_name"]
    if issuer_serial["serial_number"].native != certificate.serial_number or directory != [
        certificate.issuer.public_bytes()
    ]:
        raise _fail("signer-binding", "the ESS issuer and serial are not the signer's")


def _attribute_value(attrs: Any, name: str) -> Any:
    values = [a["values"] for a in attrs if a["type"].native == name]
    if len(values) != 1 or len(values[0]) != 1:
        raise _fail("malformed", f"the signed attributes need exactly one {name}")
    return values[0][0]


def _check_signature(
    signer: Any, digest_name: str, certificate: x509.Certificate, signed_bytes: bytes
) -> None:
    algorithm = signer["signature_algorithm"]
    name = algorithm["algorithm"].native
    if algorithm["parameters"].native is not None:
        raise _fail("malformed", "the signature algorithm identifier carries parameters")
    key = certificate.public_key()
    signature = signer["signature"].native
    try:
        if isinstance(key, rsa.RSAPublicKey) and (
            name == "rsassa_pkcs1v15" or _RSA.get(name) == digest_name
        ):
            key.verify(signature, signed_bytes, padding.PKCS1v15(), _DIGESTS[digest_name]())
        elif isinstance(key, ec.EllipticCurvePublicKey) and name in _ECDSA:
            key.verify(signature, signed_bytes, ec.ECDSA(_DIGESTS[_ECDSA[name]]()))
        elif isinstance(key, ed25519.Ed25519PublicKey) and name == "ed25519":
            key.verify(signature, signed_bytes)
        else:
            raise _fail(
                "unsupported-algorithm",
                f"signature algorithm {name} with a {type(key).__name__} is not accepted",
            )
    except InvalidSignature as exc:
        raise _fail("signature", "the TSA's signature does not verify") from exc
    except UnsupportedAlgorithm as exc:
        raise _fail("unsupported-algorithm", str(exc)) from exc


def _check_eku(certificate: x509.Certificate) -> None:
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise _fail("eku", "the TSA certificate has no extendedKeyUsage") from exc
    if list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise _fail("eku", "the TSA certificate's extendedKeyUsage is not timeStamping alone")
    if not eku.critical:
        raise _fail("eku", "the TSA certificate's extendedKeyUsage is not critical")


def _require_time_stamping(
    _policy: verification.Policy, _cert: x509.Certificate, value: x509.ExtendedKeyUsage | None
) -> None:
    if value is None or list(value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ValueError("extendedKeyUsage must be timeStamping alone")


def _check_path(
    certificate: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust: TsaTrust,
    at: datetime,
) -> None:
    ee_policy = verification.ExtensionPolicy.permit_all().require_present(
        x509.ExtendedKeyUsage, verification.Criticality.CRITICAL, _require_time_stamping
    )
    verifier = (
        verification.PolicyBuilder()
        .store(trust.store)
        .time(at.astimezone(UTC))
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(certificate, intermediates)
    except verification.VerificationError as exc:
        reason = str(exc).removeprefix("validation failed: ").split(" (encountered", 1)[0]
        raise _fail(
            "untrusted", f"the TSA certificate does not chain to a configured TSA CA: {reason}"
        ) from exc


def timestamp_checker(trust: TsaTrust) -> Callable[[str, bytes], None]:
    """A ``timestamp_check(note, token)`` for `verify_log`: raises `InvalidTimestamp`."""

    def check(note: str, token: bytes) -> None:
        verify_timestamp(token, note.encode("utf-8"), trust)

    return check
