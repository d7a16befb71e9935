"""The tamper-evident audit log (SPEC 8): records, stores, checkpoints and ``obmin audit``.

The pipeline builds an `AuditRecordDraft` per direction (`body_fields` fills the body
evidence) and awaits `AuditStore.append`, which returns once the records are durable or
raises `AuditError` (``Server.ClientProxy.LoggingFailed``). Each record's canonical JSON is
an RFC 9162 leaf (`leaf_hash`); a `Checkpointer` signs the tree head as a C2SP checkpoint
every few seconds and every N records; `verify_log` recomputes everything and names the
first bad record.
"""

from gateway.audit.bodies import BodyFields, body_digest, body_fields
from gateway.audit.checkpoint import Checkpoint, VerifierKey, sign_checkpoint, verify_checkpoint
from gateway.audit.checkpointer import Checkpointer, load_log_key
from gateway.audit.errors import (
    AuditError,
    InvalidAuditQuery,
    InvalidAuditRecord,
    InvalidCheckpoint,
    InvalidProof,
    RecordsArchived,
)
from gateway.audit.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.postgres_store import PostgresAuditStore
from gateway.audit.query import QueryFilters, RecordQuery
from gateway.audit.records import (
    RECORD_VERSION,
    AuditRecord,
    AuditRecordDraft,
    Dialect,
    Direction,
    ExchangeProtocol,
    Outcome,
    check_canonical,
    format_time,
    leaf_hash,
    member_of,
)
from gateway.audit.report import (
    RecordFormat,
    audit_store,
    format_records,
    open_audit_store,
    query_records_cli,
)
from gateway.audit.sqlite_store import SqliteAuditStore
from gateway.audit.store import (
    MAX_QUERY_LIMIT,
    AuditStats,
    AuditStore,
    CheckpointStore,
    RetentionStore,
    StoredCheckpoint,
)
from gateway.audit.verify import OpenBody, TimestampCheck, VerifyReport, verify_log
from gateway.audit.verify_chain import (
    ChainReport,
    verify_archive,
    verify_archive_cli,
    verify_chain,
    verify_log_cli,
)
from gateway.audit.verify_sources import LogSource, PostgresSource, SqliteSource

__all__ = [
    "MAX_QUERY_LIMIT",
    "RECORD_VERSION",
    "AuditError",
    "AuditRecord",
    "AuditRecordDraft",
    "AuditStats",
    "AuditStore",
    "BodyFields",
    "ChainReport",
    "Checkpoint",
    "CheckpointStore",
    "Checkpointer",
    "CompactRange",
    "Dialect",
    "Direction",
    "ExchangeProtocol",
    "InvalidAuditQuery",
    "InvalidAuditRecord",
    "InvalidCheckpoint",
    "InvalidProof",
    "LogSource",
    "OpenBody",
    "Outcome",
    "PostgresAuditStore",
    "PostgresSource",
    "QueryFilters",
    "RecordFormat",
    "RecordQuery",
    "RecordsArchived",
    "RetentionStore",
    "SqliteAuditStore",
    "SqliteSource",
    "StoredCheckpoint",
    "TimestampCheck",
    "VerifierKey",
    "VerifyReport",
    "audit_store",
    "body_digest",
    "body_fields",
    "check_canonical",
    "consistency_proof",
    "format_records",
    "format_time",
    "inclusion_proof",
    "leaf_hash",
    "load_log_key",
    "member_of",
    "open_audit_store",
    "query_records_cli",
    "root_hash",
    "sign_checkpoint",
    "verify_archive",
    "verify_archive_cli",
    "verify_chain",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
    "verify_log_cli",
]
