"""Opening the configured audit store, and the text ``obmin audit query`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Unpack

from gateway.audit.postgres_store import PostgresAuditStore
from gateway.audit.query import QueryFilters
from gateway.audit.records import AuditRecord, format_time
from gateway.audit.sqlite_store import SqliteAuditStore
from gateway.audit.store import RetentionStore

if TYPE_CHECKING:
    from gateway.settings import AuditSettings

__all__ = [
    "RecordFormat",
    "audit_store",
    "format_records",
    "open_audit_store",
    "query_records_cli",
]

RecordFormat = Literal["table", "jsonl"]

_COLUMNS = ("SEQ", "TIME", "DIR", "REQUEST ID", "MESSAGE ID", "CLIENT", "SERVICE", "RESULT")


def audit_store(settings: AuditSettings, *, read_only: bool = False) -> RetentionStore:
    """The store the settings name (``sqlite`` at ``path``, or ``postgres`` at ``dsn``),
    not yet opened."""
    if settings.store == "postgres":
        assert settings.dsn is not None  # the settings validator requires it
        return PostgresAuditStore(
            settings.dsn, settings.origin, schema=settings.postgres_schema, read_only=read_only
        )
    return SqliteAuditStore(settings.path, read_only=read_only)


async def open_audit_store(settings: AuditSettings, *, read_only: bool = False) -> RetentionStore:
    """Open the store the settings name; raises `AuditError`.

    A writable store creates the database (SQLite: and its directory; PostgreSQL: the schema
    and this origin's log) on first use; a read-only one requires it to exist.
    """
    store = audit_store(settings, read_only=read_only)
    await store.open()
    return store


def _result(record: AuditRecord) -> str:
    if record.fault_code is not None:
        return record.fault_code
    status = "-" if record.http_status is None else str(record.http_status)
    return f"{record.outcome} {status}"


def format_records(records: Sequence[AuditRecord], fmt: RecordFormat = "table") -> str:
    """Records as an aligned text table, or as JSON lines (each the record's canonical JSON).

    The JSON lines are the exact bytes the Merkle leaves hash (bodies are not included).
    """
    if fmt == "jsonl":
        return "\n".join(record.to_canonical_json().decode("utf-8") for record in records)
    rows = [_COLUMNS] + [
        (
            str(record.seq),
            format_time(record.time),
            record.direction,
            record.request_id,
            record.message_id or "-",
            record.client or "-",
            record.service or "-",
            _result(record),
        )
        for record in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    if not records:
        lines.append("(no matching records)")
    return "\n".join(line.rstrip() for line in lines)


async def query_records_cli(
    settings: AuditSettings,
    *,
    fmt: RecordFormat = "table",
    **filters: Unpack[QueryFilters],
) -> str:
    """``obmin audit query``: the newest ``limit`` (20) matching records, oldest first.

    ``filters`` are those of `AuditStore.query`. Opens the log read-only; raises
    `AuditError` when it does not exist or cannot be read (`InvalidAuditQuery` for a bad
    filter).
    """
    store = await open_audit_store(settings, read_only=True)
    try:
        filters.setdefault("limit", 20)
        filters["newest_first"] = True
        records = await store.query(**filters)
    finally:
        await store.close()
    return format_records(list(reversed(records)), fmt)
