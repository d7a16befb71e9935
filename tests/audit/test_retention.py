"""Retention (SPEC 8) on both stores: old records move to self-verifying archives cut at
checkpoints; the live log and its archives verify as one log; a missing or altered archive
is named; proofs about the records left keep working; nothing leaves the database before a
verified archive of it is durable.

Every log here: 30 records 40 days old and 10 from today, a checkpoint every 10 records.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import shutil
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    AuditError,
    Checkpointer,
    PostgresSource,
    RecordsArchived,
    RetentionStore,
    SqliteSource,
    VerifierKey,
    leaf_hash,
    root_hash,
    sign_checkpoint,
    verify_archive,
    verify_archive_cli,
    verify_chain,
    verify_consistency,
    verify_inclusion,
    verify_log,
    verify_log_cli,
)
from gateway.audit.archive_format import archives_in
from gateway.audit.archive_lookup import ArchiveDirectory
from gateway.audit.evidence_export import EvidenceNotFound, EvidenceSigner, collect_evidence
from gateway.audit.evidence_verify import verify_evidence
from gateway.audit.retention import _archive, archive_cli, archive_expired
from gateway.audit.verify_sources import LogSource
from gateway.settings import AuditSettings, KeySettings, Settings
from security import load_certificate, load_private_key
from tests.audit.conftest import ORIGIN, StoreMaker
from tests.audit.drafts import NOW, exchange

OLD = NOW - timedelta(days=40)
CUTOFF = NOW - timedelta(days=30)


async def _log(store: RetentionStore, key: Ed25519PrivateKey, old: int = 30) -> Checkpointer:
    """``old`` old records then young ones up to 40; checkpoints at 10, 20, 30, 40."""
    checkpointer = Checkpointer(store, key, origin=ORIGIN, every_records=10**6)
    await checkpointer.start()
    for seq in range(0, 40, 2):
        await store.append(exchange(f"m-{seq}", time=OLD if seq < old else NOW))
        if (seq + 2) % 10 == 0:
            await checkpointer.checkpoint()
    return checkpointer


def _live(make_store: StoreMaker) -> LogSource:
    pg = make_store.postgres
    if pg is not None:
        return PostgresSource(pg.dsn, ORIGIN, pg.schema)
    return SqliteSource(make_store.path)


def _vkey(key: Ed25519PrivateKey) -> VerifierKey:
    return VerifierKey(ORIGIN, key.public_key())


async def _archive_old(
    store: RetentionStore, key: Ed25519PrivateKey, directory: Path, **options: int
) -> list[Path]:
    outcomes = await archive_expired(
        store,
        origin=ORIGIN,
        key=_vkey(key),
        directory=directory,
        cutoff=CUTOFF,
        max_records=options.get("max_records", 10),
    )
    return [outcome.path for outcome in outcomes]


async def test_old_records_move_to_archives_and_the_log_stays_whole(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    store = await make_store.open()
    checkpointer = await _log(store, log_key)
    leaves = await store.leaf_hashes(0, 100)
    paths = await _archive_old(store, log_key, tmp_path / "archive")
    assert [p.name for p in paths] == [
        f"obmin.test_gateway.{a:016d}-{b:016d}.archive.db" for a, b in ((0, 10), (10, 20), (20, 30))
    ]
    assert (await store.tree_base()).size == 30 and await store.count() == 40
    assert [r.seq for r in await store.query(limit=100)] == list(range(30, 40))
    assert await store.leaf_hashes(30, 100) == leaves[30:]

    # Each archive verifies alone, offline, with only the log's public key.
    for path in paths:
        report = verify_archive(path, _vkey(log_key))
        assert report.ok, report.summary()
        assert report.covered == report.records
    # Proofs about the records still in the database keep working.
    latest = await store.latest_checkpoint()
    assert latest is not None and latest.checkpoint.size == 40
    assert latest.checkpoint.root == root_hash(leaves)
    for index in range(30, 40):
        proof = await store.inclusion_proof(index, 40)
        verify_inclusion(leaves[index], index, 40, proof, root_hash(leaves))
    proof = await store.consistency_proof(30, 40)
    verify_consistency(30, 40, root_hash(leaves[:30]), root_hash(leaves), proof)
    with pytest.raises(RecordsArchived):
        await store.inclusion_proof(5, 40)
    with pytest.raises(RecordsArchived):
        await store.consistency_proof(20, 40)

    # The log goes on: new records, new checkpoints, a restarted checkpointer.
    await store.append(exchange("new"))
    await checkpointer.stop()
    restarted = Checkpointer(store, Ed25519PrivateKey.generate(), origin=ORIGIN)
    await restarted.start()  # not its key: it rebuilds the tree from the base, not from 0
    await restarted.stop()
    await store.close()

    live = await asyncio.to_thread(verify_log, _live(make_store), _vkey(log_key), None, ORIGIN)
    assert live.ok and live.start == 30 and "are in archives" in live.summary()
    chain = await asyncio.to_thread(verify_chain, paths, _live(make_store), _vkey(log_key), ORIGIN)
    assert chain.ok, chain.summary()
    assert [piece.start for piece in chain.pieces] == [0, 10, 20, 30]
    assert chain.pieces[-1].records == 42 and "4 pieces form one log of 42" in chain.summary()


async def test_records_stay_until_a_checkpoint_covers_the_boundary(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    store = await make_store.open()
    checkpointer = await _log(store, log_key, old=34)  # old records end between 30 and 40
    paths = await _archive_old(store, log_key, tmp_path, max_records=1000)
    assert [p.name.split(".")[-3] for p in paths] == ["0000000000000000-0000000000000030"]
    assert (await store.tree_base()).size == 30
    assert await _archive_old(store, log_key, tmp_path) == []  # nothing more is old enough
    await checkpointer.stop()


@pytest.fixture
async def archived(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tmp_path: Path
) -> tuple[list[Path], LogSource]:
    store = await make_store.open()
    checkpointer = await _log(store, log_key)
    paths = await _archive_old(store, log_key, tmp_path / "archive")
    await checkpointer.stop()
    await store.close()
    return paths, _live(make_store)


def _edit_archive(path: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)
    conn.close()


def test_a_missing_archive_is_named(
    archived: tuple[list[Path], LogSource], log_key: Ed25519PrivateKey
) -> None:
    paths, live = archived
    chain = verify_chain([paths[0], paths[2]], live, _vkey(log_key), ORIGIN)
    assert chain.first_bad_seq == 10 and chain.bad_piece == str(paths[2])
    assert "records 10 to 19 are missing" in (chain.problem or "")
    chain = verify_chain(paths[:2], live, _vkey(log_key), ORIGIN)  # the newest one
    assert chain.first_bad_seq == 20 and "records 20 to 29 are missing" in (chain.problem or "")
    chain = verify_chain(paths[1:], live, _vkey(log_key), ORIGIN)  # the first one
    assert chain.first_bad_seq == 0 and "records 0 to 9 are missing" in (chain.problem or "")


def test_an_altered_archive_is_named(
    archived: tuple[list[Path], LogSource], log_key: Ed25519PrivateKey
) -> None:
    paths, live = archived
    with sqlite3.connect(paths[1]) as conn:
        (canonical,) = conn.execute("SELECT canonical FROM records WHERE seq = 14").fetchone()
    conn.close()
    document = orjson.loads(canonical)
    document["client"] = "SEVDEIR-TEST/GOV/666/FORGED"
    edited = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    _edit_archive(
        paths[1],
        "UPDATE records SET canonical = ?, leaf_hash = ?, client = ?, client_member = ?"
        " WHERE seq = 14",
        edited,
        leaf_hash(edited),
        "SEVDEIR-TEST/GOV/666/FORGED",
        "SEVDEIR-TEST/GOV/666",
    )
    chain = verify_chain(paths, live, _vkey(log_key), ORIGIN)
    assert chain.bad_piece == str(paths[1]) and chain.first_bad_seq == 10
    assert "checkpoint 20" in (chain.problem or "")
    alone = verify_archive(paths[1], _vkey(log_key))
    assert not alone.ok and alone.first_bad_seq == 10


def test_a_replaced_archive_signature_or_base_is_named(
    archived: tuple[list[Path], LogSource], log_key: Ed25519PrivateKey
) -> None:
    paths, live = archived
    with sqlite3.connect(paths[2]) as conn:
        (note,) = conn.execute("SELECT note FROM checkpoints WHERE tree_size = 30").fetchone()
    conn.close()
    root = base64.b64decode(note.split("\n")[2])
    forged = sign_checkpoint(ORIGIN, 30, root, Ed25519PrivateKey.generate(), ORIGIN).note
    _edit_archive(paths[2], "UPDATE checkpoints SET note = ? WHERE tree_size = 30", forged)
    chain = verify_chain(paths, live, _vkey(log_key), ORIGIN)
    assert chain.bad_piece == str(paths[2]) and "checkpoint 30" in (chain.problem or "")

    # An archive whose starting tree state was swapped: its own checkpoint at 10 says no.
    _edit_archive(paths[1], "UPDATE meta SET value = ? WHERE key = 'base_range'", "00" * 64)
    report = verify_archive(paths[1], _vkey(log_key))
    assert report.first_bad_seq == 10 and "where this log starts" in (report.problem or "")
    # ... and one without the checkpoint that vouches for its start.
    _edit_archive(paths[0], "DELETE FROM checkpoints WHERE tree_size = 10")
    report = verify_archive(paths[0], _vkey(log_key))
    assert report.first_bad_seq == 0 and "last signed checkpoint" in (report.problem or "")


def test_archives_are_plain_sqlite_files(
    archived: tuple[list[Path], LogSource], tmp_path: Path
) -> None:
    paths, _ = archived
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line tool is not installed")
    output = subprocess.run(
        [
            "sqlite3",
            str(paths[1]),
            "SELECT key, value FROM meta WHERE key IN ('format',"
            " 'first_seq', 'end_seq') ORDER BY key; SELECT count(*) FROM records;",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert output == ["end_seq|20", "first_seq|10", "format|obmin-audit-archive/1", "10"]
    assert not paths[1].with_name(paths[1].name + "-wal").exists()  # one self-contained file


async def test_an_archive_that_does_not_verify_keeps_the_records(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    store = await make_store.open()
    checkpointer = await _log(store, log_key)
    await checkpointer.stop()
    # Another key signed this log: the archive cannot be verified, so nothing moves.
    with pytest.raises(AuditError, match=r"did not verify.*stay in the database"):
        await _archive_old(store, Ed25519PrivateKey.generate(), tmp_path)
    assert archives_in(tmp_path) == [] and (await store.tree_base()).size == 0
    assert len(await store.query(limit=100)) == 40


async def test_an_interrupted_run_is_completed_by_the_next(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    store = await make_store.open()
    checkpointer = await _log(store, log_key)
    await checkpointer.stop()
    base = await store.tree_base()
    # A run stopped after writing its archive, before the records left the database ...
    _, final = await _archive(store, ORIGIN, _vkey(log_key), tmp_path, base, 10, None)
    outcomes = await archive_expired(
        store,
        origin=ORIGIN,
        key=_vkey(log_key),
        directory=tmp_path,
        cutoff=CUTOFF,
        max_records=10,
    )
    assert [(o.start, o.reused) for o in outcomes] == [(0, True), (10, False), (20, False)]
    # ... and one stopped after moving the base, before deleting the records.
    assert final.size == 10
    assert [r.seq for r in await store.query(limit=1)] == [30]


def _settings(tmp_path: Path, make_store: StoreMaker, key: Ed25519PrivateKey) -> Settings:
    key_file = tmp_path / "log.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "registry").mkdir(exist_ok=True)
    pg = make_store.postgres
    store: dict[str, object] = (
        {"store": "postgres", "dsn": pg.dsn, "postgres_schema": pg.schema}
        if pg is not None
        else {"path": make_store.path}
    )
    audit = AuditSettings.model_validate(
        {**store, "origin": ORIGIN, "archive_dir": tmp_path / "archive", "archive_max_records": 10}
    )
    keys = KeySettings(
        signing_certificate=tmp_path / "sign.crt",
        signing_key=tmp_path / "sign.key",
        log_key=key_file,
    )
    return Settings(registry_dir=tmp_path / "registry", keys=keys, audit=audit)


async def test_the_cli_archives_and_verifies_archives(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    store = await make_store.open()
    checkpointer = await _log(store, log_key)
    await checkpointer.stop()
    await store.close()
    settings = _settings(tmp_path, make_store, log_key)
    assert (await archive_cli(settings))[0] == 1  # no age configured or given
    status, text = await archive_cli(settings, older_than_days=3650)
    assert status == 0 and "nothing to archive" in text
    days = (NOW - CUTOFF).days + 0.0
    # Records are dated 2025; "older than 30 days" from now covers them all, young ones too,
    # up to the last checkpoint.
    status, text = await archive_cli(settings, older_than_days=days)
    assert status == 0 and text.count("archived records") == 4, text
    archive_dir = tmp_path / "archive"
    status, text = await asyncio.to_thread(verify_log_cli, settings, archives=archive_dir)
    assert status == 0 and "5 pieces form one log of 40 records" in text, text
    vkey = _vkey(log_key).to_vkey()
    status, text = verify_archive_cli(archives_in(archive_dir), vkey=vkey)
    assert status == 0 and text.count("OK:") == 4
    archives_in(archive_dir)[1].unlink()
    status, text = await asyncio.to_thread(verify_log_cli, settings, archives=archive_dir)
    assert status == 1 and "records 10 to 19 are missing" in text
    status, text = verify_log_cli(settings, archives=tmp_path / "nowhere")
    assert status == 1 and "does not exist" in text
    status, text = verify_archive_cli([tmp_path / "log.key"], vkey=vkey)
    assert status == 1 and "FAILED" in text


async def test_the_obmin_command_line(
    db_path: Path, log_key: Ed25519PrivateKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from gateway.audit import SqliteAuditStore
    from gateway.cli import main

    store = SqliteAuditStore(db_path)
    await store.open()
    checkpointer = await _log(store, log_key)
    await checkpointer.stop()
    await store.close()
    (tmp_path / "registry").mkdir()
    key_file = tmp_path / "log.key"
    key_file.write_bytes(
        log_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config = tmp_path / "gateway.yaml"
    settings = {
        "registry_dir": "registry",
        "keys": {"signing_certificate": "s.crt", "signing_key": "s.key", "log_key": "log.key"},
        "audit": {
            "path": str(db_path),
            "origin": ORIGIN,
            "archive_dir": "archive",
            "archive_max_records": 10,
        },
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")

    def obmin(*args: str) -> tuple[int, str]:
        code = main(list(args))
        return code, capsys.readouterr().out

    code, out = await asyncio.to_thread(
        obmin, "audit", "query", "-c", str(config), "--status", "200"
    )
    assert code == 0 and out.count("ok 200") == 20
    code, out = await asyncio.to_thread(
        obmin, "audit", "query", "-c", str(config), "--direction", "request", "--limit", "3"
    )
    assert code == 0 and len(out.splitlines()) == 4  # header and the newest three
    code, out = await asyncio.to_thread(
        obmin, "audit", "archive", "-c", str(config), "--older-than-days", "30"
    )
    assert code == 0 and out.count("archived records") == 4
    vkey = _vkey(log_key).to_vkey()
    archive_dir = tmp_path / "archive"
    code, out = await asyncio.to_thread(
        obmin, "audit", "verify", "-c", str(config), "--archives", str(archive_dir), "--vkey", vkey
    )
    assert code == 0 and "5 pieces form one log of 40 records" in out
    files = [str(p) for p in archives_in(archive_dir)]
    code, out = await asyncio.to_thread(obmin, "audit", "verify-archive", "--vkey", vkey, *files)
    assert code == 0 and out.count("OK:") == 4
    code, out = await asyncio.to_thread(obmin, "audit", "verify-archive", *files)
    assert code == 1 and "--vkey" in out


async def test_evidence_of_archived_exchanges_comes_from_their_archive(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tmp_path: Path, dev_pki: Path
) -> None:
    """An exchange wholly inside one archive is proved from it, against one of its own
    checkpoints; one a cut split (into two archives, or an archive and the live log) is
    refused with where each part lies."""
    store = await make_store.open()
    checkpointer = Checkpointer(store, log_key, origin=ORIGIN, every_records=10**6)
    await checkpointer.start()
    first, split_a, second, split_b = (exchange(f"m-{n}", time=OLD) for n in range(4))
    split_b[1] = dataclasses.replace(split_b[1], time=NOW)
    for drafts, checkpoint in (
        (first, False),  # 0, 1
        (split_a[:1], True),  # 2; checkpoint 3
        (split_a[1:] + second + split_b[:1], True),  # 3-6; checkpoint 7
        (split_b[1:], True),  # 7 (young); checkpoint 8
    ):
        await store.append(drafts)
        if checkpoint:
            await checkpointer.checkpoint()
    await checkpointer.stop()
    paths = await _archive_old(store, log_key, tmp_path / "archive", max_records=3)
    assert [p.name.split(".")[-3] for p in paths] == [
        "0000000000000000-0000000000000003",
        "0000000000000003-0000000000000007",
    ]
    signer = EvidenceSigner(
        key=load_private_key(dev_pki / "gateway" / "sign.key"),
        certificate=load_certificate(dev_pki / "gateway" / "sign.crt"),
        log_key=_vkey(log_key),
    )
    directory = ArchiveDirectory(tmp_path / "archive", ORIGIN)
    for drafts, size, seqs in ((first, 3, [0, 1]), (second, 7, [4, 5])):
        bundle = await collect_evidence(store, drafts[0].request_id, signer, archives=directory)
        report = verify_evidence(bundle, gateway_certificate=signer.certificate)
        assert report.tree_size == size and [r.seq for r in report.records] == seqs
    with pytest.raises(RecordsArchived, match=r"seq 3 in .*0003-.*, the request in an earlier"):
        await collect_evidence(store, split_a[0].request_id, signer, archives=directory)
    with pytest.raises(RecordsArchived, match=r"seq 6 in .*0003-.*, seq 7 in the live log"):
        await collect_evidence(store, split_b[0].request_id, signer, archives=directory)
    with pytest.raises(EvidenceNotFound):  # the live log alone no longer has it
        await collect_evidence(store, first[0].request_id, signer)
    await store.close()
