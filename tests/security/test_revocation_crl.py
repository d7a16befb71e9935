"""CRL revocation checks: CRLs written by obmin's PKI code, served over loopback HTTP.

The distribution point serves whatever is in the CA's ``ca/crl.pem`` at the time of the
request (so `revoke` shows at once), or a fixed CRL per route for the refusals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from registry.identifiers import MemberId
from security import (
    CertValidation,
    PkiLayout,
    SecurityError,
    init_pki,
    issue_member_cert,
    load_certificate,
)
from security.pki_revoke import revoke, write_crl
from security.revocation import AnchorRevocation, RevocationChecker, RevocationConfig
from security.revocation_base import ExpiringCache

MEMBER = MemberId("SEVDEIR-TEST", "GOV", "12345678")
CONFIG = RevocationConfig(timeout=2.0)


@dataclass(frozen=True, slots=True)
class CrlSite:
    """A CA, two of its certificates, and the base URL of its distribution point."""

    layout: PkiLayout
    ca: x509.Certificate
    good: x509.Certificate
    doomed: x509.Certificate
    url: str
    files: dict[str, bytes]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[CrlSite]:
    """A fresh CA per test (revocation changes it) and its HTTP distribution point."""
    files: dict[str, bytes] = {}

    async def current(_request: web.Request) -> web.Response:
        return web.Response(body=layout.ca_crl.read_bytes(), content_type="application/pkix-crl")

    async def fixed(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound
        return web.Response(body=files[name], content_type="application/pkix-crl")

    app = web.Application()
    app.router.add_get("/ca.crl", current)
    app.router.add_get("/fixed/{name}", fixed)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/"))
        layout = init_pki(tmp_path / "pki")
        write_crl(layout)

        def member(name: str) -> x509.Certificate:
            target = tmp_path / name
            crl_url = url + "ca.crl"
            issued = issue_member_cert(
                layout, MEMBER, name=name, out_dir=target, key_type="ec", crl_url=crl_url
            )
            return issued.certificate

        yield CrlSite(
            layout, load_certificate(layout.ca_cert), member("good"), member("doomed"), url, files
        )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The HTTP client session the checker uses."""
    async with aiohttp.ClientSession() as client:
        yield client


def crl(url: str | None = None, on_unavailable: str = "reject") -> AnchorRevocation:
    """Anchor settings: CRL at ``url`` (None: the certificate's distribution point)."""
    return AnchorRevocation("crl", on_unavailable, None, url)


def now() -> datetime:
    """The real time (the CRLs are made with it)."""
    return datetime.now(UTC)


async def test_good_from_the_distribution_point_then_cached(
    site: CrlSite, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, CONFIG)
    status = await checker.check(site.good, site.ca, crl(), now())
    assert (status.status, status.method, status.source) == ("good", "crl", site.url + "ca.crl")
    assert not status.from_cache
    assert status.next_update is not None
    again = await checker.check(site.doomed, site.ca, crl(), now())
    assert again.status == "good" and again.from_cache


@pytest.mark.parametrize("on_unavailable", ["reject", "accept"])
async def test_revoked(site: CrlSite, session: aiohttp.ClientSession, on_unavailable: str) -> None:
    revoke(site.layout, site.doomed.serial_number, reason="cessationOfOperation")
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match=r"was revoked on .*cessationOfOperation"):
        await checker.check(site.doomed, site.ca, crl(None, on_unavailable), now())
    assert (await checker.check(site.good, site.ca, crl(), now())).status == "good"


async def test_der_crl_at_a_configured_url(site: CrlSite, session: aiohttp.ClientSession) -> None:
    revoke(site.layout, site.doomed.serial_number)
    pem = x509.load_pem_x509_crl(site.layout.ca_crl.read_bytes())
    site.files["der"] = pem.public_bytes(Encoding.DER)
    checker = RevocationChecker(session, CONFIG)
    url = site.url + "fixed/der"
    status = await checker.check(site.good, site.ca, crl(url), now())
    assert status.source == url
    with pytest.raises(CertValidation, match="was revoked"):
        await checker.check(site.doomed, site.ca, crl(url), now())


async def test_expired_crl(site: CrlSite, session: aiohttp.ClientSession) -> None:
    write_crl(site.layout, now=now() - timedelta(days=3), days=1)
    with pytest.raises(CertValidation, match=r"unavailable: CRL from .* is stale: its nextUpdate"):
        await RevocationChecker(session, CONFIG).check(site.good, site.ca, crl(), now())
    accepted = await RevocationChecker(session, CONFIG).check(
        site.good, site.ca, crl(None, "accept"), now()
    )
    assert accepted.status == "unknown-accepted"
    assert accepted.detail is not None and "stale" in accepted.detail


@pytest.mark.parametrize("on_unavailable", ["reject", "accept"])
async def test_crl_with_a_bad_signature(
    site: CrlSite, session: aiohttp.ClientSession, tmp_path: Path, on_unavailable: str
) -> None:
    # Another CA with the very same name signs a CRL that omits nothing: a forgery.
    impostor = init_pki(tmp_path / "impostor")
    assert load_certificate(impostor.ca_cert).subject == site.ca.subject
    site.files["forged"] = write_crl(impostor).read_bytes()
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match="CRL signature does not verify"):
        await checker.check(
            site.good, site.ca, crl(site.url + "fixed/forged", on_unavailable), now()
        )


async def test_crl_of_another_issuer(
    site: CrlSite, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    other = init_pki(tmp_path / "other", instance="EE")
    site.files["other"] = write_crl(other).read_bytes()
    checker = RevocationChecker(session, CONFIG)
    with pytest.raises(CertValidation, match="not by the certificate's CA"):
        await checker.check(site.good, site.ca, crl(site.url + "fixed/other", "accept"), now())


@pytest.mark.parametrize(
    ("path", "message"),
    [("fixed/missing", "answered HTTP 404"), ("fixed/garbage", "did not serve a CRL")],
)
async def test_unreachable_or_garbage(
    site: CrlSite, session: aiohttp.ClientSession, path: str, message: str
) -> None:
    site.files["garbage"] = b"<html>not a CRL</html>"
    url = site.url + path
    with pytest.raises(CertValidation, match=message):
        await RevocationChecker(session, CONFIG).check(site.good, site.ca, crl(url), now())
    accepted = await RevocationChecker(session, CONFIG).check(
        site.good, site.ca, crl(url, "accept"), now()
    )
    assert accepted.status == "unknown-accepted" and accepted.method == "crl"


async def test_no_distribution_point(site: CrlSite, session: aiohttp.ClientSession) -> None:
    target = site.layout.root / "bare"
    bare = issue_member_cert(site.layout, MEMBER, name="bare", out_dir=target, key_type="ec")
    with pytest.raises(CertValidation, match="names no CRL distribution point"):
        await RevocationChecker(session, CONFIG).check(bare.certificate, site.ca, crl(), now())


async def test_cache_expires_with_the_refresh_interval(
    site: CrlSite, session: aiohttp.ClientSession
) -> None:
    checker = RevocationChecker(session, RevocationConfig(crl_refresh=timedelta(minutes=1)))
    assert (await checker.check(site.doomed, site.ca, crl(), now())).status == "good"
    revoke(site.layout, site.doomed.serial_number)
    # Still the cached CRL within the refresh interval, the new one after it.
    assert (await checker.check(site.doomed, site.ca, crl(), now())).from_cache
    with pytest.raises(CertValidation, match="was revoked"):
        await checker.check(site.doomed, site.ca, crl(), now() + timedelta(minutes=2))


def test_caches_are_bounded_and_expire() -> None:
    cache: ExpiringCache[int, str] = ExpiringCache(2)
    start = now()
    cache.put(1, "one", start + timedelta(seconds=10))
    cache.put(2, "two", start + timedelta(seconds=10))
    assert cache.get(1, start) == "one"  # 1 is now the most recently used
    cache.put(3, "three", start + timedelta(seconds=10))
    assert len(cache) == 2
    assert cache.get(2, start) is None
    assert cache.get(1, start + timedelta(seconds=10)) is None
    assert cache.get(3, start) == "three"
    with pytest.raises(SecurityError, match="must be positive"):
        RevocationConfig(cache_size=0)
