"""The embedded audit store: SQLite in WAL mode with ``synchronous=FULL`` and group commit.

Appends go through the shared `GroupCommitter`: everything queued while the previous
commit was being synced is committed in one transaction on a dedicated writer thread. Reads
use a second connection on a second thread, so queries never wait behind a commit (WAL
readers do not block the writer).

Lifetime: `open` starts the threads and the writer task, `close` flushes what is queued,
stops them and closes both connections. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar, Unpack

from gateway.audit import merkle
from gateway.audit.errors import AuditError
from gateway.audit.group_commit import GroupCommitter
from gateway.audit.merkle import CompactRange
from gateway.audit.query import MAX_QUERY_LIMIT, QueryFilters, RecordQuery
from gateway.audit.records import AuditRecord, AuditRecordDraft
from gateway.audit.sqlite_db import SqliteLog
from gateway.audit.store import AuditStats, StoredCheckpoint

__all__ = ["SqliteAuditStore"]

_T = TypeVar("_T")


class SqliteAuditStore:
    """An `AuditStore` (and `RetentionStore`) in one SQLite file (the embedded default).

    ``group_commit=False`` commits each ``append`` call in its own transaction (the
    baseline of ``bench/audit_append.py``); ``max_batch`` bounds the records per group
    transaction (one call is never split). ``read_only`` opens an existing log for queries
    (the CLI); its appends fail. ``busy_timeout`` is how long a write waits for a lock held
    by another connection before failing with ``LoggingFailed``.
    """

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        group_commit: bool = True,
        max_batch: int = 2048,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self._writer = SqliteLog(
            path, writable=not read_only, create=not read_only, busy_timeout=busy_timeout
        )
        self._reader = SqliteLog(path, writable=False, create=False, busy_timeout=busy_timeout)
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._committer = GroupCommitter(
            self._commit, name=str(path), group_commit=group_commit, max_batch=max_batch
        )
        self._opened = False
        self._closed = False
        # Used on the reader's thread only; rebuilt when retention moves the base.
        self._nodes = merkle.NodeCache()

    @property
    def name(self) -> str:
        """The store in messages: its file."""
        return str(self.path)

    # --- lifetime --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or open the database and start the writer; raises `AuditError`."""
        if self._opened or self._closed:
            raise AuditError(f"the audit store {self.path} was already opened")
        self._opened = True
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="obmin-audit-write")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="obmin-audit-read")
        try:
            await self._call(self._write_pool, self._writer.connect)
        except BaseException:
            self._closed = True
            self._write_pool.shutdown(wait=False)
            self._read_pool.shutdown(wait=False)
            raise
        self._committer.start()

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the connections."""
        if self._closed:
            return
        self._closed = True
        await self._committer.stop()
        for pool, db in ((self._write_pool, self._writer), (self._read_pool, self._reader)):
            if pool is not None:
                await self._call(pool, db.close)
                pool.shutdown(wait=True)

    # --- writes ----------------------------------------------------------------------------

    async def append(self, drafts: Sequence[AuditRecordDraft]) -> list[AuditRecord]:
        """Make ``drafts`` durable (one transaction, consecutive ``seq``) and return them."""
        if not drafts:
            return []
        if self._closed:
            raise AuditError(f"the audit store {self.path} is not open")
        return await self._committer.submit(drafts)

    async def _commit(self, calls: list[tuple[AuditRecordDraft, ...]]) -> list[list[AuditRecord]]:
        # Not _write(): close() drains the queue through here after marking the store closed.
        assert self._write_pool is not None
        return await self._call(self._write_pool, lambda: self._writer.append(calls))

    def add_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(records)`` on the event loop after each successful commit."""
        self._committer.add_listener(listener)

    def remove_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling ``listener``; no error if it was not registered."""
        self._committer.remove_listener(listener)

    async def add_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Make a signed checkpoint durable (on the writer's thread, between commits)."""
        await self._write(lambda: self._writer.add_checkpoint(stored))

    async def set_checkpoint_timestamp(self, tree_size: int, token: bytes) -> None:
        """Durably attach an RFC 3161 token to the checkpoint of ``tree_size``."""
        await self._write(lambda: self._writer.set_checkpoint_timestamp(tree_size, token))

    async def set_base(self, compact: CompactRange) -> None:
        """Retention: the tree continues from ``compact``; see `RetentionStore.set_base`."""
        await self._write(lambda: self._writer.set_base(compact))

    async def delete_below(self, size: int, limit: int) -> int:
        """Delete at most ``limit`` archived records below ``size``; how many went."""
        return await self._write(lambda: self._writer.delete_below(size, limit))

    async def check_writable(self) -> bool:
        """Whether the log can be written now (``/readyz``); never raises.

        While appends succeed, whether a write transaction can be started (no I/O). After a
        failed commit, a real one: a write committed and synced, as a full disk fails only
        those (the store is ready again when that write succeeds, traffic or not).
        """
        if self._closed or not self._committer.running:
            return False
        probe = (
            self._writer.probe_durable if self._committer.failing else self._writer.probe_writable
        )
        try:
            await self._write(probe)
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
        return await self._read(lambda: self._reader.select(query))

    async def count(self) -> int:
        """The log's size: records ever appended (= the next sequence number)."""
        return await self._read(self._reader.size)

    async def tree_base(self) -> CompactRange:
        """The tree state below the first stored record (empty before any retention)."""
        return await self._read(self._reader.base)

    async def leaf_hashes(self, start: int, limit: int) -> list[bytes]:
        """Stored leaf hashes of records ``start`` onwards, at most ``limit`` (fewer at the
        end of the log); raises `AuditError` when a record is missing."""
        return await self._read(lambda: self._reader.leaf_hashes(start, start + limit))

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest tree size, if any."""
        return await self._read(self._reader.latest_checkpoint)

    async def checkpoints(self, *, from_size: int = 0, limit: int = 100) -> list[StoredCheckpoint]:
        """Stored checkpoints of tree size ``from_size`` or more, smallest first."""
        return await self._read(lambda: self._reader.checkpoints(from_size, limit))

    async def latest_timestamped_checkpoint(self, min_size: int = 0) -> StoredCheckpoint | None:
        """The timestamped checkpoint of the largest tree size ``min_size`` or more, if any."""
        return await self._read(lambda: self._reader.latest_checkpoint(min_size, timestamped=True))

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of record ``index`` in the tree of ``tree_size`` records.

        Reads the leaf hashes of the tree range by range on the reader's thread; the hashes
        of large perfect subtrees are kept, so later proofs read only the newest leaves.
        """
        return await self._read(
            lambda: merkle.inclusion_proof(self._reader, index, tree_size, self._cache())
        )

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of ``old_size`` and ``new_size``."""
        return await self._read(
            lambda: merkle.consistency_proof(self._reader, old_size, new_size, self._cache())
        )

    def _cache(self) -> merkle.NodeCache:
        """The node cache for the current base (on the reader's thread)."""
        base = self._reader.base()
        current = self._nodes.base.size if self._nodes.base is not None else 0
        if base.size != current:
            self._nodes = merkle.NodeCache(base=base)
        return self._nodes

    async def first_seq_from(self, time: datetime) -> int | None:
        """The smallest ``seq`` of a stored record made at ``time`` or later, if any."""
        return await self._read(lambda: self._reader.first_seq_from(time))

    async def raw_rows(self, start: int, end: int) -> list[tuple[object, ...]]:
        """Whole stored rows of records ``start`` to ``end - 1``, for an archive."""
        return await self._read(lambda: self._reader.raw_rows(start, end))

    async def checkpoint_rows(self, low: int, high: int) -> list[tuple[object, ...]]:
        """Raw checkpoint rows with ``low <= tree_size <= high``, for an archive."""
        return await self._read(lambda: self._reader.checkpoint_rows(low, high))

    # --- threads ---------------------------------------------------------------------------

    def _write_pool_or_fail(self) -> ThreadPoolExecutor:
        if self._closed or self._write_pool is None:
            raise AuditError(f"the audit store {self.path} is not open")
        return self._write_pool

    async def _write(self, function: Callable[[], _T]) -> _T:
        return await self._call(self._write_pool_or_fail(), function)

    async def _read(self, function: Callable[[], _T]) -> _T:
        if self._closed or self._read_pool is None:
            raise AuditError(f"the audit store {self.path} is not open")
        return await self._call(self._read_pool, function)

    @staticmethod
    async def _call(pool: ThreadPoolExecutor, function: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(pool, function)
