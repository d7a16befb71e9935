"""The synchronous half of the SQLite audit store: one connection, used from one thread.

`SqliteLog` is driven by `SqliteAuditStore`, which runs each instance on its own
single-thread executor, so every method here may block. Every sqlite3 and OS failure
leaves this module as `AuditError`; after a failure the connection is dropped and the next
call reconnects, so the store recovers by itself once the database is usable again.

The file is created only by the first connection of a writable store. If it later disappears
or is replaced (the directory was moved, the file deleted), the open connection is not used
again — it would write into an unlinked inode — and reconnecting does not create an empty
log in its place: appends fail (``LoggingFailed``) until the file is back.

After retention has moved records ``[0, B)`` to archives, the file keeps the tree state at
``B`` (its *base*: the compact range, in ``meta``) so that sizes, new sequence numbers and
proofs continue; an archive file has exactly this shape, with the base at its first record.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final, TypeVar

import orjson

from gateway.audit.checkpoint import Checkpoint
from gateway.audit.columns import RECORD_COLUMNS, columns_of_document, numbered_rows
from gateway.audit.errors import AuditError, InvalidAuditRecord
from gateway.audit.merkle import HASH_SIZE, CompactRange
from gateway.audit.query import RecordQuery, where_clause
from gateway.audit.records import AuditRecord, AuditRecordDraft, format_time
from gateway.audit.store import StoredCheckpoint

__all__ = ["SCHEMA_VERSION", "SqliteLog", "decode_range", "encode_range"]

# 1: records and meta. 2: checkpoints. 3: query columns for every SPEC 8 filter, member
# scope columns, checkpoint timestamp tokens, the retention base. An older file is migrated
# in place (in one transaction) when a writable store opens it; readers need version 3.
SCHEMA_VERSION: Final = 3

_RECORDS: Final = """CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        message_id TEXT,
        client TEXT,
        service TEXT,
        client_member TEXT,
        service_member TEXT,
        user_id TEXT,
        subject_id TEXT,
        http_status INTEGER,
        fault_code TEXT,
        time TEXT NOT NULL,
        direction TEXT NOT NULL,
        canonical BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        body BLOB
    )"""
# In SQLite every index ends with the rowid (= seq), so (column) is (column, seq): a
# filtered page is read from the index in seq order. Sparse columns get partial indexes.
INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS records_request_id ON records (request_id)",
    "CREATE INDEX IF NOT EXISTS records_message_id ON records (message_id)",
    "CREATE INDEX IF NOT EXISTS records_client ON records (client, seq)",
    "CREATE INDEX IF NOT EXISTS records_service ON records (service, seq)",
    "CREATE INDEX IF NOT EXISTS records_client_member ON records (client_member)",
    "CREATE INDEX IF NOT EXISTS records_service_member ON records (service_member)",
    "CREATE INDEX IF NOT EXISTS records_user_id ON records (user_id) WHERE user_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS records_subject_id ON records (subject_id)"
    " WHERE subject_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS records_http_status ON records (http_status)"
    " WHERE http_status IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS records_fault_code ON records (fault_code)"
    " WHERE fault_code IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS records_time ON records (time)",
)
_META: Final = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_CHECKPOINTS: Final = """CREATE TABLE IF NOT EXISTS checkpoints (
        tree_size INTEGER PRIMARY KEY,
        root BLOB NOT NULL,
        note TEXT NOT NULL,
        created TEXT NOT NULL,
        compact_range BLOB NOT NULL,
        timestamp_token BLOB
    )"""
_NODES: Final = """CREATE TABLE IF NOT EXISTS tree_nodes (
        height INTEGER NOT NULL,
        start INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (height, start)
    ) WITHOUT ROWID"""
_CHECKPOINT_COLUMNS: Final = "tree_size, root, note, created, compact_range, timestamp_token"
_NEW_COLUMNS_V3: Final = (
    ("client_member", "TEXT"),
    ("service_member", "TEXT"),
    ("user_id", "TEXT"),
    ("subject_id", "TEXT"),
    ("http_status", "INTEGER"),
    ("fault_code", "TEXT"),
)
_INSERT: Final = (
    f"INSERT INTO records ({', '.join(RECORD_COLUMNS)})"  # noqa: S608 (fixed column names)
    f" VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})"
)
_INSERT_CHECKPOINT: Final = (
    f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608 (fixed column names)
)
_BASE_SIZE: Final = "base_size"
_BASE_RANGE: Final = "base_range"

_FileId = tuple[int, int]
_T = TypeVar("_T")


def encode_range(compact: CompactRange) -> str:
    """A compact range as meta text: the hex of its hashes, concatenated."""
    return b"".join(compact.hashes).hex()


def decode_range(size: int, text: str) -> CompactRange:
    """The compact range that `encode_range` wrote; raises `InvalidAuditRecord`."""
    try:
        raw = bytes.fromhex(text)
        return CompactRange(size, [raw[i : i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)])
    except (ValueError, AuditError) as exc:
        raise InvalidAuditRecord(f"the stored tree state at size {size} is malformed") from exc


class SqliteLog:
    """One connection to the audit database; not thread-safe, use from one thread only."""

    def __init__(self, path: Path, *, writable: bool, create: bool, busy_timeout: float) -> None:
        self.path = path
        self.writable = writable
        self._create = create and writable
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._file_id: _FileId | None = None

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
        if version != SCHEMA_VERSION:
            hint = (
                " (open it once with a writable store to migrate it)" if version in (1, 2) else ""
            )
            raise AuditError(
                f"{self.path} is not an obmin audit log of schema version {SCHEMA_VERSION}"
                f" (found {version}){hint}"
            )

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == 0:  # a new file
                for statement in (_RECORDS, *INDEXES, _META, _CHECKPOINTS, _NODES):
                    conn.execute(statement)
            elif version in (1, 2):
                _migrate_to_v3(conn, version)
            if version in (0, 1, 2):
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

        Sequence numbers continue from the log's size, read inside the write transaction,
        so several stores on one file never collide.
        """

        def write(conn: sqlite3.Connection) -> list[list[AuditRecord]]:
            results, rows = numbered_rows(calls, _size(conn))
            conn.executemany(_INSERT, rows)
            return results

        return self._write(write, "cannot write to the audit database")

    def _write(self, work: Callable[[sqlite3.Connection], _T], failure: str) -> _T:
        """Run ``work(conn)`` in a write transaction; `AuditError` (with ``failure``)."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"{failure} {self.path}: {exc}") from exc
        return result

    def probe_writable(self) -> None:
        """Raise `AuditError` unless a write transaction can be started and written now."""

        def probe(conn: sqlite3.Connection) -> None:
            # A write that changes nothing still needs a writable, unlocked file.
            conn.execute("UPDATE meta SET value = value WHERE 0")
            raise _Probed

        with contextlib.suppress(_Probed):
            self._write(probe, "the audit database is not writable:")

    def probe_durable(self) -> None:
        """Raise `AuditError` unless a write can be committed and synced now.

        Sets the schema version to the one the file has: the header page goes to the WAL and
        is synced as a commit of records would be, and nothing in the log changes.
        """

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(probe, "the audit database cannot be written:")

    def add_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Insert a checkpoint durably; refuses one for more records than the log holds."""
        checkpoint = stored.checkpoint
        row = (
            checkpoint.size,
            checkpoint.root,
            checkpoint.note,
            format_time(stored.created),
            b"".join(stored.compact_range.hashes),
            stored.timestamp_token,
        )

        def insert(conn: sqlite3.Connection) -> int:
            size = _size(conn)
            if checkpoint.size <= size:
                conn.execute(_INSERT_CHECKPOINT, row)
                conn.executemany(
                    "INSERT OR IGNORE INTO tree_nodes (height, start, hash) VALUES (?, ?, ?)",
                    stored.nodes,
                )
            return size

        size = self._write(insert, "cannot store a checkpoint in")
        if checkpoint.size > size:
            raise AuditError(f"refused a checkpoint of size {checkpoint.size} for {size} records")

    def set_checkpoint_timestamp(self, tree_size: int, token: bytes) -> None:
        """Store the RFC 3161 token of checkpoint ``tree_size``; unknown sizes are an error."""

        def update(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE checkpoints SET timestamp_token = ? WHERE tree_size = ?",
                (token, tree_size),
            )
            return cursor.rowcount

        if self._write(update, "cannot store a timestamp in") != 1:
            raise AuditError(f"there is no checkpoint of tree size {tree_size}")

    def set_base(self, compact: CompactRange) -> None:
        """Retention: records below ``compact.size`` are archived; the tree continues from
        ``compact``. Checkpoints below it go (the one at it stays, vouching for it)."""

        def update(conn: sqlite3.Connection) -> None:
            (current,) = conn.execute(
                "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?), 0)",
                (_BASE_SIZE,),
            ).fetchone()
            if compact.size < current:
                raise AuditError(f"the log's base is {current}; cannot move it to {compact.size}")
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(_BASE_SIZE, str(compact.size)), (_BASE_RANGE, encode_range(compact))],
            )
            conn.execute("DELETE FROM checkpoints WHERE tree_size < ?", (compact.size,))
            conn.execute("DELETE FROM tree_nodes WHERE start + (1 << height) <= ?", (compact.size,))

        self._write(update, "cannot move the retention base of")

    def delete_below(self, size: int, limit: int) -> int:
        """Delete at most ``limit`` archived records below ``size`` (never above the base);
        how many went."""

        def delete(conn: sqlite3.Connection) -> int:
            base = min(size, _base(conn)[0])
            cursor = conn.execute(
                "DELETE FROM records WHERE seq IN"
                " (SELECT seq FROM records WHERE seq < ? ORDER BY seq LIMIT ?)",
                (base, limit),
            )
            return cursor.rowcount

        return self._write(delete, "cannot delete archived records from")

    def write_archive(
        self,
        rows: Sequence[tuple[object, ...]],
        checkpoints: Sequence[tuple[object, ...]],
        meta: dict[str, str],
    ) -> None:
        """Fill a new archive file: raw record and checkpoint rows, and its meta entries."""

        def fill(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT, rows)
            conn.executemany(_INSERT_CHECKPOINT, checkpoints)
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())

        self._write(fill, "cannot write the archive")

    def seal_archive(self) -> None:
        """Finish an archive file: one self-contained file (no WAL), synced, closed."""
        conn = self.connect()
        try:
            conn.execute("PRAGMA journal_mode=DELETE")  # folds the WAL into the file
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise AuditError(f"cannot finish the archive {self.path}: {exc}") from exc
        finally:
            self.close()
        with open(self.path, "rb") as handle:
            os.fsync(handle.fileno())

    # --- reads -----------------------------------------------------------------------------

    def select(self, query: RecordQuery) -> list[AuditRecord]:
        """Records matching ``query``, in its order."""
        params: list[object] = []

        def bind(value: object) -> str:
            params.append(value)
            return "?"

        clauses = where_clause(query, bind)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if query.newest_first else "ASC"
        sql = f"SELECT canonical, body FROM records {where} ORDER BY seq {order} LIMIT ?"  # noqa: S608 (column names from the query module, values bound)
        params.append(query.limit)
        records: list[AuditRecord] = []
        for canonical, body in self._read(sql, params):
            if not isinstance(canonical, bytes):
                raise InvalidAuditRecord(f"stored record is {type(canonical).__name__}, not a blob")
            records.append(AuditRecord.from_row(canonical, _blob(body)))
        return records

    def size(self) -> int:
        """The next sequence number: records ever appended (archived ones included)."""
        conn = self.connect()
        try:
            return _size(conn)
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"cannot read the audit database {self.path}: {exc}") from exc

    def base(self) -> CompactRange:
        """The tree state below the first record kept (size 0 when nothing was archived)."""
        conn = self.connect()
        try:
            size, text = _base(conn)
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"cannot read the audit database {self.path}: {exc}") from exc
        return decode_range(size, text)

    def meta(self) -> dict[str, str]:
        """The file's meta entries."""
        return {str(k): str(v) for k, v in self._read("SELECT key, value FROM meta", [])}

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The stored leaf hashes of records ``start`` to ``end - 1`` (a `LeafSource`).

        Fewer when the log ends before ``end``; raises `InvalidAuditRecord` when a record
        in the range is missing (deleted or archived) or its stored hash is not 32 bytes.
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

    def stored_node(self, height: int, start: int) -> bytes | None:
        """The saved hash of the perfect subtree of 2^height leaves from ``start``, if any."""
        rows = self._read(
            "SELECT hash FROM tree_nodes WHERE height = ? AND start = ?", [height, start]
        )
        value = rows[0][0] if rows else None
        return value if isinstance(value, bytes) and len(value) == HASH_SIZE else None

    def stored_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The saved subtree hashes among ``keys`` (``(height, start)``), by key."""
        found: dict[tuple[int, int], bytes] = {}
        for low in range(0, len(keys), 400):
            chunk = keys[low : low + 400]
            clause = " OR ".join("(height = ? AND start = ?)" for _ in chunk)
            params = [value for key in chunk for value in key]
            rows = self._read(f"SELECT height, start, hash FROM tree_nodes WHERE {clause}", params)  # noqa: S608 (placeholders only)
            for height, start, value in rows:
                if isinstance(height, int) and isinstance(start, int) and isinstance(value, bytes):
                    found[height, start] = value
        return found

    def raw_rows(self, start: int, end: int) -> list[tuple[object, ...]]:
        """Whole stored rows (`RECORD_COLUMNS`) of records ``start`` to ``end - 1``."""
        return self._read(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM records"  # noqa: S608 (fixed column names)
            " WHERE seq >= ? AND seq < ? ORDER BY seq",
            [start, end],
        )

    def first_seq_from(self, time: datetime) -> int | None:
        """The smallest ``seq`` of a record made at ``time`` or later, if any."""
        ((seq,),) = self._read("SELECT min(seq) FROM records WHERE time >= ?", [format_time(time)])
        return seq if isinstance(seq, int) else None

    def checkpoint_rows(self, low: int, high: int) -> list[tuple[object, ...]]:
        """Raw checkpoint rows with ``low <= tree_size <= high``, by size."""
        return self._read(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints"  # noqa: S608 (fixed column names)
            " WHERE tree_size >= ? AND tree_size <= ? ORDER BY tree_size",
            [low, high],
        )

    def checkpoints(self, from_size: int, limit: int) -> list[StoredCheckpoint]:
        """Stored checkpoints of tree size ``from_size`` or more, smallest first."""
        rows = self._read(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints"  # noqa: S608 (fixed column names)
            " WHERE tree_size >= ? ORDER BY tree_size LIMIT ?",
            [from_size, limit],
        )
        return [stored_checkpoint(row) for row in rows]

    def latest_checkpoint(
        self, min_size: int = 0, *, timestamped: bool = False
    ) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest tree size (at least ``min_size``; with
        ``timestamped``, among those with a timestamp token), if any."""
        token = " AND timestamp_token IS NOT NULL" if timestamped else ""
        rows = self._read(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints"  # noqa: S608 (fixed column names)
            f" WHERE tree_size >= ?{token} ORDER BY tree_size DESC LIMIT 1",
            [min_size],
        )
        return stored_checkpoint(rows[0]) if rows else None

    def _read(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        conn = self.connect()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self.close()
            raise AuditError(f"cannot read the audit database {self.path}: {exc}") from exc


class _Probed(Exception):
    """Ends the probe transaction (rolled back) after its write succeeded."""


def _size(conn: sqlite3.Connection) -> int:
    (last,) = conn.execute("SELECT max(seq) FROM records").fetchone()
    base_size = _base(conn)[0]
    return base_size if last is None else max(int(last) + 1, base_size)


def _base(conn: sqlite3.Connection) -> tuple[int, str]:
    rows = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?)", (_BASE_SIZE, _BASE_RANGE)
        ).fetchall()
    )
    try:
        size = int(rows.get(_BASE_SIZE, "0"))
    except ValueError as exc:
        raise InvalidAuditRecord("the stored retention base is not a number") from exc
    return size, str(rows.get(_BASE_RANGE, ""))


def _migrate_to_v3(conn: sqlite3.Connection, version: int) -> None:
    """Add what version 3 has to a version 1 or 2 file, filling the new columns."""
    if version == 1:
        conn.execute(_CHECKPOINTS)
    else:
        conn.execute("ALTER TABLE checkpoints ADD COLUMN timestamp_token BLOB")
    for column, kind in _NEW_COLUMNS_V3:
        conn.execute(f"ALTER TABLE records ADD COLUMN {column} {kind}")
    updates: list[tuple[object, ...]] = []
    for seq, canonical in conn.execute("SELECT seq, canonical FROM records").fetchall():
        try:
            columns = columns_of_document(orjson.loads(canonical))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue  # not a record: left for `obmin audit verify` to name
        updates.append((*columns[4:10], seq))
    conn.executemany(
        "UPDATE records SET client_member = ?, service_member = ?, user_id = ?, subject_id = ?,"
        " http_status = ?, fault_code = ? WHERE seq = ?",
        updates,
    )
    for statement in (*INDEXES, _NODES):
        conn.execute(statement)


def _blob(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    raise InvalidAuditRecord(f"stored body is {type(value).__name__}, not a blob")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def stored_checkpoint(row: Sequence[object]) -> StoredCheckpoint:
    """A checkpoint row (``tree_size, root, note, created, compact_range, timestamp_token``)
    of either store; raises `InvalidAuditRecord` when it is malformed."""
    size, root, note, created, compact, token = row
    if not (
        isinstance(size, int)
        and isinstance(root, bytes)
        and isinstance(note, str)
        and isinstance(created, str)
        and isinstance(compact, bytes)
        and (token is None or isinstance(token, bytes))
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
    return StoredCheckpoint(
        checkpoint=checkpoint, created=when, compact_range=compact_range, timestamp_token=token
    )
