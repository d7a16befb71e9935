"""What the gateway needs from an audit store, whatever keeps the records (SQLite, PostgreSQL).

The contract is fail-closed: `AuditStore.append` returns only once the records are durable
(committed and synced), and raises `AuditError` (``LoggingFailed``) otherwise; the pipeline
then refuses the exchange. Sequence numbers are assigned by the store, 0-based and without
gaps, in commit order: they are the leaf indexes of the log's Merkle tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.audit.checkpoint import Checkpoint
from gateway.audit.errors import InvalidCheckpoint
from gateway.audit.merkle import CompactRange
from gateway.audit.records import AuditRecord, AuditRecordDraft

__all__ = ["MAX_QUERY_LIMIT", "AuditStats", "AuditStore", "CheckpointStore", "StoredCheckpoint"]

MAX_QUERY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class AuditStats:
    """Counters for metrics: transactions, records, queue depth, last commit latency."""

    commits: int
    records: int
    queue_depth: int
    last_commit_seconds: float | None


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as the store keeps it.

    ``created`` is when the gateway signed it (not part of the signed note);
    ``compact_range`` is the tree state at ``checkpoint.size``, so that the next checkpoint
    continues from it instead of re-reading the log. Neither is trusted by the verifier,
    which recomputes the tree from the records.
    """

    checkpoint: Checkpoint
    created: datetime
    compact_range: CompactRange

    def __post_init__(self) -> None:
        if self.compact_range.size != self.checkpoint.size:
            raise InvalidCheckpoint("the compact range and the checkpoint differ in size")


class CheckpointStore(Protocol):
    """What the `Checkpointer` needs from a store: new leaves, and a place for checkpoints."""

    def add_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(records)`` on the event loop after each commit of new records."""
        ...

    def remove_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling ``listener`` (no error if it was not registered)."""
        ...

    async def leaf_hashes(self, start: int, limit: int) -> list[bytes]:
        """The leaf hashes of records ``start`` onwards, at most ``limit``, in order.

        Fewer than ``limit`` means the log ends there; raises `AuditError` on a gap.
        """
        ...

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint of the largest tree size, if any."""
        ...

    async def add_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Make a new checkpoint durable; raises `AuditError` if it cannot."""
        ...


class AuditStore(CheckpointStore, Protocol):
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

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of record ``index`` in the tree of ``tree_size`` records."""
        ...

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``old_size`` to that of ``new_size``."""
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
