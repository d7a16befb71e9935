"""The embedded audit store: SQLite in WAL mode with ``synchronous=FULL`` and group commit.

Appends go through an asyncio queue to one writer task owned by the store. The writer
takes everything queued — all the ``append`` calls made while the previous commit was being
synced — and commits it in one transaction on a dedicated thread; each caller resumes when
the transaction holding its records is durable. Under load one fsync serves many exchanges;
an idle gateway still commits a lone record at once. Reads use a second connection on a
second thread, so queries never wait behind a commit (WAL readers do not block the writer).

Lifetime: `open` starts the threads and the writer task, `close` flushes what is queued,
stops them and closes both connections. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from gateway.audit import merkle
from gateway.audit.errors import AuditError, InvalidAuditQuery
from gateway.audit.records import AuditRecord, AuditRecordDraft
from gateway.audit.sqlite_db import SqliteLog
from gateway.audit.store import MAX_QUERY_LIMIT, AuditStats, StoredCheckpoint

__all__ = ["SqliteAuditStore"]

log = structlog.get_logger("obmin.audit")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Pending:
    """One ``append`` call waiting for its transaction."""

    drafts: tuple[AuditRecordDraft, ...]
    done: asyncio.Future[list[AuditRecord]]


class SqliteAuditStore:
    """An `AuditStore` in one SQLite file (the embedded default, SPEC 8).

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
        self._group_commit = group_commit
        self._max_batch = max(1, max_batch)
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._records = 0
        self._last_commit: float | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._nodes = merkle.NodeCache()  # used on the reader's thread only

    # --- lifetime --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or open the database and start the writer; raises `AuditError`."""
        if self._task is not None or self._closed:
            raise AuditError(f"the audit store {self.path} was already opened")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="obmin-audit-write")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="obmin-audit-read")
        try:
            await self._call(self._write_pool, self._writer.connect)
        except BaseException:
            self._closed = True
            self._write_pool.shutdown(wait=False)
            self._read_pool.shutdown(wait=False)
            raise
        self._task = asyncio.create_task(self._write_loop(), name="obmin-audit-writer")

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._queue.put_nowait(None)  # the writer drains everything queued before it
            await asyncio.wait([self._task])
        for pool, db in ((self._write_pool, self._writer), (self._read_pool, self._reader)):
            if pool is not None:
                await self._call(pool, db.close)
                pool.shutdown(wait=True)

    # --- writes ----------------------------------------------------------------------------

    async def append(self, drafts: Sequence[AuditRecordDraft]) -> list[AuditRecord]:
        """Make ``drafts`` durable (one transaction, consecutive ``seq``) and return them."""
        if not drafts:
            return []
        if self._closed or self._task is None:
            raise AuditError(f"the audit store {self.path} is not open")
        if self._task.done():
            raise AuditError("the audit writer has stopped")
        done: asyncio.Future[list[AuditRecord]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(tuple(drafts), done))
        return await done

    async def _write_loop(self) -> None:
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    return
                batch, stop = self._take_batch(first)
                await self._commit(batch)
                if stop:
                    return
        finally:
            # Closed or cancelled: nobody will commit what is still queued.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None and not item.done.done():
                    item.done.set_exception(AuditError("the audit store was closed"))

    def _take_batch(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, size = [first], len(first.drafts)
        while self._group_commit and size < self._max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item.drafts)
        return batch, False

    async def _commit(self, batch: list[_Pending]) -> None:
        assert self._write_pool is not None
        started = time.perf_counter()
        calls = [pending.drafts for pending in batch]
        error: AuditError
        try:
            results = await self._call(self._write_pool, lambda: self._writer.append(calls))
        except asyncio.CancelledError:
            _fail(batch, AuditError("the audit writer was stopped during a commit"))
            raise
        except AuditError as exc:
            error = exc
        except Exception as exc:  # a bug in the writer: still fail closed
            log.exception("audit commit failed unexpectedly", path=str(self.path))
            error = AuditError(f"internal error in the audit writer: {exc!r}")
        else:
            self._last_commit = time.perf_counter() - started
            committed = sum(len(call) for call in calls)
            self._records += committed
            for pending, records in zip(batch, results, strict=True):
                if not pending.done.done():  # the caller may have been cancelled
                    pending.done.set_result(records)
            self._notify(committed)
            return
        log.error("audit commit failed", path=str(self.path), reason=str(error))
        _fail(batch, error)

    def add_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(records)`` on the event loop after each successful commit."""
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling ``listener``; no error if it was not registered."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _notify(self, committed: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(committed)
            except Exception:  # a listener's bug must not fail the commit that succeeded
                log.exception("audit commit listener failed")

    async def add_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Make a signed checkpoint durable (on the writer's thread, between commits)."""
        if self._closed or self._write_pool is None:
            raise AuditError(f"the audit store {self.path} is not open")
        await self._call(self._write_pool, lambda: self._writer.add_checkpoint(stored))

    async def check_writable(self) -> bool:
        """Whether a write transaction can be started now (``/readyz``); never raises."""
        if self._closed or self._write_pool is None or self._task is None or self._task.done():
            return False
        try:
            await self._call(self._write_pool, self._writer.probe_writable)
        except AuditError:
            return False
        return True

    def stats(self) -> AuditStats:
        """Transactions committed, records appended, calls queued, last commit latency."""
        return AuditStats(
            commits=self._writer.commits,
            records=self._records,
            queue_depth=self._queue.qsize(),
            last_commit_seconds=self._last_commit,
        )

    # --- reads -----------------------------------------------------------------------------

    async def by_request_id(self, request_id: str) -> list[AuditRecord]:
        """All records of one exchange, in sequence order."""
        return await self.query(request_id=request_id, limit=MAX_QUERY_LIMIT)

    async def query(
        self,
        *,
        client: str | None = None,
        service: str | None = None,
        message_id: str | None = None,
        request_id: str | None = None,
        after_seq: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Records matching every given filter; see `AuditStore.query`."""
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise InvalidAuditQuery(f"limit must be from 1 to {MAX_QUERY_LIMIT}, got {limit}")
        if after_seq is not None and after_seq < -1:
            raise InvalidAuditQuery(f"after_seq must be -1 or more, got {after_seq}")
        candidates = {
            "client": client,
            "service": service,
            "message_id": message_id,
            "request_id": request_id,
        }
        filters = {column: value for column, value in candidates.items() if value is not None}
        return await self._call(
            self._read_pool_or_fail(),
            lambda: self._reader.select(
                filters, after_seq=after_seq, limit=limit, newest_first=newest_first
            ),
        )

    async def count(self) -> int:
        """The log's size: records ever appended (= the next sequence number)."""
        return await self._call(self._read_pool_or_fail(), self._reader.size)

    async def leaf_hashes(self, start: int, limit: int) -> list[bytes]:
        """Stored leaf hashes of records ``start`` onwards, at most ``limit`` (fewer at the
        end of the log); raises `AuditError` when a record is missing."""
        return await self._call(
            self._read_pool_or_fail(), lambda: self._reader.leaf_hashes(start, start + limit)
        )

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest tree size, if any."""
        return await self._call(self._read_pool_or_fail(), self._reader.latest_checkpoint)

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of record ``index`` in the tree of ``tree_size`` records.

        Reads the leaf hashes of the tree range by range on the reader's thread; the hashes
        of large perfect subtrees are kept, so later proofs read only the newest leaves.
        """
        return await self._call(
            self._read_pool_or_fail(),
            lambda: merkle.inclusion_proof(self._reader, index, tree_size, self._nodes),
        )

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of ``old_size`` and ``new_size``."""
        return await self._call(
            self._read_pool_or_fail(),
            lambda: merkle.consistency_proof(self._reader, old_size, new_size, self._nodes),
        )

    def _read_pool_or_fail(self) -> ThreadPoolExecutor:
        if self._closed or self._read_pool is None:
            raise AuditError(f"the audit store {self.path} is not open")
        return self._read_pool

    @staticmethod
    async def _call(pool: ThreadPoolExecutor, function: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(pool, function)


def _fail(batch: list[_Pending], exc: AuditError) -> None:
    for pending in batch:
        if not pending.done.done():
            # One instance per caller: each raises (and extends the traceback of) its own.
            error = type(exc)(str(exc))
            error.__cause__ = exc
            pending.done.set_exception(error)
