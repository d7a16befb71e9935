"""Speed of ``obmin audit verify`` and of Merkle proofs on a large audit log.

Builds a log of ``--records`` realistic records (default 1,000,000) in a fresh SQLite file
through the store's schema, inserting rows directly in large batches (the append path has
its own benchmark, ``bench/audit_append.py``), with a signed checkpoint every
``--checkpoint-every`` records as the checkpointer would make them. Then measures:

* full verification (every record's canonical JSON and leaf hash, the whole tree, every
  checkpoint signature), with worker processes and in one process;
* an inclusion proof for a record against the latest checkpoint, and a consistency proof
  between two checkpoints, computed from the stored leaf hashes and verified.

    .venv/bin/python bench/audit_verify.py [--records 1000000] [--dir /var/tmp] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AuditRecordDraft, SqliteAuditStore, body_fields, format_time
from gateway.audit.checkpoint import VerifierKey, sign_checkpoint
from gateway.audit.merkle import CompactRange, hash_leaf, verify_consistency, verify_inclusion
from gateway.audit.sqlite_db import SqliteLog
from gateway.audit.store import StoredCheckpoint
from gateway.audit.verify import verify_log

ORIGIN = "bench.obmin.local/gateway"
BODY = b"<soap:Envelope>" + b"x" * 2000 + b"</soap:Envelope>"
INSERT = (
    "INSERT INTO records (seq, request_id, message_id, client, service, time, direction,"
    " canonical, leaf_hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
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
            auth_mode="signature",
            signer_thumbprint="ab" * 32,
            http_status=None if direction == "request" else 200,
            duration_ms=None if direction == "request" else 3.25,
            **body_fields(BODY, "digest"),
        )
        documents.append(orjson.loads(draft.to_record(0).to_canonical_json()))
    return documents


def build(path: Path, records: int, checkpoint_every: int, key: Ed25519PrivateKey) -> None:
    """Write ``records`` records and their checkpoints into a new log at ``path``."""
    log = SqliteLog(path, writable=True, create=True, busy_timeout=5.0)
    conn = log.connect()  # creates the schema
    conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture, not a log to keep
    templates = _templates()
    start_time = datetime(2025, 1, 1, tzinfo=UTC)
    compact = CompactRange()
    batch: list[tuple[object, ...]] = []
    pending: list[StoredCheckpoint] = []
    for seq in range(records):
        document = templates[seq & 1]
        exchange = seq >> 1
        request_id = f"{exchange & 0xFFFFFFFF:08x}-0000-4000-8000-{exchange:012x}"
        time_text = format_time(start_time + timedelta(milliseconds=seq))
        document["seq"], document["request_id"] = seq, request_id
        document["message_id"], document["time"] = f"m-{exchange}", time_text
        canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        leaf = hash_leaf(canonical)
        compact.append(leaf)
        batch.append(
            (
                seq,
                request_id,
                document["message_id"],
                document["client"],
                document["service"],
                time_text,
                document["direction"],
                canonical,
                leaf,
            )
        )
        if (seq + 1) % checkpoint_every == 0 or seq == records - 1:
            checkpoint = sign_checkpoint(ORIGIN, compact.size, compact.root(), key, ORIGIN)
            pending.append(StoredCheckpoint(checkpoint, datetime.now(UTC), compact.copy()))
        if len(batch) == 50_000 or seq == records - 1:
            conn.execute("BEGIN")
            conn.executemany(INSERT, batch)
            conn.execute("COMMIT")
            batch.clear()
            for stored in pending:  # once the records they cover are in
                log.add_checkpoint(stored)
            pending.clear()
    log.close()


async def proofs(path: Path, key: VerifierKey, records: int) -> None:
    """Time an inclusion and a consistency proof from the store, and verify them."""
    store = SqliteAuditStore(path, read_only=True)
    await store.open()
    try:
        latest = await store.latest_checkpoint()
        assert latest is not None
        size, root = latest.checkpoint.size, latest.checkpoint.root
        index = records * 3 // 7
        for label, at in (("first, cold", index), ("next, cached nodes", records - 12_345)):
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
        old_root.extend(await store.leaf_hashes(0, old))
        started = time.perf_counter()
        consistency = await store.consistency_proof(old, size)
        elapsed = time.perf_counter() - started
        verify_consistency(old, size, old_root.root(), root, consistency)
        print(
            f"  consistency proof {old} -> {size}: {len(consistency)} hashes,"
            f" {elapsed * 1000:.0f} ms, verified"
        )
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="filesystem to use")
    parser.add_argument("--keep", action="store_true", help="print the path and keep the log")
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    verifier = VerifierKey(ORIGIN, key.public_key())
    directory = Path(tempfile.mkdtemp(prefix="obmin-bench-", dir=args.dir))
    path = directory / "audit.db"
    started = time.perf_counter()
    build(path, args.records, args.checkpoint_every, key)
    size_mb = path.stat().st_size / 1e6
    print(
        f"built {args.records} records ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f} s"
    )
    for label, workers in (("worker processes (default)", None), ("one process", 1)):
        report = verify_log(path, verifier, None, ORIGIN, workers=workers)
        assert report.ok, report.summary()
        print(
            f"  verify, {label:26} {report.records / report.seconds:9.0f} records/s"
            f"  ({report.seconds:.2f} s, {report.checkpoints} checkpoints)"
        )
    asyncio.run(proofs(path, verifier, args.records))
    if args.keep:
        print(f"kept {path}")
    else:
        path.unlink()
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        directory.rmdir()


if __name__ == "__main__":
    main()
