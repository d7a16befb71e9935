"""One suite, both stores: every test here runs against SQLite and against PostgreSQL.

Round trip, group commit, consecutive sequence numbers, every query filter with cursor
pagination, proofs, checkpoints (with timestamp tokens), close semantics, durability once
``append`` returned (the writer is SIGKILLed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    AuditError,
    InvalidAuditQuery,
    RetentionStore,
    StoredCheckpoint,
    leaf_hash,
    sign_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.merkle import CompactRange, root_hash
from tests.audit.conftest import ORIGIN, StoreMaker
from tests.audit.drafts import CLIENT, NOW, SERVICE, exchange, make_draft

REPO = Path(__file__).resolve().parents[2]
OTHER_CLIENT = "SEVDEIR-TEST/GOV/11112222/OTHER"
OTHER_SERVICE = "SEVDEIR-TEST/GOV/33334444/TAX/getDebt/v2"


async def test_append_and_read_back(store: RetentionStore) -> None:
    drafts = exchange("m-1", policy="plain")
    records = await store.append(drafts)
    assert [r.seq for r in records] == [0, 1]
    assert [r.direction for r in records] == ["request", "response"]
    assert records[1].duration_ms == 12.5
    assert await store.by_request_id(drafts[0].request_id) == records
    assert (await store.by_request_id(drafts[0].request_id))[0].body == drafts[0].body
    assert await store.count() == 2
    assert await store.leaf_hashes(0, 10) == [leaf_hash(r) for r in records]
    assert (await store.tree_base()).size == 0
    assert await store.append([]) == []


async def test_an_encrypted_body_is_kept_as_opaque_bytes(store: RetentionStore) -> None:
    envelope = b"\x01key-2025\x00" + os.urandom(300)  # what the evidence code stores
    draft = make_draft(policy="encrypted", body=b"<Envelope>secret</Envelope>")
    assert draft.body is None  # make_draft keeps only the digest: the envelope is added here
    (record,) = await store.append([dataclasses.replace(draft, body=envelope)])
    (read,) = await store.by_request_id(draft.request_id)
    assert read.body == envelope and read.body_policy == "encrypted"
    assert read == record


async def test_group_commit_batches_concurrent_appends(store: RetentionStore) -> None:
    drafts = [make_draft(message_id=f"m-{i}") for i in range(200)]
    results = await asyncio.gather(*(store.append([d]) for d in drafts))
    stats = store.stats()
    assert stats.records == 200 and stats.queue_depth == 0
    assert stats.commits < 20, stats  # one sync served many appends
    # Each caller got its own record back; seq is contiguous from 0.
    assert [r[0].message_id for r in results] == [d.message_id for d in drafts]
    assert sorted(r[0].seq for r in results) == list(range(200))
    assert await store.count() == 200


async def test_without_group_commit_each_call_is_a_transaction(make_store: StoreMaker) -> None:
    store = await make_store.open(group_commit=False)
    await asyncio.gather(*(store.append(exchange(f"m-{i}")) for i in range(30)))
    assert store.stats().commits == 30 and store.stats().records == 60


async def test_one_call_is_one_unit_with_consecutive_seq(store: RetentionStore) -> None:
    calls = [exchange(f"m-{i}") for i in range(50)]
    results = await asyncio.gather(*(store.append(c) for c in calls))
    for records in results:
        assert records[1].seq == records[0].seq + 1
        assert records[0].request_id == records[1].request_id
    all_records = await store.query(limit=1000)
    assert [r.seq for r in all_records] == list(range(100))


async def _mixed_log(store: RetentionStore) -> None:
    """Six exchanges that differ in one field each (seq 0 to 11)."""
    await store.append(exchange("a"))
    await store.append(exchange("b", client=OTHER_CLIENT))
    await store.append(exchange("c", service=OTHER_SERVICE))
    await store.append(exchange("d", user_id="UA:999", subject_id="UA-1111111111"))
    await store.append(
        [
            make_draft(message_id="e", time=NOW + timedelta(hours=1)),
            make_draft(
                direction="response",
                message_id="e",
                time=NOW + timedelta(hours=1),
                outcome="fault",
                http_status=500,
                fault_code="Server.ServerProxy.ServiceFailed",
            ),
        ]
    )
    await store.append(exchange("f", time=NOW + timedelta(hours=2)))


async def _ids(store: RetentionStore, **filters: object) -> list[tuple[int, str | None]]:
    return [(r.seq, r.message_id) for r in await store.query(**filters)]  # type: ignore[arg-type]


async def test_every_filter_is_answered_by_the_store(store: RetentionStore) -> None:
    await _mixed_log(store)
    assert await _ids(store, message_id="b") == [(2, "b"), (3, "b")]
    assert {m for _, m in await _ids(store, client=OTHER_CLIENT)} == {"b"}
    assert {m for _, m in await _ids(store, service=OTHER_SERVICE)} == {"c"}
    assert {m for _, m in await _ids(store, client=CLIENT, service=SERVICE)} == {
        "a",
        "d",
        "e",
        "f",
    }
    (request,) = await store.query(message_id="c", direction="request")
    assert await _ids(store, request_id=request.request_id) == [(4, "c"), (5, "c")]
    assert await _ids(store, user_id="UA:999") == [(6, "d"), (7, "d")]
    assert await _ids(store, subject_id="UA-1111111111") == [(6, "d"), (7, "d")]
    assert await _ids(store, status=500) == [(9, "e")]
    assert await _ids(store, status="Server.ServerProxy.ServiceFailed") == [(9, "e")]
    assert len(await store.query(status=200)) == 5  # the other responses
    assert [r.direction for r in await store.query(direction="response")] == ["response"] * 6
    assert await _ids(store, since=NOW + timedelta(minutes=30)) == [
        (8, "e"),
        (9, "e"),
        (10, "f"),
        (11, "f"),
    ]
    assert await _ids(store, until=NOW + timedelta(hours=1)) == [
        (seq, m) for seq, m in await _ids(store) if m != "f"
    ]
    window = {"since": NOW + timedelta(hours=1), "until": NOW + timedelta(hours=1)}
    assert await _ids(store, **window) == [(8, "e"), (9, "e")]
    assert await store.query(message_id="nothing") == []


async def test_a_member_scope_is_a_store_filter_and_pages_are_full(
    store: RetentionStore,
) -> None:
    await _mixed_log(store)
    for i in range(20):  # many records out of scope before the in-scope ones
        await store.append(exchange(f"x-{i}"))
    await store.append(exchange("late", client=OTHER_CLIENT))
    scope = ("SEVDEIR-TEST/GOV/11112222",)  # OTHER_CLIENT's member
    page = await store.query(members=scope, limit=3)
    assert [(r.seq, r.message_id) for r in page] == [(2, "b"), (3, "b"), (52, "late")]
    # A member that is only the provider sees the exchanges with its service.
    provider = await store.query(members=("SEVDEIR-TEST/GOV/33334444",))
    assert {r.message_id for r in provider} == {"c"}
    both = await store.query(members=(*scope, "SEVDEIR-TEST/GOV/33334444"), limit=10)
    assert [r.message_id for r in both] == ["b", "b", "c", "c", "late", "late"]
    assert await store.query(members=("NOBODY/X/Y",)) == []


async def test_cursor_pagination_walks_the_log_once(store: RetentionStore) -> None:
    await _mixed_log(store)
    seen: list[int] = []
    cursor = -1
    while page := await store.query(after_seq=cursor, limit=5, direction="request"):
        seen += [r.seq for r in page]
        cursor = page[-1].seq
    assert seen == list(range(0, 12, 2))
    newest = await store.query(limit=2, newest_first=True)
    assert [r.seq for r in newest] == [11, 10]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"limit": 0}, "limit must be from 1"),
        ({"limit": 10_001}, "limit must be from 1"),
        ({"after_seq": 2**63}, "cursor must be from -1"),
        ({"after_seq": -2}, "cursor must be from -1"),
        ({"status": 99}, "HTTP status"),
        ({"status": ""}, "status must be"),
        ({"direction": "sideways"}, "direction"),
        ({"members": ()}, "non-empty"),
        ({"client": "x" * 5000}, "longer than"),
        ({"user_id": "nul\x00"}, "NUL"),
        ({"subject_id": "\udcff"}, "Unicode"),
        ({"since": NOW.replace(tzinfo=None)}, "timezone-aware"),
    ],
)
async def test_out_of_range_queries_are_refused(
    store: RetentionStore, filters: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidAuditQuery, match=message):
        await store.query(**filters)  # type: ignore[arg-type]


async def test_proofs_match_an_independent_recomputation(store: RetentionStore) -> None:
    for i in range(37):
        await store.append([make_draft(message_id=f"m-{i}")])
    leaves = await store.leaf_hashes(0, 100)
    assert len(leaves) == 37
    for size in (1, 2, 7, 16, 37):
        root = root_hash(leaves[:size])
        for index in range(size):
            proof = await store.inclusion_proof(index, size)
            verify_inclusion(leaves[index], index, size, proof, root)
    for old in (1, 5, 16, 36):
        proof = await store.consistency_proof(old, 37)
        verify_consistency(old, 37, root_hash(leaves[:old]), root_hash(leaves), proof)


async def _checkpoint(store: RetentionStore, key: Ed25519PrivateKey) -> StoredCheckpoint:
    compact = CompactRange()
    compact.extend(await store.leaf_hashes(0, 10_000))
    signed = sign_checkpoint(ORIGIN, compact.size, compact.root(), key, ORIGIN)
    stored = StoredCheckpoint(signed, NOW, compact)
    await store.add_checkpoint(stored)
    return stored


async def test_checkpoints_and_their_timestamp_tokens_are_durable(
    make_store: StoreMaker, log_key: Ed25519PrivateKey
) -> None:
    store = await make_store.open()
    first = await _checkpoint(store, log_key)  # of the empty log
    await store.append(exchange("a"))
    second = await _checkpoint(store, log_key)
    await store.append(exchange("b"))
    with pytest.raises(AuditError, match="size 5 for 4 records"):
        bigger = CompactRange()
        bigger.extend([bytes(32)] * 5)
        signed = sign_checkpoint(ORIGIN, 5, bigger.root(), log_key, ORIGIN)
        await store.add_checkpoint(StoredCheckpoint(signed, NOW, bigger))
    token = b"\x30\x82" + os.urandom(500)  # a DER TimeStampToken, as far as the store cares
    await store.set_checkpoint_timestamp(2, token)
    with pytest.raises(AuditError, match="no checkpoint of tree size 3"):
        await store.set_checkpoint_timestamp(3, token)
    await store.close()

    reopened = await make_store.open()
    latest = await reopened.latest_checkpoint()
    assert latest is not None and latest.checkpoint == second.checkpoint
    assert latest.timestamp_token == token and latest.created == NOW
    assert latest.compact_range.hashes == second.compact_range.hashes
    listed = await reopened.checkpoints()
    assert [c.checkpoint.size for c in listed] == [0, 2]
    assert listed[0].checkpoint == first.checkpoint and listed[0].timestamp_token is None
    assert [c.checkpoint.size for c in await reopened.checkpoints(from_size=1)] == [2]
    assert [c.checkpoint.size for c in await reopened.checkpoints(limit=1)] == [0]


async def test_the_log_continues_after_reopen(make_store: StoreMaker) -> None:
    first = await make_store.open()
    await first.append(exchange("a"))
    await first.close()
    second = await make_store.open()
    assert await second.count() == 2
    assert [r.seq for r in await second.append(exchange("b"))] == [2, 3]


async def test_close_flushes_queued_appends_then_refuses(make_store: StoreMaker) -> None:
    store = await make_store.open()
    pending = [asyncio.create_task(store.append(exchange(f"m-{i}"))) for i in range(40)]
    await asyncio.sleep(0)  # the appends are queued, most not yet committed
    await store.close()
    assert all(len(task.result()) == 2 for task in pending)
    with pytest.raises(AuditError, match="not open"):
        await store.append([make_draft()])
    with pytest.raises(AuditError, match="not open"):
        await store.count()
    with pytest.raises(AuditError, match="not open"):
        await store.query()
    assert not await store.check_writable()
    await store.close()  # idempotent

    reader = await make_store.open(read_only=True)
    assert await reader.count() == 80
    assert not await reader.check_writable()
    with pytest.raises(AuditError):
        await reader.append([make_draft()])


async def test_check_writable_on_an_open_store(store: RetentionStore) -> None:
    assert await store.check_writable()


_KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from gateway.audit import SqliteAuditStore
    from gateway.audit.postgres_store import PostgresAuditStore
    from tests.audit.drafts import exchange

    async def main() -> None:
        if sys.argv[1] == "postgres":
            store = PostgresAuditStore(sys.argv[2], sys.argv[3], schema=sys.argv[4])
        else:
            store = SqliteAuditStore(Path(sys.argv[2]))
        await store.open()
        await asyncio.gather(*(store.append(exchange(f"m-{i}")) for i in range(100)))
        print("durable", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush, no checkpoint

    asyncio.run(main())
    """
)


async def test_records_survive_sigkill_once_append_returned(make_store: StoreMaker) -> None:
    if make_store.postgres is not None:
        pg = make_store.postgres
        args = ["postgres", pg.dsn, ORIGIN, pg.schema]
    else:
        args = ["sqlite", str(make_store.path)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WRITER,
        *args,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == -9, stderr.decode()
    assert stdout == b"durable\n"
    store = await make_store.open()
    assert await store.count() == 200
    records = await store.query(limit=200)
    assert [r.seq for r in records] == list(range(200))


async def test_proofs_use_the_subtrees_saved_with_checkpoints(
    make_store: StoreMaker, log_key: Ed25519PrivateKey
) -> None:
    from gateway.audit import Checkpointer
    from tests.postgres import run_in

    store = await make_store.open()
    checkpointer = Checkpointer(store, log_key, origin=ORIGIN, every_records=10**6)
    await checkpointer.start()
    await asyncio.gather(*(store.append(exchange(f"m-{i}")) for i in range(1500)))
    latest = await checkpointer.stop()
    assert latest is not None and latest.size == 3000
    leaves = await store.leaf_hashes(0, 3000)
    await store.close()

    def sql(statement: str, *params: object) -> None:
        if make_store.postgres is not None:
            run_in(make_store.postgres.schema, statement, *params)
        else:
            import sqlite3

            with sqlite3.connect(make_store.path) as conn:
                conn.execute(statement, params)
            conn.close()

    # Subtrees of 64 leaves and more were saved ([0, 2048) among them); a leaf inside them
    # is no longer read by a proof about a leaf outside them.
    sql("UPDATE records SET leaf_hash = ? WHERE seq = 100", bytes(32))
    fresh = await make_store.open()  # an empty cache: what is not saved is read
    proof = await fresh.inclusion_proof(2500, 3000)
    verify_inclusion(leaves[2500], 2500, 3000, proof, latest.root)
    await fresh.close()
    sql("DELETE FROM tree_nodes")
    fresh = await make_store.open()
    proof = await fresh.inclusion_proof(2500, 3000)
    with pytest.raises(Exception, match="not in the tree"):
        verify_inclusion(leaves[2500], 2500, 3000, proof, latest.root)
