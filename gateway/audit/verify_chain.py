"""Archives and the live log verified as one log, one archive alone, and the CLI glue.

`verify_chain` verifies every piece alone (`verify_log`), then that they form one log: the
first starts at record 0, each starts where the one before it ended (a gap is a missing
archive, named by the records it held), and each starts from the very tree state the one
before it ended with (same root at the boundary, both vouched for by signed checkpoints).
The live log may start at any boundary the archives reach (retention that stopped after
writing an archive but before moving the log's base leaves such an overlap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.audit.archive_format import archives_in, is_archive_meta
from gateway.audit.body_crypto import BodyKeyring
from gateway.audit.checkpoint import VerifierKey
from gateway.audit.checkpointer import verifier_key_from_settings
from gateway.audit.errors import AuditError
from gateway.audit.tsa_verify import TsaTrust, timestamp_checker
from gateway.audit.verify import OpenBody, TimestampCheck, VerifyReport, verify_log
from gateway.audit.verify_sources import LogSource, PostgresSource, SqliteSource

if TYPE_CHECKING:
    from gateway.settings import AuditSettings, Settings

__all__ = [
    "ChainReport",
    "EvidenceChecks",
    "evidence_checks",
    "live_source",
    "verify_archive",
    "verify_archive_cli",
    "verify_chain",
    "verify_log_cli",
]


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The pieces verified, and the first problem: which piece, which record, what."""

    pieces: tuple[VerifyReport, ...]
    problem: str | None = None
    first_bad_seq: int | None = None
    bad_piece: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every piece verified and they form one continuous log."""
        return self.problem is None

    def summary(self) -> str:
        """The pieces' summaries and the verdict."""
        lines = [piece.summary() for piece in self.pieces if piece.ok]
        if self.problem is not None:
            lines.append(
                f"FAILED: {self.bad_piece}: first bad record seq {self.first_bad_seq}:"
                f" {self.problem}"
            )
        elif len(self.pieces) > 1:
            total = self.pieces[-1].records
            lines.append(
                f"OK: {len(self.pieces)} pieces form one log of {total} records"
                f" (root {self.pieces[-1].root.hex()})"
            )
        return "\n".join(lines)


def _archive_meta(path: Path) -> tuple[int, int, dict[str, str]]:
    reader = SqliteSource(path).open()
    try:
        return reader.base.size, reader.records, reader.meta
    finally:
        reader.close()


def verify_archive(
    path: Path,
    key: VerifierKey,
    *,
    origin: str | None = None,
    timestamp_check: TimestampCheck | None = None,
    open_body: OpenBody | None = None,
) -> VerifyReport:
    """Verify one archive file alone, offline: with only the log's public key.

    ``origin`` defaults to the one the archive names (its signed checkpoints must say the
    same). An archive must end on a checkpoint: its last record is vouched for.
    """
    start, end, meta = _archive_meta(path)
    if not is_archive_meta(meta):
        raise AuditError(f"{path} is not an obmin audit archive")
    named = meta.get("origin", "")
    report = verify_log(
        SqliteSource(path),
        key,
        None,
        origin or named,
        workers=1 if end - start < 200_000 else None,
        timestamp_check=timestamp_check,
        open_body=open_body,
    )
    expected = (meta.get("first_seq"), meta.get("end_seq"))
    if report.ok and expected != (str(start), str(end)):
        return _bad(report, start, f"the archive says it holds {expected}, it holds {start}-{end}")
    if report.ok and report.covered != end:
        why = f"the archive ends at {end} but its last signed checkpoint is at {report.covered}"
        return _bad(report, report.covered, why)
    return report


def _bad(report: VerifyReport, seq: int, why: str) -> VerifyReport:
    return replace(report, first_bad_seq=seq, problem=why, final=None)


def verify_chain(
    archives: Sequence[Path],
    live: LogSource | None,
    key: VerifierKey,
    origin: str,
    *,
    workers: int | None = None,
    timestamp_check: TimestampCheck | None = None,
    open_body: OpenBody | None = None,
) -> ChainReport:
    """Verify ``archives`` and the ``live`` log as one continuous log of ``origin``.

    Archives of other origins are ignored (one directory may hold several gateways').
    """
    spans: list[tuple[int, int, Path]] = []
    for path in archives:
        start, end, meta = _archive_meta(path)
        if not is_archive_meta(meta):
            return ChainReport((), "not an obmin audit archive", start, str(path))
        if meta.get("origin") == origin:
            spans.append((start, end, path))
    spans.sort()
    pieces: list[VerifyReport] = []
    roots: dict[int, bytes] = {}  # boundary -> tree root there, as the pieces so far end
    reached = 0
    for start, end, path in spans:
        if start != reached:
            return _gap(pieces, reached, start, str(path))
        report = verify_archive(
            path, key, origin=origin, timestamp_check=timestamp_check, open_body=open_body
        )
        pieces.append(report)
        if not report.ok:
            return ChainReport(tuple(pieces), report.problem, report.first_bad_seq, str(path))
        problem = _continuity(roots, report)
        if problem is not None:
            return ChainReport(tuple(pieces), problem, start, str(path))
        roots[end] = report.root
        reached = end
    if live is None:
        return ChainReport(tuple(pieces))
    report = verify_log(
        live,
        key,
        None,
        origin,
        workers=workers,
        timestamp_check=timestamp_check,
        open_body=open_body,
    )
    pieces.append(report)
    if not report.ok:
        return ChainReport(tuple(pieces), report.problem, report.first_bad_seq, live.label)
    if report.start > reached:
        return _gap(pieces, reached, report.start, live.label)
    problem = _continuity(roots, report)
    if problem is not None:
        return ChainReport(tuple(pieces), problem, report.start, live.label)
    return ChainReport(tuple(pieces))


def _gap(pieces: list[VerifyReport], reached: int, start: int, label: str) -> ChainReport:
    if start < reached:
        why = f"it starts at record {start}, inside records already archived (up to {reached})"
        return ChainReport(tuple(pieces), why, start, label)
    why = (
        f"records {reached} to {start - 1} are missing: no archive holds them (an archive"
        " was removed or not given)"
    )
    return ChainReport(tuple(pieces), why, reached, label)


def _continuity(roots: dict[int, bytes], report: VerifyReport) -> str | None:
    """Whether a piece starts from the tree state the pieces before it reached there."""
    if report.start == 0:
        return None
    if report.start not in roots:
        return f"no archive ends at record {report.start}, where this piece starts"
    if roots[report.start] != report.start_root:
        return (
            f"the tree state at {report.start} differs from the one the archive before"
            " ends with: the pieces are not one log"
        )
    return None


def live_source(settings: AuditSettings) -> LogSource:
    """The configured live log, for the verifier."""
    if settings.store == "postgres":
        assert settings.dsn is not None  # the settings validator requires it
        return PostgresSource(settings.dsn, settings.origin, settings.postgres_schema)
    return SqliteSource(settings.path)


def _verifier_key(settings: Settings, vkey: str | None, passphrase: bytes | None) -> VerifierKey:
    if vkey is not None:
        return VerifierKey.parse(vkey)
    if settings.keys.log_key is None:
        raise AuditError("cannot check checkpoints: configure keys.log_key or give the log's vkey")
    return verifier_key_from_settings(settings, passphrase)


@dataclass(frozen=True, slots=True)
class EvidenceChecks:
    """The optional checks of a verification: timestamp tokens against a TSA CA, encrypted
    bodies against their digests with the body keys; and what to tell the operator."""

    timestamp_check: TimestampCheck | None = None
    open_body: OpenBody | None = None
    notes: tuple[str, ...] = ()


def evidence_checks(settings: Settings | None, tsa_ca: Path | None = None) -> EvidenceChecks:
    """Timestamps are checked against ``tsa_ca`` (``--tsa-ca``) or else the configured
    ``audit.tsa.ca_certificate``; encrypted bodies are opened with ``audit.body_keys`` when
    configured. Raises `AuditError` naming the flag or setting that cannot be used."""
    audit = settings.audit if settings is not None else None
    check: TimestampCheck | None = None
    notes: list[str] = []
    if tsa_ca is not None:
        check = timestamp_checker(TsaTrust.from_file(tsa_ca, "--tsa-ca"))
        notes.append(f"timestamps checked against the TSA CA {tsa_ca} (--tsa-ca)")
    elif audit is not None and audit.tsa is not None:
        check = timestamp_checker(TsaTrust.from_file(audit.tsa.ca_certificate))
        notes.append(f"timestamps checked against the TSA CA {audit.tsa.ca_certificate}")
    else:
        notes.append("timestamps not checked: no TSA CA (--tsa-ca or audit.tsa.ca_certificate)")
    keys = audit.body_keys if audit is not None else None
    opener: OpenBody | None = None
    if keys is not None:
        opener = BodyKeyring.from_settings(keys).open
        notes.append(f"encrypted bodies opened with body keys {', '.join(sorted(keys.keys))}")
    else:
        notes.append("encrypted bodies not checked: no audit.body_keys configured")
    return EvidenceChecks(check, opener, tuple(notes))


def verify_log_cli(
    settings: Settings,
    *,
    vkey: str | None = None,
    workers: int | None = None,
    passphrase: bytes | None = None,
    archives: Path | None = None,
    tsa_ca: Path | None = None,
) -> tuple[int, str]:
    """``obmin audit verify``: (exit status, text). Exit 1 on any mismatch or error.

    The configured store is verified (SQLite file or PostgreSQL log of this origin); with
    ``archives`` (a directory), the archive files there too, as one log with it. The key is
    the ``vkey`` given (what an auditor holds) or else the public half of the configured
    ``keys.log_key`` (read with ``passphrase``); the key name is the origin, as the
    checkpointer signs. Timestamp tokens and encrypted bodies are checked as
    `evidence_checks` says (a bad token fails the checkpoint it is on).
    """
    try:
        key = _verifier_key(settings, vkey, passphrase)
        checks = evidence_checks(settings, tsa_ca)
        source = live_source(settings.audit)
        head = "\n".join((f"log key {key.to_vkey()}", *checks.notes))
        if archives is not None:
            if not archives.is_dir():
                return 1, f"FAILED: the archive directory {archives} does not exist"
            chain = verify_chain(
                archives_in(archives),
                source,
                key,
                settings.audit.origin,
                workers=workers,
                timestamp_check=checks.timestamp_check,
                open_body=checks.open_body,
            )
            return (0 if chain.ok else 1), f"{head}\n{chain.summary()}"
        report = verify_log(
            source,
            key,
            None,
            settings.audit.origin,
            workers=workers,
            timestamp_check=checks.timestamp_check,
            open_body=checks.open_body,
        )
    except AuditError as exc:
        return 1, f"FAILED: {exc}"
    return (0 if report.ok else 1), f"{head}\n{report.summary()}"


def verify_archive_cli(
    files: Sequence[Path],
    *,
    vkey: str | None = None,
    settings: Settings | None = None,
    passphrase: bytes | None = None,
    tsa_ca: Path | None = None,
) -> tuple[int, str]:
    """``obmin audit verify-archive FILE...``: each archive alone, offline (exit 1 if any
    fails). The key is ``vkey``, or the configured log key when settings are given;
    timestamps and encrypted bodies are checked as `evidence_checks` says."""
    try:
        if vkey is not None:
            key = VerifierKey.parse(vkey)
        elif settings is not None:
            key = _verifier_key(settings, None, passphrase)
        else:
            return 1, "FAILED: give the log's verifier key (--vkey) or a settings file (-c)"
        checks = evidence_checks(settings, tsa_ca)
    except AuditError as exc:
        return 1, f"FAILED: {exc}"
    status, lines = 0, list(checks.notes)
    for path in files:
        try:
            report = verify_archive(
                path, key, timestamp_check=checks.timestamp_check, open_body=checks.open_body
            )
        except AuditError as exc:
            status, text = 1, f"FAILED: {path}: {exc}"
        else:
            status = status if report.ok else 1
            text = report.summary()
        lines.append(text)
    return status, "\n".join(lines)
