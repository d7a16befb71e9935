"""Finding an exchange among the archive files retention wrote (SPEC 8 retention).

Once retention has moved an exchange's records to an archive, the live store no longer
has them and cannot prove them; the auditor API and ``obmin audit export`` then answer that
they were archived, and where, instead of "not found". Each archive is an indexed SQLite
file (`archive_format`), so a lookup is one index probe per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.audit.archive_format import archives_in, is_archive_meta
from gateway.audit.errors import AuditError
from gateway.audit.query import RecordQuery
from gateway.audit.records import AuditRecord
from gateway.audit.sqlite_db import SqliteLog

__all__ = ["ArchiveDirectory", "ArchivedExchange"]


@dataclass(frozen=True, slots=True)
class ArchivedExchange:
    """The records of one exchange found in the archive file ``path``."""

    path: Path
    records: tuple[AuditRecord, ...]


@dataclass(frozen=True, slots=True)
class ArchiveDirectory:
    """Where retention writes the archives of the log of ``origin``."""

    path: Path
    origin: str

    def find(self, request_id: str, members: tuple[str, ...] = ()) -> ArchivedExchange | None:
        """The archived records of ``request_id``, if an archive of this origin holds any
        (within the member scope ``members``, a `RecordQuery` filter; empty: any member).

        Blocks (SQLite reads): call it from a worker thread. Archives that cannot be read
        are skipped (``obmin audit verify --archives`` is what reports them).
        """
        if not self.path.is_dir():
            return None
        query = RecordQuery(request_id=request_id, members=members or None, limit=16)
        for file in reversed(archives_in(self.path)):  # the newest archives first
            log = SqliteLog(file, writable=False, create=False, busy_timeout=1.0)
            try:
                meta = log.meta()
                if not is_archive_meta(meta) or meta.get("origin") != self.origin:
                    continue
                records = log.select(query)
            except AuditError:
                continue
            finally:
                log.close()
            if records:
                return ArchivedExchange(file, tuple(records))
        return None
