"""The archive file: a SQLite file of the live log's shape, holding one span of records.

An archive of records ``[A, B)`` is an obmin audit database (schema version 3) whose
``records`` table holds exactly those records, byte for byte as the live log held them;
whose ``checkpoints`` table holds every checkpoint of a size from ``A`` to ``B`` (both
included: the one at ``A`` vouches for the tree state the archive starts from, the one at
``B`` for its last record); and whose ``meta`` table says what it is::

    format      obmin-audit-archive/1
    origin      the log's origin line (the checkpoints' first line)
    first_seq   A
    end_seq     B (one past the last record)
    created     when the archive was written (UTC, as record times are)
    base_size   A (as in a live log after retention)
    base_range  the compact range at A: hex of the perfect-subtree roots, largest first

So an archive verifies alone, offline, with only the log's public key: its base must have
the root of its signed checkpoint at ``A``, its records must hash to the signed checkpoints
after it, up to the one at ``B``. Any SQLite client reads it (``sqlite3 FILE 'SELECT ...'``);
the canonical JSON in ``records.canonical`` is the exact bytes each Merkle leaf hashes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

__all__ = [
    "ARCHIVE_FORMAT",
    "ARCHIVE_SUFFIX",
    "archive_name",
    "archives_in",
    "is_archive_meta",
]

ARCHIVE_FORMAT: Final = "obmin-audit-archive/1"
ARCHIVE_SUFFIX: Final = ".archive.db"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def archive_name(origin: str, start: int, end: int) -> str:
    """The file name of the archive of ``origin``'s records ``[start, end)``.

    Zero-padded so that names sort in log order; the origin keeps the archives of several
    gateways apart in one directory.
    """
    return f"{_UNSAFE.sub('_', origin)}.{start:016d}-{end:016d}{ARCHIVE_SUFFIX}"


def is_archive_meta(meta: dict[str, str]) -> bool:
    """Whether a file's meta entries describe an archive (not a live log)."""
    return meta.get("format") == ARCHIVE_FORMAT


def archives_in(directory: Path) -> list[Path]:
    """The archive files in ``directory``, in name order."""
    return sorted(p for p in directory.glob(f"*{ARCHIVE_SUFFIX}") if p.is_file())
