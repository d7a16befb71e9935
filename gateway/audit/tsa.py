"""RFC 3161 time-stamping of checkpoints: the request, the call to the TSA, the response.

SPEC 8: when a time-stamping authority is configured, each checkpoint gets an RFC 3161
timestamp over the SHA-256 of its signed note (the note's UTF-8 bytes, signature lines
included), so one TSA call covers every record since the previous checkpoint. The request
carries a random 64-bit nonce and ``certReq`` (the TSA's certificate travels in the token,
so the token verifies offline with only the TSA's CA certificate).

`TsaClient.timestamp` POSTs the request (``application/timestamp-query``) with a timeout and
verifies the response fully (`verify_response`: status granted, then `verify_timestamp`
with the nonce sent) before returning the token. Transport failures raise `TsaUnavailable`,
a refusal by the TSA `TimestampRejected`, a bad token `InvalidTimestamp`; all are
`AuditError`, so a checkpointer can log them and try again with the next checkpoint.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Final

import aiohttp
from asn1crypto import cms, core, tsp

from gateway.audit.errors import AuditError
from gateway.audit.tsa_verify import (
    InvalidTimestamp,
    TsaTrust,
    VerifiedTimestamp,
    verify_timestamp_digest,
)

if TYPE_CHECKING:
    from gateway.settings import TsaSettings

__all__ = [
    "TimestampRejected",
    "TimestampRequest",
    "TsaClient",
    "TsaUnavailable",
    "build_request",
    "verify_response",
]

QUERY_TYPE: Final = "application/timestamp-query"
REPLY_TYPE: Final = "application/timestamp-reply"
_MAX_RESPONSE: Final = 256 * 1024
_PARSE_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError, OverflowError)


class TsaUnavailable(AuditError):
    """The TSA could not be reached, did not answer in time, or answered something other
    than a time-stamp response."""

    code: ClassVar[str] = "TsaUnavailable"


class TimestampRejected(AuditError):
    """The TSA answered with a status other than granted (RFC 3161 2.4.2 PKIStatus)."""

    code: ClassVar[str] = "TimestampRejected"


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 TimeStampResp; asn1crypto's declares the token mandatory, RFC 3161 does not
    (a refusal carries none)."""

    _fields = [  # noqa: RUF012 (asn1crypto's class-level schema)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TimestampRequest:
    """A DER TimeStampReq and what its response must match: the imprint and the nonce."""

    der: bytes
    imprint: bytes
    nonce: int


def build_request(
    data: bytes, *, policy: str | None = None, nonce: int | None = None
) -> TimestampRequest:
    """A TimeStampReq (v1) over SHA-256 of ``data``, with a nonce and ``certReq`` true.

    ``nonce`` defaults to 64 random bits; ``policy`` (a dotted OID) asks the TSA for a
    particular policy.
    """
    imprint = hashlib.sha256(data).digest()
    chosen = nonce if nonce is not None else secrets.randbits(64) | 1 << 63
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": imprint,
        },
        "nonce": chosen,
        "cert_req": True,
    }
    if policy is not None:
        fields["req_policy"] = policy
    return TimestampRequest(der=tsp.TimeStampReq(fields).dump(), imprint=imprint, nonce=chosen)


def verify_response(
    response: bytes, request: TimestampRequest, trust: TsaTrust
) -> VerifiedTimestamp:
    """Verify a DER TimeStampResp to ``request``: granted, and a token that passes
    `verify_timestamp` with the request's imprint and nonce.

    Raises `TimestampRejected` when the TSA refused, `InvalidTimestamp` otherwise.
    """
    try:
        parsed = _TimeStampResp.load(response, strict=True)
        info = parsed["status"]
        status = info["status"].native
        texts = [str(t) for t in info["status_string"].native or ()]
        failures = sorted(str(f) for f in info["fail_info"].native or ())
    except _PARSE_ERRORS as exc:
        raise InvalidTimestamp("malformed", f"the response cannot be parsed: {exc}") from exc
    if status not in ("granted", "granted_with_mods"):
        details = "; ".join([*texts, *failures])
        raise TimestampRejected(
            f"the TSA refused the request: {status}" + (f" ({details})" if details else "")
        )
    token = parsed["time_stamp_token"]
    if isinstance(token, core.Void):
        raise InvalidTimestamp("malformed", "the response grants but carries no token")
    return verify_timestamp_digest(token.dump(), request.imprint, trust, nonce=request.nonce)


class TsaClient:
    """Gets RFC 3161 timestamps from one TSA over HTTP(S), and verifies them.

    ``max_clock_skew`` bounds how far the TSA's genTime may be from this host's clock:
    a token dated wrongly would mislead every later verifier.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        trust: TsaTrust,
        *,
        timeout_seconds: float = 10.0,
        policy: str | None = None,
        max_clock_skew: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._session = session
        self.url = url
        self.trust = trust
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._timeout_seconds = timeout_seconds
        self._policy = policy
        self._skew = max_clock_skew
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        session: aiohttp.ClientSession,
        settings: TsaSettings,
        *,
        max_clock_skew: timedelta = timedelta(minutes=5),
    ) -> TsaClient:
        """A client for the ``audit.tsa`` settings (and the gateway's ``max_clock_skew``);
        `InvalidCheckpoint` names the setting when the CA certificate file cannot be used."""
        return cls(
            session,
            settings.url,
            TsaTrust.from_file(settings.ca_certificate),
            timeout_seconds=settings.timeout_seconds,
            policy=settings.policy,
            max_clock_skew=max_clock_skew,
        )

    async def timestamp(self, data: bytes) -> VerifiedTimestamp:
        """A verified timestamp over SHA-256 of ``data`` (a checkpoint note's bytes)."""
        request = build_request(data, policy=self._policy)
        response = await self._post(request.der)
        verified = verify_response(response, request, self.trust)
        now = self._clock()
        if abs(verified.gen_time - now) > self._skew:
            raise InvalidTimestamp(
                "time",
                f"the TSA dated the token {verified.gen_time.isoformat()}, but it is"
                f" {now.isoformat()} here (more than {self._skew} apart)",
            )
        return verified

    async def _post(self, der: bytes) -> bytes:
        try:
            async with self._session.post(
                self.url,
                data=der,
                headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
                timeout=self._timeout,
            ) as response:
                if response.status != 200:
                    raise TsaUnavailable(f"the TSA at {self.url} answered HTTP {response.status}")
                if response.content_type != REPLY_TYPE:
                    raise TsaUnavailable(
                        f"the TSA at {self.url} answered {response.content_type!r},"
                        f" not {REPLY_TYPE}"
                    )
                # read(n) returns what is buffered, not n bytes: collect the whole answer
                # (a token with its certificates arrives in several TCP segments).
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(16 * 1024):
                    size += len(chunk)
                    if size > _MAX_RESPONSE:
                        break
                    chunks.append(chunk)
                body = b"".join(chunks)
        except TimeoutError as exc:
            raise TsaUnavailable(
                f"the TSA at {self.url} did not answer within {self._timeout_seconds:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise TsaUnavailable(f"cannot reach the TSA at {self.url}: {exc}") from exc
        if size > _MAX_RESPONSE:
            raise TsaUnavailable(f"the TSA's answer is larger than {_MAX_RESPONSE} bytes")
        return body
