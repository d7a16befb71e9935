"""Exporting an exchange's evidence from a store, and the ``obmin audit`` commands for it.

`collect_evidence` reads one exchange's records, the checkpoint that covers them and the
inclusion proofs from an `AuditStore` and hands them to `build_evidence`; the auditor API's
``GET /audit/v1/evidence/{request id}`` and ``obmin audit export`` both use it. The
checkpoint is the newest one covering both records that carries an RFC 3161 token (the
newest of all when none does yet). An exchange that retention moved to an archive is
proved from that archive: it holds the records, their checkpoints and the tree state it
starts from, so the bundle is the same as the live log gave before (the checkpoint is one
of the archive's). An exchange split by a cut (the request archived, the response still
live or in the next archive) answers `RecordsArchived`, naming where each part is.
``obmin audit verify-evidence`` is `verify_evidence_cli`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cryptography import x509

from gateway.audit.archive_lookup import ArchivedExchange, ArchiveDirectory
from gateway.audit.body_crypto import BodyBinding, OpenBody
from gateway.audit.checkpoint import VerifierKey
from gateway.audit.errors import AuditError, InvalidCheckpoint, RecordsArchived
from gateway.audit.evidence import BodyForm, EvidenceError, EvidenceItem, build_evidence
from gateway.audit.evidence_verify import verify_evidence
from gateway.audit.query import MAX_QUERY_LIMIT
from gateway.audit.records import AuditRecord
from gateway.audit.sqlite_store import SqliteAuditStore
from gateway.audit.store import AuditStore, StoredCheckpoint
from gateway.audit.tsa_verify import TsaTrust
from security.pki_keys import SigningKey

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "EvidenceNotFound",
    "EvidenceNotReady",
    "EvidenceSigner",
    "collect_evidence",
    "export_evidence_cli",
    "verify_evidence_cli",
]


class EvidenceNotFound(EvidenceError):
    """No record of that request id exists (or is visible)."""

    code: ClassVar[str] = "NotFound"


class EvidenceNotReady(EvidenceError):
    """The exchange's records are not yet covered by a signed checkpoint."""

    code: ClassVar[str] = "EvidenceNotReady"


@dataclass(frozen=True, slots=True)
class EvidenceSigner:
    """What the exporter signs with: the gateway's key and certificate, the log's vkey."""

    key: SigningKey
    certificate: x509.Certificate
    log_key: VerifierKey


async def collect_evidence(
    store: AuditStore,
    request_id: str,
    signer: EvidenceSigner,
    *,
    members: tuple[str, ...] = (),
    open_body: OpenBody | None = None,
    signer_certificate: Callable[[str], x509.Certificate | None] | None = None,
    now: datetime | None = None,
    archives: ArchiveDirectory | None = None,
) -> bytes:
    """The evidence bundle of ``request_id`` from ``store``; raises `EvidenceNotFound`,
    `EvidenceNotReady`, `RecordsArchived` or `AuditError`.

    ``members`` is an auditor's scope (empty: every record): records whose client and
    service belong to none of them do not exist for this call. The scope is the stores'
    own filter (`RecordQuery.members`), as for the auditor API's record queries.
    Bodies stored encrypted are decrypted with ``open_body`` when given (the auditor may
    read them), else exported as stored. ``signer_certificate`` looks a thumbprint up
    among the certificates the gateway knows (registry); a record's signer found there is
    included (only the record's one or two thumbprints are looked up).
    ``archives`` is where retention puts this log's archives: an exchange found there is
    proved from its archive; one split between an archive and the live log (or the next
    archive) raises `RecordsArchived` naming both.
    """
    scope = members or None
    records = await store.query(request_id=request_id, members=scope, limit=MAX_QUERY_LIMIT)
    if not any(record.direction == "request" for record in records) and archives is not None:
        found = await asyncio.to_thread(archives.find, request_id, members)
        if found is not None:
            if records or not any(r.direction == "request" for r in found.records):
                raise _split(request_id, found, records)
            archive = SqliteAuditStore(found.path, read_only=True)
            await archive.open()
            try:
                return await collect_evidence(
                    archive,
                    request_id,
                    signer,
                    members=members,
                    open_body=open_body,
                    signer_certificate=signer_certificate,
                    now=now,
                )
            finally:
                await archive.close()
    if not records:
        raise EvidenceNotFound(f"no audit record of request {request_id}")
    last = max(record.seq for record in records)
    stored = await _covering_checkpoint(store, last)
    if stored is None:
        raise EvidenceNotReady(
            f"the records of request {request_id} are not yet covered by a signed checkpoint;"
            " try again after the next checkpoint"
        )
    checkpoint = stored.checkpoint
    items = []
    for record in records:
        proof = await store.inclusion_proof(record.seq, checkpoint.size)
        body, form = await _body(record, open_body)
        items.append(EvidenceItem(record=record, proof=proof, body=body, body_form=form))
    thumbprints = {r.signer_thumbprint for r in records if r.signer_thumbprint is not None}
    lookup = signer_certificate or (lambda thumbprint: None)
    pinned = (lookup(thumbprint) for thumbprint in sorted(thumbprints))
    certificates = [certificate for certificate in pinned if certificate is not None]
    return await asyncio.to_thread(
        build_evidence,
        request_id=request_id,
        items=items,
        checkpoint=checkpoint,
        log_key=signer.log_key,
        gateway_certificate=signer.certificate,
        signing_key=signer.key,
        timestamp_token=stored.timestamp_token,
        signer_certificates=certificates,
        created=now or datetime.now(UTC),
    )


def _split(request_id: str, found: ArchivedExchange, live: list[AuditRecord]) -> RecordsArchived:
    """The error for an exchange a retention cut split: no one checkpoint proves it all."""
    archived = ", ".join(str(r.seq) for r in sorted(found.records, key=lambda r: r.seq))
    rest = (  # found is the newest archive holding any of them: the rest is live or older
        f"seq {', '.join(str(r.seq) for r in sorted(live, key=lambda r: r.seq))} in the live log"
        if live
        else "the request in an earlier archive"
    )
    return RecordsArchived(
        f"the records of request {request_id} were split by a retention cut: seq {archived}"
        f" in {found.path.name}, {rest}; export needs them under one checkpoint (verify the"
        " archives and the log with obmin audit verify --archives)"
    )


async def _covering_checkpoint(store: AuditStore, last: int) -> StoredCheckpoint | None:
    """The checkpoint to prove records up to ``last`` against: the newest timestamped one
    covering them, else the newest of all (None when none covers them yet)."""
    stamped = await store.latest_timestamped_checkpoint(last + 1)
    if stamped is not None:
        return stamped
    latest = await store.latest_checkpoint()
    if latest is None or latest.checkpoint.size <= last:
        return None
    return latest


async def _body(
    record: AuditRecord, open_body: OpenBody | None
) -> tuple[bytes | None, BodyForm | None]:
    if record.body is None:
        return None, None
    if record.body_policy != "encrypted":
        return record.body, "plain"
    if open_body is None:
        return record.body, "envelope"
    return await asyncio.to_thread(open_body, record.body, BodyBinding.of(record)), "plain"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EvidenceError(f"cannot read {what} {path}: {exc.strerror}") from exc


def verify_evidence_cli(
    bundle: Path,
    *,
    certificate: Path | None = None,
    vkey: str | None = None,
    tsa_ca: Path | None = None,
) -> tuple[int, str]:
    """``obmin audit verify-evidence``: exit code 0 and the report, or 1 and the reason."""
    if certificate is None and vkey is None:
        return 1, "verify-evidence needs --certificate (the gateway's) or --vkey (the log's)"
    data = _read(bundle, "the evidence bundle")
    given = None
    if certificate is not None:
        try:
            given = x509.load_pem_x509_certificate(_read(certificate, "the certificate"))
        except ValueError as exc:
            raise EvidenceError(f"{certificate} is not a PEM certificate") from exc
    key = VerifierKey.parse(vkey) if vkey is not None else None
    trust = TsaTrust.from_file(tsa_ca, "--tsa-ca") if tsa_ca is not None else None
    try:
        report = verify_evidence(data, gateway_certificate=given, vkey=key, tsa_trust=trust)
    except AuditError as exc:
        return 1, f"{bundle}: evidence does NOT verify: {exc}"
    return 0, report.summary()


async def export_evidence_cli(
    settings: Settings, request_id: str, output: Path, passphrase: bytes | None
) -> str:
    """``obmin audit export``: write the bundle of ``request_id`` to ``output``."""
    from gateway.audit.body_crypto import BodyKeyring
    from gateway.audit.checkpointer import verifier_key_from_settings
    from gateway.audit.report import open_audit_store
    from security import load_certificate, load_private_key

    if settings.keys.log_key is None:
        raise InvalidCheckpoint("keys.log_key is not configured: the log has no checkpoints")
    signer = EvidenceSigner(
        key=load_private_key(settings.keys.signing_key, passphrase),
        certificate=load_certificate(settings.keys.signing_certificate),
        log_key=verifier_key_from_settings(settings, passphrase),
    )
    keys = settings.audit.body_keys
    keyring = BodyKeyring.from_settings(keys) if keys is not None else None
    store = await open_audit_store(settings.audit, read_only=True)
    try:
        bundle = await collect_evidence(
            store,
            request_id,
            signer,
            open_body=keyring.open if keyring else None,
            archives=ArchiveDirectory(settings.audit.archive_dir, settings.audit.origin),
        )
    finally:
        await store.close()
    try:
        await asyncio.to_thread(output.write_bytes, bundle)
    except OSError as exc:
        raise EvidenceError(f"cannot write {output}: {exc.strerror}") from exc
    return f"evidence for request {request_id} written to {output} ({len(bundle)} bytes)"
