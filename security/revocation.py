"""Revocation checking of signer certificates (SPEC 5.4): OCSP or CRL per trust anchor.

The pipeline calls `RevocationChecker.check_signer` (or `check`) after the signature and the
certificate path have been verified. Each trust anchor says how its certificates are checked
(``revocation = ocsp|crl|none``) and what happens when no answer can be had
(``on_unavailable = reject|accept``). The outcomes:

- ``good``: a verified, fresh answer says the certificate is not revoked;
- revoked, or unknown to the responder: `CertValidation`, whatever ``on_unavailable`` says;
- a forged, unauthorised or replayed answer: `CertValidation`, likewise;
- no usable answer (responder down, timeout, HTTP error, garbage, stale): `CertValidation`
  "revocation status unavailable" under ``reject``; under ``accept`` a logged warning and
  the status ``unknown-accepted``.

`check_signer` checks every certificate of the validated path except the trust anchor: the
signer, and each intermediate CA under the settings of the anchor the path ends in (an
intermediate revoked by its issuer revokes everything below it). A configured ``ocsp_url``
is asked about every certificate of the path; without one, each certificate's own AIA or
CRL distribution point is used.

Answers are cached: OCSP per (issuer, serial) until nextUpdate but no longer than the
freshness ``max_age`` after thisUpdate; CRLs per (URL, issuer) until nextUpdate but no longer
than ``crl_refresh``. Both caches are bounded. The checker is long-lived (one per process,
created with the HTTP client session) and outlives registry reloads. A trust anchor may
override ``max_age``, ``timeout`` and ``require_nonce`` for its certificates.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

import aiohttp
import structlog
from cryptography import x509

from security.certs import ValidatedSigner, cert_thumbprint
from security.crl import VerifiedCrl, crl_status, crl_url_of, verify_crl
from security.errors import CertValidation
from security.ocsp import build_ocsp_query, ocsp_url_of, verify_ocsp_response
from security.pki_index import serial_hex
from security.revocation_base import (
    ExpiringCache,
    RevocationConfig,
    RevocationFacts,
    RevocationUnavailable,
)

__all__ = [
    "AnchorRevocation",
    "RevocationChecker",
    "RevocationConfig",
    "RevocationSettings",
    "RevocationStatus",
    "RevocationUnavailable",
]

log = structlog.get_logger("obmin.revocation")

_NONCE_BYTES = 16


class RevocationSettings(Protocol):
    """A trust anchor's revocation settings, as the registry's ``TrustAnchorEntry`` has them.

    An optional ``crl_url`` attribute, when present, overrides the certificate's CRL
    distribution point (as ``ocsp_url`` overrides its AIA).
    """

    @property
    def revocation(self) -> str:
        """``none``, ``ocsp`` or ``crl``."""
        ...

    @property
    def on_unavailable(self) -> str:
        """``reject`` or ``accept``."""
        ...

    @property
    def ocsp_url(self) -> str | None:
        """The configured OCSP responder, preferred to the certificate's AIA."""
        ...


class AnchorEntry(RevocationSettings, Protocol):
    """A trust anchor entry: its certificate and its revocation settings."""

    @property
    def certificate(self) -> x509.Certificate:
        """The anchor's CA certificate."""
        ...


@dataclass(frozen=True, slots=True)
class AnchorRevocation:
    """Revocation settings given directly (tests, tools); same fields as the registry's."""

    revocation: str
    on_unavailable: str = "reject"
    ocsp_url: str | None = None
    crl_url: str | None = None
    max_age: timedelta | None = None
    timeout: float | None = None
    require_nonce: bool | None = None


@dataclass(frozen=True, slots=True)
class RevocationStatus:
    """The outcome of a revocation check that did not refuse the certificate.

    ``status`` is ``good``, ``not-checked`` (the anchor says ``revocation: none``) or
    ``unknown-accepted`` (no answer, accepted by ``on_unavailable: accept``; ``detail``
    says why). ``source`` is the responder or CRL URL.
    """

    status: Literal["good", "not-checked", "unknown-accepted"]
    method: Literal["ocsp", "crl", "none"]
    source: str | None = None
    this_update: datetime | None = None
    next_update: datetime | None = None
    from_cache: bool = False
    detail: str | None = None


def _describe(cert: x509.Certificate) -> str:
    return f"certificate {serial_hex(cert.serial_number)} ({cert.subject.rfc4514_string()})"


def _verdict(
    facts: RevocationFacts, cert: x509.Certificate, method: Literal["ocsp", "crl"], source: str
) -> RevocationStatus:
    if facts.status == "revoked":
        when = facts.revoked_at.isoformat() if facts.revoked_at is not None else "an unknown date"
        why = f" (reason: {facts.reason})" if facts.reason else ""
        raise CertValidation(f"{_describe(cert)} was revoked on {when}{why}")
    if facts.status == "unknown":
        raise CertValidation(f"the OCSP responder {source} does not know {_describe(cert)}")
    return RevocationStatus("good", method, source, facts.this_update, facts.next_update)


class RevocationChecker:
    """Checks certificates against OCSP responders and CRLs, with bounded caches.

    ``session`` is the process's aiohttp client session (owned by the application);
    ``config`` holds timeouts, freshness and cache bounds.
    """

    __slots__ = ("_config", "_configs", "_crl_locks", "_crls", "_failures", "_ocsp", "_session")

    def __init__(self, session: aiohttp.ClientSession, config: RevocationConfig) -> None:
        self._session = session
        self._config = config
        self._ocsp: ExpiringCache[tuple[str, int], RevocationFacts] = ExpiringCache(
            config.cache_size
        )
        self._crls: ExpiringCache[tuple[str, str], VerifiedCrl] = ExpiringCache(
            config.crl_cache_size
        )
        self._failures: ExpiringCache[str, RevocationUnavailable] = ExpiringCache(config.cache_size)
        self._crl_locks: dict[str, asyncio.Lock] = {}
        self._configs: dict[tuple[tuple[str, object], ...], RevocationConfig] = {}

    async def check_signer(
        self, signer: ValidatedSigner, anchors: Iterable[AnchorEntry], now: datetime
    ) -> RevocationStatus:
        """Check every certificate on the signer's validated path except the anchor, under the
        settings of the anchor the path ends in; return the signer's own status."""
        anchor = signer.anchor
        for entry in anchors:
            if entry.certificate == anchor:
                break
        else:
            raise CertValidation("the signer's trust anchor has no revocation settings")
        chain = signer.chain
        # From the top down: an answer about a revoked intermediate is reported as such,
        # and nothing is asked about certificates below it.
        status: RevocationStatus | None = None
        for index in range(len(chain) - 2, -1, -1):
            status = await self.check(chain[index], chain[index + 1], entry, now)
        assert status is not None
        return status

    async def check(
        self,
        signer_cert: x509.Certificate,
        issuer_cert: x509.Certificate,
        anchor_settings: RevocationSettings,
        now: datetime,
    ) -> RevocationStatus:
        """Check ``signer_cert`` (issued by ``issuer_cert``) at ``now``; see the module doc.

        Returns the status or raises `CertValidation`.
        """
        if now.tzinfo is None:
            raise CertValidation("revocation check time must be timezone-aware")
        mode, policy = anchor_settings.revocation, anchor_settings.on_unavailable
        if mode == "none":
            return RevocationStatus("not-checked", "none")
        if mode not in ("ocsp", "crl") or policy not in ("reject", "accept"):
            raise CertValidation(f"revocation settings {mode!r}/{policy!r} are not understood")
        if signer_cert.issuer != issuer_cert.subject:
            raise CertValidation("the issuer given for the revocation check did not issue it")
        method: Literal["ocsp", "crl"] = "ocsp" if mode == "ocsp" else "crl"
        config = self._config_for(anchor_settings)
        try:
            if method == "ocsp":
                return await self._check_ocsp(
                    signer_cert, issuer_cert, anchor_settings, now, config
                )
            return await self._check_crl(signer_cert, issuer_cert, anchor_settings, now, config)
        except RevocationUnavailable as exc:
            if policy == "accept":
                log.warning(
                    "revocation status unavailable; accepted by the trust anchor's policy",
                    certificate=_describe(signer_cert),
                    method=method,
                    detail=str(exc),
                )
                return RevocationStatus("unknown-accepted", method, exc.source, detail=str(exc))
            raise CertValidation(f"revocation status unavailable: {exc}") from exc

    def _config_for(self, settings: RevocationSettings) -> RevocationConfig:
        """The gateway's config with the anchor's overrides (max_age, timeout, require_nonce)."""
        overrides: dict[str, object] = {}
        for name in ("max_age", "timeout", "require_nonce"):
            value = getattr(settings, name, None)
            if value is not None:
                overrides[name] = value
        if not overrides:
            return self._config
        key = tuple(sorted(overrides.items()))
        config = self._configs.get(key)
        if config is None:
            config = replace(self._config, **overrides)  # type: ignore[arg-type]
            self._configs[key] = config
        return config

    # --- OCSP ---------------------------------------------------------------------------

    async def _check_ocsp(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        settings: RevocationSettings,
        now: datetime,
        config: RevocationConfig,
    ) -> RevocationStatus:
        url = settings.ocsp_url or ocsp_url_of(cert)
        if url is None:
            raise RevocationUnavailable(
                "the certificate names no OCSP responder and none is configured"
            )
        key = (cert_thumbprint(issuer), cert.serial_number)
        cached = self._ocsp.get(key, now)
        # (An answer dated after ``now`` says nothing about ``now``; one older than this
        # anchor's freshness says nothing either.)
        if (
            cached is not None
            and cached.this_update <= now + config.clock_skew
            and now - cached.this_update <= config.max_age + config.clock_skew
        ):
            return replace(_verdict(cached, cert, "ocsp", url), from_cache=True)
        query = build_ocsp_query(cert, issuer, os.urandom(_NONCE_BYTES))
        body = await self._fetch(url, query.der, config.max_response_bytes, now, config)
        facts = verify_ocsp_response(body, query, issuer, now, config, source=url)
        expires = facts.this_update + config.max_age
        if facts.next_update is not None:
            expires = min(expires, facts.next_update)
        self._ocsp.put(key, facts, expires)
        return _verdict(facts, cert, "ocsp", url)

    # --- CRL ----------------------------------------------------------------------------

    async def _check_crl(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        settings: RevocationSettings,
        now: datetime,
        config: RevocationConfig,
    ) -> RevocationStatus:
        configured = getattr(settings, "crl_url", None)
        url = configured if isinstance(configured, str) else crl_url_of(cert)
        if url is None:
            raise RevocationUnavailable(
                "the certificate names no CRL distribution point and none is configured"
            )
        key = (url, cert_thumbprint(issuer))
        verified = self._fresh_crl(key, now)
        from_cache = verified is not None
        if verified is None:
            # One download per CRL at a time: the others wait and then find it cached.
            lock = self._crl_locks.setdefault(url, asyncio.Lock())
            async with lock:
                verified = self._fresh_crl(key, now)
                from_cache = verified is not None
                if verified is None:
                    verified = await self._load_crl(url, issuer, now, config)
                    self._crls.put(key, verified, self._crl_expiry(verified, now))
        facts = crl_status(verified, cert.serial_number)
        status = _verdict(facts, cert, "crl", url)
        return RevocationStatus(
            status.status, "crl", url, facts.this_update, facts.next_update, from_cache
        )

    def _fresh_crl(self, key: tuple[str, str], now: datetime) -> VerifiedCrl | None:
        verified = self._crls.get(key, now)
        if verified is None or verified.this_update > now + self._config.clock_skew:
            return None
        return verified

    async def _load_crl(
        self, url: str, issuer: x509.Certificate, now: datetime, config: RevocationConfig
    ) -> VerifiedCrl:
        data = await self._fetch(url, None, config.max_crl_bytes, now, config)
        # Parsing and verifying a large CRL is CPU work: keep it off the event loop.
        return await asyncio.to_thread(verify_crl, data, issuer, now, config, source=url)

    def _crl_expiry(self, verified: VerifiedCrl, now: datetime) -> datetime:
        expires = now + self._config.crl_refresh
        if verified.next_update is not None:
            expires = min(expires, verified.next_update)
        return expires

    # --- HTTP ---------------------------------------------------------------------------

    async def _fetch(
        self, url: str, body: bytes | None, limit: int, now: datetime, config: RevocationConfig
    ) -> bytes:
        """POST an OCSP request (``body``) or GET a CRL, reading at most ``limit`` bytes.

        A failure is remembered for ``unavailable_retry``: until then the URL is not asked
        again and the same failure is reported at once.
        """
        failure = self._failures.get(url, now)
        if failure is not None:
            raise RevocationUnavailable(f"{failure} (not retried yet)", url)
        try:
            return await self._request(url, body, limit, config.timeout)
        except RevocationUnavailable as exc:
            self._failures.put(url, exc, now + self._config.unavailable_retry)
            raise

    async def _request(self, url: str, body: bytes | None, limit: int, seconds: float) -> bytes:
        timeout = aiohttp.ClientTimeout(total=seconds)
        headers = {"Content-Type": "application/ocsp-request"} if body is not None else {}
        method = "POST" if body is not None else "GET"
        what = "OCSP responder" if body is not None else "CRL distribution point"
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise RevocationUnavailable(
                        f"{what} {url} answered HTTP {response.status}", url
                    )
                if response.content_length is not None and response.content_length > limit:
                    raise RevocationUnavailable(f"{what} {url} sent more than {limit} bytes", url)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise RevocationUnavailable(
                            f"{what} {url} sent more than {limit} bytes", url
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError as exc:
            raise RevocationUnavailable(
                f"{what} {url} did not answer within {seconds} s", url
            ) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise RevocationUnavailable(
                f"{what} {url} cannot be reached: {type(exc).__name__}: {exc}", url
            ) from exc
