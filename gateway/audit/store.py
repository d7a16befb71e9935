"""What the gateway needs from an audit store, whatever keeps the records (SQLite, PostgreSQL).

The contract is fail-closed: `AuditStore.append` returns only once the records are durable
(committed and synced), and raises `AuditError` (``LoggingFailed``) otherwise; the pipeline
then refuses the exchange. Sequence numbers are assigned by the store, 0-based and without
gaps, in commit order: they are the leaf indexes of the log's Merkle tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.audit.records import AuditRecord, AuditRecordDraft

__all__ = ["MAX_QUERY_LIMIT", "AuditStats", "AuditStore"]

MAX_QUERY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class AuditStats:
    """Counters for metrics: transactions, records, queue depth, last commit latency."""

    commits: int
    records: int
    queue_depth: int
    last_commit_seconds: float | None


class AuditStore(Protocol):
    """An append-only store of audit records, used from the event loop (never blocks it)."""

    async def open(self) -> None:
        """Open (and create, where allowed) the store; raises `AuditError` on failure."""
        ...

    async def append(self, drafts: Sequence[AuditRecordDraft]) -> list[AuditRecord]:
        """Make ``drafts`` durable in one transaction and return them with their ``seq``.

        The drafts of one call get consecutive sequence numbers, in order, and are
        committed together or not at all. Raises `AuditError` when they are not durable.
        """
        ...

    async def by_request_id(self, request_id: str) -> list[AuditRecord]:
        """All records of one exchange (request, response), in sequence order."""
        ...

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
        """Records matching every given filter, at most ``limit`` (1 to `MAX_QUERY_LIMIT`).

        Ordered by ``seq``, oldest first; ``after_seq`` is the cursor for the next page.
        With ``newest_first``, the newest records come first and ``after_seq`` is ignored.
        """
        ...

    async def count(self) -> int:
        """The log's size: the number of records ever appended (= next ``seq``)."""
        ...

    async def check_writable(self) -> bool:
        """Whether a write transaction can be started now (for ``/readyz``); never raises."""
        ...

    def stats(self) -> AuditStats:
        """Current counters, without I/O."""
        ...

    async def close(self) -> None:
        """Flush queued appends, then release the store; further calls raise `AuditError`."""
        ...
