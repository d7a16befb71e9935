"""``obmin audit verify`` on real logs written by the real store and checkpointer, and on
the same logs tampered with in the database, the way an intruder with the file would.

Every log here: 50 records; checkpoints at sizes 0, 20, 40 and 50, signed by the log key.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    AuditError,
    Checkpointer,
    SqliteAuditStore,
    VerifierKey,
    leaf_hash,
    sign_checkpoint,
    verify_log,
    verify_log_cli,
)
from gateway.settings import AuditSettings, KeySettings, Settings
from tests.audit.drafts import exchange

ORIGIN = "obmin.test/gateway"


@pytest.fixture
async def log(db_path: Path, log_key: Ed25519PrivateKey) -> Path:
    """A closed, checkpointed log of 50 records (two of them with a stored body)."""
    store = SqliteAuditStore(db_path)
    await store.open()
    checkpointer = Checkpointer(store, log_key, origin=ORIGIN, every_records=10**6)
    await checkpointer.start()
    for i in range(25):
        await store.append(exchange(f"m-{i}", policy="plain" if i == 3 else "digest"))
        if i in (9, 19):
            await checkpointer.checkpoint()
    await checkpointer.stop()
    await store.close()
    return db_path


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _edit(conn: sqlite3.Connection, seq: int, *, rehash: bool = False, **changes: object) -> None:
    """Change fields of a record's canonical JSON in place (and its leaf hash if asked)."""
    (canonical,) = conn.execute("SELECT canonical FROM records WHERE seq = ?", (seq,)).fetchone()
    document = orjson.loads(canonical)
    document.update(changes)
    edited = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    conn.execute("UPDATE records SET canonical = ? WHERE seq = ?", (edited, seq))
    if rehash:
        conn.execute("UPDATE records SET leaf_hash = ? WHERE seq = ?", (leaf_hash(edited), seq))


def test_a_clean_log_verifies(log: Path, log_key: Ed25519PrivateKey) -> None:
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert report.ok, report.summary()
    assert (report.records, report.checkpoints, report.covered) == (50, 4, 50)
    with _db(log) as conn:
        (root,) = conn.execute("SELECT root FROM checkpoints WHERE tree_size = 50").fetchone()
    assert report.root == root
    assert "OK:" in report.summary() and "4 checkpoints verified" in report.summary()


def test_an_edited_field_names_its_record(log: Path, log_key: Ed25519PrivateKey) -> None:
    with _db(log) as conn:
        _edit(conn, 13, peer="10.66.66.66")
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert not report.ok
    assert report.first_bad_seq == 13
    assert "leaf hash" in (report.problem or "")
    assert "first bad record seq 13" in report.summary()


def test_an_edit_with_a_recomputed_leaf_hash_is_caught_by_the_checkpoint(
    log: Path, log_key: Ed25519PrivateKey
) -> None:
    with _db(log) as conn:
        _edit(conn, 27, rehash=True, user_id="UA:0000000000")
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert (report.first_bad_seq, report.bad_checkpoint) == (20, 40)
    assert "from seq 20 to 39" in (report.problem or "")


def test_a_deleted_record_is_named(log: Path, log_key: Ed25519PrivateKey) -> None:
    with _db(log) as conn:
        conn.execute("DELETE FROM records WHERE seq = 7")
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert report.first_bad_seq == 7
    assert "missing" in (report.problem or "")


def test_two_swapped_records_name_the_first(log: Path, log_key: Ed25519PrivateKey) -> None:
    columns = "request_id, message_id, client, service, time, direction, canonical, leaf_hash"
    with _db(log) as conn:
        four = conn.execute(f"SELECT {columns} FROM records WHERE seq = 4").fetchone()
        nine = conn.execute(f"SELECT {columns} FROM records WHERE seq = 9").fetchone()
        assignments = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
        conn.execute(f"UPDATE records SET {assignments} WHERE seq = 4", nine)
        conn.execute(f"UPDATE records SET {assignments} WHERE seq = 9", four)
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert report.first_bad_seq == 4
    assert "says seq 9" in (report.problem or "")


def test_truncation_after_a_checkpoint_is_caught(log: Path, log_key: Ed25519PrivateKey) -> None:
    with _db(log) as conn:
        conn.execute("DELETE FROM records WHERE seq >= 45")
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert (report.first_bad_seq, report.bad_checkpoint) == (45, 50)
    assert "removed" in (report.problem or "")


def test_a_replaced_checkpoint_signature_is_caught(log: Path, log_key: Ed25519PrivateKey) -> None:
    with _db(log) as conn:
        (note,) = conn.execute("SELECT note FROM checkpoints WHERE tree_size = 40").fetchone()
        root = base64.b64decode(note.split("\n")[2])
        forged = sign_checkpoint(ORIGIN, 40, root, Ed25519PrivateKey.generate(), ORIGIN).note
        conn.execute("UPDATE checkpoints SET note = ? WHERE tree_size = 40", (forged,))
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert (report.first_bad_seq, report.bad_checkpoint) == (20, 40)
    assert "checkpoint 40" in (report.problem or "")

    with _db(log) as conn:  # same key ID, garbage signature bytes
        body, line = note.split("\n\n")
        name, blob = line.rstrip("\n").rsplit(" ", 1)
        raw = base64.b64decode(blob)
        garbage = base64.b64encode(raw[:4] + bytes(64)).decode()
        conn.execute(
            "UPDATE checkpoints SET note = ? WHERE tree_size = 40",
            (f"{body}\n\n{name} {garbage}\n",),
        )
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert report.bad_checkpoint == 40 and "does not verify" in (report.problem or "")


def test_a_checkpoint_row_that_disagrees_with_its_note(
    log: Path, log_key: Ed25519PrivateKey
) -> None:
    with _db(log) as conn:
        conn.execute("UPDATE checkpoints SET root = zeroblob(32) WHERE tree_size = 20")
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert (report.first_bad_seq, report.bad_checkpoint) == (0, 20)
    assert "differs from its signed note" in (report.problem or "")


def test_an_edited_query_column_is_named(log: Path, log_key: Ed25519PrivateKey) -> None:
    with _db(log) as conn:
        conn.execute("UPDATE records SET client = 'SEVDEIR-TEST/GOV/666/X' WHERE seq = 3")
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert report.first_bad_seq == 3
    assert "client column" in (report.problem or "")


def test_a_tampered_stored_body_is_named(log: Path, log_key: Ed25519PrivateKey) -> None:
    with _db(log) as conn:
        (seq,) = conn.execute("SELECT min(seq) FROM records WHERE body IS NOT NULL").fetchone()
        conn.execute(
            "UPDATE records SET body = ? WHERE seq = ?", (b"<Envelope>other</Envelope>", seq)
        )
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert report.first_bad_seq == seq == 6
    assert "body" in (report.problem or "")


def test_non_canonical_bytes_are_named(log: Path, log_key: Ed25519PrivateKey) -> None:
    with _db(log) as conn:  # same JSON value, other bytes (and a matching leaf hash)
        (canonical,) = conn.execute("SELECT canonical FROM records WHERE seq = 11").fetchone()
        spaced = orjson.dumps(orjson.loads(canonical), option=orjson.OPT_INDENT_2)
        conn.execute(
            "UPDATE records SET canonical = ?, leaf_hash = ? WHERE seq = 11",
            (spaced, leaf_hash(spaced)),
        )
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN)
    assert report.first_bad_seq == 11
    assert "canonical" in (report.problem or "")


def test_the_wrong_key_or_origin_fails_at_the_first_checkpoint(
    log: Path, log_key: Ed25519PrivateKey
) -> None:
    other = Ed25519PrivateKey.generate()
    report = verify_log(log, other.public_key(), ORIGIN, ORIGIN)
    assert (report.first_bad_seq, report.bad_checkpoint) == (0, 0)
    report = verify_log(log, log_key.public_key(), ORIGIN, "another/origin")
    assert report.bad_checkpoint == 0 and "another/origin" in (report.problem or "")


def test_worker_processes_report_the_same(log: Path, log_key: Ed25519PrivateKey) -> None:
    assert verify_log(log, log_key.public_key(), ORIGIN, ORIGIN, workers=2).ok
    with _db(log) as conn:
        _edit(conn, 33, outcome="fault")
    report = verify_log(log, log_key.public_key(), ORIGIN, ORIGIN, workers=2)
    assert report.first_bad_seq == 33 and "leaf hash" in (report.problem or "")


def test_a_missing_file_is_an_error(tmp_path: Path, log_key: Ed25519PrivateKey) -> None:
    with pytest.raises(AuditError, match="no audit log"):
        verify_log(tmp_path / "none.db", log_key.public_key(), ORIGIN, ORIGIN)


def _settings(tmp_path: Path, log: Path, key_file: Path | None) -> Settings:
    registry = tmp_path / "registry"
    registry.mkdir(exist_ok=True)
    keys = KeySettings(
        signing_certificate=tmp_path / "sign.crt",
        signing_key=tmp_path / "sign.key",
        log_key=key_file,
    )
    return Settings(registry_dir=registry, keys=keys, audit=AuditSettings(path=log, origin=ORIGIN))


def test_the_cli_glue(log: Path, log_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    key_file = tmp_path / "log.key"
    key_file.write_bytes(
        log_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    status, text = verify_log_cli(_settings(tmp_path, log, key_file))
    vkey = VerifierKey(ORIGIN, log_key.public_key()).to_vkey()
    assert status == 0 and "OK:" in text and vkey in text
    # An auditor holds only the vkey.
    assert verify_log_cli(_settings(tmp_path, log, None), vkey=vkey)[0] == 0
    status, text = verify_log_cli(_settings(tmp_path, log, None))
    assert status == 1 and "keys.log_key" in text

    with _db(log) as conn:
        _edit(conn, 2, peer="x")
    status, text = verify_log_cli(_settings(tmp_path, log, key_file))
    assert status == 1 and "first bad record seq 2" in text
    status, text = verify_log_cli(_settings(tmp_path, tmp_path / "absent.db", key_file))
    assert status == 1 and "FAILED" in text
