"""The checkpointer on real stores (SQLite and PostgreSQL): when it signs, what it stores,
how it resumes; proofs served from the store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    AuditError,
    AuditStore,
    Checkpointer,
    SqliteAuditStore,
    StoredCheckpoint,
    load_log_key,
    root_hash,
    sign_checkpoint,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.merkle import CompactRange
from gateway.settings import AuditSettings
from tests.audit.drafts import NOW, exchange

ORIGIN = "obmin.test/gateway"


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):  # up to 5 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting for the checkpointer")


def _sizes_in_file(db_path: Path) -> list[int]:
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute("SELECT tree_size FROM checkpoints ORDER BY tree_size").fetchall()
    raw.close()
    return [size for (size,) in rows]


async def _checkpoint_sizes(store: AuditStore) -> list[int]:
    return [stored.checkpoint.size for stored in await store.checkpoints(limit=1000)]


def _checkpointer(store: AuditStore, key: Ed25519PrivateKey, **options: float) -> Checkpointer:
    return Checkpointer(
        store,
        key,
        origin=ORIGIN,
        interval_seconds=options.get("interval", 60.0),
        every_records=int(options.get("every", 1000)),
        clock=lambda: NOW,
    )


async def test_every_n_records_triggers_a_checkpoint(
    store: AuditStore, log_key: Ed25519PrivateKey
) -> None:
    checkpointer = _checkpointer(store, log_key, every=10)
    await checkpointer.start()
    try:
        assert checkpointer.latest is not None and checkpointer.latest.size == 0
        for i in range(5):
            await store.append(exchange(f"m-{i}"))
        await _until(lambda: checkpointer.latest is not None and checkpointer.latest.size >= 10)
    finally:
        await checkpointer.stop()
    stored = await store.latest_checkpoint()
    assert stored is not None and stored.created == NOW
    signed = verify_checkpoint(stored.checkpoint.note, log_key.public_key(), ORIGIN, origin=ORIGIN)
    leaves = await store.leaf_hashes(0, signed.size + 1)
    assert signed.size == len(leaves) == 10
    assert signed.root == root_hash(leaves) == stored.compact_range.root()


async def test_the_timer_signs_only_when_the_log_grew(
    store: AuditStore, log_key: Ed25519PrivateKey
) -> None:
    checkpointer = _checkpointer(store, log_key, interval=0.02)
    await checkpointer.start()
    try:
        await store.append(exchange("m-1"))
        await _until(lambda: checkpointer.latest is not None and checkpointer.latest.size == 2)
        await asyncio.sleep(0.15)  # several intervals without new records
        assert await _checkpoint_sizes(store) == [0, 2]
    finally:
        await checkpointer.stop()


async def test_stop_signs_a_final_checkpoint(store: AuditStore, log_key: Ed25519PrivateKey) -> None:
    checkpointer = _checkpointer(store, log_key)
    await checkpointer.start()
    for i in range(3):
        await store.append(exchange(f"m-{i}"))
    final = await checkpointer.stop()
    assert final is not None and final.size == 6
    assert await _checkpoint_sizes(store) == [0, 6]
    assert await checkpointer.stop() == final  # idempotent, nothing new to sign


async def test_restart_continues_from_the_stored_tree_state(
    db_path: Path, log_key: Ed25519PrivateKey
) -> None:
    store = SqliteAuditStore(db_path)
    await store.open()
    checkpointer = _checkpointer(store, log_key)
    await checkpointer.start()
    await store.append(exchange("before"))
    first = await checkpointer.stop()
    original = await store.leaf_hashes(0, 10)
    await store.close()
    # Corrupt a stored leaf hash the first checkpoint covers: a checkpointer that re-read the
    # log would sign it; one that continues from its saved state does not.
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE records SET leaf_hash = zeroblob(32) WHERE seq = 0")
    raw.close()

    store = SqliteAuditStore(db_path)
    await store.open()
    try:
        checkpointer = _checkpointer(store, log_key)
        await checkpointer.start()
        assert checkpointer.latest == first  # resumed, nothing new to sign
        await store.append(exchange("after"))
        second = await checkpointer.stop()
        assert second is not None and second.size == 4
        after = await store.leaf_hashes(2, 10)
        assert second.root == root_hash(original + after)
    finally:
        await store.close()
    assert _sizes_in_file(db_path) == [0, 2, 4]


async def test_a_new_log_key_rebuilds_the_tree_and_never_resigns_a_size(
    db_path: Path, log_key: Ed25519PrivateKey
) -> None:
    store = SqliteAuditStore(db_path)
    await store.open()
    try:
        checkpointer = _checkpointer(store, log_key)
        await checkpointer.start()
        await store.append(exchange("old key"))
        await checkpointer.stop()
        new_key = Ed25519PrivateKey.generate()
        rotated = _checkpointer(store, new_key)
        await rotated.start()  # the latest checkpoint is not its own: it rebuilds, no error
        assert rotated.latest is None
        await store.append(exchange("new key"))
        latest = await rotated.stop()
        assert latest is not None and latest.size == 4
        verify_checkpoint(latest.note, new_key.public_key(), ORIGIN, origin=ORIGIN)
        assert latest.root == root_hash(await store.leaf_hashes(0, 4))
    finally:
        await store.close()
    assert _sizes_in_file(db_path) == [0, 2, 4]


async def test_a_checkpoint_larger_than_the_log_is_refused(
    store: AuditStore, log_key: Ed25519PrivateKey
) -> None:
    await store.append(exchange("m"))
    compact = CompactRange()
    compact.extend(await store.leaf_hashes(0, 2))
    compact.append(bytes(32))
    checkpoint = sign_checkpoint(ORIGIN, 3, compact.root(), log_key, ORIGIN)
    with pytest.raises(AuditError, match="size 3 for 2 records"):
        await store.add_checkpoint(StoredCheckpoint(checkpoint, NOW, compact))


async def test_proofs_from_the_store_verify_against_checkpoints(
    store: AuditStore, log_key: Ed25519PrivateKey
) -> None:
    checkpointer = _checkpointer(store, log_key)
    await checkpointer.start()
    for i in range(9):
        await store.append(exchange(f"m-{i}"))
    middle = await checkpointer.checkpoint()
    for i in range(8):
        await store.append(exchange(f"n-{i}"))
    latest = await checkpointer.stop()
    assert middle is not None and latest is not None
    assert (middle.size, latest.size) == (18, 34)
    leaves = await store.leaf_hashes(0, 100)
    for index in range(latest.size):
        proof = await store.inclusion_proof(index, latest.size)
        verify_inclusion(leaves[index], index, latest.size, proof, latest.root)
    proof = await store.consistency_proof(middle.size, latest.size)
    verify_consistency(middle.size, latest.size, middle.root, latest.root, proof)


async def test_from_settings_reads_the_log_key(
    store: AuditStore, tmp_path: Path, log_key: Ed25519PrivateKey
) -> None:
    pem = log_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file = tmp_path / "log.key"
    key_file.write_bytes(pem)
    settings = AuditSettings(origin="from.settings/gw", checkpoint_every_records=7)
    checkpointer = Checkpointer.from_settings(store, settings, key_file)
    assert (checkpointer.origin, checkpointer.key_name) == ("from.settings/gw", "from.settings/gw")
    await checkpointer.start()
    latest = await checkpointer.stop()
    assert latest is not None
    verify_checkpoint(
        latest.note, log_key.public_key(), "from.settings/gw", origin="from.settings/gw"
    )

    ec_file = tmp_path / "ec.key"
    ec_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(AuditError, match="not an Ed25519 key"):
        load_log_key(ec_file)
    with pytest.raises(AuditError, match="cannot load"):
        load_log_key(tmp_path / "missing.key")


async def test_stop_just_after_a_wake_up_returns(
    store: AuditStore, log_key: Ed25519PrivateKey
) -> None:
    """A stop in the same loop turn as the wake-up of the timer task must still stop it
    (Python 3.11's wait_for swallowed that cancel, and the gateway's shutdown hung)."""
    checkpointer = _checkpointer(store, log_key, every=1)
    await checkpointer.start()
    await asyncio.sleep(0)  # the timer task is now waiting for a wake-up
    checkpointer._on_commit(1)  # what the store calls after a commit: wakes the task
    stopping = asyncio.create_task(checkpointer.stop())
    done, _ = await asyncio.wait([stopping], timeout=5)  # a hang detector, not a timing
    if not done:
        stopping.cancel()
    assert stopping in done, "stop() did not return: the timer task ignored its cancel"
