"""OCSP revocation checks against a real `openssl ocsp` responder over loopback.

The responders serve the index that obmin's PKI code writes (``ca/index.txt``); each is a
subprocess started by a fixture and terminated in its teardown. Misbehaving responders
(silent, garbage, replaying) are small aiohttp or asyncio servers.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp

from registry import TrustAnchorEntry
from registry.identifiers import MemberId
from security import (
    CertValidation,
    IssuedCert,
    PkiLayout,
    TrustStore,
    init_pki,
    issue_member_cert,
    load_certificate,
    load_private_key,
    validate_signer,
)
from security.ocsp import build_ocsp_query
from security.pki_build import sign_certificate
from security.pki_certs import issue_ocsp_responder_cert
from security.pki_revoke import revoke
from security.revocation import AnchorRevocation, RevocationChecker, RevocationConfig
from tests.support import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="the openssl command is not installed; these tests run a real `openssl ocsp`",
)

MEMBER = MemberId("SEVDEIR-TEST", "GOV", "12345678")
CONFIG = RevocationConfig(timeout=2.0, max_age=timedelta(hours=1))
_ACCEPT = re.compile(r"ACCEPT .*:(\d+)")


@contextmanager
def openssl_responder(
    layout: PkiLayout, signer: Path, key: Path, *extra: str, port: int = 0
) -> Iterator[str]:
    """Run ``openssl ocsp`` as the CA's responder; yield its URL; stop it afterwards."""
    log = layout.root / f"ocsp-{time.monotonic_ns()}.log"
    command = [
        "openssl", "ocsp", "-index", str(layout.ca_index), "-CA", str(layout.ca_cert),
        "-rsigner", str(signer), "-rkey", str(key), "-port", str(port), *extra,
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        match = None
        while match is None:
            match = _ACCEPT.search(log.read_text(errors="replace"))
            if process.poll() is not None:
                raise RuntimeError(f"openssl ocsp exited: {log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError("openssl ocsp did not start listening within 10 s")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{match.group(1)}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class OcspPki:
    """A PKI made now (the responder dates its answers by the real clock)."""

    layout: PkiLayout
    ca: x509.Certificate
    responder: IssuedCert
    good: x509.Certificate
    revoked: x509.Certificate
    unrecorded: x509.Certificate
    with_aia: x509.Certificate
    aia_port: int
    rogue_responder: IssuedCert
    member_responder: IssuedCert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> OcspPki:
    """The CA with its responder certificate, good, revoked and unrecorded certificates."""
    base = tmp_path_factory.mktemp("ocsp")
    layout = init_pki(base / "pki")

    def member(name: str, ocsp_url: str | None = None) -> IssuedCert:
        return issue_member_cert(
            layout, MEMBER, name=name, out_dir=base / name, key_type="ec", ocsp_url=ocsp_url
        )

    aia_port = free_port()
    good, revoked = member("good"), member("revoked")
    with_aia = member("aia", ocsp_url=f"http://127.0.0.1:{aia_port}/")
    member_responder = member("not-a-responder")
    revoke(layout, revoked.cert_path, reason="keyCompromise")
    # Signed by the CA but never recorded in its index: the responder does not know it.
    ca_key, ca = load_private_key(layout.ca_key), load_certificate(layout.ca_cert)
    stray_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    unrecorded = sign_certificate(
        ca_key,
        ca,
        subject=good.certificate.subject,
        public_key=stray_key.public_key(),
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
        extensions=[(x509.BasicConstraints(ca=False, path_length=None), True)],
    )
    rogue = init_pki(base / "rogue")
    return OcspPki(
        layout=layout,
        ca=ca,
        responder=issue_ocsp_responder_cert(layout),
        good=good.certificate,
        revoked=revoked.certificate,
        unrecorded=unrecorded,
        with_aia=with_aia.certificate,
        aia_port=aia_port,
        rogue_responder=issue_ocsp_responder_cert(rogue),
        member_responder=member_responder,
    )


@pytest.fixture(scope="module")
def delegated(pki: OcspPki) -> Iterator[str]:
    """The CA's delegated responder, answers valid for 10 minutes (nextUpdate)."""
    cert, key = pki.responder.cert_path, pki.responder.key_path
    with openssl_responder(pki.layout, cert, key, "-nmin", "10", port=pki.aia_port) as url:
        yield url


@pytest.fixture(scope="module")
def ca_signed(pki: OcspPki) -> Iterator[str]:
    """The CA answering itself, named by key hash, without nextUpdate."""
    layout = pki.layout
    with openssl_responder(layout, layout.ca_cert, layout.ca_key, "-resp_key_id") as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The HTTP client session the checker uses."""
    async with aiohttp.ClientSession() as client:
        yield client


def ocsp(url: str | None, on_unavailable: str = "reject") -> AnchorRevocation:
    """Anchor settings: OCSP at ``url`` (None: the certificate's AIA)."""
    return AnchorRevocation("ocsp", on_unavailable, url)


def now() -> datetime:
    """The real time: the responder dates its answers by it."""
    return datetime.now(UTC)


async def test_good_then_cached(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    status = await checker.check(pki.good, pki.ca, ocsp(delegated), now())
    assert (status.status, status.method, status.source) == ("good", "ocsp", delegated)
    assert not status.from_cache
    assert status.this_update is not None and status.next_update is not None
    assert status.next_update - status.this_update == timedelta(minutes=10)
    again = await checker.check(pki.good, pki.ca, ocsp(delegated), now())
    assert again.status == "good" and again.from_cache


async def test_responder_from_the_certificates_aia(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    status = await checker.check(pki.with_aia, pki.ca, ocsp(None), now())
    assert status.status == "good"
    assert status.source == f"http://127.0.0.1:{pki.aia_port}/"
    with pytest.raises(CertValidation, match="names no OCSP responder"):
        await checker.check(pki.good, pki.ca, ocsp(None), now())


@pytest.mark.parametrize("on_unavailable", ["reject", "accept"])
async def test_revoked_is_refused_whatever_the_policy(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession, on_unavailable: str
) -> None:
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match=r"was revoked on .* \(reason: keyCompromise\)"):
        await checker.check(pki.revoked, pki.ca, ocsp(delegated, on_unavailable), now())


@pytest.mark.parametrize("on_unavailable", ["reject", "accept"])
async def test_unknown_is_refused_whatever_the_policy(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession, on_unavailable: str
) -> None:
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match="does not know certificate"):
        await checker.check(pki.unrecorded, pki.ca, ocsp(delegated, on_unavailable), now())


async def test_answer_signed_by_the_ca_itself_named_by_key(
    pki: OcspPki, ca_signed: str, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    status = await checker.check(pki.good, pki.ca, ocsp(ca_signed), now())
    assert status.status == "good" and status.next_update is None
    with pytest.raises(CertValidation, match="was revoked"):
        await checker.check(pki.revoked, pki.ca, ocsp(ca_signed), now())


async def test_stale_answer_past_next_update(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession
) -> None:
    later = now() + timedelta(minutes=30)
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match=r"unavailable: .* is stale: its nextUpdate"):
        await checker.check(pki.good, pki.ca, ocsp(delegated), later)
    accepted = await RevocationChecker(session, CONFIG).check(
        pki.good, pki.ca, ocsp(delegated, "accept"), later
    )
    assert accepted.status == "unknown-accepted"
    assert accepted.detail is not None and "stale" in accepted.detail


async def test_stale_answer_older_than_the_freshness(
    pki: OcspPki, ca_signed: str, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match="is older than 3600 s"):
        await checker.check(pki.good, pki.ca, ocsp(ca_signed), now() + timedelta(hours=2))


async def test_answer_from_the_future(
    pki: OcspPki, ca_signed: str, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match="dated in the future"):
        await checker.check(pki.good, pki.ca, ocsp(ca_signed), now() - timedelta(hours=1))


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("rogue_responder", "which the certificate's CA did not issue"),
        ("member_responder", "has no OCSPSigning extended key usage"),
    ],
)
async def test_unauthorised_responders_are_refused(
    pki: OcspPki, session: aiohttp.ClientSession, which: str, message: str
) -> None:
    signer: IssuedCert = getattr(pki, which)
    with openssl_responder(pki.layout, signer.cert_path, signer.key_path) as url:
        for policy in ("reject", "accept"):
            checker = RevocationChecker(session, CONFIG)
            with pytest.raises(CertValidation, match=message) as info:
                await checker.check(pki.good, pki.ca, ocsp(url, policy), now())
            assert "unauthorised responder" in str(info.value)


async def test_bad_signature_is_refused(pki: OcspPki, session: aiohttp.ClientSession) -> None:
    cert, key = pki.responder.cert_path, pki.responder.key_path
    with openssl_responder(pki.layout, cert, key, "-badsig") as url:
        checker = RevocationChecker(session, CONFIG)
        with pytest.raises(CertValidation, match="signature does not verify"):
            await checker.check(pki.good, pki.ca, ocsp(url, "accept"), now())


async def test_replayed_answer_fails_the_nonce(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession
) -> None:
    # A genuine, fresh, correctly signed "good" answer to somebody else's request.
    earlier = build_ocsp_query(pki.good, pki.ca, b"\x01" * 16)
    headers = {"Content-Type": "application/ocsp-request"}
    async with session.post(delegated, data=earlier.der, headers=headers) as response:
        captured = await response.read()

    async def replay(_request: web.Request) -> web.Response:
        return web.Response(body=captured, content_type="application/ocsp-response")

    app = web.Application()
    app.router.add_post("/", replay)
    async with TestServer(app, host="127.0.0.1") as server:
        checker = RevocationChecker(session, CONFIG)
        with pytest.raises(CertValidation, match="nonce does not match"):
            await checker.check(pki.good, pki.ca, ocsp(str(server.make_url("/")), "accept"), now())


async def test_responder_down(pki: OcspPki, session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match=r"status unavailable: .* cannot be reached"):
        await checker.check(pki.good, pki.ca, ocsp(url, "reject"), now())
    # Within unavailable_retry the dead responder is not asked again.
    with pytest.raises(CertValidation, match="not retried yet"):
        await checker.check(pki.good, pki.ca, ocsp(url, "reject"), now())
    accepted = await RevocationChecker(session, CONFIG).check(
        pki.good, pki.ca, ocsp(url, "accept"), now()
    )
    assert (accepted.status, accepted.method, accepted.source) == ("unknown-accepted", "ocsp", url)
    assert accepted.detail is not None and "cannot be reached" in accepted.detail


async def test_responder_that_never_answers(pki: OcspPki, session: aiohttp.ClientSession) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        checker = RevocationChecker(session, RevocationConfig(timeout=0.3))
        started = time.monotonic()
        with pytest.raises(CertValidation, match=r"did not answer within 0\.3 s"):
            await checker.check(pki.good, pki.ca, ocsp(url), now())
        assert time.monotonic() - started < 2
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"this is not DER", "sent no OCSP response"),
        (500, b"oops", "answered HTTP 500"),
        (200, bytes.fromhex("30030a0103"), "answered try_later"),
        (200, b"\x30" * (CONFIG.max_response_bytes + 1), "more than 65536 bytes"),
    ],
)
async def test_garbage_and_errors_are_unavailable(
    pki: OcspPki, session: aiohttp.ClientSession, status: int, body: bytes, message: str
) -> None:
    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_post("/", broken)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/"))
        with pytest.raises(CertValidation, match=message):
            await RevocationChecker(session, CONFIG).check(pki.good, pki.ca, ocsp(url), now())
        accepted = await RevocationChecker(session, CONFIG).check(
            pki.good, pki.ca, ocsp(url, "accept"), now()
        )
        assert accepted.status == "unknown-accepted"


async def test_check_signer_uses_the_registry_anchor(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession
) -> None:
    anchors = [TrustAnchorEntry("dev CA", pki.ca, "ocsp", "reject", delegated)]
    checker = RevocationChecker(session, CONFIG)
    trust = TrustStore([pki.ca])
    signer = validate_signer(pki.good, [], trust, now())
    assert (await checker.check_signer(signer, anchors, now())).status == "good"
    revoked = validate_signer(pki.revoked, [], trust, now())
    with pytest.raises(CertValidation, match="was revoked"):
        await checker.check_signer(revoked, anchors, now())
    none = [TrustAnchorEntry("dev CA", pki.ca, "none", "reject", None)]
    assert (await checker.check_signer(revoked, none, now())).status == "not-checked"


async def test_cached_answer_outlives_the_responder(
    pki: OcspPki, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    cert, key = pki.responder.cert_path, pki.responder.key_path
    with openssl_responder(pki.layout, cert, key, "-nmin", "5") as url:
        assert (await checker.check(pki.good, pki.ca, ocsp(url), now())).status == "good"
    cached = await checker.check(pki.good, pki.ca, ocsp(url), now())
    assert cached.status == "good" and cached.from_cache
    # Past nextUpdate the cache no longer answers, and the responder is gone.
    with pytest.raises(CertValidation, match="unavailable"):
        await checker.check(pki.good, pki.ca, ocsp(url), now() + timedelta(minutes=6))


async def test_settings_and_arguments_are_checked(
    pki: OcspPki, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match="not understood"):
        await checker.check(pki.good, pki.ca, AnchorRevocation("both"), now())
    with pytest.raises(CertValidation, match="not understood"):
        await checker.check(pki.good, pki.ca, AnchorRevocation("ocsp", "maybe"), now())
    with pytest.raises(CertValidation, match="did not issue it"):
        await checker.check(pki.good, pki.good, ocsp("http://127.0.0.1:1/"), now())
    with pytest.raises(CertValidation, match="timezone-aware"):
        await checker.check(pki.good, pki.ca, ocsp(None), datetime(2030, 1, 1))


# --- per-anchor overrides of the gateway's revocation settings (SPEC 5.4 "configured freshness")


async def test_anchor_freshness_overrides_the_gateway_default(
    pki: OcspPki, ca_signed: str, session: aiohttp.ClientSession
) -> None:
    # The CA's own answers carry no nextUpdate: only the freshness bounds them.
    later = now() + timedelta(minutes=20)
    checker = RevocationChecker(session, CONFIG)  # max_age 1 h: a 20-minute-old answer is fresh
    assert (await checker.check(pki.good, pki.ca, ocsp(ca_signed), later)).status == "good"
    strict = AnchorRevocation("ocsp", "reject", ca_signed, max_age=timedelta(minutes=10))
    with pytest.raises(CertValidation, match="is older than 600 s"):
        await RevocationChecker(session, CONFIG).check(pki.good, pki.ca, strict, later)
    # The same checker keeps a cached answer no longer than the anchor's freshness either.
    fresh = await checker.check(pki.good, pki.ca, strict, now())
    assert fresh.status == "good"
    with pytest.raises(CertValidation, match="is older than 600 s"):
        await checker.check(pki.good, pki.ca, strict, later)


async def test_anchor_can_require_the_nonce(
    pki: OcspPki, delegated: str, session: aiohttp.ClientSession
) -> None:
    # A genuine answer to a request without a nonce (a precomputed answer, in effect).
    request = (
        x509_ocsp.OCSPRequestBuilder().add_certificate(pki.good, pki.ca, hashes.SHA1()).build()
    )
    headers = {"Content-Type": "application/ocsp-request"}
    async with session.post(
        delegated, data=request.public_bytes(Encoding.DER), headers=headers
    ) as response:
        captured = await response.read()

    async def precomputed(_request: web.Request) -> web.Response:
        return web.Response(body=captured, content_type="application/ocsp-response")

    app = web.Application()
    app.router.add_post("/", precomputed)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/"))
        lenient = await RevocationChecker(session, CONFIG).check(pki.good, pki.ca, ocsp(url), now())
        assert lenient.status == "good"
        demanding = AnchorRevocation("ocsp", "accept", url, require_nonce=True)
        with pytest.raises(CertValidation, match="does not echo the request nonce"):
            await RevocationChecker(session, CONFIG).check(pki.good, pki.ca, demanding, now())


async def test_anchor_timeout_overrides_the_gateway_default(
    pki: OcspPki, session: aiohttp.ClientSession
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        checker = RevocationChecker(session, RevocationConfig(timeout=30))
        quick = AnchorRevocation("ocsp", "reject", url, timeout=0.2)
        with pytest.raises(CertValidation, match=r"did not answer within 0\.2 s"):
            await checker.check(pki.good, pki.ca, quick, now())
    finally:
        server.close()
        await server.wait_closed()
