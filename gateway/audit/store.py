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
from typing import Protocol, Unpack

from gateway.audit.checkpoint import Checkpoint
from gateway.audit.errors import InvalidCheckpoint
from gateway.audit.merkle import CompactRange
from gateway.audit.query import MAX_QUERY_LIMIT, QueryFilters
from gateway.audit.records import AuditRecord, AuditRecordDraft

__all__ = [
    "MAX_QUERY_LIMIT",
    "AuditStats",
    "AuditStore",
    "CheckpointStore",
    "RetentionStore",
    "StoredCheckpoint",
]


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
    which recomputes the tree from the records. ``timestamp_token`` is the DER RFC 3161
    TimeStampToken over the signed note, once a time-stamping authority has given one.
    ``nodes`` are the perfect subtrees of `NODE_HEIGHT` levels or more that the leaves since
    the previous checkpoint completed, as ``(height, start, hash)``: the store saves them
    so that a proof in a large log reads a few dozen hashes instead of every leaf (a wrong
    one makes a proof fail to verify, never verify falsely). Not read back with the rest.
    """

    checkpoint: Checkpoint
    created: datetime
    compact_range: CompactRange
    timestamp_token: bytes | None = None
    nodes: tuple[tuple[int, int, bytes], ...] = ()

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

    async def set_checkpoint_timestamp(self, tree_size: int, token: bytes) -> None:
        """Durably attach an RFC 3161 token to the checkpoint of ``tree_size``.

        Raises `AuditError` when it cannot be stored or there is no such checkpoint.
        """
        ...

    async def checkpoints(self, *, from_size: int = 0, limit: int = 100) -> list[StoredCheckpoint]:
        """Stored checkpoints of tree size ``from_size`` or more, smallest first."""
        ...

    async def latest_timestamped_checkpoint(self, min_size: int = 0) -> StoredCheckpoint | None:
        """The checkpoint of the largest tree size (``min_size`` or more) that carries a
        timestamp token, if any (evidence prefers it to a newer one still without)."""
        ...

    async def tree_base(self) -> CompactRange:
        """The tree state below the log's first stored record: after retention archived
        records ``[0, B)``, the compact range at ``B``; an empty range before that."""
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

    async def query(self, **filters: Unpack[QueryFilters]) -> list[AuditRecord]:
        """Records matching every given filter, at most ``limit`` (1 to `MAX_QUERY_LIMIT`).

        The filters are those of `RecordQuery` (time range, client, service, message id,
        request id, user id, subject id, status, direction, member scope), answered from
        the store's indexes. Ordered by ``seq``, oldest first; ``after_seq`` is the cursor
        for the next page. With ``newest_first``, the newest records come first and
        ``after_seq`` is ignored. Raises `InvalidAuditQuery` for out-of-range values.
        """
        ...

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of record ``index`` in the tree of ``tree_size`` records.

        Raises `RecordsArchived` when it needs records that retention has archived.
        """
        ...

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``old_size`` to that of ``new_size``.

        Raises `RecordsArchived` when it needs records that retention has archived.
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


class RetentionStore(AuditStore, Protocol):
    """What retention needs beyond `AuditStore`: raw rows to copy into an archive, and
    moving the log's base once the archive is durable and verified."""

    @property
    def name(self) -> str:
        """The store in messages (a path, or the database and origin)."""
        ...

    async def first_seq_from(self, time: datetime) -> int | None:
        """The smallest ``seq`` of a stored record made at ``time`` or later, if any."""
        ...

    async def raw_rows(self, start: int, end: int) -> list[tuple[object, ...]]:
        """Whole stored rows (`RECORD_COLUMNS` order) of records ``start`` to ``end - 1``."""
        ...

    async def checkpoint_rows(self, low: int, high: int) -> list[tuple[object, ...]]:
        """Raw checkpoint rows (``tree_size, root, note, created, compact_range,
        timestamp_token``) with ``low <= tree_size <= high``, by size."""
        ...

    async def set_base(self, compact: CompactRange) -> None:
        """Records below ``compact.size`` are archived: the tree continues from ``compact``;
        checkpoints below it are dropped. Durable; raises `AuditError`."""
        ...

    async def delete_below(self, size: int, limit: int) -> int:
        """Delete at most ``limit`` records below ``size`` and the base; how many went."""
        ...
