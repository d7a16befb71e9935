"""What only the PostgreSQL store does: several gateways' logs in one database, and a
database that really goes away (its role may no longer log in, its sessions are killed)
and comes back while the store stays open.

The behaviour both stores share is tested against both in ``test_store.py``.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.audit import AuditError, PostgresAuditStore, leaf_hash
from gateway.audit.postgres_db import SCHEMA_VERSION
from tests.audit.drafts import exchange
from tests.postgres import DSN, PostgresLog, admin, postgres_log, run_in

__all__ = ["postgres_log"]


def _store(
    pg: PostgresLog, origin: str = "gw-1.example/audit", **options: object
) -> PostgresAuditStore:
    return PostgresAuditStore(pg.dsn, origin, schema=pg.schema, **options)  # type: ignore[arg-type]


async def test_each_gateway_has_its_own_log_in_one_database(postgres_log: PostgresLog) -> None:
    first, second = _store(postgres_log, "gw-1"), _store(postgres_log, "gw-2")
    await first.open()
    await second.open()
    try:
        results = await asyncio.gather(
            *(
                s.append(exchange(f"{name}-{i}"))
                for i in range(10)
                for s, name in (
                    (first, "one"),
                    (second, "two"),
                )
            )
        )
        assert await first.count() == await second.count() == 20
        # Each log has its own sequence space from 0, and its own records and tree.
        assert sorted(r.seq for records in results[0::2] for r in records) == list(range(20))
        assert sorted(r.seq for records in results[1::2] for r in records) == list(range(20))
        assert {r.message_id[:3] for r in await first.query(limit=100)} == {"one"}
        assert {r.message_id[:3] for r in await second.query(limit=100)} == {"two"}
        assert await second.query(message_id="one-1") == []
        first_leaves = await first.leaf_hashes(0, 100)
        assert first_leaves == [leaf_hash(r) for r in await first.query(limit=100)]
        assert first_leaves != await second.leaf_hashes(0, 100)
    finally:
        await first.close()
        await second.close()
    rows = run_in(postgres_log.schema, "SELECT origin, next_seq FROM logs ORDER BY origin")
    assert rows == [("gw-1", 20), ("gw-2", 20)]


async def test_the_database_going_away_fails_closed_and_the_store_recovers(
    postgres_log: PostgresLog,
) -> None:
    store = _store(postgres_log, connect_timeout=2.0)
    await store.open()
    try:
        await store.append(exchange("before"))
        postgres_log.take_away()
        for _ in range(3):  # every attempt fails, none hangs
            with pytest.raises(AuditError) as info:
                await store.append(exchange("refused"))
            assert info.value.code == "LoggingFailed"
            assert "not permitted to log in" in str(info.value) or "terminat" in str(info.value)
        assert not await store.check_writable()
        with pytest.raises(AuditError, match="cannot read the audit database"):
            await store.count()

        postgres_log.bring_back()  # no reopen, no restart
        assert await store.check_writable()
        records = await store.append(exchange("after"))
        assert [r.seq for r in records] == [2, 3]  # no gap: the refused records were not kept
        assert [r.message_id for r in await store.query()] == ["before"] * 2 + ["after"] * 2
    finally:
        await store.close()


async def test_the_schema_is_created_and_versioned(postgres_log: PostgresLog) -> None:
    store = _store(postgres_log)
    await store.open()
    await store.close()
    rows = run_in(postgres_log.schema, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert rows == [(str(SCHEMA_VERSION),)]
    again = _store(postgres_log)  # an existing schema is used as it is
    await again.open()
    await again.close()

    run_in(postgres_log.schema, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(AuditError, match="version 99, newer than this obmin"):
        await _store(postgres_log).open()


async def test_a_read_only_store_needs_an_existing_log(postgres_log: PostgresLog) -> None:
    with pytest.raises(AuditError, match="no obmin audit log in schema"):
        await _store(postgres_log, "nobody", read_only=True).open()
    writer = _store(postgres_log, "somebody")
    await writer.open()
    await writer.close()
    with pytest.raises(AuditError, match="no audit log for origin 'nobody'"):
        await _store(postgres_log, "nobody", read_only=True).open()


def test_a_bad_schema_name_is_refused() -> None:
    with pytest.raises(AuditError, match="not a valid PostgreSQL schema name"):
        PostgresAuditStore(DSN, "gw", schema="public; DROP TABLE x")


async def test_an_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = PostgresAuditStore(
        f"postgresql://user:secret@127.0.0.1:{port}/test", "gw", connect_timeout=2.0
    )
    with pytest.raises(AuditError, match="cannot connect to the audit database") as info:
        await store.open()
    assert "secret" not in str(info.value)  # the password never reaches a message
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_commits_are_synchronous_even_where_the_role_says_otherwise(
    postgres_log: PostgresLog,
) -> None:
    admin(f"ALTER ROLE {postgres_log.role} SET synchronous_commit = off")
    store = _store(postgres_log)
    await store.open()
    try:
        assert store._pool is not None
        async with store._pool.acquire() as conn:  # one of the store's own sessions
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await store.close()
