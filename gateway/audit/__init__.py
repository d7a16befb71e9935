"""The tamper-evident audit log (SPEC 8): records, stores, checkpoints and ``obmin audit``.

The pipeline builds an `AuditRecordDraft` per direction (`BodyStorage` fills the body
evidence) and awaits `AuditStore.append`, which returns once the records are durable or
raises `AuditError` (``Server.ClientProxy.LoggingFailed``). Each record's canonical JSON is
an RFC 9162 leaf (`leaf_hash`); a `Checkpointer` signs the tree head as a C2SP checkpoint
every few seconds and every N records; `verify_log` recomputes everything and names the
first bad record.

With ``audit.tsa`` configured, the checkpointer has each new checkpoint timestamped by a
`TsaClient` (RFC 3161; `verify_timestamp` and `timestamp_checker` check tokens offline).
Bodies under policy ``encrypted`` are sealed by a `BodyKeyring` (AES-256-GCM envelopes,
rotatable keys) through `BodyStorage`. `collect_evidence` builds an exchange's evidence
bundle (`build_evidence`), which `verify_evidence` checks offline.
"""

from gateway.audit.bodies import (
    BodyFields,
    BodyStorage,
    body_digest,
    services_needing_body_keys,
)
from gateway.audit.body_crypto import (
    BodyBinding,
    BodyBindingMismatch,
    BodyCryptoError,
    BodyKeyError,
    BodyKeyring,
    InvalidEnvelope,
    SealedBody,
    UnknownBodyKey,
    write_body_key,
)
from gateway.audit.checkpoint import Checkpoint, VerifierKey, sign_checkpoint, verify_checkpoint
from gateway.audit.checkpointer import (
    Checkpointer,
    Timestamper,
    TimestampOutcome,
    load_log_key,
    verifier_key_from_settings,
)
from gateway.audit.errors import (
    AuditError,
    InvalidAuditQuery,
    InvalidAuditRecord,
    InvalidCheckpoint,
    InvalidProof,
    RecordsArchived,
)
from gateway.audit.evidence import EvidenceError, InvalidEvidence, build_evidence
from gateway.audit.evidence_export import (
    EvidenceNotFound,
    EvidenceNotReady,
    EvidenceSigner,
    collect_evidence,
)
from gateway.audit.evidence_verify import EvidenceReport, verify_evidence
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
from gateway.audit.tsa import TimestampRejected, TsaClient, TsaUnavailable
from gateway.audit.tsa_verify import (
    InvalidTimestamp,
    TsaTrust,
    VerifiedTimestamp,
    timestamp_checker,
    verify_timestamp,
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
    "BodyBinding",
    "BodyBindingMismatch",
    "BodyCryptoError",
    "BodyFields",
    "BodyKeyError",
    "BodyKeyring",
    "BodyStorage",
    "ChainReport",
    "Checkpoint",
    "CheckpointStore",
    "Checkpointer",
    "CompactRange",
    "Dialect",
    "Direction",
    "EvidenceError",
    "EvidenceNotFound",
    "EvidenceNotReady",
    "EvidenceReport",
    "EvidenceSigner",
    "ExchangeProtocol",
    "InvalidAuditQuery",
    "InvalidAuditRecord",
    "InvalidCheckpoint",
    "InvalidEnvelope",
    "InvalidEvidence",
    "InvalidProof",
    "InvalidTimestamp",
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
    "SealedBody",
    "SqliteAuditStore",
    "SqliteSource",
    "StoredCheckpoint",
    "TimestampCheck",
    "TimestampOutcome",
    "TimestampRejected",
    "Timestamper",
    "TsaClient",
    "TsaTrust",
    "TsaUnavailable",
    "UnknownBodyKey",
    "VerifiedTimestamp",
    "VerifierKey",
    "VerifyReport",
    "audit_store",
    "body_digest",
    "build_evidence",
    "check_canonical",
    "collect_evidence",
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
    "services_needing_body_keys",
    "sign_checkpoint",
    "timestamp_checker",
    "verifier_key_from_settings",
    "verify_archive",
    "verify_archive_cli",
    "verify_chain",
    "verify_checkpoint",
    "verify_consistency",
    "verify_evidence",
    "verify_inclusion",
    "verify_log",
    "verify_log_cli",
    "verify_timestamp",
    "write_body_key",
]
