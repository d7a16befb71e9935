"""Errors of the audit package: one root, each class with its stable code.

::

    AuditError             LoggingFailed  the log cannot be written or read (fail closed)
     ├── InvalidAuditRecord InternalError  a draft or a stored row breaks the record format
     └── InvalidAuditQuery  InvalidQuery   a query asks for something the store cannot answer

The gateway turns ``LoggingFailed`` into ``Server.ClientProxy.LoggingFailed``: a request is
never forwarded, and a response never returned, unless its record is durable.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["AuditError", "InvalidAuditQuery", "InvalidAuditRecord"]


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
