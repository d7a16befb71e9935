"""Admission after authentication: per-client rate limits and replay protection.

Both apply to the authenticated client only, so that nobody can spend another client's budget
or burn its message ids by naming it in a header. Replay protection covers signed messages:
their signed creation time bounds the window in which an id must stay unique (SPEC 5.5).

The message id alone is not enough: under the ``standard`` policy ``xrd:id`` need not be
signed, so a captured message can be sent again under a new id. When the signature gives a
``signed_digest`` (the SHA-256 of what the key signed, e.g. the canonical SignedInfo), that
digest is remembered too, so a re-id'd copy is refused. A message without a signed creation
time has no freshness at all: its digest is remembered for the longer
``replay_retention_without_timestamp_seconds``, after which a copy would be accepted again
(docs/THREAT_MODEL.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta

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
    signed_digest: str | None = None,
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
        client = str(entry.id)
        window = env.max_clock_skew
        for replay_id in (message_id, *also):
            await env.replay.remember(
                client, replay_id, created=signed_created, now=now, window=window
            )
        if signed_digest is not None:
            if signed_created is None:
                window = max(
                    window,
                    timedelta(seconds=env.settings.replay_retention_without_timestamp_seconds),
                )
            # A NUL cannot occur in a parsed message id, so this never meets a real id.
            await env.replay.remember(
                client,
                f"\x00signed:{signed_digest}",
                created=signed_created,
                now=now,
                window=window,
            )
