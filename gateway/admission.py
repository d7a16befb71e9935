"""Admission after authentication: per-client rate limits and replay protection.

Both apply to the authenticated client only, so that nobody can spend another client's budget
or burn its message ids by naming it in a header. Replay protection covers signed messages:
their signed creation time bounds the window in which an id must stay unique (SPEC 5.5).
"""

from __future__ import annotations

import time
from datetime import datetime

from gateway.context import ExchangeEnv
from registry import ClientEntry

__all__ = ["admit"]


async def admit(
    env: ExchangeEnv,
    entry: ClientEntry,
    message_id: str,
    *,
    signed_created: datetime | None,
    signed: bool,
    now: datetime,
) -> None:
    """Raise `RateLimited` or `ReplayedMessage` (or the stores' unavailability) or return."""
    if entry.rate_limit is not None:
        await env.rate_limiter.acquire(
            str(entry.id),
            rate=entry.rate_limit.per_second,
            burst=entry.rate_limit.burst,
            now=time.monotonic(),
        )
    if signed:
        await env.replay.remember(
            str(entry.id), message_id, created=signed_created, now=now, window=env.max_clock_skew
        )
