"""Offline verification of an evidence bundle (``obmin audit verify-evidence``).

Needs only the file and what the auditor already trusts: the gateway's certificate, or the
log's vkey pinned earlier (optionally the TSA's CA certificate, and body keys to open
encrypted bodies). The steps, each raising `InvalidEvidence` that names the member at fault:

1. the container: a zip of known member names, stored, and byte for byte the canonical
   container of its members (`canonical_zip`), so no byte outside the members can change;
2. the manifest: canonical JSON of this format, listing every other member with its SHA-256;
3. the gateway: the bundle's certificate is the one the auditor holds (when given), and its
   key signed the manifest (``manifest.sig``);
4. the log key: ``log.vkey`` is the manifest's (and the pinned one, when given);
5. the checkpoint: signed by that log key, for the manifest's origin and tree size;
6. the timestamp, when there is one and a TSA CA is given: over the checkpoint note;
7. each record: canonical JSON of a record of this request, included in the checkpoint's
   tree by its proof; its body matches the record's size and SHA-512 digest (an envelope is
   bound to the record, and opened when keys are given); its signature value and signer
   certificate match the record's digests.

It returns an `EvidenceReport` of what was proven.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import struct
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.audit.body_crypto import OpenBody
from gateway.audit.checkpoint import Checkpoint, VerifierKey, verify_checkpoint
from gateway.audit.errors import AuditError, InvalidCheckpoint
from gateway.audit.evidence import (
    FORMAT,
    FORMAT_VERSION,
    InvalidEvidence,
    canonical_zip,
    signature_algorithm,
)
from gateway.audit.evidence_records import BodyCheck, EvidenceRecord, check_records
from gateway.audit.tsa_verify import TsaTrust, verify_timestamp

__all__ = ["BodyCheck", "EvidenceRecord", "EvidenceReport", "verify_evidence"]

MAX_BUNDLE: Final = 1 << 30
_NAME = re.compile(
    r"manifest\.json|manifest\.sig|gateway\.crt|log\.vkey|checkpoint\.note|checkpoint\.tsr"
    r"|records/(0|[1-9][0-9]*)\.json|proofs/(0|[1-9][0-9]*)\.json"
    r"|bodies/(0|[1-9][0-9]*)\.(bin|envelope)|signatures/(0|[1-9][0-9]*)\.sig"
    r"|certificates/[0-9a-f]{64}\.pem"
)
_MANIFEST_KEYS: Final = frozenset(
    {
        "format",
        "version",
        "request_id",
        "origin",
        "log_vkey",
        "tree_size",
        "created",
        "signature_algorithm",
        "gateway_certificate_sha256",
        "timestamp",
        "records",
        "files",
    }
)
_ENTRY_KEYS: Final = frozenset(
    {"seq", "direction", "record", "proof", "body", "signature", "signer_certificate"}
)
_ZIP_ERRORS: Final = (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error)
_ZIP_ERRORS_MORE: Final = (
    *_ZIP_ERRORS,
    NotImplementedError,
    KeyError,
    UnicodeDecodeError,
    RuntimeError,
)


@dataclass(frozen=True, slots=True)
class EvidenceReport:
    """What a bundle proves: these records are leaves of the log ``origin`` at
    ``tree_size`` (root ``root_hash``), signed by ``log_vkey``, whose binding to the gateway
    certificate ``gateway_certificate_sha256`` was checked (``gateway_trusted`` when the
    auditor supplied that certificate); the checkpoint existed at ``timestamp`` when a TSA
    token was checked."""

    request_id: str
    origin: str
    tree_size: int
    root_hash: bytes
    log_vkey: str
    gateway_certificate_sha256: str
    gateway_trusted: bool
    created: str
    records: tuple[EvidenceRecord, ...]
    timestamp: datetime | None
    timestamp_present: bool

    def summary(self) -> str:
        """A few lines for people (``obmin audit verify-evidence``)."""
        lines = [
            f"evidence for request {self.request_id}: OK",
            f"log {self.origin}, tree size {self.tree_size},"
            f" root {base64.b64encode(self.root_hash).decode()}",
            f"log key {self.log_vkey}",
            f"gateway certificate sha256:{self.gateway_certificate_sha256}"
            + ("" if self.gateway_trusted else " (not given: the log key was pinned instead)"),
        ]
        if self.timestamp is not None:
            lines.append(f"checkpoint timestamped at {self.timestamp.isoformat()} (RFC 3161)")
        elif self.timestamp_present:
            lines.append("checkpoint timestamp present, not checked (no TSA CA given)")
        else:
            lines.append("no checkpoint timestamp")
        for record in self.records:
            lines.append(
                f"record {record.seq} ({record.direction}): included; body {record.body}"
                + ("; signature value matches" if record.signature_checked else "")
                + ("; signer certificate matches" if record.signer_certificate else "")
            )
        return "\n".join(lines)


def verify_evidence(
    bundle: bytes,
    *,
    gateway_certificate: x509.Certificate | None = None,
    vkey: VerifierKey | None = None,
    tsa_trust: TsaTrust | None = None,
    open_body: OpenBody | None = None,
    max_bytes: int = MAX_BUNDLE,
) -> EvidenceReport:
    """Verify an evidence bundle offline (see the module docstring); raises
    `InvalidEvidence`. ``gateway_certificate`` or ``vkey`` is required: it is what the
    auditor trusts. ``open_body`` (a keyring's ``open``) decrypts enveloped bodies
    against their records."""
    if gateway_certificate is None and vkey is None:
        raise InvalidEvidence("verifying evidence needs the gateway certificate or the log vkey")
    if len(bundle) > max_bytes:
        raise InvalidEvidence(f"the bundle is larger than {max_bytes} bytes")
    # 1. The container.
    members = _read_container(bundle)
    # 2. The manifest, and every member's digest.
    manifest = _manifest(members)
    # 3. The gateway certificate and its signature over the manifest.
    thumbprint = _check_gateway(members, manifest, gateway_certificate)
    for name, expected in manifest["files"].items():
        if hashlib.sha256(members[name]).hexdigest() != expected:
            raise InvalidEvidence("its SHA-256 is not the one the manifest lists", name)
    # 4. The log key.
    log_key = _log_key(members, manifest, vkey)
    # 5. The checkpoint.
    checkpoint = _checkpoint(members, manifest, log_key)
    # 6. The timestamp.
    gen_time = _timestamp(members, manifest, checkpoint, tsa_trust)
    # 7. The records.
    records = check_records(members, manifest, checkpoint, open_body)
    return EvidenceReport(
        request_id=manifest["request_id"],
        origin=checkpoint.origin,
        tree_size=checkpoint.size,
        root_hash=checkpoint.root,
        log_vkey=log_key.to_vkey(),
        gateway_certificate_sha256=thumbprint,
        gateway_trusted=gateway_certificate is not None,
        created=manifest["created"],
        records=records,
        timestamp=gen_time,
        timestamp_present="checkpoint.tsr" in members,
    )


def _read_container(bundle: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(bundle))
    except _ZIP_ERRORS as exc:
        raise InvalidEvidence(f"the file is not a zip archive: {exc}") from exc
    members: dict[str, bytes] = {}
    with archive:
        infos = archive.infolist()
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise InvalidEvidence(
                    "the member is compressed; bundles store members", info.filename
                )
            if info.flag_bits != 0:  # encryption, data descriptors, UTF-8 names...
                raise InvalidEvidence("the member has zip flags set", info.filename)
        if sum(info.file_size for info in infos) > len(bundle):
            raise InvalidEvidence("the zip's members claim more bytes than the file has")
        for info in infos:
            name = info.filename
            if not _NAME.fullmatch(name):
                raise InvalidEvidence(f"unexpected member {name!r} in the zip")
            if name in members:
                raise InvalidEvidence("the zip holds this member twice", name)
            try:
                members[name] = archive.read(info)
            except _ZIP_ERRORS_MORE as exc:
                raise InvalidEvidence(f"the member cannot be read: {exc}", name) from exc
    if canonical_zip(members) != bundle:
        raise InvalidEvidence(
            "the zip container is not the canonical one for its members"
            " (bytes outside the members were changed)"
        )
    return members


def _manifest(members: dict[str, bytes]) -> dict[str, Any]:
    for name in ("manifest.json", "manifest.sig", "gateway.crt", "log.vkey", "checkpoint.note"):
        if name not in members:
            raise InvalidEvidence("the bundle lacks this member", name)
    try:
        manifest = orjson.loads(members["manifest.json"])
    except orjson.JSONDecodeError as exc:
        raise InvalidEvidence(f"not JSON: {exc}", "manifest.json") from exc
    if type(manifest) is not dict or manifest.keys() != _MANIFEST_KEYS:
        raise InvalidEvidence("not an evidence manifest (unexpected keys)", "manifest.json")
    if orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS) != members["manifest.json"]:
        raise InvalidEvidence("not in canonical JSON form", "manifest.json")
    if manifest["format"] != FORMAT or manifest["version"] != FORMAT_VERSION:
        raise InvalidEvidence(
            f"format {manifest['format']!r} version {manifest['version']!r} is not"
            f" {FORMAT} {FORMAT_VERSION}",
            "manifest.json",
        )
    files = manifest["files"]
    expected = set(members) - {"manifest.json", "manifest.sig"}
    if type(files) is not dict or set(files) != expected:
        raise InvalidEvidence("its file list does not match the zip's members", "manifest.json")
    if type(manifest["records"]) is not list or not 1 <= len(manifest["records"]) <= 2:
        raise InvalidEvidence("a bundle holds one or two records", "manifest.json")
    for entry in manifest["records"]:
        if type(entry) is not dict or entry.keys() != _ENTRY_KEYS:
            raise InvalidEvidence("a record entry has unexpected keys", "manifest.json")
    return manifest


def _check_gateway(
    members: dict[str, bytes], manifest: dict[str, Any], given: x509.Certificate | None
) -> str:
    """The bundle's gateway certificate thumbprint, once its key verified the manifest."""
    try:
        certificate = x509.load_pem_x509_certificate(members["gateway.crt"])
    except ValueError as exc:
        raise InvalidEvidence("not a PEM certificate", "gateway.crt") from exc
    der = certificate.public_bytes(Encoding.DER)
    thumbprint = hashlib.sha256(der).hexdigest()
    if thumbprint != manifest["gateway_certificate_sha256"]:
        raise InvalidEvidence("not the certificate the manifest names", "gateway.crt")
    if given is not None and given.public_bytes(Encoding.DER) != der:
        given_thumbprint = hashlib.sha256(given.public_bytes(Encoding.DER)).hexdigest()
        raise InvalidEvidence(
            f"the bundle is signed by gateway certificate sha256:{thumbprint},"
            f" not by the certificate given (sha256:{given_thumbprint})"
        )
    key = certificate.public_key()
    try:
        algorithm = signature_algorithm(key)
    except AuditError as exc:
        raise InvalidEvidence(str(exc), "gateway.crt") from exc
    if manifest["signature_algorithm"] != algorithm:
        raise InvalidEvidence("its signature algorithm does not fit the key", "manifest.json")
    signature, data = members["manifest.sig"], members["manifest.json"]
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
    except InvalidSignature as exc:
        raise InvalidEvidence(
            "the manifest's signature does not verify with the gateway certificate",
            "manifest.sig",
        ) from exc
    return thumbprint


def _log_key(
    members: dict[str, bytes], manifest: dict[str, Any], pinned: VerifierKey | None
) -> VerifierKey:
    text = members["log.vkey"].decode("ascii", "replace")
    if text != f"{manifest['log_vkey']}\n":
        raise InvalidEvidence("not the log key the manifest names", "log.vkey")
    try:
        key = VerifierKey.parse(text)
    except InvalidCheckpoint as exc:
        raise InvalidEvidence(str(exc), "log.vkey") from exc
    if pinned is not None and pinned.to_vkey() != key.to_vkey():
        raise InvalidEvidence(f"the bundle's log key is {key.to_vkey()}, not the pinned one")
    return key


def _checkpoint(
    members: dict[str, bytes], manifest: dict[str, Any], key: VerifierKey
) -> Checkpoint:
    try:
        note = members["checkpoint.note"].decode("utf-8")
        checkpoint = verify_checkpoint(note, key, origin=str(manifest["origin"]))
    except (UnicodeDecodeError, InvalidCheckpoint) as exc:
        raise InvalidEvidence(str(exc), "checkpoint.note") from exc
    if checkpoint.size != manifest["tree_size"]:
        raise InvalidEvidence("the checkpoint's tree size is not the manifest's", "checkpoint.note")
    return checkpoint


def _timestamp(
    members: dict[str, bytes],
    manifest: dict[str, Any],
    checkpoint: Checkpoint,
    trust: TsaTrust | None,
) -> datetime | None:
    present = "checkpoint.tsr" in members
    if manifest["timestamp"] != ("checkpoint.tsr" if present else None):
        raise InvalidEvidence("the manifest's timestamp entry does not match the zip")
    if not present or trust is None:
        return None
    try:
        verified = verify_timestamp(
            members["checkpoint.tsr"], checkpoint.note.encode("utf-8"), trust
        )
    except InvalidCheckpoint as exc:
        raise InvalidEvidence(str(exc), "checkpoint.tsr") from exc
    return verified.gen_time
