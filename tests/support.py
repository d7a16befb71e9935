"""Shared test helpers: a real provider IS that behaves as told, and a gateway factory."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from aiohttp.test_utils import TestClient


@dataclass
class ProviderBehaviour:
    """How the test provider answers: fixed body and status, or an aborted connection
    (always, or for the first ``abort_first`` requests)."""

    body: bytes = b""
    content_type: str = "text/xml"
    status: int = 200
    abort: bool = False
    abort_first: int = 0  # abort this many requests, then answer
    delay: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


def provider_app(behaviour: ProviderBehaviour) -> web.Application:
    """A provider IS on a real socket that records what it got and answers as told."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        behaviour.received.append((dict(request.headers), body))
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.abort or len(behaviour.received) <= behaviour.abort_first:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        response = web.Response(status=behaviour.status, body=behaviour.body)
        response.headers["Content-Type"] = behaviour.content_type
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class GatewayFactory(Protocol):
    def __call__(
        self,
        behaviour: ProviderBehaviour,
        tweak: Callable[[dict[str, Any]], None] | None = None,
        settings_extra: dict[str, Any] | None = None,
        *,
        audit: dict[str, Any] | None = None,
    ) -> Awaitable[TestClient[web.Request, web.Application]]: ...


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_up() -> bool:
    """Whether the Redis of the shared-state tests answers on 127.0.0.1:6379."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0
