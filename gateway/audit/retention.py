"""Retention (SPEC 8): records past the configured age move to archive files, then leave the
database.

Archives are cut at checkpoint sizes, so each is self-verifying (see `archive_format`):
records ``[A, B)`` go when every one of them is older than the cut-off and a checkpoint of
size ``B`` exists (at most ``max_records`` per archive where the checkpoints allow). For
each archive, in this order — so that no record leaves the database before a verified copy
of it is durable:

1. the rows are copied, byte for byte, into ``NAME.tmp`` beside the final file; the file
   is sealed (no WAL), fsynced, renamed to its final name, and the directory fsynced;
2. the archive is re-read and verified alone with the log's public key: every record, its
   checkpoints from ``A`` to ``B``, and that it starts from the live log's base;
3. the log's base moves to ``B`` (the compact range the verification ended with): sizes,
   new sequence numbers and proofs continue from it;
4. the archived records are deleted in small batches (appends go on between them).

A crash anywhere leaves either the records in the database (steps 1 and 2: the next run redoes
them, reusing an archive that is already complete and verifies) or a verified archive and
records below the base that the next run deletes (steps 3 and 4).

`run_retention` is the gateway's owned background task; ``obmin audit archive`` runs
`archive_expired` once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

from gateway.audit.archive_format import ARCHIVE_FORMAT, archive_name
from gateway.audit.checkpoint import VerifierKey
from gateway.audit.errors import AuditError
from gateway.audit.merkle import CompactRange
from gateway.audit.records import format_time
from gateway.audit.sqlite_db import SqliteLog, encode_range
from gateway.audit.store import RetentionStore
from gateway.audit.verify import VerifyReport
from gateway.audit.verify_chain import verify_archive

if TYPE_CHECKING:
    from gateway.settings import AuditSettings, Settings

__all__ = ["ArchiveOutcome", "archive_cli", "archive_expired", "run_retention"]

log = structlog.get_logger("obmin.audit")

_COPY_ROWS: Final = 20_000  # rows read from the store and written to the archive at a time
_DELETE_ROWS: Final = 10_000  # records deleted per transaction


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """One archive written (or found complete) and its records gone from the database."""

    path: Path
    start: int
    end: int
    reused: bool = False


async def archive_expired(
    store: RetentionStore,
    *,
    origin: str,
    key: VerifierKey,
    directory: Path,
    cutoff: datetime,
    max_records: int = 1_000_000,
    now: datetime | None = None,
) -> list[ArchiveOutcome]:
    """Archive every record older than ``cutoff`` that a checkpoint covers; see the module.

    Raises `AuditError` when an archive cannot be written or does not verify; the records
    it would have held are then still in the database.
    """
    outcomes: list[ArchiveOutcome] = []
    base = await store.tree_base()
    await _delete_below(store, base.size)  # what an interrupted run left behind
    young = await store.first_seq_from(cutoff)
    limit = young if young is not None else await store.count()
    while True:
        end = await _next_boundary(store, base.size, limit, max_records)
        if end is None:
            return outcomes
        outcome, final = await _archive(store, origin, key, directory, base, end, now)
        await store.set_base(final)
        await _delete_below(store, end)
        log.info("audit records archived", path=str(outcome.path), start=base.size, end=end)
        outcomes.append(outcome)
        base = final


async def _next_boundary(
    store: RetentionStore, start: int, limit: int, max_records: int
) -> int | None:
    """The archive's end: the largest checkpoint size in ``(start, start + max_records]``
    that is at most ``limit`` — or the first one after ``start`` if that is larger."""
    best: int | None = None
    cursor = start + 1
    while cursor <= limit:
        page = await store.checkpoints(from_size=cursor, limit=1000)
        sizes = [stored.checkpoint.size for stored in page]
        for size in sizes:
            if size > limit or (best is not None and size > start + max_records):
                return best
            best = size
        if len(page) < 1000:
            break
        cursor = sizes[-1] + 1
    return best


async def _delete_below(store: RetentionStore, size: int) -> None:
    # Small transactions, so that appends go in between (each call waits for the writer).
    deleted = await store.delete_below(size, _DELETE_ROWS)
    while deleted:
        deleted = await store.delete_below(size, _DELETE_ROWS)


async def _archive(
    store: RetentionStore,
    origin: str,
    key: VerifierKey,
    directory: Path,
    base: CompactRange,
    end: int,
    now: datetime | None,
) -> tuple[ArchiveOutcome, CompactRange]:
    start = base.size
    path = directory / archive_name(origin, start, end)
    with ThreadPoolExecutor(1, thread_name_prefix="obmin-audit-archive") as thread:
        loop = asyncio.get_running_loop()
        reused = await loop.run_in_executor(thread, path.exists)
        if not reused:
            meta = {
                "format": ARCHIVE_FORMAT,
                "origin": origin,
                "first_seq": str(start),
                "end_seq": str(end),
                "created": format_time(now or datetime.now(UTC)),
                "base_size": str(start),
                "base_range": encode_range(base),
            }
            await _write(store, thread, path, start, end, meta)
        report = await loop.run_in_executor(
            thread, lambda: verify_archive(path, key, origin=origin)
        )
    final = _checked(report, path, base, end, reused)
    return ArchiveOutcome(path, start, end, reused), final


async def _write(
    store: RetentionStore,
    thread: ThreadPoolExecutor,
    path: Path,
    start: int,
    end: int,
    meta: dict[str, str],
) -> None:
    """Copy records ``[start, end)`` and their checkpoints into a new archive at ``path``."""
    loop = asyncio.get_running_loop()
    temporary = path.with_name(path.name + ".tmp")
    archive = SqliteLog(temporary, writable=True, create=True, busy_timeout=5.0)

    def fresh() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (temporary, *(temporary.with_name(temporary.name + s) for s in _SIDES)):
            stale.unlink(missing_ok=True)
        archive.connect()

    try:
        await loop.run_in_executor(thread, fresh)
        for low in range(start, end, _COPY_ROWS):
            rows = await store.raw_rows(low, min(end, low + _COPY_ROWS))
            if len(rows) != min(end, low + _COPY_ROWS) - low:
                raise AuditError(f"records {low} to {end - 1} are not all in the database")
            await loop.run_in_executor(thread, archive.write_archive, rows, [], {})
        checkpoints = await store.checkpoint_rows(start, end)
        await loop.run_in_executor(thread, lambda: archive.write_archive([], checkpoints, meta))
        await loop.run_in_executor(thread, archive.seal_archive)
        await loop.run_in_executor(thread, lambda: _publish(temporary, path))
    except OSError as exc:
        raise AuditError(f"cannot write the archive {path}: {exc}") from exc
    finally:
        await loop.run_in_executor(thread, archive.close)


_SIDES: Final = ("-wal", "-shm", "-journal")


def _publish(temporary: Path, path: Path) -> None:
    """Rename the sealed file into place and make the rename durable."""
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _checked(
    report: VerifyReport, path: Path, base: CompactRange, end: int, reused: bool
) -> CompactRange:
    """The tree state at ``end``, once the archive verified and continues the live log."""
    if not report.ok or report.final is None:
        if not reused:
            path.unlink(missing_ok=True)
        raise AuditError(
            f"the archive {path} did not verify (first bad record seq {report.first_bad_seq}:"
            f" {report.problem}); its records stay in the database"
        )
    if report.start != base.size or report.start_root != base.root() or report.records != end:
        raise AuditError(
            f"the archive {path} does not continue the live log at {base.size}; its records"
            " stay in the database"
        )
    return report.final


async def run_retention(
    store: RetentionStore,
    settings: AuditSettings,
    key: VerifierKey,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """The gateway's retention task: archive expired records every interval, forever.

    Failures are logged and retried at the next interval; the gateway keeps serving.
    """
    assert settings.retention_max_age_days is not None
    age = timedelta(days=settings.retention_max_age_days)
    while True:
        now = clock()
        try:
            await archive_expired(
                store,
                origin=settings.origin,
                key=key,
                directory=settings.archive_dir,
                cutoff=now - age,
                max_records=settings.archive_max_records,
                now=now,
            )
        except AuditError as exc:
            log.exception("audit retention failed; retrying later", reason=str(exc))
        await asyncio.sleep(settings.retention_interval_seconds)


async def archive_cli(
    settings: Settings, *, older_than_days: float | None = None, passphrase: bytes | None = None
) -> tuple[int, str]:
    """``obmin audit archive``: archive now what is older than the age; (exit status, text)."""
    from gateway.audit.checkpointer import verifier_key_from_settings
    from gateway.audit.report import open_audit_store

    audit = settings.audit
    days = older_than_days if older_than_days is not None else audit.retention_max_age_days
    if days is None or days <= 0:
        return 1, "give --older-than-days or set audit.retention_max_age_days"
    if settings.keys.log_key is None:
        return 1, "archiving needs keys.log_key (archives are verified before records leave)"
    try:
        key = verifier_key_from_settings(settings, passphrase)
        store = await open_audit_store(audit)
        try:
            outcomes = await archive_expired(
                store,
                origin=audit.origin,
                key=key,
                directory=audit.archive_dir,
                cutoff=datetime.now(UTC) - timedelta(days=days),
                max_records=audit.archive_max_records,
            )
        finally:
            await store.close()
    except AuditError as exc:
        return 1, f"FAILED: {exc}"
    if not outcomes:
        return 0, f"nothing to archive: no checkpointed records older than {days:g} days"
    lines = [f"archived records {o.start} to {o.end - 1} in {o.path}" for o in outcomes]
    return 0, "\n".join(lines)
