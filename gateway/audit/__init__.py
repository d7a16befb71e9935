"""The tamper-evident audit log (SPEC 8): records, stores, and the ``obmin audit`` tools.

The pipeline builds an `AuditRecordDraft` per direction (`body_fields` fills the body
evidence) and awaits `AuditStore.append`, which returns once the records are durable or
raises `AuditError` (``Server.ClientProxy.LoggingFailed``). Each record's canonical JSON is
an RFC 9162 leaf (`leaf_hash`), ready for the Merkle tree and signed checkpoints.
"""

from gateway.audit.errors import AuditError, InvalidAuditQuery, InvalidAuditRecord
from gateway.audit.records import (
    RECORD_VERSION,
    AuditRecord,
    AuditRecordDraft,
    BodyFields,
    Dialect,
    Direction,
    ExchangeProtocol,
    Outcome,
    body_digest,
    body_fields,
    format_time,
    leaf_hash,
)
from gateway.audit.report import RecordFormat, format_records, open_audit_store, query_records_cli
from gateway.audit.sqlite_store import SqliteAuditStore
from gateway.audit.store import MAX_QUERY_LIMIT, AuditStats, AuditStore

__all__ = [
    "MAX_QUERY_LIMIT",
    "RECORD_VERSION",
    "AuditError",
    "AuditRecord",
    "AuditRecordDraft",
    "AuditStats",
    "AuditStore",
    "BodyFields",
    "Dialect",
    "Direction",
    "ExchangeProtocol",
    "InvalidAuditQuery",
    "InvalidAuditRecord",
    "Outcome",
    "RecordFormat",
    "SqliteAuditStore",
    "body_digest",
    "body_fields",
    "format_records",
    "format_time",
    "leaf_hash",
    "open_audit_store",
    "query_records_cli",
]
