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

__all__ = ["ForwardError", "ProviderReply", "forward_request", "is_tls_failure"]


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
    except TimeoutError as exc:
        raise ForwardError(
            f"the provider did not answer within {total_timeout:g} s", code="ServiceFailed.Timeout"
        ) from exc
    except aiohttp.ClientSSLError as exc:
        raise ForwardError(
            "the TLS connection to the provider failed (certificate not trusted or refused)",
            code="ServiceFailed.SslAuthenticationFailed",
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise ForwardError(
            "the provider could not be reached", code="ServiceFailed.NetworkError"
        ) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise ForwardError(
            "the provider closed the connection before answering completely",
            code="ServiceFailed.NetworkError",
        ) from exc
    except aiohttp.ClientError as exc:
        if is_tls_failure(exc):  # TLS 1.3: a refused client certificate surfaces after the
            raise ForwardError(  # handshake, as a connection error caused by a TLS alert
                "the TLS connection to the provider failed (certificate not trusted or refused)",
                code="ServiceFailed.SslAuthenticationFailed",
            ) from exc
        raise ForwardError(
            "the exchange with the provider failed at the HTTP level",
            code="ServiceFailed.NetworkError",
        ) from exc
