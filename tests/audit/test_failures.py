"""Fail closed, recover by itself: what the store does when the database cannot be written.

Tests run as root, which ignores file permissions, so each failure here is one that root
meets too: the log's directory moved away or replaced by a file, a write lock held by
another process, a read-only connection, a file that is not an audit log, a tampered row.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.audit import (
    AuditError,
    AuditStore,
    InvalidAuditRecord,
    RetentionStore,
    SqliteAuditStore,
)
from tests.audit.drafts import exchange, make_draft


async def _expect_logging_failed(store: AuditStore, match: str) -> None:
    with pytest.raises(AuditError, match=match) as info:
        await store.append(exchange("refused"))
    assert info.value.code == "LoggingFailed"


async def test_directory_moved_away_fails_closed_then_recovers(
    sqlite_store: SqliteAuditStore, db_path: Path
) -> None:
    store = sqlite_store
    await store.append(exchange("before"))
    moved = db_path.parent.with_name("moved")
    db_path.parent.rename(moved)
    # The open connection would still write into the moved file; the store notices.
    await _expect_logging_failed(store, "cannot open the audit database")
    assert not await store.check_writable()
    assert not db_path.parent.exists(), "an empty log must not be created in its place"

    moved.rename(db_path.parent)
    assert await store.check_writable()
    records = await store.append(exchange("after"))
    assert [r.seq for r in records] == [2, 3]  # no gap: the refused records were not kept
    assert [r.message_id for r in await store.query()] == ["before"] * 2 + ["after"] * 2


async def test_directory_replaced_by_a_file_fails_closed_then_recovers(
    sqlite_store: SqliteAuditStore, db_path: Path
) -> None:
    store = sqlite_store
    await store.append(exchange("before"))
    moved = db_path.parent.with_name("moved")
    db_path.parent.rename(moved)
    db_path.parent.write_bytes(b"not a directory")
    await _expect_logging_failed(store, "cannot open the audit database")
    await _expect_logging_failed(store, "cannot open the audit database")  # still failing

    db_path.parent.unlink()
    moved.rename(db_path.parent)
    assert [r.seq for r in await store.append(exchange("after"))] == [2, 3]


async def test_write_lock_held_elsewhere_fails_closed_then_recovers(db_path: Path) -> None:
    store = SqliteAuditStore(db_path, busy_timeout=0.05)
    await store.open()
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        await _expect_logging_failed(store, "database is locked")
        assert not await store.check_writable()
        assert await store.count() == 0  # readers are not blocked (WAL)
        other.execute("ROLLBACK")
        assert await store.check_writable()
        assert [r.seq for r in await store.append(exchange("after"))] == [0, 1]
    finally:
        other.close()
        await store.close()


async def test_read_only_store_reads_but_refuses_appends(
    sqlite_store: SqliteAuditStore, db_path: Path
) -> None:
    store = sqlite_store
    await store.append(exchange("a"))
    reader = SqliteAuditStore(db_path, read_only=True)
    await reader.open()
    try:
        await _expect_logging_failed(reader, "readonly database")
        assert not await reader.check_writable()
        assert await reader.count() == 2
    finally:
        await reader.close()
    assert await store.count() == 2


async def test_read_only_store_needs_an_existing_log(db_path: Path) -> None:
    with pytest.raises(AuditError, match="cannot open the audit database"):
        await SqliteAuditStore(db_path, read_only=True).open()
    assert not db_path.parent.exists()


async def test_a_file_that_is_not_an_audit_log_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AuditError, match="file is not a database"):
        await SqliteAuditStore(garbage).open()

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("PRAGMA user_version = 42")
    conn.close()
    with pytest.raises(AuditError, match="schema version 3 \\(found 42\\)"):
        await SqliteAuditStore(foreign).open()


async def test_a_tampered_row_is_reported_not_returned(
    sqlite_store: SqliteAuditStore, db_path: Path
) -> None:
    store = sqlite_store
    await store.append([make_draft()])
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE records SET canonical = ? WHERE seq = 0", (b'{"v":1}',))
    conn.close()
    with pytest.raises(InvalidAuditRecord, match="missing keys"):
        await store.query()


async def test_store_cannot_be_opened_twice(store: RetentionStore) -> None:
    with pytest.raises(AuditError, match="already opened"):
        await store.open()
