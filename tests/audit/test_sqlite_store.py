"""What only the SQLite store does: its file format, sharing a file, migrating old files.

The behaviour both stores share is tested against both in ``test_store.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from gateway.audit import SqliteAuditStore, leaf_hash, verify_log
from gateway.audit.checkpointer import Checkpointer
from tests.audit.drafts import exchange, make_draft

ORIGIN = "obmin.test/gateway"


async def test_rows_hold_canonical_json_and_leaf_hash_in_wal_mode(
    sqlite_store: SqliteAuditStore, db_path: Path
) -> None:
    records = await sqlite_store.append(exchange("m-1", subject_id="UA-1", user_id="u"))
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute(
            "SELECT seq, canonical, leaf_hash, client_member, subject_id, http_status"
            " FROM records ORDER BY seq"
        ).fetchall()
        (journal,) = raw.execute("PRAGMA journal_mode").fetchone()
        plans = raw.execute(
            "EXPLAIN QUERY PLAN SELECT canonical FROM records WHERE subject_id = ?"
            " AND seq > ? ORDER BY seq LIMIT 5",
            ("UA-1", -1),
        ).fetchall()
    raw.close()
    assert journal == "wal"
    assert [(seq, bytes(c), bytes(h)) for seq, c, h, *_ in rows] == [
        (r.seq, r.to_canonical_json(), leaf_hash(r)) for r in records
    ]
    assert [row[3:] for row in rows] == [
        ("SEVDEIR-TEST/GOV/12345678", "UA-1", None),
        ("SEVDEIR-TEST/GOV/12345678", "UA-1", 200),
    ]
    assert "records_subject_id" in " ".join(str(plan) for plan in plans)


async def test_two_stores_share_a_file(db_path: Path) -> None:
    first = SqliteAuditStore(db_path)
    await first.open()
    await first.append(exchange("a"))
    second = SqliteAuditStore(db_path)
    await second.open()
    try:
        results = await asyncio.gather(
            *(s.append(exchange(f"m-{i}")) for i in range(20) for s in (first, second))
        )
    finally:
        await first.close()
        await second.close()
    seqs = sorted(r.seq for records in results for r in records)
    assert seqs == list(range(2, 82))
    reopened = SqliteAuditStore(db_path)
    await reopened.open()
    try:
        assert (await reopened.append([make_draft()]))[0].seq == 82
    finally:
        await reopened.close()


_V2_RECORDS = """CREATE TABLE records (
    seq INTEGER PRIMARY KEY, request_id TEXT NOT NULL, message_id TEXT, client TEXT,
    service TEXT, time TEXT NOT NULL, direction TEXT NOT NULL, canonical BLOB NOT NULL,
    leaf_hash BLOB NOT NULL, body BLOB)"""
_V2_CHECKPOINTS = """CREATE TABLE checkpoints (tree_size INTEGER PRIMARY KEY,
    root BLOB NOT NULL, note TEXT NOT NULL, created TEXT NOT NULL, compact_range BLOB NOT NULL)"""


def _old_file(path: Path, version: int) -> list[bytes]:
    """A log file as obmin wrote it at schema ``version`` (1 or 2): four records."""
    records = [r.to_record(seq) for seq, r in enumerate(exchange("old") + exchange("old2"))]
    records[1] = make_draft(
        direction="response",
        request_id=records[0].request_id,
        message_id="old",
        subject_id="UA-7",
        outcome="fault",
        http_status=500,
        fault_code="Server.X",
    ).to_record(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(_V2_RECORDS)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        if version == 2:
            conn.execute(_V2_CHECKPOINTS)
        for record in records:
            canonical = record.to_canonical_json()
            document = orjson.loads(canonical)
            conn.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    record.seq,
                    record.request_id,
                    record.message_id,
                    record.client,
                    record.service,
                    document["time"],
                    record.direction,
                    canonical,
                    leaf_hash(canonical),
                ),
            )
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    return [leaf_hash(r) for r in records]


@pytest.mark.parametrize("version", [1, 2])
async def test_an_old_file_is_migrated_in_place(
    db_path: Path, version: int, log_key: object
) -> None:
    leaves = _old_file(db_path, version)
    with pytest.raises(Exception, match="open it once with a writable store"):
        reader = SqliteAuditStore(db_path, read_only=True)
        await reader.open()
    store = SqliteAuditStore(db_path)
    await store.open()
    try:
        assert await store.leaf_hashes(0, 10) == leaves
        # The new columns were filled from the records: the new filters find them.
        assert [r.seq for r in await store.query(subject_id="UA-7")] == [1]
        assert [r.seq for r in await store.query(status="Server.X")] == [1]
        assert [r.seq for r in await store.query(status=500)] == [1]
        assert len(await store.query(members=("SEVDEIR-TEST/GOV/12345678",))) == 4
        checkpointer = Checkpointer(store, log_key, origin=ORIGIN)  # type: ignore[arg-type]
        await checkpointer.start()
        await store.append(exchange("new"))
        await checkpointer.stop()
        await store.set_checkpoint_timestamp(6, b"token")
    finally:
        await store.close()
    with sqlite3.connect(db_path) as raw:
        (found,) = raw.execute("PRAGMA user_version").fetchone()
    raw.close()
    assert found == 3
    report = verify_log(db_path, log_key.public_key(), ORIGIN, ORIGIN)  # type: ignore[attr-defined]
    assert report.ok, report.summary()
    assert report.records == 6
