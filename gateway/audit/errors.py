"""Errors of the audit package: one root, each class with its stable code.

::

    AuditError             LoggingFailed      the log cannot be written or read (fail closed)
     ├── InvalidAuditRecord InternalError      a draft or a stored row breaks the record format
     ├── InvalidAuditQuery  InvalidQuery       a query asks for something the store cannot answer
     ├── InvalidProof       InvalidProof       a Merkle proof does not prove what it claims
     │    └── RecordsArchived RecordsArchived  the proof needs records that retention archived
     └── InvalidCheckpoint  InvalidCheckpoint  a checkpoint is malformed, or its signature or
                                               origin is not the one expected

The gateway turns ``LoggingFailed`` into ``Server.ClientProxy.LoggingFailed``: a request is
never forwarded, and a response never returned, unless its record is durable.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuditError",
    "InvalidAuditQuery",
    "InvalidAuditRecord",
    "InvalidCheckpoint",
    "InvalidProof",
    "RecordsArchived",
]


class AuditError(Exception):
    """Root of every error the audit package raises: the audit log failed."""

    code: ClassVar[str] = "LoggingFailed"


class InvalidAuditRecord(AuditError):
    """A draft handed to the store, or a row read back from it, is not a valid record.

    A draft that fails here is a bug in the caller; a stored row that fails here is
    corruption (or tampering) of the database.
    """

    code: ClassVar[str] = "InternalError"


class InvalidAuditQuery(AuditError):
    """A query's parameters are out of range (for example a limit of zero)."""

    code: ClassVar[str] = "InvalidQuery"


class InvalidProof(AuditError):
    """An inclusion or consistency proof is malformed or does not verify (RFC 9162)."""

    code: ClassVar[str] = "InvalidProof"


class RecordsArchived(InvalidProof):
    """A proof (or a read) needs records that retention has moved to archive files.

    Proofs about those records come from the archives, which hold the records, their
    checkpoints and the tree state at their start.
    """

    code: ClassVar[str] = "RecordsArchived"


class InvalidCheckpoint(AuditError):
    """A checkpoint (C2SP signed note) is malformed, unsigned by the expected key, or for
    another log (origin)."""

    code: ClassVar[str] = "InvalidCheckpoint"
