"""Forwarding an exchange to the provider over HTTP.

The only I/O of the SOAP exchange besides the audit log. aiohttp errors are translated here
into ``ServiceFailed.*`` faults; nothing from aiohttp escapes.
"""

from __future__ import annotations

import io
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from gateway.errors import GatewayError

__all__ = [
    "ForwardError",
    "ProviderReply",
    "forward_request",
    "is_tls_failure",
    "provider_failure",
]


def is_tls_failure(exc: BaseException) -> bool:
    """True when a TLS error (a handshake failure or a TLS alert) caused ``exc``."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError | aiohttp.ClientSSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class ForwardError(GatewayError):
    """The provider could not be reached, was too slow or answered at the HTTP level wrongly."""


@dataclass(frozen=True, slots=True)
class ProviderReply:
    """The provider's answer as received."""

    status: int
    content_type: str | None
    body: bytes


_CHUNKED_ABOVE = 1024 * 1024


async def forward_request(
    session: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    connect_timeout: float,
    total_timeout: float,
    max_response_bytes: int,
    ssl_context: ssl.SSLContext | bool = True,
) -> ProviderReply:
    """POST ``body`` to ``url`` and read the whole reply, bounded in time and size.

    Redirects are not followed: a provider that redirects has answered wrongly.
    """
    timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout)
    try:
        async with session.post(
            url,
            # Above 1 MiB aiohttp warns that one write of raw bytes may block the event
            # loop; a BytesIO is written in chunks (Content-Length is still sent).
            data=io.BytesIO(body) if len(body) > _CHUNKED_ABOVE else body,
            headers=dict(headers),
            timeout=timeout,
            allow_redirects=False,
            ssl=ssl_context,
        ) as response:
            declared = response.content_length
            if declared is not None and declared > max_response_bytes:
                raise ForwardError(
                    f"the provider's response is larger than {max_response_bytes} bytes",
                    code="ServiceFailed.MessageTooLarge",
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_response_bytes:
                    raise ForwardError(
                        f"the provider's response is larger than {max_response_bytes} bytes",
                        code="ServiceFailed.MessageTooLarge",
                    )
                chunks.append(chunk)
            return ProviderReply(
                response.status, response.headers.get("Content-Type"), b"".join(chunks)
            )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise provider_failure(exc, total_timeout) from exc


def provider_failure(exc: TimeoutError | aiohttp.ClientError, total_timeout: float) -> ForwardError:
    """The ``ServiceFailed.*`` fault for a failed call to the provider (SOAP and REST)."""
    if isinstance(exc, TimeoutError):
        return ForwardError(
            f"the provider did not answer within {total_timeout:g} s", code="ServiceFailed.Timeout"
        )
    # TLS 1.3: a refused client certificate surfaces after the handshake, as a connection
    # error caused by a TLS alert, hence the look through the causes.
    if isinstance(exc, aiohttp.ClientSSLError) or is_tls_failure(exc):
        return ForwardError(
            "the TLS connection to the provider failed (certificate not trusted or refused)",
            code="ServiceFailed.SslAuthenticationFailed",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ForwardError("the provider could not be reached", code="ServiceFailed.NetworkError")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ForwardError(
            "the provider closed the connection before answering completely",
            code="ServiceFailed.NetworkError",
        )
    return ForwardError(
        "the exchange with the provider failed at the HTTP level",
        code="ServiceFailed.NetworkError",
    )
