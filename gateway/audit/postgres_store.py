"""The PostgreSQL audit store (asyncpg): one log per gateway node, group-committed.

Several gateways share one database; each keeps its own log, found by its ``origin`` (see
`gateway.audit.postgres_db`). Appends go through the shared `GroupCommitter`: everything
queued while the previous transaction was committing goes in the next one. Every
connection runs with ``synchronous_commit = on``, so a commit returns only once the WAL is
flushed on the server: `append` returns only when the records are durable.

Failures are fail-closed and self-healing: any driver or socket error becomes `AuditError`
(``LoggingFailed``); the pool drops broken connections and opens new ones on the next use,
so once the database is back (restarted, reachable again, the role allowed to log in
again) the next append succeeds without a restart of the gateway. Connection attempts and
statements have timeouts, so an unreachable server fails an exchange instead of hanging it.

Proofs reuse the synchronous Merkle code: it runs on a dedicated thread and reads leaf
hashes through the event loop (`_BridgedLeaves`), so the loop is never blocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Final, TypeVar, Unpack, cast

import asyncpg
import structlog

from gateway.audit import merkle
from gateway.audit.columns import RECORD_COLUMNS, numbered_rows
from gateway.audit.errors import AuditError, InvalidAuditRecord
from gateway.audit.group_commit import GroupCommitter
from gateway.audit.merkle import HASH_SIZE, CompactRange
from gateway.audit.postgres_db import Tables, ensure_schema, guarded, log_id, redact_dsn
from gateway.audit.query import MAX_QUERY_LIMIT, QueryFilters, RecordQuery, where_clause
from gateway.audit.records import AuditRecord, AuditRecordDraft, format_time
from gateway.audit.sqlite_db import stored_checkpoint
from gateway.audit.store import AuditStats, StoredCheckpoint

__all__ = ["PostgresAuditStore"]

log = structlog.get_logger("obmin.audit")

_T = TypeVar("_T")
_SERVER_SETTINGS: Final = {"synchronous_commit": "on", "application_name": "obmin-audit"}
_CHECKPOINT_COLUMNS: Final = "tree_size, root, note, created, compact_range, timestamp_token"
_COPY_COLUMNS: Final = ["log_id", *RECORD_COLUMNS]


class PostgresAuditStore:
    """An `AuditStore` (and `RetentionStore`) in PostgreSQL: the log of ``origin``.

    ``dsn`` is a libpq connection URI; ``schema`` the schema holding the tables (created
    if missing). ``group_commit`` and ``max_batch`` as for the SQLite store.
    ``connect_timeout`` and ``command_timeout`` (seconds) bound how long an append waits
    for an unreachable or stuck server before failing with ``LoggingFailed``. ``read_only``
    opens an existing log for queries (the CLI) and never creates anything.
    """

    def __init__(
        self,
        dsn: str,
        origin: str,
        *,
        schema: str = "obmin_audit",
        read_only: bool = False,
        group_commit: bool = True,
        max_batch: int = 2048,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self.origin = origin
        self._tables = Tables(schema)
        self._read_only = read_only
        self._pool_size = max(2, pool_size)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._log_id: int | None = None
        self._committer = GroupCommitter(
            self._commit, name=self.name, group_commit=group_commit, max_batch=max_batch
        )
        self._opened = False
        self._closed = False
        # Proofs run on this thread, with this cache (rebuilt when retention moves the base).
        self._proof_pool: ThreadPoolExecutor | None = None
        self._nodes = merkle.NodeCache()

    @property
    def name(self) -> str:
        """The store in messages: database, schema and origin (never the password)."""
        return f"{redact_dsn(self._dsn)} schema {self._tables.schema} log {self.origin}"

    # --- lifetime --------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, find (or create) this origin's log."""
        if self._opened or self._closed:
            raise AuditError(f"the audit store {self.name} was already opened")
        self._opened = True
        try:
            self._pool = await guarded(
                asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                    server_settings=_SERVER_SETTINGS,
                ),
                f"cannot connect to the audit database {redact_dsn(self._dsn)}",
            )
            self._log_id = await self._with_connection(self._prepare, "cannot open the audit log")
        except BaseException:
            self._closed = True
            if self._pool is not None:
                self._pool.terminate()
            raise
        self._proof_pool = ThreadPoolExecutor(1, thread_name_prefix="obmin-audit-proof")
        self._committer.start()

    async def _prepare(self, conn: asyncpg.Connection) -> int:
        commit = await conn.fetchval("SHOW synchronous_commit")
        if commit not in ("on", "remote_write", "remote_apply", "local"):
            raise AuditError(f"the audit database runs with synchronous_commit = {commit}")
        if not self._read_only:
            await ensure_schema(conn, self._tables)
        elif not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self._tables.logs):
            raise AuditError(f"there is no obmin audit log in schema {self._tables.schema}")
        return await log_id(conn, self._tables, self.origin, create=not self._read_only)

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the connections."""
        if self._closed:
            return
        self._closed = True
        await self._committer.stop()
        if self._proof_pool is not None:
            self._proof_pool.shutdown(wait=True)
        if self._pool is not None:
            try:
                async with asyncio.timeout(self._command_timeout):
                    await self._pool.close()
            except (TimeoutError, *_CLOSE_ERRORS):
                self._pool.terminate()

    # --- writes ----------------------------------------------------------------------------

    async def append(self, drafts: Sequence[AuditRecordDraft]) -> list[AuditRecord]:
        """Make ``drafts`` durable (one transaction, consecutive ``seq``) and return them."""
        if not drafts:
            return []
        if self._closed:
            raise AuditError(f"the audit store {self.name} is not open")
        if self._read_only:
            raise AuditError(f"the audit store {self.name} is open read-only")
        return await self._committer.submit(drafts)

    async def _commit(self, calls: list[tuple[AuditRecordDraft, ...]]) -> list[list[AuditRecord]]:
        count = sum(len(call) for call in calls)

        async def write(conn: asyncpg.Connection) -> list[list[AuditRecord]]:
            async with conn.transaction():
                first = await conn.fetchval(
                    f"UPDATE {self._tables.logs} SET next_seq = next_seq + $2"  # noqa: S608 (validated identifier)
                    " WHERE id = $1 RETURNING next_seq - $2",
                    self._log_id,
                    count,
                )
                if not isinstance(first, int):
                    raise AuditError(f"the audit log {self.origin} is gone from the database")
                results, rows = numbered_rows(calls, first, (self._log_id,))
                await conn.copy_records_to_table(
                    "records",
                    schema_name=self._tables.schema,
                    columns=_COPY_COLUMNS,
                    records=rows,
                )
            return results

        return await self._with_connection(write, "cannot write to the audit database")

    def add_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(records)`` on the event loop after each successful commit."""
        self._committer.add_listener(listener)

    def remove_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling ``listener``; no error if it was not registered."""
        self._committer.remove_listener(listener)

    async def add_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Make a signed checkpoint durable; refuses one larger than the log."""
        checkpoint = stored.checkpoint
        tables = self._tables

        async def insert(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                size = await conn.fetchval(
                    f"SELECT next_seq FROM {tables.logs} WHERE id = $1 FOR SHARE",  # noqa: S608 (validated identifier)
                    self._log_id,
                )
                if isinstance(size, int) and checkpoint.size <= size:
                    await conn.execute(
                        f"INSERT INTO {tables.checkpoints} (log_id, {_CHECKPOINT_COLUMNS})"  # noqa: S608 (validated identifier)
                        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        self._log_id,
                        checkpoint.size,
                        checkpoint.root,
                        checkpoint.note,
                        format_time(stored.created),
                        b"".join(stored.compact_range.hashes),
                        stored.timestamp_token,
                    )
                    await conn.executemany(
                        f"INSERT INTO {tables.nodes} (log_id, height, start, hash)"  # noqa: S608 (validated identifier)
                        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        [(self._log_id, *node) for node in stored.nodes],
                    )
            return size if isinstance(size, int) else 0

        size = await self._writing(insert, "cannot store a checkpoint in the audit database")
        if checkpoint.size > size:
            raise AuditError(f"refused a checkpoint of size {checkpoint.size} for {size} records")

    async def set_checkpoint_timestamp(self, tree_size: int, token: bytes) -> None:
        """Durably attach an RFC 3161 token to the checkpoint of ``tree_size``."""

        async def update(conn: asyncpg.Connection) -> str:
            return str(
                await conn.execute(
                    f"UPDATE {self._tables.checkpoints} SET timestamp_token = $3"  # noqa: S608 (validated identifier)
                    " WHERE log_id = $1 AND tree_size = $2",
                    self._log_id,
                    tree_size,
                    token,
                )
            )

        status = await self._writing(update, "cannot store a timestamp in the audit database")
        if status != "UPDATE 1":
            raise AuditError(f"there is no checkpoint of tree size {tree_size}")

    async def set_base(self, compact: CompactRange) -> None:
        """Retention: the tree continues from ``compact``; see `RetentionStore.set_base`."""
        tables = self._tables

        async def update(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                current = await conn.fetchval(
                    f"SELECT base_size FROM {tables.logs} WHERE id = $1 FOR UPDATE",  # noqa: S608 (validated identifier)
                    self._log_id,
                )
                if not isinstance(current, int) or compact.size < current:
                    raise AuditError(
                        f"the log's base is {current}; cannot move it to {compact.size}"
                    )
                await conn.execute(
                    f"UPDATE {tables.logs} SET base_size = $2, base_range = $3 WHERE id = $1",  # noqa: S608 (validated identifier)
                    self._log_id,
                    compact.size,
                    b"".join(compact.hashes),
                )
                await conn.execute(
                    f"DELETE FROM {tables.checkpoints} WHERE log_id = $1 AND tree_size < $2",  # noqa: S608 (validated identifier)
                    self._log_id,
                    compact.size,
                )
                await conn.execute(
                    f"DELETE FROM {tables.nodes} WHERE log_id = $1"  # noqa: S608 (validated identifier)
                    " AND start + (1::bigint << height) <= $2",
                    self._log_id,
                    compact.size,
                )

        await self._writing(update, "cannot move the retention base of the audit log")

    async def delete_below(self, size: int, limit: int) -> int:
        """Delete at most ``limit`` archived records below ``size``; how many went."""
        tables = self._tables

        async def delete(conn: asyncpg.Connection) -> int:
            status = await conn.execute(
                f"DELETE FROM {tables.records} WHERE log_id = $1 AND seq IN"  # noqa: S608 (validated identifier)
                f" (SELECT seq FROM {tables.records} WHERE log_id = $1"
                f" AND seq < LEAST($2, (SELECT base_size FROM {tables.logs} WHERE id = $1))"
                " ORDER BY seq LIMIT $3)",
                self._log_id,
                size,
                limit,
            )
            return int(str(status).rsplit(" ", 1)[-1])

        return await self._writing(delete, "cannot delete archived records from the audit log")

    async def check_writable(self) -> bool:
        """Whether a write transaction can be started now (``/readyz``); never raises."""
        if self._closed or self._read_only or not self._committer.running:
            return False

        async def probe(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    f"SELECT 1 FROM {self._tables.logs} WHERE id = $1 FOR UPDATE",  # noqa: S608 (validated identifier)
                    self._log_id,
                )

        try:
            await self._with_connection(probe, "the audit database is not writable")
        except AuditError:
            return False
        return True

    def stats(self) -> AuditStats:
        """Transactions committed, records appended, calls queued, last commit latency."""
        return self._committer.stats()

    # --- reads -----------------------------------------------------------------------------

    async def by_request_id(self, request_id: str) -> list[AuditRecord]:
        """All records of one exchange, in sequence order."""
        return await self.query(request_id=request_id, limit=MAX_QUERY_LIMIT)

    async def query(self, **filters: Unpack[QueryFilters]) -> list[AuditRecord]:
        """Records matching every given filter; see `AuditStore.query`."""
        query = RecordQuery(**filters)
        params: list[object] = [self._log_id]

        def bind(value: object) -> str:
            params.append(value)
            return f"${len(params)}"

        clauses = ["log_id = $1", *where_clause(query, bind)]
        order = "DESC" if query.newest_first else "ASC"
        sql = (
            f"SELECT canonical, body FROM {self._tables.records}"  # noqa: S608 (names from the query module, values bound)
            f" WHERE {' AND '.join(clauses)} ORDER BY seq {order} LIMIT {bind(query.limit)}"
        )
        rows = await self._fetch(sql, *params)
        records: list[AuditRecord] = []
        for canonical, body in rows:
            records.append(AuditRecord.from_row(canonical, body))
        return records

    async def count(self) -> int:
        """The log's size: records ever appended (= the next sequence number)."""
        size = await self._fetchval(
            f"SELECT next_seq FROM {self._tables.logs} WHERE id = $1",  # noqa: S608 (validated identifier)
            self._log_id,
        )
        if not isinstance(size, int):
            raise AuditError(f"the audit log {self.origin} is gone from the database")
        return size

    async def tree_base(self) -> CompactRange:
        """The tree state below the first stored record (empty before any retention)."""
        rows = await self._fetch(
            f"SELECT base_size, base_range FROM {self._tables.logs} WHERE id = $1",  # noqa: S608 (validated identifier)
            self._log_id,
        )
        if not rows:
            raise AuditError(f"the audit log {self.origin} is gone from the database")
        size, raw = rows[0]
        try:
            hashes = [raw[i : i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)]
            return CompactRange(size, hashes)
        except AuditError as exc:
            raise InvalidAuditRecord(f"the stored tree state at {size} is malformed") from exc

    async def leaf_hashes(self, start: int, limit: int) -> list[bytes]:
        """Stored leaf hashes of records ``start`` onwards, at most ``limit`` (fewer at the
        end of the log); raises `AuditError` when a record is missing."""
        rows = await self._fetch(
            f"SELECT seq, leaf_hash FROM {self._tables.records}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
            self._log_id,
            start,
            start + limit,
        )
        hashes: list[bytes] = []
        for expected, (seq, value) in enumerate(rows, start):
            if seq != expected:
                raise InvalidAuditRecord(f"audit record {expected} is missing from the log")
            if len(value) != HASH_SIZE:
                raise InvalidAuditRecord(f"the stored leaf hash of record {seq} is not 32 bytes")
            hashes.append(bytes(value))
        return hashes

    async def stored_node(self, height: int, start: int) -> bytes | None:
        """The saved hash of the perfect subtree of 2^height leaves from ``start``, if any."""
        value = await self._fetchval(
            f"SELECT hash FROM {self._tables.nodes}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 AND height = $2 AND start = $3",
            self._log_id,
            height,
            start,
        )
        return bytes(value) if isinstance(value, bytes) and len(value) == HASH_SIZE else None

    async def stored_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The saved subtree hashes among ``keys`` (``(height, start)``), by key."""
        rows = await self._fetch(
            f"SELECT n.height, n.start, n.hash FROM {self._tables.nodes} n"  # noqa: S608 (validated identifier)
            " JOIN unnest($2::smallint[], $3::bigint[]) AS k (height, start)"
            " ON n.height = k.height AND n.start = k.start WHERE n.log_id = $1",
            self._log_id,
            [height for height, _ in keys],
            [start for _, start in keys],
        )
        return {(height, start): bytes(value) for height, start, value in rows}

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest tree size, if any."""
        rows = await self._fetch(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._tables.checkpoints}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 ORDER BY tree_size DESC LIMIT 1",
            self._log_id,
        )
        return stored_checkpoint(tuple(rows[0])) if rows else None

    async def latest_timestamped_checkpoint(self, min_size: int = 0) -> StoredCheckpoint | None:
        """The timestamped checkpoint of the largest tree size ``min_size`` or more, if any."""
        rows = await self._fetch(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._tables.checkpoints}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 AND tree_size >= $2 AND timestamp_token IS NOT NULL"
            " ORDER BY tree_size DESC LIMIT 1",
            self._log_id,
            min_size,
        )
        return stored_checkpoint(tuple(rows[0])) if rows else None

    async def checkpoints(self, *, from_size: int = 0, limit: int = 100) -> list[StoredCheckpoint]:
        """Stored checkpoints of tree size ``from_size`` or more, smallest first."""
        rows = await self._fetch(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._tables.checkpoints}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 AND tree_size >= $2 ORDER BY tree_size LIMIT $3",
            self._log_id,
            from_size,
            limit,
        )
        return [stored_checkpoint(tuple(row)) for row in rows]

    async def checkpoint_rows(self, low: int, high: int) -> list[tuple[object, ...]]:
        """Raw checkpoint rows with ``low <= tree_size <= high``, for an archive."""
        rows = await self._fetch(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._tables.checkpoints}"  # noqa: S608 (validated identifier)
            " WHERE log_id = $1 AND tree_size >= $2 AND tree_size <= $3 ORDER BY tree_size",
            self._log_id,
            low,
            high,
        )
        return [tuple(row) for row in rows]

    async def raw_rows(self, start: int, end: int) -> list[tuple[object, ...]]:
        """Whole stored rows of records ``start`` to ``end - 1``, for an archive."""
        rows = await self._fetch(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM {self._tables.records}"  # noqa: S608 (fixed names)
            " WHERE log_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
            self._log_id,
            start,
            end,
        )
        return [tuple(row) for row in rows]

    async def first_seq_from(self, time: datetime) -> int | None:
        """The smallest ``seq`` of a stored record made at ``time`` or later, if any."""
        seq = await self._fetchval(
            f"SELECT min(seq) FROM {self._tables.records} WHERE log_id = $1 AND time >= $2",  # noqa: S608 (validated identifier)
            self._log_id,
            format_time(time),
        )
        return seq if isinstance(seq, int) else None

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of record ``index`` in the tree of ``tree_size`` records."""
        return await self._prove(
            lambda source, cache: merkle.inclusion_proof(source, index, tree_size, cache)
        )

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of ``old_size`` and ``new_size``."""
        return await self._prove(
            lambda source, cache: merkle.consistency_proof(source, old_size, new_size, cache)
        )

    async def _prove(
        self, prove: Callable[[_BridgedLeaves, merkle.NodeCache], list[bytes]]
    ) -> list[bytes]:
        if self._closed or self._proof_pool is None:
            raise AuditError(f"the audit store {self.name} is not open")
        base = await self.tree_base()
        current = self._nodes.base.size if self._nodes.base is not None else 0
        if base.size != current:
            self._nodes = merkle.NodeCache(base=base)
        source = _BridgedLeaves(self, asyncio.get_running_loop(), self._command_timeout)
        cache = self._nodes
        return await asyncio.get_running_loop().run_in_executor(
            self._proof_pool, lambda: prove(source, cache)
        )

    # --- connections -----------------------------------------------------------------------

    async def _with_connection(
        self, work: Callable[[asyncpg.Connection], Awaitable[_T]], failure: str
    ) -> _T:
        # No closed check here: close() drains the queue through _commit after closing.
        if self._pool is None:
            raise AuditError(f"the audit store {self.name} is not open")
        pool = self._pool

        async def run() -> _T:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                return await work(cast(asyncpg.Connection, conn))

        return await guarded(run(), failure)

    async def _writing(
        self, work: Callable[[asyncpg.Connection], Awaitable[_T]], failure: str
    ) -> _T:
        if self._closed:
            raise AuditError(f"the audit store {self.name} is not open")
        if self._read_only:
            raise AuditError(f"the audit store {self.name} is open read-only")
        return await self._with_connection(work, failure)

    async def _fetch(self, sql: str, *params: object) -> list[Any]:
        if self._closed:
            raise AuditError(f"the audit store {self.name} is not open")

        async def fetch(conn: asyncpg.Connection) -> list[Any]:
            return list(await conn.fetch(sql, *params))

        return await self._with_connection(fetch, "cannot read the audit database")

    async def _fetchval(self, sql: str, *params: object) -> object:
        rows = await self._fetch(sql, *params)
        return rows[0][0] if rows else None


_CLOSE_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class _BridgedLeaves:
    """A synchronous `LeafSource` for the proof thread, reading through the event loop."""

    def __init__(
        self, store: PostgresAuditStore, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> None:
        self._store, self._loop, self._timeout = store, loop, timeout

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """Leaf hashes ``start`` to ``end - 1`` (fewer at the end of the log)."""
        return self._wait(self._store.leaf_hashes(start, end - start))

    def stored_node(self, height: int, start: int) -> bytes | None:
        """A saved subtree hash (see `LeafSource`)."""
        return self._wait(self._store.stored_node(height, start))

    def stored_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Saved subtree hashes, many at once (see `LeafSource`)."""
        return self._wait(self._store.stored_nodes(keys))

    def _wait(self, operation: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(operation, self._loop)
        try:
            return future.result(timeout=self._timeout * 4)
        except TimeoutError as exc:
            future.cancel()
            raise AuditError("reading hashes for a proof timed out") from exc
