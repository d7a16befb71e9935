"""RFC 3161 timestamps on checkpoints, against a real `openssl ts -reply` TSA on loopback.

The tokens obmin's client obtains are checked twice: by `openssl ts -verify` (an
implementation nobody here wrote) and by obmin's own offline verifier. Each way a token or a
TSA can be wrong gets its own error.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import InvalidCheckpoint, sign_checkpoint
from gateway.audit.tsa import (
    TimestampRejected,
    TsaClient,
    TsaUnavailable,
    build_request,
    verify_response,
)
from gateway.audit.tsa_verify import (
    InvalidTimestamp,
    TsaTrust,
    timestamp_checker,
    verify_timestamp,
)
from gateway.server import _timestamper
from gateway.settings import Settings, SettingsError, load_settings
from tests.audit.tsa_support import (
    HAVE_OPENSSL,
    POLICY,
    TsaBehaviour,
    TsaIdentity,
    TsaPki,
    make_tsa_pki,
    openssl_config,
    openssl_tsa_app,
    openssl_verify,
    reissue_same_key,
    resign,
)

pytestmark = pytest.mark.skipif(
    not HAVE_OPENSSL, reason="the openssl command is not installed; the TSA is `openssl ts`"
)


@pytest.fixture(scope="module")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture
def note() -> str:
    """A real signed checkpoint note (what gets timestamped)."""
    checkpoint = sign_checkpoint(
        "obmin.test/gw", 42, b"\x07" * 32, Ed25519PrivateKey.generate(), "obmin.test/gw"
    )
    return checkpoint.note


@dataclass
class RunningTsa:
    url: str
    behaviour: TsaBehaviour
    trust: TsaTrust


TsaFactory = Callable[..., Any]


@pytest.fixture
def start_tsa(tsa_pki: TsaPki, tmp_path: Path, aiohttp_server: Callable[..., Any]) -> TsaFactory:
    async def start(
        identity: TsaIdentity | None = None,
        *,
        ess_alg: str = "sha256",
        digests: str = "sha256, sha384",
        behaviour: TsaBehaviour | None = None,
    ) -> RunningTsa:
        chosen = identity or tsa_pki.rsa
        directory = tmp_path / f"tsa-{chosen.cert.parent.name}-{ess_alg}"
        config = openssl_config(directory, chosen, ess_alg=ess_alg, digests=digests)
        behaviour = behaviour or TsaBehaviour()
        server = await aiohttp_server(openssl_tsa_app(config, behaviour))
        return RunningTsa(str(server.make_url("/")), behaviour, TsaTrust.from_file(tsa_pki.ca_cert))

    return start


async def _client(tsa: RunningTsa, **options: Any) -> tuple[aiohttp.ClientSession, TsaClient]:
    session = aiohttp.ClientSession()
    return session, TsaClient(session, tsa.url, tsa.trust, **options)


async def test_obmin_token_verifies_with_openssl_ts_and_with_obmin(
    start_tsa: TsaFactory, note: str, tsa_pki: TsaPki, tmp_path: Path
) -> None:
    tsa = await start_tsa()
    session, client = await _client(tsa)
    async with session:
        before = datetime.now(UTC) - timedelta(seconds=2)
        stamped = await client.timestamp(note.encode())
    # The demand: openssl's own verifier accepts obmin's token over the note.
    result = openssl_verify(stamped.token, note.encode(), tsa_pki.ca_cert, tmp_path / "v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification: OK" in result.stdout
    # ...and refuses it over anything else (so the check above can fail).
    other = openssl_verify(stamped.token, note.encode() + b"x", tsa_pki.ca_cert, tmp_path / "v")
    assert other.returncode != 0
    # obmin's offline verifier: token, note bytes and the TSA CA only.
    offline = verify_timestamp(stamped.token, note.encode(), TsaTrust.from_file(tsa_pki.ca_cert))
    assert offline.gen_time == stamped.gen_time
    assert before <= offline.gen_time <= datetime.now(UTC) + timedelta(seconds=2)
    assert offline.policy == POLICY
    assert offline.tsa_certificate == tsa_pki.rsa.certificate
    assert stamped.nonce is not None and offline.nonce == stamped.nonce
    timestamp_checker(tsa.trust)(note, stamped.token)  # the verify_log hook accepts it


async def test_an_answer_arriving_in_pieces_is_read_whole(start_tsa: TsaFactory, note: str) -> None:
    tsa = await start_tsa(behaviour=TsaBehaviour(trickle=True))
    session, client = await _client(tsa)
    async with session:
        stamped = await client.timestamp(note.encode())
    assert len(tsa.behaviour.responses[0]) > 1000  # many pieces, not one
    verify_timestamp(stamped.token, note.encode(), tsa.trust)


async def test_essc_cert_id_v1_and_an_ecdsa_tsa(
    start_tsa: TsaFactory, note: str, tsa_pki: TsaPki, tmp_path: Path
) -> None:
    tsa = await start_tsa(tsa_pki.ec, ess_alg="sha1")  # SigningCertificate with ESSCertID
    session, client = await _client(tsa)
    async with session:
        stamped = await client.timestamp(note.encode())
    assert openssl_verify(stamped.token, note.encode(), tsa_pki.ca_cert, tmp_path).returncode == 0
    assert verify_timestamp(stamped.token, note.encode(), tsa.trust).tsa_certificate == (
        tsa_pki.ec.certificate
    )


async def test_wrong_imprint(start_tsa: TsaFactory, note: str) -> None:
    tsa = await start_tsa()
    session, client = await _client(tsa)
    async with session:
        stamped = await client.timestamp(note.encode())
    with pytest.raises(InvalidTimestamp) as caught:
        verify_timestamp(stamped.token, note.replace("42", "43").encode(), tsa.trust)
    assert caught.value.reason == "imprint"
    with pytest.raises(InvalidCheckpoint):  # the verify_log hook: a bad checkpoint
        timestamp_checker(tsa.trust)(note + " ", stamped.token)


async def test_wrong_nonce_a_replayed_response(start_tsa: TsaFactory, note: str) -> None:
    tsa = await start_tsa(behaviour=TsaBehaviour(replay=True))
    session, client = await _client(tsa)
    async with session:
        await client.timestamp(note.encode())
        with pytest.raises(InvalidTimestamp) as caught:
            await client.timestamp(note.encode())  # answered with the first response
    assert caught.value.reason == "nonce"


async def test_untrusted_tsa(start_tsa: TsaFactory, note: str, tsa_pki: TsaPki) -> None:
    tsa = await start_tsa(tsa_pki.stranger)  # a proper TSA, from a CA nobody configured
    session, client = await _client(tsa)
    async with session:
        with pytest.raises(InvalidTimestamp) as caught:
            await client.timestamp(note.encode())
    assert caught.value.reason == "untrusted"
    trusted = TsaTrust.from_file(tsa_pki.other_ca.ca_cert)
    stamped = await _stamp_with(tsa, trusted, note)
    with pytest.raises(InvalidTimestamp) as offline:
        verify_timestamp(stamped, note.encode(), tsa.trust)
    assert offline.value.reason == "untrusted"


async def _stamp_with(tsa: RunningTsa, trust: TsaTrust, note: str) -> bytes:
    async with aiohttp.ClientSession() as session:
        return (await TsaClient(session, tsa.url, trust).timestamp(note.encode())).token


@pytest.mark.parametrize(("eku", "critical"), [(False, True), (True, False)])
async def test_tsa_certificate_without_a_critical_time_stamping_eku(
    start_tsa: TsaFactory, note: str, tsa_pki: TsaPki, eku: bool, critical: bool
) -> None:
    tsa = await start_tsa()
    session, client = await _client(tsa)
    async with session:
        stamped = await client.timestamp(note.encode())
    # openssl ts -reply refuses such a certificate; the same key re-signs the token as it.
    improper = reissue_same_key(tsa_pki, tsa_pki.rsa, eku=eku, critical=critical)
    token = resign(stamped.token, tsa_pki.rsa.key, improper)
    with pytest.raises(InvalidTimestamp) as caught:
        verify_timestamp(token, note.encode(), tsa.trust)
    assert caught.value.reason == "eku"
    # Control: the same re-signing with a proper certificate verifies.
    proper = reissue_same_key(tsa_pki, tsa_pki.rsa, eku=True)
    assert (
        verify_timestamp(
            resign(stamped.token, tsa_pki.rsa.key, proper), note.encode(), (tsa.trust)
        ).tsa_certificate
        == proper
    )


async def test_tampered_token_every_byte(start_tsa: TsaFactory, note: str) -> None:
    tsa = await start_tsa()
    session, client = await _client(tsa)
    async with session:
        stamped = await client.timestamp(note.encode())
    token = stamped.token
    reasons: set[str] = set()
    for position in range(len(token)):
        tampered = bytearray(token)
        tampered[position] ^= 0x01
        with pytest.raises(InvalidTimestamp) as caught:
            verify_timestamp(bytes(tampered), note.encode(), tsa.trust)
        reasons.add(caught.value.reason)
    # The signature value is the token's last bytes; the genTime sits inside the TSTInfo.
    assert {"signature", "message-digest", "signer-binding", "malformed"} <= reasons
    last = bytearray(token)
    last[-1] ^= 0x80
    with pytest.raises(InvalidTimestamp, match="signature does not verify"):
        verify_timestamp(bytes(last), note.encode(), tsa.trust)
    with pytest.raises(InvalidTimestamp) as truncated:
        verify_timestamp(token[:-1], note.encode(), tsa.trust)
    assert truncated.value.reason == "malformed"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_tsa_down_timeout_and_wrong_answers(start_tsa: TsaFactory, note: str) -> None:
    tsa = await start_tsa()
    down = RunningTsa(f"http://127.0.0.1:{_closed_port()}/", tsa.behaviour, tsa.trust)
    session, client = await _client(down)
    async with session:
        with pytest.raises(TsaUnavailable, match="cannot reach the TSA"):
            await client.timestamp(note.encode())
    tsa.behaviour.delay = 2.0
    session, client = await _client(tsa, timeout_seconds=0.2)
    async with session:
        with pytest.raises(TsaUnavailable, match=r"did not answer within 0\.2 s"):
            await client.timestamp(note.encode())
    tsa.behaviour.delay = 0.0
    tsa.behaviour.status = 503
    session, client = await _client(tsa)
    async with session:
        with pytest.raises(TsaUnavailable, match="answered HTTP 503"):
            await client.timestamp(note.encode())
        tsa.behaviour.status = 200
        tsa.behaviour.content_type = "text/html"
        with pytest.raises(TsaUnavailable, match="'text/html'"):
            await client.timestamp(note.encode())
        tsa.behaviour.content_type = "application/timestamp-reply"
        tsa.behaviour.garbage = b"\x30\x03\x02\x01"
        with pytest.raises(InvalidTimestamp) as caught:
            await client.timestamp(note.encode())
        assert caught.value.reason == "malformed"
        granted_without_token = bytes.fromhex("3005") + bytes.fromhex("3003020100")
        tsa.behaviour.garbage = granted_without_token
        with pytest.raises(InvalidTimestamp, match="grants but carries no token"):
            await client.timestamp(note.encode())


async def test_tsa_refusal_is_reported_with_its_failure_info(
    start_tsa: TsaFactory, note: str
) -> None:
    tsa = await start_tsa(digests="sha512")  # obmin asks for SHA-256
    session, client = await _client(tsa)
    async with session:
        with pytest.raises(TimestampRejected, match=r"rejection.*bad_alg"):
            await client.timestamp(note.encode())


async def test_tsa_with_a_wrong_clock(start_tsa: TsaFactory, note: str) -> None:
    tsa = await start_tsa()
    ahead = datetime.now(UTC) + timedelta(hours=1)
    session, client = await _client(tsa, clock=lambda: ahead)
    async with session:
        with pytest.raises(InvalidTimestamp, match="more than 0:05:00 apart") as caught:
            await client.timestamp(note.encode())
    assert caught.value.reason == "time"


async def test_the_gateway_judges_gen_time_by_its_max_clock_skew(
    start_tsa: TsaFactory, note: str, tsa_pki: TsaPki, tmp_path: Path
) -> None:
    """``max_clock_skew_seconds`` reaches the TSA client the gateway builds."""
    tsa = await start_tsa()
    ahead = datetime.now(UTC) + timedelta(seconds=90)  # this host's clock 90 s ahead

    def gateway_settings(skew: int) -> Settings:
        return Settings.model_validate(
            {
                "registry_dir": tmp_path,
                "keys": {"signing_certificate": "a", "signing_key": "b", "log_key": "c"},
                "audit": {"tsa": {"url": tsa.url, "ca_certificate": tsa_pki.ca_cert}},
                "max_clock_skew_seconds": skew,
            }
        )

    async with aiohttp.ClientSession() as session:
        tight = _timestamper(session, gateway_settings(60))
        assert tight is not None
        tight._clock = lambda: ahead
        with pytest.raises(InvalidTimestamp, match="more than 0:01:00 apart"):
            await tight.timestamp(note.encode())
        loose = _timestamper(session, gateway_settings(120))
        assert loose is not None
        loose._clock = lambda: ahead
        await loose.timestamp(note.encode())


def test_request_asks_for_a_certificate_with_a_fresh_nonce(tsa_pki: TsaPki) -> None:
    first, second = build_request(b"note"), build_request(b"note")
    assert first.nonce != second.nonce and first.nonce.bit_length() == 64
    assert first.imprint == second.imprint
    assert b"\x01\x01\xff" in first.der  # certReq TRUE
    with pytest.raises(InvalidTimestamp) as caught:
        verify_response(b"not DER", first, TsaTrust.from_file(tsa_pki.ca_cert))
    assert caught.value.reason == "malformed"


def test_tsa_settings_and_ca_file_errors(tmp_path: Path, tsa_pki: TsaPki) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "registry_dir: registry\n"
        "keys: {signing_certificate: a.crt, signing_key: a.key}\n"
        "audit:\n  tsa: {url: 'http://127.0.0.1:3180/', ca_certificate: tsa/ca.crt}\n"
    )
    with pytest.raises(SettingsError, match=r"audit\.tsa needs keys\.log_key"):
        load_settings(config, environ={})  # timestamps are over signed checkpoints
    config.write_text(
        "registry_dir: registry\n"
        "keys: {signing_certificate: a.crt, signing_key: a.key, log_key: log.key}\n"
        "audit:\n  tsa: {url: 'http://127.0.0.1:3180/', ca_certificate: tsa/ca.crt}\n"
    )
    settings = load_settings(config, environ={})
    assert settings.audit.tsa is not None
    assert settings.audit.tsa.ca_certificate == tmp_path / "tsa" / "ca.crt"
    assert settings.audit.tsa.timeout_seconds == 10.0
    with pytest.raises(InvalidCheckpoint, match=r"audit\.tsa\.ca_certificate: cannot read"):
        TsaTrust.from_file(settings.audit.tsa.ca_certificate)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(InvalidCheckpoint, match="holds no PEM certificate"):
        TsaTrust.from_file(not_pem)
    with pytest.raises(Exception, match=r"audit\.tsa\.url"):
        load_settings(config, environ={"OBMIN_AUDIT__TSA__URL": "ftp://x"})
    assert TsaTrust.from_file(tsa_pki.ca_cert).certificates
