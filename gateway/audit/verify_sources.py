"""Where ``obmin audit verify`` reads a log from: a SQLite file (live log or archive) or
PostgreSQL.

A `LogSource` is a small frozen value — it is sent to the verifier's worker processes —
that opens a `LogReader`. A reader sees one consistent snapshot: SQLite's read transaction,
or a PostgreSQL ``REPEATABLE READ`` transaction whose snapshot the main reader exports and
every worker imports, so all of them check the very same log. Readers block (sqlite3, or
asyncpg on a private event loop): they are for the verifier's threads and processes, never
for the gateway's event loop. Failures are `AuditError`.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import asyncpg

from gateway.audit.columns import RECORD_COLUMNS
from gateway.audit.errors import AuditError, InvalidAuditRecord
from gateway.audit.merkle import HASH_SIZE, CompactRange
from gateway.audit.postgres_db import DRIVER_ERRORS, Tables, redact_dsn
from gateway.audit.sqlite_db import SCHEMA_VERSION, decode_range

__all__ = ["LogReader", "LogSource", "PostgresSource", "SqliteSource"]

_ROW_COLUMNS: Final = ", ".join(RECORD_COLUMNS)
_SNAPSHOT = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")
CheckpointRow = tuple[object, object, object, object]  # tree size, root, note, timestamp token


class LogReader(Protocol):
    """One snapshot of one log."""

    base: CompactRange  # the tree state below the first record (retention, archives)
    records: int  # the log's size: its last seq + 1 (or the base, when it holds none)
    meta: dict[str, str]  # archive descriptions (origin, range); empty for PostgreSQL
    snapshot: str | None  # for workers to read the same snapshot

    def rows(self, start: int, end: int) -> Generator[tuple[Any, ...], None, None]:
        """Whole rows (`RECORD_COLUMNS`) of records ``start`` to ``end - 1``, by seq
        (close the generator when stopping early)."""
        ...

    def leaves(self, start: int, end: int) -> list[tuple[object, object]]:
        """``(seq, leaf_hash)`` of records ``start`` to ``end - 1``, by seq."""
        ...

    def checkpoints(self) -> list[CheckpointRow]:
        """Every stored checkpoint, by tree size."""
        ...

    def close(self) -> None:
        """End the snapshot and disconnect."""
        ...


class LogSource(Protocol):
    """A log to verify; picklable."""

    @property
    def label(self) -> str:
        """What to call the log in a report."""
        ...

    def open(self, snapshot: str | None = None) -> LogReader:
        """A reader of the log (of ``snapshot``, in a worker); raises `AuditError`."""
        ...


@dataclass(frozen=True, slots=True)
class SqliteSource:
    """An obmin SQLite log: the live file, or an archive (same shape)."""

    path: Path

    @property
    def label(self) -> str:
        """The file."""
        return str(self.path)

    def open(self, snapshot: str | None = None) -> _SqliteReader:
        """Open the file read-only and start a read transaction."""
        if not self.path.is_file():
            raise AuditError(f"no audit log at {self.path}")
        return _SqliteReader(self.path)


class _SqliteReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.snapshot: str | None = None
        try:
            self._conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise AuditError(f"cannot open the audit database {path}: {exc}") from exc
        try:
            self._conn.execute("BEGIN")  # one snapshot: records and checkpoints as of now
            _check_version(path, self._conn)
            self.meta = {str(k): str(v) for k, v in self._conn.execute("SELECT * FROM meta")}
            size = int(self.meta.get("base_size", "0"))
            self.base = decode_range(size, self.meta.get("base_range", ""))
            (last,) = self._conn.execute("SELECT max(seq) FROM records").fetchone()
            self.records = size if last is None else max(int(last) + 1, size)
        except (sqlite3.Error, ValueError) as exc:
            self._conn.close()
            raise AuditError(f"cannot read the audit database {path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def rows(self, start: int, end: int) -> Generator[tuple[Any, ...], None, None]:
        try:
            cursor = self._conn.execute(
                f"SELECT {_ROW_COLUMNS} FROM records WHERE seq >= ? AND seq < ? ORDER BY seq",  # noqa: S608 (fixed names)
                (start, end),
            )
            while batch := cursor.fetchmany(4096):
                yield from batch
        except sqlite3.Error as exc:
            raise AuditError(f"cannot read the audit database {self.path}: {exc}") from exc

    def leaves(self, start: int, end: int) -> list[tuple[object, object]]:
        try:
            return self._conn.execute(
                "SELECT seq, leaf_hash FROM records WHERE seq >= ? AND seq < ? ORDER BY seq",
                (start, end),
            ).fetchall()
        except sqlite3.Error as exc:
            raise AuditError(f"cannot read the audit database {self.path}: {exc}") from exc

    def checkpoints(self) -> list[CheckpointRow]:
        try:
            return self._conn.execute(
                "SELECT tree_size, root, note, timestamp_token FROM checkpoints ORDER BY tree_size"
            ).fetchall()
        except sqlite3.Error as exc:
            raise AuditError(f"cannot read the audit database {self.path}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()


def _check_version(path: Path, conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != SCHEMA_VERSION:
        raise AuditError(
            f"{path} is not an obmin audit log of schema version {SCHEMA_VERSION}"
            f" (found {version}); open it once with the gateway to migrate it"
        )


@dataclass(frozen=True, slots=True)
class PostgresSource:
    """The log of ``origin`` in the PostgreSQL database ``dsn``, schema ``schema``."""

    dsn: str
    origin: str
    schema: str = "obmin_audit"

    @property
    def label(self) -> str:
        """The database, schema and origin (never the password)."""
        return f"{redact_dsn(self.dsn)} schema {self.schema} log {self.origin}"

    def open(self, snapshot: str | None = None) -> _PostgresReader:
        """Connect and start a repeatable-read snapshot (``snapshot``: import that one)."""
        return _PostgresReader(self, snapshot)


class _PostgresReader:
    def __init__(self, source: PostgresSource, snapshot: str | None) -> None:
        self._tables = Tables(source.schema)
        self._label = source.label
        self._loop = asyncio.new_event_loop()
        self.meta: dict[str, str] = {}
        self.snapshot: str | None = None
        self.base = CompactRange()
        self.records = 0
        self._log_id = 0
        self._conn: asyncpg.Connection | None = None
        try:
            self._conn = self._run(asyncpg.connect(source.dsn, timeout=10))
            self._start(source.origin, snapshot)
        except BaseException:
            self.close()
            raise

    def _run(self, operation: Any) -> Any:
        try:
            return self._loop.run_until_complete(operation)
        except DRIVER_ERRORS as exc:
            raise AuditError(f"cannot read the audit database {self._label}: {exc}") from exc

    def _start(self, origin: str, snapshot: str | None) -> None:
        conn = self._conn
        assert conn is not None
        self._run(conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        if snapshot is None:
            self.snapshot = str(self._run(conn.fetchval("SELECT pg_export_snapshot()")))
        else:
            if not _SNAPSHOT.fullmatch(snapshot):
                raise AuditError(f"{snapshot!r} is not a PostgreSQL snapshot id")
            self._run(conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            self.snapshot = snapshot
        t = self._tables
        row = self._run(
            conn.fetchrow(
                f"SELECT id, next_seq, base_size, base_range,"  # noqa: S608 (validated identifier)
                f" (SELECT max(seq) FROM {t.records} r WHERE r.log_id = l.id)"
                f" FROM {t.logs} l WHERE origin = $1",
                origin,
            )
        )
        if row is None:
            raise AuditError(f"there is no audit log for origin {origin!r} in {self._label}")
        self._log_id, next_seq, base_size, raw_range, last = row
        try:
            hashes = [raw_range[i : i + HASH_SIZE] for i in range(0, len(raw_range), HASH_SIZE)]
            self.base = CompactRange(base_size, hashes)
        except AuditError as exc:
            raise InvalidAuditRecord(f"the stored tree state at {base_size} is malformed") from exc
        self.records = max(next_seq, base_size, 0 if last is None else last + 1)

    def _fetch(self, sql: str, *params: object) -> list[Any]:
        assert self._conn is not None
        return list(self._run(self._conn.fetch(sql, self._log_id, *params)))

    def rows(self, start: int, end: int) -> Generator[tuple[Any, ...], None, None]:
        step = 8192
        for low in range(start, end, step):
            rows = self._fetch(
                f"SELECT {_ROW_COLUMNS} FROM {self._tables.records}"  # noqa: S608 (fixed names)
                " WHERE log_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                low,
                min(end, low + step),
            )
            for row in rows:
                yield tuple(row)

    def leaves(self, start: int, end: int) -> list[tuple[object, object]]:
        rows = self._fetch(
            f"SELECT seq, leaf_hash FROM {self._tables.records}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
            start,
            end,
        )
        return [(seq, leaf) for seq, leaf in rows]

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._fetch(
            f"SELECT tree_size, root, note, timestamp_token FROM {self._tables.checkpoints}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 ORDER BY tree_size"
        )
        return [(size, root, note, token) for size, root, note, token in rows]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self._loop.run_until_complete(conn.close(timeout=5))
            except DRIVER_ERRORS:
                conn.terminate()
        self._loop.close()
