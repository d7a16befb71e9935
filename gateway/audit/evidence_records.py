"""Step 7 of evidence verification: each record, its proof, body, signature and signer.

`check_records` is called by `verify_evidence` once the container, the manifest, the gateway
signature, the log key and the checkpoint have been checked; it judges every member the
manifest's record entries name, and refuses a member that no record refers to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.audit.bodies import body_digest
from gateway.audit.body_crypto import BodyBinding, BodyCryptoError, OpenBody, parse_envelope
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.errors import AuditError, InvalidProof
from gateway.audit.evidence import FIRST_MEMBERS, InvalidEvidence
from gateway.audit.merkle import hash_leaf, verify_inclusion
from gateway.audit.records import check_canonical

__all__ = ["BodyCheck", "EvidenceRecord", "check_records"]

BodyCheck = Literal["none", "plain", "decrypted", "encrypted-not-opened"]


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """One verified record of the exchange."""

    seq: int
    direction: str
    leaf_hash: bytes
    body: BodyCheck
    signature_checked: bool
    signer_certificate: x509.Certificate | None


def check_records(
    members: dict[str, bytes],
    manifest: dict[str, Any],
    checkpoint: Checkpoint,
    open_body: OpenBody | None,
) -> tuple[EvidenceRecord, ...]:
    """The verified records of the manifest's entries; raises `InvalidEvidence`."""
    referenced = set(FIRST_MEMBERS)
    results: list[EvidenceRecord] = []
    directions: set[str] = set()
    for entry in manifest["records"]:
        seq = entry["seq"]
        if type(seq) is not int or seq < 0:
            raise InvalidEvidence("a record entry has no valid seq", "manifest.json")
        names = {
            "record": f"records/{seq}.json",
            "proof": f"proofs/{seq}.json",
            "signature": f"signatures/{seq}.sig",
        }
        for key in ("record", "proof"):
            if entry[key] != names[key] or names[key] not in members:
                raise InvalidEvidence(f"record {seq} has no {key} member", "manifest.json")
        referenced.update(
            n for n in (entry["record"], entry["proof"], entry["body"], entry["signature"],
                        entry["signer_certificate"]) if n
        )  # fmt: skip
        result = _record(members, manifest, checkpoint, entry, names, open_body)
        if result.direction in directions:
            raise InvalidEvidence(f"two {result.direction} records", "manifest.json")
        directions.add(result.direction)
        results.append(result)
    unexplained = sorted(set(members) - referenced)
    if unexplained:
        raise InvalidEvidence("no record refers to this member", unexplained[0])
    return tuple(results)


def _record(
    members: dict[str, bytes],
    manifest: dict[str, Any],
    checkpoint: Checkpoint,
    entry: dict[str, Any],
    names: dict[str, str],
    open_body: OpenBody | None,
) -> EvidenceRecord:
    seq = entry["seq"]
    canonical = members[names["record"]]
    try:
        document = check_canonical(canonical, seq)
    except AuditError as exc:
        raise InvalidEvidence(str(exc), names["record"]) from exc
    if document["request_id"] != manifest["request_id"]:
        raise InvalidEvidence("the record is of another request", names["record"])
    if document["direction"] != entry["direction"]:
        raise InvalidEvidence("the record's direction is not the manifest's", names["record"])
    leaf = hash_leaf(canonical)
    _check_proof(members[names["proof"]], seq, leaf, checkpoint, names["proof"])
    body = _check_body(members, entry["body"], seq, document, open_body)
    signature_checked = False
    if entry["signature"] is not None:
        if entry["signature"] != names["signature"] or names["signature"] not in members:
            raise InvalidEvidence(f"record {seq}'s signature member is missing", "manifest.json")
        digest = base64.b64encode(hashlib.sha512(members[names["signature"]]).digest()).decode()
        if digest != document["signature_value_digest"]:
            raise InvalidEvidence("not the signature the record names", names["signature"])
        signature_checked = True
    signer = None
    if entry["signer_certificate"] is not None:
        signer = _check_signer(members, entry["signer_certificate"], document)
    return EvidenceRecord(seq, document["direction"], leaf, body, signature_checked, signer)


def _check_proof(data: bytes, seq: int, leaf: bytes, checkpoint: Checkpoint, name: str) -> None:
    try:
        proof = orjson.loads(data)
        if type(proof) is not dict or proof.keys() != {"leaf_index", "tree_size", "hashes"}:
            raise InvalidEvidence("not an inclusion proof", name)
        if orjson.dumps(proof, option=orjson.OPT_SORT_KEYS) != data:
            raise InvalidEvidence("not in canonical JSON form", name)
        hashes_ = [base64.b64decode(h, validate=True) for h in proof["hashes"]]
    except (orjson.JSONDecodeError, binascii.Error, TypeError) as exc:
        raise InvalidEvidence(f"not an inclusion proof: {exc}", name) from exc
    if proof["leaf_index"] != seq or proof["tree_size"] != checkpoint.size:
        raise InvalidEvidence("the proof is for another leaf or tree size", name)
    try:
        verify_inclusion(leaf, seq, checkpoint.size, hashes_, checkpoint.root)
    except InvalidProof as exc:
        raise InvalidEvidence(
            f"record {seq} is not included in the checkpoint's tree: {exc}", name
        ) from exc


def _check_body(
    members: dict[str, bytes],
    name: str | None,
    seq: int,
    document: dict[str, Any],
    open_body: OpenBody | None,
) -> BodyCheck:
    if name is None:
        return "none"
    if name not in (f"bodies/{seq}.bin", f"bodies/{seq}.envelope") or name not in members:
        raise InvalidEvidence(f"record {seq}'s body member is missing", "manifest.json")
    data = members[name]
    digest = document["body_digest"]
    if digest is None:
        raise InvalidEvidence("the record keeps no digest, so no body can be checked", name)
    if name.endswith(".envelope"):
        try:
            binding = BodyBinding(document["request_id"], document["direction"], _raw(digest))
            if parse_envelope(data).binding != binding:
                raise InvalidEvidence("the envelope belongs to another record", name)
            if open_body is None:
                return "encrypted-not-opened"
            data = open_body(data, binding)  # the plaintext is the one of the record's digest
        except BodyCryptoError as exc:
            raise InvalidEvidence(str(exc), name) from exc
        except AuditError as exc:
            raise InvalidEvidence(f"cannot open the envelope: {exc}", name) from exc
        if len(data) != document["size"]:
            raise InvalidEvidence("the body does not match the record's size and SHA-512", name)
        return "decrypted"
    if len(data) != document["size"] or body_digest(data) != digest:
        raise InvalidEvidence("the body does not match the record's size and SHA-512", name)
    return "plain"


def _raw(digest: str) -> bytes:
    return base64.b64decode(digest)


def _check_signer(
    members: dict[str, bytes], name: str, document: dict[str, Any]
) -> x509.Certificate:
    if name not in members:
        raise InvalidEvidence("the signer certificate member is missing", name)
    try:
        certificate = x509.load_pem_x509_certificate(members[name])
    except ValueError as exc:
        raise InvalidEvidence("not a PEM certificate", name) from exc
    thumbprint = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
    if name != f"certificates/{thumbprint}.pem" or thumbprint != document["signer_thumbprint"]:
        raise InvalidEvidence("not the signer certificate the record names", name)
    return certificate
