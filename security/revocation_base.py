"""What OCSP and CRL checks share: the configuration, the verified facts, the time window,
the "unavailable" error and a bounded expiring cache.

The split of failures matters (SPEC 5.4 ``on_unavailable``):

- `RevocationUnavailable`: no usable answer could be had (responder down, timeout, HTTP
  error, garbage, a non-successful OCSP status, a stale or future-dated answer). The trust
  anchor's ``on_unavailable`` decides: refuse, or accept with a warning.
- `CertValidation`: an answer was had and it says no (revoked, unknown), or the answer is
  forged or unauthorised (bad signature, wrong signer, nonce mismatch). Always a refusal:
  accepting here would let whoever can forge or replay answers decide.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Literal, TypeVar

from security.errors import CertValidation, SecurityError

__all__ = [
    "CertStatus",
    "ExpiringCache",
    "RevocationConfig",
    "RevocationFacts",
    "RevocationUnavailable",
    "check_window",
]

CertStatus = Literal["good", "revoked", "unknown"]
"""What a revocation source says about one certificate."""

_K = TypeVar("_K")
_V = TypeVar("_V")


class RevocationUnavailable(CertValidation):
    """No usable revocation answer; the trust anchor's ``on_unavailable`` decides.

    ``source`` is the responder or CRL URL, when one was known.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


@dataclass(frozen=True, slots=True)
class RevocationConfig:
    """How revocation is checked (gateway-wide; the per-anchor part is in the registry).

    ``max_age`` is the freshness: an OCSP response whose thisUpdate is older is stale even
    if its nextUpdate has not come (and a CRL without nextUpdate likewise). ``clock_skew``
    is tolerated on thisUpdate and nextUpdate. ``crl_refresh`` bounds how long a CRL is
    reused before it is fetched again, nextUpdate notwithstanding. After a failure the same
    source is not asked again for ``unavailable_retry``, so that a dead responder costs one
    timeout, not one per message.
    """

    timeout: float = 5.0
    max_age: timedelta = timedelta(hours=1)
    clock_skew: timedelta = timedelta(minutes=5)
    crl_refresh: timedelta = timedelta(hours=1)
    unavailable_retry: timedelta = timedelta(seconds=10)
    cache_size: int = 10_000
    crl_cache_size: int = 64
    max_response_bytes: int = 64 * 1024
    max_crl_bytes: int = 20 * 1024 * 1024
    require_nonce: bool = False

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.cache_size < 1 or self.crl_cache_size < 1:
            raise SecurityError("revocation timeout and cache sizes must be positive")


@dataclass(frozen=True, slots=True)
class RevocationFacts:
    """A verified answer about one certificate: status, validity window, revocation details."""

    status: CertStatus
    this_update: datetime
    next_update: datetime | None
    revoked_at: datetime | None = None
    reason: str | None = None


def check_window(
    this_update: datetime,
    next_update: datetime | None,
    now: datetime,
    config: RevocationConfig,
    *,
    what: str,
    source: str,
    max_age: timedelta | None,
) -> None:
    """Refuse (`RevocationUnavailable`) an answer that is not yet or no longer valid at ``now``.

    ``max_age`` (when not None) bounds the age of thisUpdate on top of nextUpdate.
    """
    skew = config.clock_skew
    if this_update > now + skew:
        raise RevocationUnavailable(
            f"{what} from {source} is dated in the future (thisUpdate {this_update.isoformat()})",
            source,
        )
    if next_update is not None and now > next_update + skew:
        raise RevocationUnavailable(
            f"{what} from {source} is stale: its nextUpdate {next_update.isoformat()} has passed",
            source,
        )
    if max_age is not None and now - this_update > max_age + skew:
        raise RevocationUnavailable(
            f"{what} from {source} is stale: thisUpdate {this_update.isoformat()} is older "
            f"than {int(max_age.total_seconds())} s",
            source,
        )


class ExpiringCache(Generic[_K, _V]):
    """A bounded mapping whose entries expire at a given time (least recently used goes first).

    Not thread-safe; it lives on one event loop. Time is passed in, like everywhere else.
    """

    __slots__ = ("_entries", "_max")

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[_K, tuple[datetime, _V]] = OrderedDict()

    def get(self, key: _K, now: datetime) -> _V | None:
        """The value stored under ``key`` if it has not expired at ``now``."""
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: _K, value: _V, expires: datetime) -> None:
        """Store ``value`` until ``expires``, evicting the least recently used beyond the bound."""
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
