"""Group commit, shared by both stores: one writer task, one transaction per batch of calls.

Each ``append`` call becomes a `_Pending` in an asyncio queue. One writer task owned by the
store takes everything queued — all the calls made while the previous commit was being
made durable — and hands them to the store's ``commit`` function as one transaction; each
caller resumes when the transaction holding its records is durable, or gets the
`AuditError` it failed with. Under load one sync serves many exchanges; an idle gateway
still commits a lone record at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from gateway.audit.errors import AuditError
from gateway.audit.records import AuditRecord, AuditRecordDraft
from gateway.audit.store import AuditStats

__all__ = ["CommitFunction", "GroupCommitter"]

log = structlog.get_logger("obmin.audit")

# Commits the drafts of several calls in one transaction; the records of each call, in order.
CommitFunction = Callable[[list[tuple[AuditRecordDraft, ...]]], Awaitable[list[list[AuditRecord]]]]


@dataclass(frozen=True, slots=True)
class _Pending:
    """One ``append`` call waiting for its transaction."""

    drafts: tuple[AuditRecordDraft, ...]
    done: asyncio.Future[list[AuditRecord]]


class GroupCommitter:
    """The writer task of a store and its queue.

    ``group_commit=False`` commits each call in its own transaction (the baseline of the
    append benchmark); ``max_batch`` bounds the records per transaction (one call is never
    split). ``name`` identifies the store in logs and errors.
    """

    def __init__(
        self, commit: CommitFunction, *, name: str, group_commit: bool = True, max_batch: int = 2048
    ) -> None:
        self._commit_function = commit
        self.name = name
        self._group_commit = group_commit
        self._max_batch = max(1, max_batch)
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.commits = 0
        self.records = 0
        self.last_commit_seconds: float | None = None
        # Whether the latest commit failed: then only a real write shows the store is back.
        self.failing = False
        self._listeners: list[Callable[[int], None]] = []

    @property
    def queue_depth(self) -> int:
        """Calls waiting for a transaction."""
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        """Whether the writer task is running and accepting appends."""
        return self._task is not None and not self._task.done() and not self._stopping

    def start(self) -> None:
        """Start the writer task."""
        if self._task is not None:
            raise AuditError(f"the audit store {self.name} was already opened")
        self._task = asyncio.create_task(self._loop(), name="obmin-audit-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop the writer task."""
        self._stopping = True
        if self._task is not None:
            self._queue.put_nowait(None)  # the writer drains everything queued before it
            await asyncio.wait([self._task])

    async def submit(self, drafts: Sequence[AuditRecordDraft]) -> list[AuditRecord]:
        """Queue one call and wait until its transaction is durable."""
        if self._task is None or self._stopping:
            raise AuditError(f"the audit store {self.name} is not open")
        if self._task.done():
            raise AuditError("the audit writer has stopped")
        done: asyncio.Future[list[AuditRecord]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(tuple(drafts), done))
        return await done

    def stats(self) -> AuditStats:
        """Transactions committed, records appended, calls queued, last commit latency."""
        return AuditStats(
            commits=self.commits,
            records=self.records,
            queue_depth=self.queue_depth,
            last_commit_seconds=self.last_commit_seconds,
        )

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(records)`` on the event loop after each successful commit."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling ``listener``; no error if it was not registered."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def _loop(self) -> None:
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
        started = time.perf_counter()
        calls = [pending.drafts for pending in batch]
        error: AuditError
        try:
            results = await self._commit_function(calls)
        except asyncio.CancelledError:
            _fail(batch, AuditError("the audit writer was stopped during a commit"))
            raise
        except AuditError as exc:
            error = exc
        except Exception as exc:  # a bug in the writer: still fail closed
            log.exception("audit commit failed unexpectedly", store=self.name)
            error = AuditError(f"internal error in the audit writer: {exc!r}")
        else:
            self.failing = False
            self.last_commit_seconds = time.perf_counter() - started
            self.commits += 1
            committed = sum(len(call) for call in calls)
            self.records += committed
            for pending, records in zip(batch, results, strict=True):
                if not pending.done.done():  # the caller may have been cancelled
                    pending.done.set_result(records)
            self._notify(committed)
            return
        self.failing = True
        log.error("audit commit failed", store=self.name, reason=str(error))
        _fail(batch, error)

    def _notify(self, committed: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(committed)
            except Exception:  # a listener's bug must not fail the commit that succeeded
                log.exception("audit commit listener failed")


def _fail(batch: list[_Pending], exc: AuditError) -> None:
    for pending in batch:
        if not pending.done.done():
            # One instance per caller: each raises (and extends the traceback of) its own.
            error = type(exc)(str(exc))
            error.__cause__ = exc
            pending.done.set_exception(error)
