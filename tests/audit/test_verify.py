"""``obmin audit verify`` on real logs written by the real store and checkpointer, and on
the same logs tampered with in the database, the way an intruder with the database would.
Every test runs against a SQLite log and a PostgreSQL log.

Every log here: 50 records; checkpoints at sizes 0, 20, 40 and 50, signed by the log key.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    AuditError,
    BodyBinding,
    Checkpointer,
    InvalidCheckpoint,
    LogSource,
    PostgresSource,
    SqliteSource,
    VerifierKey,
    leaf_hash,
    sign_checkpoint,
    verify_log,
    verify_log_cli,
)
from gateway.audit.columns import QUERY_COLUMNS, columns_of_document
from gateway.settings import AuditSettings, KeySettings, Settings
from tests.audit.conftest import ORIGIN, StoreMaker
from tests.audit.drafts import exchange
from tests.postgres import run_in


@dataclass
class Log:
    """A closed, checkpointed log, and raw access to its database for tampering."""

    source: LogSource
    path: Path | None
    schema: str | None

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders); its rows."""
        if self.schema is not None:
            return run_in(self.schema, sql, *params)
        assert self.path is not None
        with _db(self.path) as conn:
            return conn.execute(sql, params).fetchall()

    def edit(self, seq: int, *, rehash: bool = False, **changes: object) -> None:
        """Change fields of a record's canonical JSON in place; with ``rehash``, also its
        leaf hash and query columns, as a thorough intruder would."""
        ((canonical,),) = self.rows("SELECT canonical FROM records WHERE seq = ?", seq)
        document = orjson.loads(canonical)
        document.update(changes)
        edited = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        self.rows("UPDATE records SET canonical = ? WHERE seq = ?", edited, seq)
        if rehash:
            columns = ", ".join(f"{name} = ?" for name in QUERY_COLUMNS)
            self.rows(
                f"UPDATE records SET leaf_hash = ?, {columns} WHERE seq = ?",
                leaf_hash(edited),
                *columns_of_document(document),
                seq,
            )

    def verify(self, key: Ed25519PrivateKey, origin: str = ORIGIN, **options: Any) -> Any:
        return verify_log(self.source, key.public_key(), ORIGIN, origin, **options)


@pytest.fixture
async def log(make_store: StoreMaker, log_key: Ed25519PrivateKey) -> Log:
    """A closed, checkpointed log of 50 records (two of them with a stored body)."""
    store = await make_store.open()
    checkpointer = Checkpointer(store, log_key, origin=ORIGIN, every_records=10**6)
    await checkpointer.start()
    for i in range(25):
        await store.append(exchange(f"m-{i}", policy="plain" if i == 3 else "digest"))
        if i in (9, 19):
            await checkpointer.checkpoint()
    await checkpointer.stop()
    await store.close()
    pg = make_store.postgres
    if pg is not None:
        return Log(PostgresSource(pg.dsn, ORIGIN, pg.schema), None, pg.schema)
    return Log(SqliteSource(make_store.path), make_store.path, None)


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def test_a_clean_log_verifies(log: Log, log_key: Ed25519PrivateKey) -> None:
    report = log.verify(log_key)
    assert report.ok, report.summary()
    assert (report.records, report.checkpoints, report.covered) == (50, 4, 50)
    ((root,),) = log.rows("SELECT root FROM checkpoints WHERE tree_size = 50")
    assert report.root == root
    assert "OK:" in report.summary() and "4 checkpoints verified" in report.summary()
    assert report.bodies_checked == 2 and report.final is not None


def test_an_edited_field_names_its_record(log: Log, log_key: Ed25519PrivateKey) -> None:
    log.edit(13, peer="10.66.66.66")
    report = log.verify(log_key)
    assert not report.ok
    assert report.first_bad_seq == 13
    assert "leaf hash" in (report.problem or "")
    assert "first bad record seq 13" in report.summary()


def test_an_edit_with_a_recomputed_leaf_hash_is_caught_by_the_checkpoint(
    log: Log, log_key: Ed25519PrivateKey
) -> None:
    log.edit(27, rehash=True, user_id="UA:0000000000")
    report = log.verify(log_key)
    assert (report.first_bad_seq, report.bad_checkpoint) == (20, 40)
    assert "from seq 20 to 39" in (report.problem or "")


def test_a_deleted_record_is_named(log: Log, log_key: Ed25519PrivateKey) -> None:
    log.rows("DELETE FROM records WHERE seq = 7")
    report = log.verify(log_key)
    assert report.first_bad_seq == 7
    assert "missing" in (report.problem or "")


def test_two_swapped_records_name_the_first(log: Log, log_key: Ed25519PrivateKey) -> None:
    columns = [*QUERY_COLUMNS, "canonical", "leaf_hash"]
    select = f"SELECT {', '.join(columns)} FROM records WHERE seq = ?"
    (four,) = log.rows(select, 4)
    (nine,) = log.rows(select, 9)
    assignments = ", ".join(f"{c} = ?" for c in columns)
    log.rows(f"UPDATE records SET {assignments} WHERE seq = ?", *nine, 4)
    log.rows(f"UPDATE records SET {assignments} WHERE seq = ?", *four, 9)
    report = log.verify(log_key)
    assert report.first_bad_seq == 4
    assert "says seq 9" in (report.problem or "")


def test_truncation_after_a_checkpoint_is_caught(log: Log, log_key: Ed25519PrivateKey) -> None:
    log.rows("DELETE FROM records WHERE seq >= 45")
    report = log.verify(log_key)
    assert report.first_bad_seq == 45
    assert "removed" in (report.problem or "") or "missing" in (report.problem or "")


def test_a_replaced_checkpoint_signature_is_caught(log: Log, log_key: Ed25519PrivateKey) -> None:
    ((note,),) = log.rows("SELECT note FROM checkpoints WHERE tree_size = 40")
    root = base64.b64decode(note.split("\n")[2])
    forged = sign_checkpoint(ORIGIN, 40, root, Ed25519PrivateKey.generate(), ORIGIN).note
    log.rows("UPDATE checkpoints SET note = ? WHERE tree_size = 40", forged)
    report = log.verify(log_key)
    assert (report.first_bad_seq, report.bad_checkpoint) == (20, 40)
    assert "checkpoint 40" in (report.problem or "")

    body, line = note.split("\n\n")  # same key ID, garbage signature bytes
    name, blob = line.rstrip("\n").rsplit(" ", 1)
    garbage = base64.b64encode(base64.b64decode(blob)[:4] + bytes(64)).decode()
    log.rows(
        "UPDATE checkpoints SET note = ? WHERE tree_size = 40", f"{body}\n\n{name} {garbage}\n"
    )
    report = log.verify(log_key)
    assert report.bad_checkpoint == 40 and "does not verify" in (report.problem or "")


def test_a_checkpoint_row_that_disagrees_with_its_note(
    log: Log, log_key: Ed25519PrivateKey
) -> None:
    log.rows("UPDATE checkpoints SET root = ? WHERE tree_size = 20", bytes(32))
    report = log.verify(log_key)
    assert (report.first_bad_seq, report.bad_checkpoint) == (0, 20)
    assert "differs from its signed note" in (report.problem or "")


@pytest.mark.parametrize(
    ("column", "value"),
    [("client", "SEVDEIR-TEST/GOV/666/X"), ("subject_id", "UA-0"), ("http_status", 404)],
)
def test_an_edited_query_column_is_named(
    log: Log, log_key: Ed25519PrivateKey, column: str, value: object
) -> None:
    log.rows(f"UPDATE records SET {column} = ? WHERE seq = 3", value)
    report = log.verify(log_key)
    assert report.first_bad_seq == 3
    assert f"{column} column" in (report.problem or "")


def test_a_tampered_stored_body_is_named(log: Log, log_key: Ed25519PrivateKey) -> None:
    ((seq,),) = log.rows("SELECT min(seq) FROM records WHERE body IS NOT NULL")
    log.rows("UPDATE records SET body = ? WHERE seq = ?", b"<Envelope>other</Envelope>", seq)
    report = log.verify(log_key)
    assert report.first_bad_seq == seq == 6
    assert "body" in (report.problem or "")


def test_non_canonical_bytes_are_named(log: Log, log_key: Ed25519PrivateKey) -> None:
    ((canonical,),) = log.rows("SELECT canonical FROM records WHERE seq = 11")
    spaced = orjson.dumps(orjson.loads(canonical), option=orjson.OPT_INDENT_2)
    log.rows(
        "UPDATE records SET canonical = ?, leaf_hash = ? WHERE seq = 11", spaced, leaf_hash(spaced)
    )
    report = log.verify(log_key)
    assert report.first_bad_seq == 11
    assert "canonical" in (report.problem or "")


def test_the_wrong_key_or_origin_fails_at_the_first_checkpoint(
    log: Log, log_key: Ed25519PrivateKey
) -> None:
    report = log.verify(Ed25519PrivateKey.generate())
    assert (report.first_bad_seq, report.bad_checkpoint) == (0, 0)
    report = log.verify(log_key, origin="another/origin")
    assert report.bad_checkpoint == 0 and "another/origin" in (report.problem or "")


def test_worker_processes_report_the_same(log: Log, log_key: Ed25519PrivateKey) -> None:
    assert log.verify(log_key, workers=2).ok
    log.edit(33, outcome="fault")
    report = log.verify(log_key, workers=2)
    assert report.first_bad_seq == 33 and "leaf hash" in (report.problem or "")


def test_timestamp_tokens_are_checked_by_the_hook(log: Log, log_key: Ed25519PrivateKey) -> None:
    log.rows("UPDATE checkpoints SET timestamp_token = ? WHERE tree_size IN (20, 40)", b"good")
    report = log.verify(log_key)
    assert report.ok and (report.timestamps, report.timestamps_not_checked) == (0, 2)
    seen: list[tuple[str, bytes]] = []

    def check(note: str, token: bytes) -> None:
        seen.append((note, token))
        if token != b"good":
            raise InvalidCheckpoint("the token is not over this checkpoint")

    report = log.verify(log_key, timestamp_check=check)
    assert report.ok and report.timestamps == 2
    assert [note.split("\n")[1] for note, _ in seen] == ["20", "40"]
    log.rows("UPDATE checkpoints SET timestamp_token = ? WHERE tree_size = 40", b"forged")
    report = log.verify(log_key, timestamp_check=check)
    assert (report.first_bad_seq, report.bad_checkpoint) == (20, 40)
    assert "timestamp token is bad: the token is not over" in (report.problem or "")


def _open_body(envelope: bytes, binding: BodyBinding) -> bytes:
    """The evidence branch's envelope, reduced to its idea: a key id byte, then XORed bytes;
    opened for a record, it must be that record's plaintext (as `BodyKeyring.open` checks)."""
    if envelope[:1] != b"k":
        raise AuditError("unknown key id")
    plain = bytes(b ^ 0x5A for b in envelope[1:])
    if hashlib.sha512(plain).digest() != binding.digest:
        raise AuditError("the plaintext does not match the record's body_digest")
    return plain


def test_encrypted_bodies_are_checked_when_they_can_be_opened(
    log: Log, log_key: Ed25519PrivateKey
) -> None:
    ((seq, canonical),) = log.rows("SELECT seq, canonical FROM records WHERE seq = 21")
    document = orjson.loads(canonical)
    plain = b"<Envelope>person</Envelope>"  # the body make_draft digests
    document["body_policy"] = "encrypted"
    edited = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    envelope = b"k" + bytes(b ^ 0x5A for b in plain)
    # An honest record under policy encrypted, but not the one the checkpoints signed: so
    # check the body verdicts on the record checks, before the tree's.
    log.rows(
        "UPDATE records SET canonical = ?, leaf_hash = ?, body = ? WHERE seq = ?",
        edited,
        leaf_hash(edited),
        envelope,
        seq,
    )
    report = log.verify(log_key)
    assert report.bad_checkpoint == 40  # the edit itself is caught by the tree
    assert report.bodies_not_checked == 1
    report = log.verify(log_key, open_body=_open_body)
    assert report.bodies_checked == 3 and report.bodies_not_checked == 0
    log.rows("UPDATE records SET body = ? WHERE seq = ?", b"x" + envelope[1:], seq)
    report = log.verify(log_key, open_body=_open_body)
    assert report.first_bad_seq == 21 and "cannot be opened: unknown key id" in (
        report.problem or ""
    )
    log.rows("UPDATE records SET body = ? WHERE seq = ?", envelope[:-1] + b"\x00", seq)
    report = log.verify(log_key, open_body=_open_body)
    assert report.first_bad_seq == 21 and "does not match" in (report.problem or "")


def test_a_missing_file_is_an_error(tmp_path: Path, log_key: Ed25519PrivateKey) -> None:
    with pytest.raises(AuditError, match="no audit log"):
        verify_log(tmp_path / "none.db", log_key.public_key(), ORIGIN, ORIGIN)


def _settings(tmp_path: Path, log: Log, key_file: Path | None) -> Settings:
    registry = tmp_path / "registry"
    registry.mkdir(exist_ok=True)
    keys = KeySettings(
        signing_certificate=tmp_path / "sign.crt",
        signing_key=tmp_path / "sign.key",
        log_key=key_file,
    )
    if isinstance(log.source, PostgresSource):
        audit = AuditSettings(
            store="postgres", dsn=log.source.dsn, postgres_schema=log.source.schema, origin=ORIGIN
        )
    else:
        audit = AuditSettings(path=log.path or tmp_path / "absent.db", origin=ORIGIN)
    return Settings(registry_dir=registry, keys=keys, audit=audit)


def test_the_cli_glue(log: Log, log_key: Ed25519PrivateKey, tmp_path: Path) -> None:
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

    log.edit(2, peer="x")
    status, text = verify_log_cli(_settings(tmp_path, log, key_file))
    assert status == 1 and "first bad record seq 2" in text


def test_the_cli_names_an_absent_sqlite_log(log_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    absent = Log(SqliteSource(tmp_path / "absent.db"), tmp_path / "absent.db", None)
    vkey = VerifierKey(ORIGIN, log_key.public_key()).to_vkey()
    status, text = verify_log_cli(_settings(tmp_path, absent, None), vkey=vkey)
    assert status == 1 and "FAILED" in text and "absent.db" in text
