"""Evidence bundles (SPEC 8): one exchange, provable to a third party with a single file.

A bundle is a zip of these members, in this order (names are fixed; ``S`` is a sequence
number, ``T`` a certificate's SHA-256 thumbprint in hex)::

    manifest.json        what the bundle holds: request id, origin, log key, tree size, the
                         records and their parts, and the SHA-256 of every other member
    manifest.sig         the gateway's signature over manifest.json (raw bytes)
    gateway.crt          the gateway certificate whose key signed the manifest (PEM)
    log.vkey             the log's note-verifier key (C2SP vkey), one line
    checkpoint.note      the signed checkpoint (C2SP tlog-checkpoint) the proofs lead to
    checkpoint.tsr       its RFC 3161 TimeStampToken (DER), when there is one
    records/S.json       each record's canonical JSON (RFC 8785): exactly the Merkle leaf
    proofs/S.json        its RFC 9162 inclusion proof in the checkpoint's tree
    bodies/S.bin         the stored body in plaintext (the exporter could read it), or
    bodies/S.envelope    the encrypted body as stored (`gateway.audit.body_crypto`)
    signatures/S.sig     the signature value of the message, when available
    certificates/T.pem   the signer's certificate, when the gateway knows it

The container is canonical: every member is stored (no compression), dated 1980-01-01,
with fixed attributes, in the order above (the rest by name), and nothing else — no
comment, no extra field, no directory entry. The verifier rebuilds the container from the
members it read and requires the same bytes, so no byte of the file can change unnoticed,
not even one zip readers ignore.

How the log key is bound to the gateway: the manifest names the log's vkey and origin and
is signed with the gateway's signing key, the key of the certificate every member already
trusts for the gateway's messages (issued by the federation's CA). An auditor who holds that
certificate therefore learns which log key speaks for the gateway; an auditor who instead
pinned the log's vkey earlier can verify against that.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.audit.checkpoint import Checkpoint, VerifierKey
from gateway.audit.errors import AuditError
from gateway.audit.records import AuditRecord, format_time
from security.pki_keys import SigningKey

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "BodyForm",
    "EvidenceError",
    "EvidenceItem",
    "InvalidEvidence",
    "SignatureAlgorithm",
    "build_evidence",
    "canonical_zip",
    "signature_algorithm",
]

FORMAT: Final = "obmin-evidence"
FORMAT_VERSION: Final = 1
ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)
FIRST_MEMBERS: Final = (
    "manifest.json",
    "manifest.sig",
    "gateway.crt",
    "log.vkey",
    "checkpoint.note",
    "checkpoint.tsr",
)
SignatureAlgorithm = Literal["rsa-pkcs1v15-sha256", "ecdsa-sha256", "ed25519"]
BodyForm = Literal["plain", "envelope"]


class EvidenceError(AuditError):
    """An evidence bundle cannot be built from what was given (or found)."""

    code: ClassVar[str] = "EvidenceUnavailable"


class InvalidEvidence(AuditError):
    """An evidence bundle does not verify; ``member`` names the part at fault, if one is."""

    code: ClassVar[str] = "InvalidEvidence"

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(f"{member}: {message}" if member else message)
        self.member = member


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One record of the exchange with what goes beside it in the bundle.

    ``proof`` is the record's inclusion proof in the tree of the checkpoint given to
    `build_evidence`; ``body`` the stored body as ``body_form`` says (plaintext, or the
    envelope when the exporter cannot decrypt); ``signature`` the message's raw signature
    value (its SHA-512 is the record's ``signature_value_digest``).
    """

    record: AuditRecord
    proof: Sequence[bytes]
    body: bytes | None = field(default=None, repr=False)
    body_form: BodyForm | None = None
    signature: bytes | None = None

    def __post_init__(self) -> None:
        if (self.body is None) != (self.body_form is None):
            raise EvidenceError("a body needs its form (plain or envelope), and only a body")


def signature_algorithm(key: object) -> SignatureAlgorithm:
    """The manifest signature algorithm for a gateway key (or its public key)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa-pkcs1v15-sha256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ecdsa-sha256"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    raise EvidenceError(f"a {type(key).__name__} cannot sign evidence manifests")


def _sign(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data)


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def canonical_zip(members: Mapping[str, bytes]) -> bytes:
    """The canonical container of ``members`` (see the module docstring)."""
    order = [name for name in FIRST_MEMBERS if name in members]
    order += sorted(name for name in members if name not in FIRST_MEMBERS)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as out:
        for name in order:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, whatever the platform
            info.create_version = 20
            info.extract_version = 20
            info.external_attr = 0o100644 << 16
            out.writestr(info, members[name])
    return buffer.getvalue()


def build_evidence(
    *,
    request_id: str,
    items: Sequence[EvidenceItem],
    checkpoint: Checkpoint,
    log_key: VerifierKey,
    gateway_certificate: x509.Certificate,
    signing_key: SigningKey,
    timestamp_token: bytes | None = None,
    signer_certificates: Sequence[x509.Certificate] = (),
    created: datetime | None = None,
) -> bytes:
    """The evidence bundle of one exchange, from plain values; raises `EvidenceError`.

    Nothing here reads the store or checks the proofs: the bundle holds what it is given,
    signed, and `verify_evidence` judges it. The signing key must be the gateway
    certificate's.
    """
    if not items:
        raise EvidenceError(f"no records for request {request_id}")
    if signing_key.public_key() != gateway_certificate.public_key():
        raise EvidenceError("the signing key is not the gateway certificate's key")
    members: dict[str, bytes] = {
        "gateway.crt": gateway_certificate.public_bytes(Encoding.PEM),
        "log.vkey": log_key.to_vkey().encode("ascii") + b"\n",
        "checkpoint.note": checkpoint.note.encode("utf-8"),
    }
    if timestamp_token is not None:
        members["checkpoint.tsr"] = timestamp_token
    certificates = {  # by thumbprint: one member per certificate
        hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest(): c for c in signer_certificates
    }
    for thumbprint, certificate in certificates.items():
        members[f"certificates/{thumbprint}.pem"] = certificate.public_bytes(Encoding.PEM)
    entries = [_add_item(members, item, checkpoint.size, certificates) for item in items]
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "request_id": request_id,
        "origin": checkpoint.origin,
        "log_vkey": log_key.to_vkey(),
        "tree_size": checkpoint.size,
        "created": format_time(created or datetime.now(UTC)),
        "signature_algorithm": signature_algorithm(signing_key),
        "gateway_certificate_sha256": hashlib.sha256(
            gateway_certificate.public_bytes(Encoding.DER)
        ).hexdigest(),
        "timestamp": "checkpoint.tsr" if timestamp_token is not None else None,
        "records": entries,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }
    members["manifest.json"] = _json(manifest)
    members["manifest.sig"] = _sign(signing_key, members["manifest.json"])
    return canonical_zip(members)


def _add_item(
    members: dict[str, bytes],
    item: EvidenceItem,
    tree_size: int,
    certificates: Mapping[str, x509.Certificate],
) -> dict[str, Any]:
    seq = item.record.seq
    entry: dict[str, Any] = {
        "seq": seq,
        "direction": item.record.direction,
        "record": f"records/{seq}.json",
        "proof": f"proofs/{seq}.json",
        "body": None,
        "signature": None,
        "signer_certificate": None,
    }
    if f"records/{seq}.json" in members:
        raise EvidenceError(f"record {seq} is given twice")
    members[entry["record"]] = item.record.to_canonical_json()
    proof = {
        "leaf_index": seq,
        "tree_size": tree_size,
        "hashes": [_b64(h) for h in item.proof],
    }
    members[entry["proof"]] = _json(proof)
    if item.body is not None:
        entry["body"] = f"bodies/{seq}.{'bin' if item.body_form == 'plain' else 'envelope'}"
        members[entry["body"]] = item.body
    if item.signature is not None:
        entry["signature"] = f"signatures/{seq}.sig"
        members[entry["signature"]] = item.signature
    thumbprint = item.record.signer_thumbprint
    if thumbprint is not None and thumbprint in certificates:
        entry["signer_certificate"] = f"certificates/{thumbprint}.pem"
    return entry


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
