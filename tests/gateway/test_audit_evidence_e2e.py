"""The audit log's evidence side end to end, through a running gateway (SPEC 8), on SQLite and
on PostgreSQL: RFC 3161 timestamps from a real TSA (`openssl ts -reply` on loopback) on the
checkpoints the gateway signs, and bodies under policy ``encrypted`` sealed with configured,
rotated keys; each checked the way an auditor would — `openssl ts -verify`, ``obmin audit
verify``, the evidence endpoint, ``obmin audit verify-evidence`` offline.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import re
import sqlite3
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.client import XRoadSoapClient, build_soap_request
from adapters.example_provider import create_provider_app
from gateway.admin import create_admin_app
from gateway.audit import AuditRecord, RetentionStore, StoredCheckpoint, write_body_key
from gateway.audit.body_crypto import parse_envelope
from gateway.audit.retention import archive_expired
from gateway.cli import main
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.state import GatewayState
from registry.identifiers import ClientId, ServiceId
from security import IssuedCert, TrustStore, load_certificate, load_private_key
from tests.audit.tsa_support import (
    HAVE_OPENSSL,
    TsaBehaviour,
    TsaPki,
    make_tsa_pki,
    openssl_config,
    openssl_tsa_app,
    openssl_verify,
)
from tests.gateway.conftest import CLIENT_MEMBER, PROVIDER, registry_for
from tests.gateway.test_signed_exchange import _body
from tests.postgres import PostgresLog, postgres_log, run_in
from tests.support import ProviderBehaviour, provider_app

pytestmark = pytest.mark.skipif(
    not HAVE_OPENSSL, reason="the openssl command is not installed; the TSA is `openssl ts`"
)

__all__ = ["postgres_log"]  # the fixture, for the PostgreSQL runs

LEGACY = f"{CLIENT_MEMBER}/LEGACY"
ORIGIN = "obmin.test/e2e"
SECRET_ANSWER = b'{"diagnosis": "ANSWER-MARKER-7f3a"}'
SOAP_MARKER = "1234567890"  # the personal code the SOAP request carries (a known person)
AUDITOR = {"Authorization": "Bearer aud"}
IN_SCOPE = {"Authorization": "Bearer ministry"}
OUT_OF_SCOPE = {"Authorization": "Bearer other"}


@pytest.fixture(scope="module")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(params=["sqlite", "postgres"])
def audit_store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The ``audit`` settings of the store the test runs on (PostgreSQL: a fresh schema)."""
    if request.param == "postgres":
        log: PostgresLog = request.getfixturevalue("postgres_log")
        return {"store": "postgres", "dsn": log.dsn, "postgres_schema": log.schema}
    return {"store": "sqlite", "path": tmp_path / "audit.db"}


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    admin: TestClient[web.Request, web.Application]
    state: GatewayState
    settings: Settings
    config: Path  # the settings as a file, for the obmin CLI
    sdk: XRoadSoapClient

    @property
    def store(self) -> RetentionStore:
        env = self.state.env
        assert env is not None
        return env.audit  # type: ignore[return-value]

    async def stop(self) -> None:
        await self.admin.close()
        await self.client.close()

    async def rest(self, service: str, body: bytes, message_id: str) -> str:
        response = await self.client.post(
            f"/r1/{PROVIDER}/{service}/records",
            data=body,
            headers={
                "X-Road-Client": LEGACY,
                "X-Road-Id": message_id,
                "Content-Type": "application/json",
            },
        )
        assert response.status == 200, await response.text()
        return await self.request_id(message_id)

    async def soap(self, version: str, message_id: str) -> str:
        client = ClientId.parse(f"{CLIENT_MEMBER}/CLIENT")
        service = ServiceId(ClientId.parse(PROVIDER), "getPerson", version)
        envelope = build_soap_request(client, service, _body(SOAP_MARKER), message_id=message_id)
        answer = await self.sdk.send(self.sdk.sign(envelope))
        assert not answer.is_fault and answer.verified is not None, answer.raw
        return await self.request_id(message_id)

    async def request_id(self, message_id: str) -> str:
        records = await self.store.query(message_id=message_id)
        assert len(records) == 2
        return records[0].request_id

    async def records(self) -> list[AuditRecord]:
        return await self.store.query(limit=1000)

    async def stamped(self) -> StoredCheckpoint:
        """The newest checkpoint, once it covers every record and carries its token."""
        for _ in range(1000):  # up to 10 s
            latest = await self.store.latest_checkpoint()
            count = await self.store.count()
            if latest is not None and latest.checkpoint.size == count and latest.timestamp_token:
                return latest
            await asyncio.sleep(0.01)
        raise AssertionError("no timestamped checkpoint covers the log")


@dataclass
class Factory:
    dev_pki: Path
    tmp_path: Path
    certs: dict[str, IssuedCert]
    aiohttp_client: Callable[..., Any]
    aiohttp_server: Callable[..., Any]
    started: list[Gateway] = field(default_factory=list)

    async def start(self, audit: dict[str, Any], name: str = "gw") -> Gateway:
        soap: TestServer = await self.aiohttp_server(create_provider_app())
        rest: TestServer = await self.aiohttp_server(
            provider_app(ProviderBehaviour(body=SECRET_ANSWER, content_type="application/json"))
        )
        registry = registry_for(self.dev_pki / "ca" / "ca.crt", str(soap.make_url("")).rstrip("/"))
        registry["members"][0]["subsystems"].append({"code": "LEGACY", "auth": "none"})
        services = [("people", "digest")]
        if "body_keys" in audit:  # without keys, encrypted services would be refused
            sealed = {**copy.deepcopy(registry["services"][0]), "version": "v-enc"}
            registry["services"].append({**sealed, "audit_body": "encrypted"})
            services.append(("health", "encrypted"))
        for code, policy in services:
            registry["services"].append(
                {
                    "provider": PROVIDER,
                    "code": code,
                    "type": "rest",
                    "url": str(rest.make_url("/api")),
                    "audit_body": policy,
                }
            )
            registry["access"].append({"provider": PROVIDER, "service": code, "clients": [LEGACY]})
        directory = self.tmp_path / f"registry-{name}"
        directory.mkdir(exist_ok=True)
        (directory / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
        token = {"roles": ["auditor"]}
        settings = Settings.model_validate(
            {
                "registry_dir": directory,
                "keys": {
                    "signing_certificate": self.dev_pki / "gateway" / "sign.crt",
                    "signing_key": self.dev_pki / "gateway" / "sign.key",
                    "log_key": self.dev_pki / "gateway" / "log.key",
                },
                "audit": {
                    "origin": ORIGIN,
                    "checkpoint_every_records": 2,
                    "checkpoint_interval_seconds": 0.2,
                    "archive_dir": self.tmp_path / "archives",
                    **audit,
                },
                "admin_tokens": [
                    {**token, "name": "all", "sha256": _sha256("aud")},
                    {
                        **token,
                        "name": "ministry",
                        "sha256": _sha256("ministry"),
                        "members": [str(CLIENT_MEMBER)],
                    },
                    {
                        **token,
                        "name": "other",
                        "sha256": _sha256("other"),
                        "members": ["SEVDEIR-TEST/GOV/99999999"],
                    },
                ],
                "allow_unauthenticated_clients": True,
            }
        )
        state = GatewayState(settings)
        client = await self.aiohttp_client(create_client_app(settings, state))
        admin = await self.aiohttp_client(create_admin_app(state))
        cert = self.certs["client"]
        sdk = XRoadSoapClient(
            str(client.make_url("/")),
            key=load_private_key(cert.key_path),
            certificate=load_certificate(cert.cert_path),
            gateway_trust=TrustStore([load_certificate(self.dev_pki / "ca" / "ca.crt")]),
            session=client.session,
        )
        config = self.config(settings, name)
        gateway = Gateway(client, admin, state, settings, config, sdk)
        self.started.append(gateway)
        return gateway

    def config(self, settings: Settings, name: str, **audit: Any) -> Path:
        """``settings`` (with ``audit`` changes) as a YAML file for the CLI."""
        data = settings.model_dump(mode="json")
        data["audit"].update(audit)
        path = self.tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
async def gateways(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> AsyncIterator[Factory]:
    factory = Factory(dev_pki, tmp_path, member_certs, aiohttp_client, aiohttp_server)
    yield factory
    for gateway in factory.started:
        await gateway.stop()


async def _tsa(
    tsa_pki: TsaPki, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> tuple[str, TsaBehaviour]:
    config = openssl_config(tmp_path / "tsa", tsa_pki.rsa, ess_alg="sha256", digests="sha256")
    behaviour = TsaBehaviour()
    server: TestServer = await aiohttp_server(openssl_tsa_app(config, behaviour))
    return str(server.make_url("/")), behaviour


async def _obmin(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """Run the ``obmin`` command line (in a thread: it blocks) and return code and output."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, [str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _tamper(data: bytes) -> bytes:
    """``data`` with one byte flipped near its end (a token's signature, a ciphertext)."""
    return data[:-20] + bytes([data[-20] ^ 0x01]) + data[-19:]


def _intrude(audit: dict[str, Any], sql: str, *params: object) -> None:
    """An intruder with the database runs ``sql`` (``?`` placeholders) on the log."""
    if audit["store"] == "postgres":
        run_in(audit["postgres_schema"], sql, *params)
        return
    with sqlite3.connect(audit["path"]) as db:
        db.execute(sql, params)
    db.close()


def _stored_bytes(audit: dict[str, Any]) -> bytes:
    """Everything the store holds, as an intruder with the database would read it."""
    if audit["store"] == "postgres":
        rows = run_in(audit["postgres_schema"], "SELECT canonical, body FROM records")
        return b"".join(bytes(c) + (bytes(b) if b is not None else b"") for c, b in rows)
    path = Path(audit["path"])
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _members(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


async def test_timestamped_checkpoints_end_to_end(
    gateways: Factory,
    audit_store: dict[str, Any],
    tsa_pki: TsaPki,
    tmp_path: Path,
    aiohttp_server: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, behaviour = await _tsa(tsa_pki, tmp_path, aiohttp_server)
    tsa = {"url": url, "ca_certificate": tsa_pki.ca_cert, "timeout_seconds": 5}
    gw = await gateways.start({**audit_store, "tsa": tsa})
    rest_id = await gw.rest("people", b'{"name": "Kovalenko"}', "ts-rest-1")
    await gw.soap("v1", "ts-soap-1")
    await gw.rest("people", b'{"name": "Shevchenko"}', "ts-rest-2")

    # 1. The checkpoints carry tokens, and openssl verifies one against its stored note.
    latest = await gw.stamped()
    assert latest.checkpoint.size == 6
    assert latest.timestamp_token is not None
    note = latest.checkpoint.note.encode()
    checked = openssl_verify(latest.timestamp_token, note, tsa_pki.ca_cert, tmp_path / "v")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Verification: OK" in checked.stdout
    assert len(behaviour.requests) >= 2  # one request per checkpoint, not per record
    stamped = [c for c in await gw.store.checkpoints(limit=1000) if c.timestamp_token]
    answer = await (await gw.admin.get("/audit/v1/checkpoint", headers=AUDITOR)).json()
    assert answer["tree_size"] == 6 and answer["timestamp_token"] is not None
    ready = await (await gw.admin.get("/readyz")).json()
    last = ready["details"]["audit_timestamps"]["last"]
    assert ready["details"]["audit_timestamps"]["tsa"] == url
    assert last["ok"] and last["outcome"] == "ok"
    metrics = (await (await gw.admin.get("/metrics")).read()).decode()
    assert re.search(r'^obmin_audit_timestamps_total\{outcome="ok"\} [1-9]', metrics, re.M)

    # 2. obmin audit verify checks every token: with the configured TSA CA, with --tsa-ca,
    # and says so when it has none.
    code, out = await _obmin(capsys, "audit", "verify", "-c", gw.config)
    assert code == 0, out
    assert f"timestamps: {len(stamped)} verified, 0 not checked" in out
    bare = gateways.config(gw.settings, "no-tsa", tsa=None)
    code, out = await _obmin(capsys, "audit", "verify", "-c", bare)
    assert code == 0, out
    assert f"timestamps: 0 verified, {len(stamped)} not checked" in out
    code, out = await _obmin(capsys, "audit", "verify", "-c", bare, "--tsa-ca", tsa_pki.ca_cert)
    assert code == 0 and f"timestamps: {len(stamped)} verified" in out, out
    stranger = tsa_pki.other_ca.ca_cert  # a CA that did not issue the TSA's certificate
    code, out = await _obmin(capsys, "audit", "verify", "-c", bare, "--tsa-ca", stranger)
    assert code == 1 and "timestamp token is bad" in out and "(untrusted)" in out, out

    # 3. The evidence bundle carries the checkpoint's token and verifies offline with only
    # the file, the gateway certificate and the TSA CA.
    response = await gw.admin.get(f"/audit/v1/evidence/{rest_id}", headers=AUDITOR)
    assert response.status == 200, await response.text()
    bundle = await response.read()
    members = _members(bundle)
    tokens = {c.checkpoint.size: c.timestamp_token for c in stamped}
    size = int(members["checkpoint.note"].decode().splitlines()[1])
    assert members["checkpoint.tsr"] == tokens[size]
    file = tmp_path / "evidence.zip"
    file.write_bytes(bundle)
    certificate = gateways.dev_pki / "gateway" / "sign.crt"
    code, out = await _obmin(
        capsys, "audit", "verify-evidence", file, "--certificate", certificate,
        "--tsa-ca", tsa_pki.ca_cert,
    )  # fmt: skip
    assert code == 0, out
    assert "checkpoint timestamped at" in out and f"evidence for request {rest_id}: OK" in out
    exported = tmp_path / "exported.zip"
    code, out = await _obmin(capsys, "audit", "export", rest_id, "-o", exported, "-c", gw.config)
    assert code == 0, out
    assert _members(exported.read_bytes())["checkpoint.tsr"] in tokens.values()

    # 4. An altered token fails verification, and the report names its checkpoint.
    assert latest.timestamp_token is not None
    token_sql = "UPDATE checkpoints SET timestamp_token = ? WHERE tree_size = ?"
    _intrude(audit_store, token_sql, _tamper(latest.timestamp_token), 6)
    code, out = await _obmin(capsys, "audit", "verify", "-c", gw.config)
    assert code == 1, out
    assert "FAILED" in out and "checkpoint 6: its timestamp token is bad" in out


async def test_a_failing_tsa_never_blocks_the_log_and_is_reported(
    gateways: Factory, tmp_path: Path, tsa_pki: TsaPki, aiohttp_server: Callable[..., Any]
) -> None:
    url, behaviour = await _tsa(tsa_pki, tmp_path, aiohttp_server)
    behaviour.status = 503
    tsa = {"url": url, "ca_certificate": tsa_pki.ca_cert, "timeout_seconds": 5}
    gw = await gateways.start({"path": tmp_path / "audit.db", "tsa": tsa})
    await gw.rest("people", b'{"name": "Kovalenko"}', "down-1")  # answered all the same
    for _ in range(1000):
        latest = await gw.store.latest_checkpoint()
        if latest is not None and latest.checkpoint.size == 2 and len(behaviour.requests) >= 2:
            break
        await asyncio.sleep(0.01)
    assert latest is not None and latest.timestamp_token is None
    ready = await gw.admin.get("/readyz")
    assert ready.status == 200  # a failing TSA is not a reason to stop serving
    details = (await ready.json())["details"]["audit_timestamps"]
    assert not details["last"]["ok"] and details["last"]["outcome"] == "TsaUnavailable"
    assert "HTTP 503" in details["last"]["error"]
    assert details["waiting_tree_size"] == 2
    metrics = (await (await gw.admin.get("/metrics")).read()).decode()
    assert re.search(r'^obmin_audit_timestamps_total\{outcome="TsaUnavailable"\} [1-9]', metrics,
                     re.M)  # fmt: skip
    assert re.search(r"^obmin_audit_timestamp_failing 1\.0$", metrics, re.M)
    behaviour.status = 200  # the TSA is back: the waiting checkpoint gets its token
    stamped = await gw.stamped()
    assert stamped.checkpoint.size == 2
    metrics = (await (await gw.admin.get("/metrics")).read()).decode()
    assert re.search(r"^obmin_audit_timestamp_failing 0\.0$", metrics, re.M)


async def test_archived_exchanges_are_proved_from_their_archive_with_its_tokens(
    gateways: Factory,
    tmp_path: Path,
    tsa_pki: TsaPki,
    aiohttp_server: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = await _tsa(tsa_pki, tmp_path, aiohttp_server)
    tsa = {"url": url, "ca_certificate": tsa_pki.ca_cert}
    gw = await gateways.start({"path": tmp_path / "audit.db", "tsa": tsa})
    request_id = await gw.rest("people", b'{"name": "Kovalenko"}', "old-1")
    await gw.rest("people", b'{"name": "Shevchenko"}', "old-2")
    await gw.stamped()
    checkpointer = gw.state.checkpointer
    assert checkpointer is not None
    archives = tmp_path / "archives"
    done = await archive_expired(  # what the gateway's retention task does, on its own store
        gw.store,
        origin=ORIGIN,
        key=checkpointer.verifier_key,
        directory=archives,
        cutoff=datetime.now(UTC) + timedelta(minutes=1),
    )
    assert [(o.start, o.end) for o in done] == [(0, 4)]
    assert not await gw.store.query(request_id=request_id)  # gone from the live log
    response = await gw.admin.get(f"/audit/v1/evidence/{request_id}", headers=AUDITOR)
    assert response.status == 200, await response.text()
    bundle = await response.read()
    members = _members(bundle)
    assert members["checkpoint.note"].decode().splitlines()[1] == "4"  # the archive's last
    assert "checkpoint.tsr" in members  # and its token, from the archive
    hidden = await gw.admin.get(f"/audit/v1/evidence/{request_id}", headers=OUT_OF_SCOPE)
    assert hidden.status == 404  # out of scope: archived or not, it does not exist
    exported = tmp_path / "x.zip"
    code, out = await _obmin(capsys, "audit", "export", request_id, "-o", exported,
                             "-c", gw.config)  # fmt: skip
    assert code == 0, out
    certificate = gateways.dev_pki / "gateway" / "sign.crt"
    for file in (exported, tmp_path / "api.zip"):
        if not file.exists():
            file.write_bytes(bundle)
        code, out = await _obmin(
            capsys, "audit", "verify-evidence", file, "--certificate", certificate,
            "--tsa-ca", tsa_pki.ca_cert,
        )  # fmt: skip
        assert code == 0 and f"evidence for request {request_id}: OK" in out, out
        assert "checkpoint timestamped at" in out, out

    code, out = await _obmin(capsys, "audit", "verify", "-c", gw.config, "--archives", archives)
    assert code == 0, out
    assert re.search(r"timestamps: [1-9][0-9]* verified, 0 not checked", out), out
    with sqlite3.connect(done[0].path) as db:
        (token,) = db.execute(
            "SELECT timestamp_token FROM checkpoints WHERE tree_size = 4"
        ).fetchone()
        db.execute("UPDATE checkpoints SET timestamp_token = ? WHERE tree_size = 4",
                   (_tamper(token),))  # fmt: skip
    db.close()
    code, out = await _obmin(capsys, "audit", "verify-archive", done[0].path, "-c", gw.config)
    assert code == 1 and "checkpoint 4: its timestamp token is bad" in out, out
    code, out = await _obmin(capsys, "audit", "verify", "-c", gw.config, "--archives", archives)
    assert code == 1 and "checkpoint 4: its timestamp token is bad" in out, out


async def test_encrypted_bodies_end_to_end_with_key_rotation(
    gateways: Factory,
    audit_store: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = tmp_path / "keys"
    write_body_key(keys / "k1.key")
    one_key = {"current": "k1", "keys": {"k1": keys / "k1.key"}}
    gw = await gateways.start({**audit_store, "body_keys": one_key}, "before")
    sent = b'{"patient": "REQUEST-MARKER-91c2"}'
    rest_id = await gw.rest("health", sent, "enc-rest-1")
    soap_id = await gw.soap("v-enc", "enc-soap-1")

    # 1. What is stored is an envelope under k1, never the body: not in the database.
    records = await gw.records()
    assert [r.body_policy for r in records] == ["encrypted"] * 4
    assert {parse_envelope(r.body or b"").key_id for r in records} == {"k1"}
    stored = _stored_bytes(audit_store)
    for marker in (b"REQUEST-MARKER-91c2", b"ANSWER-MARKER-7f3a", SOAP_MARKER.encode()):
        assert marker not in stored

    # 2. obmin audit verify opens them with the keys and checks them against body_digest.
    code, out = await _obmin(capsys, "audit", "verify", "-c", gw.config)
    assert code == 0, out
    assert "stored bodies: 4 checked against their digests, 0 encrypted" in out
    keyless = gateways.config(gw.settings, "keyless", body_keys=None)
    code, out = await _obmin(capsys, "audit", "verify", "-c", keyless)
    assert code == 0 and "0 checked against their digests, 4 encrypted ones not checked" in out

    # 3. Rotation: k2 seals from the restart on; k1 stays to open the old bodies.
    await gw.stop()
    write_body_key(keys / "k2.key")
    both = {"current": "k2", "keys": {"k1": keys / "k1.key", "k2": keys / "k2.key"}}
    gw = await gateways.start({**audit_store, "body_keys": both}, "after")
    await gw.rest("health", b'{"patient": "later"}', "enc-rest-2")
    records = await gw.records()
    assert [parse_envelope(r.body or b"").key_id for r in records] == ["k1"] * 4 + ["k2"] * 2
    code, out = await _obmin(capsys, "audit", "verify", "-c", gw.config, "--workers", "2")
    assert code == 0 and "stored bodies: 6 checked against their digests" in out, out
    new_only = gateways.config(
        gw.settings, "k2-only", body_keys={"current": "k2", "keys": {"k2": str(keys / "k2.key")}}
    )
    code, out = await _obmin(capsys, "audit", "verify", "-c", new_only)
    assert code == 1 and "first bad record seq 0" in out and "no body key 'k1'" in out, out

    # 4. Evidence for an auditor whose scope holds the exchange carries the plaintext.
    for request_id, plain in ((rest_id, [sent, SECRET_ANSWER]), (soap_id, None)):
        await _covered(gw)
        response = await gw.admin.get(f"/audit/v1/evidence/{request_id}", headers=IN_SCOPE)
        assert response.status == 200, await response.text()
        members = _members(await response.read())
        bodies = [members[n] for n in sorted(members) if n.startswith("bodies/")]
        assert all(n.endswith(".bin") for n in members if n.startswith("bodies/"))
        if plain is not None:
            assert bodies == plain
        else:
            assert SOAP_MARKER.encode() in bodies[0]
        hidden = await gw.admin.get(f"/audit/v1/evidence/{request_id}", headers=OUT_OF_SCOPE)
        assert hidden.status == 404
    file = tmp_path / "rest-evidence.zip"
    response = await gw.admin.get(f"/audit/v1/evidence/{rest_id}", headers=IN_SCOPE)
    file.write_bytes(await response.read())
    code, out = await _obmin(
        capsys, "audit", "verify-evidence", file,
        "--certificate", gateways.dev_pki / "gateway" / "sign.crt",
    )  # fmt: skip
    assert code == 0, out
    assert re.findall(r"record \d+ \((request|response)\): included; body plain", out) == [
        "request",
        "response",
    ]

    # 5. An envelope altered in the database fails verification at its record.
    first = records[0]
    assert first.body is not None
    _intrude(
        audit_store, "UPDATE records SET body = ? WHERE seq = ?", _tamper(first.body), first.seq
    )
    code, out = await _obmin(capsys, "audit", "verify", "-c", gw.config)
    assert code == 1 and f"first bad record seq {first.seq}" in out and "altered" in out, out


async def _covered(gw: Gateway) -> None:
    """Wait until a checkpoint covers every record (evidence needs one)."""
    for _ in range(1000):
        latest = await gw.store.latest_checkpoint()
        if latest is not None and latest.checkpoint.size == await gw.store.count():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no checkpoint covers the log")
