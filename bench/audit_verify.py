"""Speed of ``obmin audit verify``, of lookups and of Merkle proofs on a large audit log.

Builds a log of ``--records`` realistic records (default 1,000,000) through the store's
schema — a fresh SQLite file, or a throwaway PostgreSQL schema (``--store postgres``) —
inserting rows directly in large batches (the append path has its own benchmark,
``bench/audit_append.py``), with a signed checkpoint every ``--checkpoint-every`` records
as the checkpointer makes them (with the subtrees they complete). Then measures (SPEC P5):

* full verification (every record's canonical JSON, leaf hash and query columns, the whole
  tree, every checkpoint signature), with worker processes and in one process;
* a lookup by message id, on a store opened afresh (median and worst of 50);
* an inclusion proof for a record against the latest checkpoint — cold (a store opened
  afresh), cold nodes on a store already used, and with its node cache warm — and a
  consistency proof; each verified.

    .venv/bin/python bench/audit_verify.py [--records 1000000] [--store sqlite|postgres]
        [--dsn postgresql://127.0.0.1:5432/test] [--dir /var/tmp] [--keep]
        [--verify both|workers|none]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    AuditRecordDraft,
    PostgresAuditStore,
    PostgresSource,
    SqliteAuditStore,
    SqliteSource,
    body_digest,
    format_time,
)
from gateway.audit.checkpoint import VerifierKey, sign_checkpoint
from gateway.audit.columns import RECORD_COLUMNS, columns_of_document
from gateway.audit.merkle import (
    NODE_HEIGHT,
    CompactRange,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.sqlite_db import SqliteLog
from gateway.audit.store import AuditStore, StoredCheckpoint
from gateway.audit.verify import verify_log
from gateway.audit.verify_sources import LogSource

ORIGIN = "bench.obmin.local/gateway"
BODY = b"<soap:Envelope>" + b"x" * 2000 + b"</soap:Envelope>"
INSERT = (
    f"INSERT INTO records ({', '.join(RECORD_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})"
)


def _templates() -> list[dict[str, object]]:
    """The JSON documents of a request and a response, to vary per row."""
    documents = []
    for direction in ("request", "response"):
        draft = AuditRecordDraft(
            time=datetime(2025, 1, 1, tzinfo=UTC),
            direction=direction,  # type: ignore[arg-type]
            request_id="00000000-0000-4000-8000-000000000000",
            protocol="soap",
            dialect="xroad",
            outcome="ok",
            peer="10.0.0.7",
            message_id="m",
            client="SEVDEIR-TEST/GOV/12345678/WSCLIENT",
            service="SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson/v1",
            user_id="UA:1234567890",
            subject_id="UA-1234567890",
            auth_mode="signature",
            signer_thumbprint="ab" * 32,
            http_status=None if direction == "request" else 200,
            duration_ms=None if direction == "request" else 3.25,
            size=len(BODY),
            body_digest=body_digest(BODY),
            body_policy="digest",
        )
        documents.append(orjson.loads(draft.to_record(0).to_canonical_json()))
    return documents


def _batches(
    records: int, every: int, key: Ed25519PrivateKey
) -> Iterator[tuple[list[tuple[object, ...]], StoredCheckpoint]]:
    """Rows in `RECORD_COLUMNS` order, ``every`` at a time, each batch with its checkpoint."""
    templates = _templates()
    start_time = datetime(2025, 1, 1, tzinfo=UTC)
    compact = CompactRange()
    for first in range(0, records, every):
        rows: list[tuple[object, ...]] = []
        for seq in range(first, min(records, first + every)):
            document = templates[seq & 1]
            exchange = seq >> 1
            document["seq"] = seq
            document["request_id"] = f"{exchange & 0xFFFFFFFF:08x}-0000-4000-8000-{exchange:012x}"
            document["message_id"] = f"m-{exchange}"
            document["time"] = format_time(start_time + timedelta(milliseconds=seq))
            canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
            rows.append(
                (seq, *columns_of_document(document), canonical, hash_leaf(canonical), None)
            )
        nodes = compact.extend_collecting([row[-2] for row in rows], NODE_HEIGHT)  # type: ignore[misc]
        checkpoint = sign_checkpoint(ORIGIN, compact.size, compact.root(), key, ORIGIN)
        yield (
            rows,
            StoredCheckpoint(checkpoint, datetime.now(UTC), compact.copy(), nodes=tuple(nodes)),
        )


def build_sqlite(path: Path, records: int, every: int, key: Ed25519PrivateKey) -> None:
    """Write ``records`` records and their checkpoints into a new SQLite log at ``path``."""
    log = SqliteLog(path, writable=True, create=True, busy_timeout=5.0)
    conn = log.connect()  # creates the schema
    conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture, not a log to keep
    pending: list[tuple[object, ...]] = []
    checkpoints: list[StoredCheckpoint] = []
    for rows, stored in _batches(records, every, key):
        pending += rows
        checkpoints.append(stored)
        if len(pending) >= 50_000 or stored.checkpoint.size == records:
            conn.execute("BEGIN")
            conn.executemany(INSERT, pending)
            conn.execute("COMMIT")
            pending.clear()
            for checkpoint in checkpoints:  # once the records they cover are in
                log.add_checkpoint(checkpoint)
            checkpoints.clear()
    log.close()


async def build_postgres(
    dsn: str, schema: str, records: int, every: int, key: Ed25519PrivateKey
) -> None:
    """The same log in PostgreSQL, through COPY."""
    store = PostgresAuditStore(dsn, ORIGIN, schema=schema)
    await store.open()  # creates the schema and this origin's log
    conn = await asyncpg.connect(dsn)
    try:
        (log_id,) = await conn.fetchrow(f"SELECT id FROM {schema}.logs WHERE origin = $1", ORIGIN)
        pending: list[tuple[object, ...]] = []
        checkpoints: list[StoredCheckpoint] = []
        for rows, stored in _batches(records, every, key):
            pending += [(log_id, *row) for row in rows]
            checkpoints.append(stored)
            if len(pending) >= 50_000 or stored.checkpoint.size == records:
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "records",
                        schema_name=schema,
                        columns=["log_id", *RECORD_COLUMNS],
                        records=pending,
                    )
                    await conn.execute(
                        f"UPDATE {schema}.logs SET next_seq = $2 WHERE id = $1",
                        log_id,
                        stored.checkpoint.size,
                    )
                pending.clear()
                for checkpoint in checkpoints:
                    await store.add_checkpoint(checkpoint)
                checkpoints.clear()
        await conn.execute(f"ANALYZE {schema}.records")
    finally:
        await conn.close()
        await store.close()


async def lookups_and_proofs(open_store: object, records: int) -> None:
    """Time lookups by message id and proofs on stores opened afresh; verify the proofs."""
    make = open_store  # a callable returning an unopened store

    async def fresh() -> AuditStore:
        store: AuditStore = make()  # type: ignore[operator]
        await store.open()
        return store

    store = await fresh()
    try:
        rng = random.Random(7)
        timings = []
        for _ in range(50):
            exchange = rng.randrange(records // 2)
            started = time.perf_counter()
            found = await store.query(message_id=f"m-{exchange}", limit=10)
            timings.append(time.perf_counter() - started)
            assert [r.seq for r in found] == [2 * exchange, 2 * exchange + 1]
        print(
            f"  lookup by message id: median {statistics.median(timings) * 1000:.2f} ms,"
            f" worst {max(timings) * 1000:.2f} ms (50 lookups)"
        )
        latest = await store.latest_checkpoint()
        assert latest is not None
        size, root = latest.checkpoint.size, latest.checkpoint.root
    finally:
        await store.close()
    # records - 12_345 would be negative on a small log: the warm one is near the end anyway
    warm_at = max(records - 12_345, records * 5 // 7)
    # cold store: a store opened afresh (new connections, empty node cache); cold nodes: the
    # same store, another part of the tree (connections used, nodes not cached); warm cache:
    # near the end, where the earlier proofs cached the large subtrees.
    positions = (
        ("cold store", records * 3 // 7),
        ("cold nodes", records // 7),
        ("warm cache", warm_at),
    )
    for label, at in positions:
        store = await fresh() if label == "cold store" else store
        (leaf,) = await store.leaf_hashes(at, 1)
        started = time.perf_counter()
        proof = await store.inclusion_proof(at, size)
        elapsed = time.perf_counter() - started
        verify_inclusion(leaf, at, size, proof, root)
        print(
            f"  inclusion proof of record {at} in tree {size} ({label}):"
            f" {len(proof)} hashes, {elapsed * 1000:.1f} ms, verified"
        )
    old = records // 2 - (records // 2) % 1000
    old_root = CompactRange()
    for low in range(0, old, 65_536):
        old_root.extend(await store.leaf_hashes(low, min(old, low + 65_536) - low))
    started = time.perf_counter()
    consistency = await store.consistency_proof(old, size)
    elapsed = time.perf_counter() - started
    verify_consistency(old, size, old_root.root(), root, consistency)
    print(
        f"  consistency proof {old} -> {size}: {len(consistency)} hashes,"
        f" {elapsed * 1000:.1f} ms, verified"
    )
    await store.close()


def _verify(source: LogSource, verifier: VerifierKey, which: str) -> None:
    modes = {"both": (None, 1), "workers": (None,), "none": ()}[which]
    for label, workers in (("worker processes (default)", None), ("one process", 1)):
        if workers not in modes:
            continue
        report = verify_log(source, verifier, None, ORIGIN, workers=workers)
        assert report.ok, report.summary()
        print(
            f"  verify, {label:26} {report.records / report.seconds:9.0f} records/s"
            f"  ({report.seconds:.2f} s, {report.checkpoints} checkpoints)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dsn", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--dir", type=Path, default=None, help="filesystem to use (SQLite)")
    parser.add_argument("--keep", action="store_true", help="print where the log is and keep it")
    parser.add_argument(
        "--verify",
        choices=("both", "workers", "none"),
        default="both",
        help="verification runs to time: with workers and in one process, or fewer",
    )
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    verifier = VerifierKey(ORIGIN, key.public_key())
    started = time.perf_counter()
    if args.store == "postgres":
        schema = f"obmin_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(build_postgres(args.dsn, schema, args.records, args.checkpoint_every, key))
        print(
            f"PostgreSQL: built {args.records} records in schema {schema}"
            f" in {time.perf_counter() - started:.1f} s"
        )
        try:
            _verify(PostgresSource(args.dsn, ORIGIN, schema), verifier, args.verify)
            asyncio.run(
                lookups_and_proofs(
                    lambda: PostgresAuditStore(args.dsn, ORIGIN, schema=schema, read_only=True),
                    args.records,
                )
            )
        finally:
            if args.keep:
                print(f"kept schema {schema}")
            else:
                asyncio.run(_drop(args.dsn, schema))
        return
    directory = Path(tempfile.mkdtemp(prefix="obmin-bench-", dir=args.dir))
    path = directory / "audit.db"
    build_sqlite(path, args.records, args.checkpoint_every, key)
    size_mb = path.stat().st_size / 1e6
    print(
        f"SQLite: built {args.records} records ({size_mb:.0f} MB)"
        f" in {time.perf_counter() - started:.1f} s"
    )
    try:
        _verify(SqliteSource(path), verifier, args.verify)
        asyncio.run(
            lookups_and_proofs(lambda: SqliteAuditStore(path, read_only=True), args.records)
        )
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            path.unlink()
            for suffix in ("-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            directory.rmdir()


async def _drop(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
