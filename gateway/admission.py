"""Admission after authentication: per-client rate limits and replay protection.

Both apply to the authenticated client only, so that nobody can spend another client's budget
or burn its message ids by naming it in a header. Replay protection covers signed messages:
their signed creation time bounds the window in which an id must stay unique (SPEC 5.5).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
    also: Sequence[str] = (),
) -> None:
    """Raise `RateLimited` or `ReplayedMessage` (or the stores' unavailability) or return.

    ``also`` are further names that must be new for the client, each remembered like the
    message id (an RFC 9421 nonce).
    """
    if entry.rate_limit is not None:
        await env.rate_limiter.acquire(
            str(entry.id),
            rate=entry.rate_limit.per_second,
            burst=entry.rate_limit.burst,
            now=time.monotonic(),
        )
    if signed:
        for replay_id in (message_id, *also):
            await env.replay.remember(
                str(entry.id), replay_id, created=signed_created, now=now, window=env.max_clock_skew
            )
