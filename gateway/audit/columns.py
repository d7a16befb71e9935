"""The columns both stores keep beside each record's canonical JSON, for queries.

Each is a copy of a field of the record (or, for the two member columns, derived from one),
so the verifier can recompute them from the canonical JSON and name a record whose columns
were edited to make queries lie. The order here is the order of the columns in a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from gateway.audit.records import AuditRecord, AuditRecordDraft, format_time, leaf_hash, member_of

__all__ = [
    "QUERY_COLUMNS",
    "RECORD_COLUMNS",
    "columns_of_document",
    "columns_of_record",
    "numbered_rows",
    "record_row",
]

QUERY_COLUMNS: Final = (
    "request_id",
    "message_id",
    "client",
    "service",
    "client_member",
    "service_member",
    "user_id",
    "subject_id",
    "http_status",
    "fault_code",
    "time",
    "direction",
)
# A whole stored row: seq, the query columns, the canonical JSON, its leaf hash, the body.
RECORD_COLUMNS: Final = ("seq", *QUERY_COLUMNS, "canonical", "leaf_hash", "body")


def columns_of_document(document: dict[str, Any]) -> tuple[object, ...]:
    """The query columns of a record, from its parsed canonical JSON."""
    client, service = document["client"], document["service"]
    return (
        document["request_id"],
        document["message_id"],
        client,
        service,
        member_of(client),
        member_of(service),
        document["user_id"],
        document["subject_id"],
        document["http_status"],
        document["fault_code"],
        document["time"],
        document["direction"],
    )


def columns_of_record(record: AuditRecord) -> tuple[object, ...]:
    """The query columns of a record, from the record."""
    return (
        record.request_id,
        record.message_id,
        record.client,
        record.service,
        member_of(record.client),
        member_of(record.service),
        record.user_id,
        record.subject_id,
        record.http_status,
        record.fault_code,
        format_time(record.time),
        record.direction,
    )


def record_row(record: AuditRecord) -> tuple[object, ...]:
    """The row a store inserts for ``record``, in `RECORD_COLUMNS` order."""
    canonical = record.to_canonical_json()
    return (record.seq, *columns_of_record(record), canonical, leaf_hash(canonical), record.body)


def numbered_rows(
    calls: Sequence[Sequence[AuditRecordDraft]], next_seq: int, prefix: tuple[object, ...] = ()
) -> tuple[list[list[AuditRecord]], list[tuple[object, ...]]]:
    """The records of several ``append`` calls, numbered from ``next_seq`` in order, and
    their rows (each after ``prefix``: PostgreSQL's log id)."""
    results: list[list[AuditRecord]] = []
    rows: list[tuple[object, ...]] = []
    for drafts in calls:
        records: list[AuditRecord] = []
        for draft in drafts:
            record = draft.to_record(next_seq)
            rows.append((*prefix, *record_row(record)))
            records.append(record)
            next_seq += 1
        results.append(records)
    return results, rows
