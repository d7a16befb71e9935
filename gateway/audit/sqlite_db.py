"""The synchronous half of the SQLite audit store: one connection, used from one thread.

`SqliteLog` is driven by `SqliteAuditStore`, which runs each instance on its own
single-thread executor, so every method here may block. Every sqlite3 and OS failure
leaves this module as `AuditError`; after a failure the connection is dropped and the next
call reconnects, so the store recovers by itself once the database is usable again.

The file is created only by the first connection of a writable store. If it later disappears
or is replaced (the directory was moved, the file deleted), the open connection is not used
again — it would write into an unlinked inode — and reconnecting does not create an empty
log in its place: appends fail (``LoggingFailed``) until the file is back.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from gateway.audit.checkpoint import Checkpoint
from gateway.audit.errors import AuditError, InvalidAuditRecord
from gateway.audit.merkle import HASH_SIZE, CompactRange
from gateway.audit.records import AuditRecord, AuditRecordDraft, format_time, leaf_hash
from gateway.audit.store import StoredCheckpoint

__all__ = ["SCHEMA_VERSION", "SqliteLog"]

# 1: records and meta. 2: checkpoints (a version 1 file is migrated in place when a
# writable store opens it; readers accept both).
SCHEMA_VERSION: Final = 2

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        message_id TEXT,
        client TEXT,
        service TEXT,
        time TEXT NOT NULL,
        direction TEXT NOT NULL,
        canonical BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        body BLOB
    )""",
    "CREATE INDEX IF NOT EXISTS records_request_id ON records (request_id)",
    "CREATE INDEX IF NOT EXISTS records_message_id ON records (message_id)",
    "CREATE INDEX IF NOT EXISTS records_client ON records (client, seq)",
    "CREATE INDEX IF NOT EXISTS records_service ON records (service, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_SCHEMA_V2: Final = (
    """CREATE TABLE IF NOT EXISTS checkpoints (
        tree_size INTEGER PRIMARY KEY,
        root BLOB NOT NULL,
        note TEXT NOT NULL,
        created TEXT NOT NULL,
        compact_range BLOB NOT NULL
    )""",
)
_INSERT_CHECKPOINT: Final = (
    "INSERT INTO checkpoints (tree_size, root, note, created, compact_range) VALUES (?, ?, ?, ?, ?)"
)
_LATEST_CHECKPOINT: Final = (
    "SELECT tree_size, root, note, created, compact_range FROM checkpoints"
    " ORDER BY tree_size DESC LIMIT 1"
)
_INSERT: Final = (
    "INSERT INTO records (seq, request_id, message_id, client, service, time, direction,"
    " canonical, leaf_hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Filterable columns; query() builds its WHERE clause from these names only.
FILTER_COLUMNS: Final = ("client", "service", "message_id", "request_id")

_FileId = tuple[int, int]


class SqliteLog:
    """One connection to the audit database; not thread-safe, use from one thread only."""

    def __init__(self, path: Path, *, writable: bool, create: bool, busy_timeout: float) -> None:
        self.path = path
        self.writable = writable
        self._create = create and writable
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._file_id: _FileId | None = None
        self.commits = 0

    # --- connection ------------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        """The open connection, (re)connecting if needed; raises `AuditError`."""
        if self._conn is not None and self._file_id == self._stat():
            return self._conn
        self.close()  # the file went away or was replaced: never write to the old inode
        try:
            conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            raise AuditError(f"cannot open the audit database {self.path}: {exc}") from exc
        self._conn, self._file_id = conn, self._stat()
        self._create = False  # from now on a missing file is an error, not a fresh log
        return conn

    def _stat(self) -> _FileId | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)

    def _open(self) -> sqlite3.Connection:
        if self._create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "rwc" if self._create else ("rw" if self.writable else "ro")
        conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode={mode}",
            uri=True,
            timeout=self._busy_timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT only
        )
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        if self.writable:
            (journal,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(journal).lower() != "wal":
                raise AuditError(f"the audit database {self.path} cannot use WAL mode")
            conn.execute("PRAGMA synchronous=FULL")
            self._ensure_schema(conn)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION and (self.writable or version != 1):
            raise AuditError(
                f"{self.path} is not an obmin audit log of schema version {SCHEMA_VERSION}"
                f" (found {version})"
            )

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            steps = {0: (*_SCHEMA, *_SCHEMA_V2), 1: _SCHEMA_V2}.get(version)
            if steps is not None:  # a new file, or one to migrate (in the same transaction)
                for statement in steps:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def close(self) -> None:
        """Close the connection (if any); the next call reconnects."""
        conn, self._conn, self._file_id = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # --- writes ----------------------------------------------------------------------------

    def append(self, calls: Sequence[Sequence[AuditRecordDraft]]) -> list[list[AuditRecord]]:
        """Commit the drafts of several ``append`` calls in one transaction (group commit).

        Sequence numbers continue from the largest in the file, read inside the write
        transaction, so several stores on one file never collide.
        """
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (next_seq,) = conn.execute(
                    "SELECT coalesce(max(seq) + 1, 0) FROM records"
                ).fetchone()
                results, rows = _rows(calls, next_seq)
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"cannot write to the audit database {self.path}: {exc}") from exc
        self.commits += 1
        return results

    def probe_writable(self) -> None:
        """Raise `AuditError` unless a write transaction can be started and written now."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # A write that changes nothing still needs a writable, unlocked file.
                conn.execute("UPDATE meta SET value = value WHERE 0")
            finally:
                _rollback(conn)
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"the audit database {self.path} is not writable: {exc}") from exc

    def add_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Insert a checkpoint durably; refuses one for more records than the log holds."""
        checkpoint = stored.checkpoint
        row = (
            checkpoint.size,
            checkpoint.root,
            checkpoint.note,
            format_time(stored.created),
            b"".join(stored.compact_range.hashes),
        )
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (size,) = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM records").fetchone()
                if checkpoint.size <= size:
                    conn.execute(_INSERT_CHECKPOINT, row)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"cannot store a checkpoint in {self.path}: {exc}") from exc
        if checkpoint.size > size:
            raise AuditError(f"refused a checkpoint of size {checkpoint.size} for {size} records")

    # --- reads -----------------------------------------------------------------------------

    def select(
        self,
        filters: dict[str, str],
        *,
        after_seq: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[AuditRecord]:
        """Records whose columns equal ``filters`` (names from `FILTER_COLUMNS`)."""
        clauses: list[str] = []
        params: list[object] = []
        for column, value in filters.items():
            if column not in FILTER_COLUMNS:
                raise AuditError(f"cannot filter audit records by {column!r}")
            clauses.append(f"{column} = ?")
            params.append(value)
        if after_seq is not None and not newest_first:
            clauses.append("seq > ?")
            params.append(after_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT canonical, body FROM records {where} ORDER BY seq {order} LIMIT ?"  # noqa: S608 (fixed column names, values bound)
        params.append(limit)
        rows = self._read(sql, params)
        records: list[AuditRecord] = []
        for canonical, body in rows:
            if not isinstance(canonical, bytes):
                raise InvalidAuditRecord(f"stored record is {type(canonical).__name__}, not a blob")
            records.append(AuditRecord.from_row(canonical, _blob(body)))
        return records

    def size(self) -> int:
        """The next sequence number: records ever appended (contiguous from 0)."""
        ((size,),) = self._read("SELECT coalesce(max(seq) + 1, 0) FROM records", [])
        assert isinstance(size, int)
        return size

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The stored leaf hashes of records ``start`` to ``end - 1`` (a `LeafSource`).

        Fewer when the log ends before ``end``; raises `InvalidAuditRecord` when a record
        in the range is missing (deleted) or its stored hash is not 32 bytes.
        """
        rows = self._read(
            "SELECT seq, leaf_hash FROM records WHERE seq >= ? AND seq < ? ORDER BY seq",
            [start, end],
        )
        hashes: list[bytes] = []
        for expected, (seq, value) in enumerate(rows, start):
            if seq != expected:
                raise InvalidAuditRecord(f"audit record {expected} is missing from the log")
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise InvalidAuditRecord(f"the stored leaf hash of record {seq} is not 32 bytes")
            hashes.append(value)
        return hashes

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest tree size, if any."""
        rows = self._read(_LATEST_CHECKPOINT, [])
        return _stored_checkpoint(rows[0]) if rows else None

    def _read(self, sql: str, params: list[object]) -> list[tuple[object, ...]]:
        conn = self.connect()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"cannot read the audit database {self.path}: {exc}") from exc


def _rows(
    calls: Sequence[Sequence[AuditRecordDraft]], next_seq: int
) -> tuple[list[list[AuditRecord]], list[tuple[object, ...]]]:
    results: list[list[AuditRecord]] = []
    rows: list[tuple[object, ...]] = []
    for drafts in calls:
        records: list[AuditRecord] = []
        for draft in drafts:
            record = draft.to_record(next_seq)
            canonical = record.to_canonical_json()
            rows.append(
                (
                    record.seq,
                    record.request_id,
                    record.message_id,
                    record.client,
                    record.service,
                    format_time(record.time),
                    record.direction,
                    canonical,
                    leaf_hash(canonical),
                    record.body,
                )
            )
            records.append(record)
            next_seq += 1
        results.append(records)
    return results, rows


def _blob(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    raise InvalidAuditRecord(f"stored body is {type(value).__name__}, not a blob")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _stored_checkpoint(row: tuple[object, ...]) -> StoredCheckpoint:
    size, root, note, created, compact = row
    if not (
        isinstance(size, int)
        and isinstance(root, bytes)
        and isinstance(note, str)
        and isinstance(created, str)
        and isinstance(compact, bytes)
    ):
        raise InvalidAuditRecord("a stored checkpoint row has the wrong column types")
    hashes = [compact[i : i + HASH_SIZE] for i in range(0, len(compact), HASH_SIZE)]
    try:
        when = datetime.fromisoformat(created)
    except ValueError as exc:
        raise InvalidAuditRecord(f"checkpoint {size} has a bad creation time") from exc
    try:
        compact_range = CompactRange(size, hashes)
    except AuditError as exc:
        raise InvalidAuditRecord(f"checkpoint {size} has a bad compact range: {exc}") from exc
    checkpoint = Checkpoint(origin=note.split("\n", 1)[0], size=size, root=root, note=note)
    return StoredCheckpoint(checkpoint=checkpoint, created=when, compact_range=compact_range)
