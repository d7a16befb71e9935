"""The evidence endpoint on the admin port, with auditors known by TLS client certificate.

The admin port is served over real TLS (the gateway's admin TLS context, a server
certificate from the development PKI); auditors' client certificates come from a CA of
their own. Bearer tokens keep working beside them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog.testing
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.admin import create_admin_app
from gateway.admin_tls import admin_ssl_context, match_admin_certificate
from gateway.audit import SqliteAuditStore
from gateway.audit.evidence_verify import verify_evidence
from gateway.settings import AdminCertificate, AdminTlsSettings, Settings, SettingsError
from gateway.state import STATE, GatewayState
from registry.identifiers import ClientId
from security import IssuedCert, PkiLayout, init_pki, load_certificate
from security.pki_certs import issue_tls_client_cert, issue_tls_server_cert
from tests.audit.drafts import exchange
from tests.rest.conftest import CLIENT, SERVICE, RestDeployment
from tests.rest.test_rest_signed import BODY, PATH, _signed

AUDITOR = {"Authorization": "Bearer aud"}


@dataclass
class Auditors:
    ca: PkiLayout
    by_thumbprint: IssuedCert
    by_subject: IssuedCert
    out_of_scope: IssuedCert
    admin_only: IssuedCert
    unconfigured: IssuedCert
    stranger: IssuedCert  # a client certificate from a CA the admin port does not trust


@pytest.fixture(scope="module")
def auditors(tmp_path_factory: pytest.TempPathFactory) -> Auditors:
    base = tmp_path_factory.mktemp("auditors")
    ca = init_pki(base / "auditor-ca")
    other = init_pki(base / "other-ca")

    def issue(layout: PkiLayout, code: str) -> IssuedCert:
        return issue_tls_client_cert(
            layout, ClientId.parse(f"DEV/COM/222/{code}"), out_dir=base / code
        )

    return Auditors(
        ca=ca,
        by_thumbprint=issue(ca, "AUDIT1"),
        by_subject=issue(ca, "AUDIT2"),
        out_of_scope=issue(ca, "AUDIT3"),
        admin_only=issue(ca, "OPS"),
        unconfigured=issue(ca, "NOBODY"),
        stranger=issue(other, "STRANGER"),
    )


def _sha256(issued: IssuedCert) -> str:
    return hashlib.sha256(issued.certificate.public_bytes(Encoding.DER)).hexdigest()


def _configured(auditors: Auditors) -> tuple[AdminCertificate, ...]:
    return (
        AdminCertificate(name="auditor-1", sha256=_sha256(auditors.by_thumbprint)),
        AdminCertificate(name="auditor-2", subject="CN=DEV/COM/222/AUDIT2,O=obmin"),
        AdminCertificate(
            name="tax", sha256=_sha256(auditors.out_of_scope), members=("DEV/COM/999",)
        ),
        AdminCertificate(name="ops", sha256=_sha256(auditors.admin_only), roles=("admin",)),
    )


@dataclass
class TlsAdmin:
    url: str
    server_ca: Path
    gateway: RestDeployment

    def client_context(self, auditor: IssuedCert | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if auditor is not None:
            context.load_cert_chain(auditor.cert_path, auditor.key_path)
        return context

    async def get(
        self, path: str, auditor: IssuedCert | None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        connector = aiohttp.TCPConnector(ssl=self.client_context(auditor))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(self.url + path, headers=headers or {}) as response,
        ):
            return response.status, await response.read(), dict(response.headers)


async def _start(
    rest_gateway: RestDeployment,
    auditors: Auditors,
    tmp_path: Path,
    aiohttp_server: Callable[..., Any],
    *,
    require: bool = False,
) -> TlsAdmin:
    pki = rest_gateway.pki
    server = issue_tls_server_cert(pki, out_dir=tmp_path / "admin-tls")
    tls = AdminTlsSettings(
        certificate=server.cert_path,
        key=server.key_path,
        client_ca=auditors.ca.ca_cert,
        require_client_certificate=require,
    )
    state = rest_gateway.client.app[STATE]
    state.settings = state.settings.model_copy(
        update={"admin_tls": tls, "admin_certificates": _configured(auditors)}
    )
    app = create_admin_app(state)
    running = await aiohttp_server(app, ssl=admin_ssl_context(tls))
    return TlsAdmin(f"https://127.0.0.1:{running.port}", pki / "ca" / "ca.crt", rest_gateway)


async def _exchange(gw: RestDeployment) -> str:
    response = await gw.client.get(
        "/restapi/pet/1", headers={"Uxp-Client": CLIENT, "Uxp-Service": SERVICE}
    )
    assert response.status == 200
    records = await (await gw.admin.get("/audit/v1/records", headers=AUDITOR)).json()
    request_id: str = records["records"][-1]["request_id"]
    for _ in range(100):  # a checkpoint every 2 records or 0.2 s
        latest = await gw.admin.get("/audit/v1/checkpoint", headers=AUDITOR)
        if latest.status == 200 and (await latest.json())["tree_size"] >= 2:
            break
        await asyncio.sleep(0.05)
    return request_id


async def test_auditors_by_certificate_get_evidence_that_verifies(
    rest_gateway: RestDeployment,
    auditors: Auditors,
    tmp_path: Path,
    aiohttp_server: Callable[..., Any],
) -> None:
    admin = await _start(rest_gateway, auditors, tmp_path, aiohttp_server)
    request_id = await _exchange(rest_gateway)
    path = f"/audit/v1/evidence/{request_id}"
    gateway_certificate = load_certificate(rest_gateway.pki / "gateway" / "sign.crt")
    for auditor in (auditors.by_thumbprint, auditors.by_subject):
        status, body, headers = await admin.get(path, auditor)
        assert status == 200, body
        assert headers["Content-Type"] == "application/zip"
        report = verify_evidence(body, gateway_certificate=gateway_certificate)
        assert report.request_id == request_id
        assert [r.direction for r in report.records] == ["request", "response"]
    # Scope: another member's auditor does not see the exchange at all.
    status, body, _ = await admin.get(path, auditors.out_of_scope)
    assert status == 404
    # A certificate with the admin role only.
    status, body, _ = await admin.get(path, auditors.admin_only)
    assert status == 403 and b"no auditor role" in body
    # Trusted by the handshake, but nobody's: refused, unless a token says who it is.
    status, body, _ = await admin.get(path, auditors.unconfigured)
    assert status == 401 and b"not configured" in body
    status, _, _ = await admin.get(path, auditors.unconfigured, AUDITOR)
    assert status == 200
    # No certificate: bearer tokens keep working over HTTPS.
    status, _, _ = await admin.get(path, None, AUDITOR)
    assert status == 200
    status, _, _ = await admin.get(path, None)
    assert status == 401
    # The existing auditor API on the same TLS port still takes tokens.
    status, _, _ = await admin.get("/audit/v1/checkpoint", None, AUDITOR)
    assert status == 200


async def test_certificate_auditors_use_every_auditor_endpoint_within_their_scope(
    rest_gateway: RestDeployment,
    auditors: Auditors,
    tmp_path: Path,
    aiohttp_server: Callable[..., Any],
) -> None:
    """Not only evidence: records, a record with its proof, the checkpoint and consistency
    proofs take the same certificate identities, roles and member scopes as tokens."""
    admin = await _start(rest_gateway, auditors, tmp_path, aiohttp_server)
    request_id = await _exchange(rest_gateway)
    await _exchange(rest_gateway)
    auditor = auditors.by_subject
    status, body, _ = await admin.get("/audit/v1/records", auditor)
    assert status == 200, body
    records = json.loads(body)["records"]
    assert request_id in {r["request_id"] for r in records} and len(records) >= 4
    status, body, _ = await admin.get("/audit/v1/records/0", auditor)
    assert status == 200 and json.loads(body)["inclusion_proof"] is not None, body
    status, body, _ = await admin.get("/audit/v1/checkpoint", auditor)
    assert status == 200, body
    size = json.loads(body)["tree_size"]
    status, body, _ = await admin.get(f"/audit/v1/proofs/consistency?from=1&to={size}", auditor)
    assert status == 200 and json.loads(body)["to"] == size, body
    # Scope: the tax auditor's certificate sees none of these records.
    status, body, _ = await admin.get("/audit/v1/records", auditors.out_of_scope)
    assert status == 200 and json.loads(body)["records"] == []
    status, _, _ = await admin.get("/audit/v1/records/0", auditors.out_of_scope)
    assert status == 404
    # Roles, and certificates nobody configured.
    status, body, _ = await admin.get("/audit/v1/records", auditors.admin_only)
    assert status == 403 and b"no auditor role" in body
    status, body, _ = await admin.get("/audit/v1/checkpoint", auditors.unconfigured)
    assert status == 401 and b"not configured" in body
    spec = json.loads((await admin.get("/audit/v1/openapi.json", None))[1])
    assert {"clientCertificate": []} in spec["paths"]["/audit/v1/records"]["get"]["security"]


async def test_untrusted_or_missing_client_certificates_fail_the_handshake(
    rest_gateway: RestDeployment,
    auditors: Auditors,
    tmp_path: Path,
    aiohttp_server: Callable[..., Any],
) -> None:
    admin = await _start(rest_gateway, auditors, tmp_path, aiohttp_server, require=True)
    with pytest.raises(aiohttp.ClientError):
        await admin.get("/audit/v1/checkpoint", auditors.stranger, AUDITOR)
    with pytest.raises(aiohttp.ClientError):  # require_client_certificate
        await admin.get("/audit/v1/checkpoint", None, AUDITOR)
    status, _, _ = await admin.get("/audit/v1/checkpoint", auditors.by_thumbprint, AUDITOR)
    assert status == 200


async def test_evidence_endpoint_errors_and_openapi(rest_gateway: RestDeployment) -> None:
    request_id = await _exchange(rest_gateway)
    admin = rest_gateway.admin
    assert (await admin.get(f"/audit/v1/evidence/{request_id}")).status == 401
    ok = await admin.get(f"/audit/v1/evidence/{request_id}", headers=AUDITOR)
    assert ok.status == 200
    assert request_id in ok.headers["Content-Disposition"]
    scoped = await admin.get(
        f"/audit/v1/evidence/{request_id}", headers={"Authorization": "Bearer scoped"}
    )
    assert scoped.status == 404
    bad = await admin.get("/audit/v1/evidence/not-a-uuid", headers=AUDITOR)
    assert bad.status == 400
    unknown = await admin.get(
        "/audit/v1/evidence/00000000-0000-4000-8000-000000000000", headers=AUDITOR
    )
    assert unknown.status == 404
    spec = await (await admin.get("/audit/v1/openapi.json")).json()
    assert "/audit/v1/evidence/{request_id}" in spec["paths"]


def test_admin_certificate_settings(auditors: Auditors, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of sha256 and subject"):
        AdminCertificate(name="x")
    with pytest.raises(ValueError, match="exactly one"):
        AdminCertificate(name="x", sha256="a" * 64, subject="CN=x")
    with pytest.raises(ValueError, match="not an RFC 4514 name"):
        AdminCertificate(name="x", subject="no equals sign")
    entries = _configured(auditors)
    der = auditors.by_subject.certificate.public_bytes(Encoding.DER)
    assert match_admin_certificate(entries, der) == entries[1]
    other = auditors.unconfigured.certificate.public_bytes(Encoding.DER)
    assert match_admin_certificate(entries, other) is None
    missing = AdminTlsSettings(certificate=tmp_path / "no.crt", key=tmp_path / "no.key")
    with pytest.raises(SettingsError, match=r"admin_tls\.certificate/key: cannot load"):
        admin_ssl_context(missing)
    server = issue_tls_server_cert(auditors.ca, out_dir=tmp_path / "srv")
    no_ca = AdminTlsSettings(
        certificate=server.cert_path, key=server.key_path, require_client_certificate=True
    )
    with pytest.raises(SettingsError, match=r"needs admin_tls\.client_ca"):
        admin_ssl_context(no_ca)
    bad_ca = AdminTlsSettings(
        certificate=server.cert_path, key=server.key_path, client_ca=tmp_path / "none.pem"
    )
    with pytest.raises(SettingsError, match=r"admin_tls\.client_ca: cannot load"):
        admin_ssl_context(bad_ca)
    # An encrypted admin key (obmin's default) opens with the passphrase, never a prompt.
    sealed = issue_tls_server_cert(auditors.ca, out_dir=tmp_path / "sealed", passphrase=b"pw")
    encrypted = AdminTlsSettings(certificate=sealed.cert_path, key=sealed.key_path)
    admin_ssl_context(encrypted, b"pw")
    with pytest.raises(
        SettingsError, match=r"admin_tls\.certificate/key: the TLS key .* is encrypted"
    ):
        admin_ssl_context(encrypted)
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path,
            "keys": {"signing_certificate": "a", "signing_key": "b"},
            "admin_tls": {"certificate": server.cert_path, "key": server.key_path},
            "admin_certificates": [{"name": "a", "subject": "CN=DEV/COM/222/AUDIT2,O=obmin"}],
        }
    )
    assert settings.admin_certificates[0].roles == ("auditor",)


async def test_evidence_not_yet_checkpointed_or_without_a_log_key(
    rest_gateway: RestDeployment, tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    state = rest_gateway.client.app[STATE]
    assert state.env is not None
    fresh = SqliteAuditStore(tmp_path / "fresh.db")  # records, and no checkpoint yet
    await fresh.open()
    try:
        drafts = exchange("m-1")
        await fresh.append(drafts)
        other = GatewayState(state.settings)
        other.env = dataclasses.replace(state.env, audit=fresh)
        other.checkpointer = state.checkpointer  # the running gateway's log key
        assert other.checkpointer is not None
        admin = await aiohttp_client(create_admin_app(other))
        pending = await admin.get(f"/audit/v1/evidence/{drafts[0].request_id}", headers=AUDITOR)
        assert pending.status == 409
        assert pending.headers["Retry-After"] == "1"
        assert "not yet covered by a signed checkpoint" in (await pending.json())["message"]
        keys = state.settings.keys.model_copy(update={"log_key": None})
        other.settings = state.settings.model_copy(update={"keys": keys})
        other.checkpointer = None  # as a gateway without keys.log_key runs
        keyless = await aiohttp_client(create_admin_app(other))
        failed = await keyless.get(f"/audit/v1/evidence/{drafts[0].request_id}", headers=AUDITOR)
        assert failed.status == 503
        assert "keys.log_key is not configured" in (await failed.json())["message"]
    finally:
        await fresh.close()


async def test_evidence_is_signed_with_the_log_key_the_gateway_holds(
    rest_gateway: RestDeployment, tmp_path: Path
) -> None:
    """The endpoint takes the checkpointer's key: it never reads (or decrypts) the key
    file again, so a key file gone since start, or a passphrase no longer in the
    environment, does not matter to it."""
    request_id = await _exchange(rest_gateway)
    state = rest_gateway.client.app[STATE]
    assert state.checkpointer is not None
    keys = state.settings.keys.model_copy(update={"log_key": tmp_path / "gone.key"})
    state.settings = state.settings.model_copy(update={"keys": keys})
    response = await rest_gateway.admin.get(f"/audit/v1/evidence/{request_id}", headers=AUDITOR)
    assert response.status == 200, await response.text()
    report = verify_evidence(await response.read(), vkey=state.checkpointer.verifier_key)
    assert report.request_id == request_id


async def test_a_store_failure_answers_503_without_internal_text(
    rest_gateway: RestDeployment, tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    """STYLE 5: the auditor gets the code and a plain sentence; the log gets the details
    (here the database's path), as on every other auditor endpoint."""
    state = rest_gateway.client.app[STATE]
    assert state.env is not None
    database = tmp_path / "evidence.db"
    store = SqliteAuditStore(database)
    await store.open()
    try:
        drafts = exchange("m-1")
        await store.append(drafts)
        other = GatewayState(state.settings)
        other.env = dataclasses.replace(state.env, audit=store)
        other.checkpointer = state.checkpointer
        admin = await aiohttp_client(create_admin_app(other))
        away = database.with_name("moved.db")
        database.rename(away)
        try:
            with structlog.testing.capture_logs() as logged:
                failed = await admin.get(
                    f"/audit/v1/evidence/{drafts[0].request_id}", headers=AUDITOR
                )
        finally:
            away.rename(database)
        assert failed.status == 503
        text = await failed.text()
        assert json.loads(text) == {
            "type": "LoggingFailed",
            "message": "the audit log cannot be read now",
        }
        assert str(tmp_path) not in text
        (event,) = [e for e in logged if e["event"] == "auditor API: the audit log failed"]
        assert event["path"] == f"/audit/v1/evidence/{drafts[0].request_id}"
        assert event["log_level"] == "error" and str(database) in event["reason"]
    finally:
        await store.close()


async def test_the_bundle_carries_the_pinned_signer_certificate(
    rest_gateway: RestDeployment,
) -> None:
    """The registry pins the signer's certificate for its client: the bundle includes it,
    found by the record's thumbprint among the precomputed pinned thumbprints."""
    request = _signed(rest_gateway, "signed-evidence")
    response = await rest_gateway.client.post(PATH, data=BODY, headers=request.headers)
    assert response.status == 200, await response.text()
    request_id = response.headers["X-Road-Request-Id"]
    for _ in range(100):  # a checkpoint every 2 records or 0.2 s
        bundle = await rest_gateway.admin.get(f"/audit/v1/evidence/{request_id}", headers=AUDITOR)
        if bundle.status != 409:
            break
        await asyncio.sleep(0.05)
    assert bundle.status == 200, await bundle.text()
    gateway_certificate = load_certificate(rest_gateway.pki / "gateway" / "sign.crt")
    report = verify_evidence(await bundle.read(), gateway_certificate=gateway_certificate)
    signer = load_certificate(rest_gateway.signer.cert_path)
    assert report.records[0].direction == "request"
    assert report.records[0].signer_certificate == signer


def test_an_admin_certificate_subject_is_parsed_once_at_load(auditors: Auditors) -> None:
    """The RFC 4514 subject is parsed when the settings load (and refused there if it is
    not one); `subject_name` is what a handshake's certificate subject is compared with."""
    by_subject, by_thumbprint = _configured(auditors)[1], _configured(auditors)[0]
    assert by_subject.subject_name == auditors.by_subject.certificate.subject
    assert by_subject.subject_name != auditors.out_of_scope.certificate.subject
    assert by_thumbprint.subject_name is None
    with pytest.raises(ValueError, match="not an RFC 4514 name"):
        AdminCertificate(name="bad", subject="no equals sign")
