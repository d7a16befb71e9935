"""The state one gateway process shares between its client port and admin port."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.context import ExchangeEnv
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.audit import Checkpointer
    from gateway.reload import ReloadOutcome

__all__ = ["STATE", "GatewayState"]


@dataclass(slots=True)
class GatewayState:
    """Settings, the environment in force and the background tasks of one gateway.

    ``env`` is replaced whole (by a registry reload), never mutated. Background tasks are
    started with `spawn`, which keeps a reference, and cancelled together on shutdown.
    """

    settings: Settings
    env: ExchangeEnv | None = None
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_reload: ReloadOutcome | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    tls_context: ssl.SSLContext | None = None  # the HTTPS client port's, when it is enabled
    checkpointer: Checkpointer | None = None  # signs (and timestamps) the log's checkpoints
    # Under `obmin serve --workers N`: whether this is worker 0 (admin port, checkpoints,
    # retention), and the supervisor's pid, told of reloads asked on the admin port.
    primary: bool = True
    supervisor: int | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a background task owned by the gateway."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        """Cancel every background task and wait until they have stopped."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


STATE = web.AppKey("state", GatewayState)
