"""The checkpointer with a time-stamping authority (SPEC 8, batch timestamping), on real
stores (SQLite and PostgreSQL) and a real `openssl ts -reply` TSA on loopback.

Each new checkpoint gets one TSA call, whatever the number of records it adds; the call
runs beside the log, never in its way; a failing TSA is reported, the newest checkpoint is
retried, and a newer checkpoint takes over (its token covers the older one's records).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    Checkpointer,
    RetentionStore,
    TimestampOutcome,
    TsaClient,
    TsaTrust,
    VerifierKey,
    VerifyReport,
    timestamp_checker,
    verify_log,
)
from gateway.audit.verify_sources import PostgresSource, SqliteSource
from tests.audit.conftest import ORIGIN, StoreMaker
from tests.audit.drafts import NOW, exchange
from tests.audit.tsa_support import (
    HAVE_OPENSSL,
    TsaBehaviour,
    TsaPki,
    make_tsa_pki,
    openssl_config,
    openssl_tsa_app,
    openssl_verify,
)

pytestmark = pytest.mark.skipif(
    not HAVE_OPENSSL, reason="the openssl command is not installed; the TSA is `openssl ts`"
)


@pytest.fixture(scope="module")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@dataclass
class Tsa:
    url: str
    behaviour: TsaBehaviour
    trust: TsaTrust
    session: aiohttp.ClientSession

    def client(self, url: str | None = None) -> TsaClient:
        return TsaClient(self.session, url or self.url, self.trust, timeout_seconds=5)


@pytest.fixture
async def tsa(
    tsa_pki: TsaPki, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> AsyncIterator[Tsa]:
    config = openssl_config(tmp_path / "tsa", tsa_pki.rsa, ess_alg="sha256", digests="sha256")
    behaviour = TsaBehaviour()
    server = await aiohttp_server(openssl_tsa_app(config, behaviour))
    async with aiohttp.ClientSession() as session:
        yield Tsa(
            str(server.make_url("/")), behaviour, TsaTrust.from_file(tsa_pki.ca_cert), session
        )


def _checkpointer(
    store: RetentionStore,
    key: Ed25519PrivateKey,
    tsa: TsaClient,
    outcomes: list[TimestampOutcome],
) -> Checkpointer:
    return Checkpointer(
        store,
        key,
        origin=ORIGIN,
        interval_seconds=3600,  # checkpoints only when the test asks for one
        every_records=10**6,
        clock=lambda: NOW,
        timestamper=tsa,
        on_timestamp=outcomes.append,
        timestamp_retry_seconds=0.05,
    )


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):  # up to 10 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def _tokens(store: RetentionStore) -> dict[int, bytes | None]:
    return {s.checkpoint.size: s.timestamp_token for s in await store.checkpoints(limit=1000)}


async def _verify(make_store: StoreMaker, key: Ed25519PrivateKey, tsa: Tsa) -> VerifyReport:
    """``obmin audit verify`` of the test's log, timestamps checked against the TSA CA."""
    source: SqliteSource | PostgresSource = SqliteSource(make_store.path)
    if make_store.postgres is not None:
        source = PostgresSource(make_store.postgres.dsn, ORIGIN, make_store.postgres.schema)
    return await asyncio.to_thread(
        verify_log,
        source,
        VerifierKey(ORIGIN, key.public_key()),
        None,
        ORIGIN,
        timestamp_check=timestamp_checker(tsa.trust),
    )


async def test_each_checkpoint_gets_one_tsa_call_and_its_token_verifies(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tsa: Tsa, tsa_pki: TsaPki, tmp_path: Path
) -> None:
    store = await make_store.open()
    outcomes: list[TimestampOutcome] = []
    checkpointer = _checkpointer(store, log_key, tsa.client(), outcomes)
    await checkpointer.start()  # signs (and timestamps) the empty log's checkpoint
    try:
        await _until(lambda: len(outcomes) == 1, "the first timestamp")
        for i in range(20):
            await store.append(exchange(f"m-{i}"))
        signed = await checkpointer.checkpoint()
        assert signed is not None and signed.size == 40
        await _until(lambda: len(outcomes) == 2, "the second timestamp")
    finally:
        await checkpointer.stop()
    # Batch timestamping: 40 records, one checkpoint, one TSA request (and one before).
    assert len(tsa.behaviour.requests) == 2
    assert [(o.tree_size, o.code) for o in outcomes] == [(0, "ok"), (40, "ok")]
    tokens = await _tokens(store)
    assert set(tokens) == {0, 40} and all(tokens.values())
    stored = await store.latest_checkpoint()
    assert stored is not None and stored.timestamp_token == tokens[40]
    # openssl's own verifier accepts the stored token over the stored note, and only over it.
    note = stored.checkpoint.note.encode()
    result = openssl_verify(tokens[40] or b"", note, tsa_pki.ca_cert, tmp_path / "v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert openssl_verify(tokens[0] or b"", note, tsa_pki.ca_cert, tmp_path / "v").returncode
    report = await _verify(make_store, log_key, tsa)
    assert report.ok, report.problem
    assert report.timestamps == 2 and report.timestamps_not_checked == 0


async def test_a_slow_tsa_never_holds_up_appends_or_checkpoints(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tsa: Tsa
) -> None:
    store = await make_store.open()
    gate = asyncio.Event()
    tsa.behaviour.gate = gate  # every TSA request waits until the test opens the gate
    outcomes: list[TimestampOutcome] = []
    checkpointer = _checkpointer(store, log_key, tsa.client(), outcomes)
    await checkpointer.start()
    try:
        await _until(lambda: len(tsa.behaviour.requests) == 1, "the TSA request")
        # The TSA holds the request for the empty log's checkpoint; the log goes on.
        for i in range(3):
            await store.append(exchange(f"m-{i}"))
        signed = await checkpointer.checkpoint()
        assert signed is not None and signed.size == 6
        assert outcomes == [] and checkpointer.unstamped == signed
        gate.set()
        await _until(lambda: len(outcomes) == 2, "both timestamps")
    finally:
        gate.set()
        await checkpointer.stop()
    assert [o.tree_size for o in outcomes] == [0, 6]
    assert all(o.ok for o in outcomes) and checkpointer.unstamped is None
    tokens = await _tokens(store)
    assert tokens[0] is not None and tokens[6] is not None


async def test_a_failed_timestamp_is_retried_until_the_tsa_is_back(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tsa: Tsa
) -> None:
    store = await make_store.open()
    tsa.behaviour.status = 503
    outcomes: list[TimestampOutcome] = []
    checkpointer = _checkpointer(store, log_key, tsa.client(), outcomes)
    await checkpointer.start()
    try:
        await store.append(exchange("m-1"))
        signed = await checkpointer.checkpoint()  # stored at once, without a token
        assert signed is not None and signed.size == 2
        await _until(lambda: sum(o.tree_size == 2 for o in outcomes) >= 2, "two failed tries")
        assert (await _tokens(store))[2] is None
        await store.append(exchange("m-2"))  # the log is not held up by the failing TSA
        failure = outcomes[-1]
        assert failure.code == "TsaUnavailable" and not failure.ok
        assert failure.error is not None and "HTTP 503" in failure.error
        tsa.behaviour.status = 200  # the TSA is back: the same checkpoint gets its token
        await _until(lambda: outcomes[-1].ok, "the retried timestamp")
        assert outcomes[-1].tree_size == 2
        assert (await _tokens(store))[2] is not None
    finally:
        await checkpointer.stop()


async def test_a_newer_checkpoint_takes_over_and_covers_the_older_records(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tsa: Tsa
) -> None:
    """While the TSA refuses, a new checkpoint supersedes the one waiting; once the TSA is
    back, only the newest is timestamped: one token covers every record before it."""
    store = await make_store.open()
    tsa.behaviour.garbage = b"not a time-stamp response"
    outcomes: list[TimestampOutcome] = []
    checkpointer = _checkpointer(store, log_key, tsa.client(), outcomes)
    await checkpointer.start()
    try:
        await store.append(exchange("m-1"))
        assert (await checkpointer.checkpoint()) is not None
        await _until(lambda: any(o.tree_size == 2 for o in outcomes), "a failed timestamp")
        assert outcomes[-1].code == "InvalidTimestamp"
        tsa.behaviour.gate = asyncio.Event()  # hold the next try until the newer checkpoint
        await store.append(exchange("m-2"))
        newer = await checkpointer.checkpoint()
        assert newer is not None and newer.size == 4 and checkpointer.unstamped == newer
        tsa.behaviour.garbage = None
        tsa.behaviour.gate.set()
        await _until(lambda: checkpointer.unstamped is None, "the newest timestamp")
    finally:
        await checkpointer.stop()
    tokens = await _tokens(store)
    assert tokens[0] is None and tokens[2] is None and tokens[4] is not None
    assert outcomes[-1].tree_size == 4 and outcomes[-1].ok
    report = await _verify(make_store, log_key, tsa)
    assert report.ok and report.timestamps == 1 and report.checkpoints == 3


async def test_after_a_restart_the_newest_checkpoint_still_gets_its_token(
    make_store: StoreMaker, log_key: Ed25519PrivateKey, tsa: Tsa
) -> None:
    store = await make_store.open()
    outcomes: list[TimestampOutcome] = []
    down = tsa.client("http://127.0.0.1:9/")  # nothing listens there
    first = _checkpointer(store, log_key, down, outcomes)
    await first.start()
    await store.append(exchange("m-1"))
    await first.stop()  # the final checkpoint's one try fails too
    assert outcomes[-1].tree_size == 2 and outcomes[-1].code == "TsaUnavailable"
    assert (await _tokens(store))[2] is None
    again = _checkpointer(store, log_key, tsa.client(), outcomes)
    await again.start()  # nothing new to sign, but the newest checkpoint has no token
    try:
        await _until(lambda: outcomes[-1].ok, "the timestamp after the restart")
    finally:
        await again.stop()
    assert outcomes[-1].tree_size == 2
    assert (await _tokens(store))[2] is not None
