"""Per-service circuit breakers (SPEC 7): fail fast while a provider is down, then probe.

A breaker counts consecutive transport failures of one service (the provider could not be
reached, timed out or refused TLS); after ``failures`` of them it *opens* and every call
fails at once with ``Server.ServerProxy.ServiceFailed.NetworkError`` for ``cooldown``
seconds, sparing the client a full timeout and the provider a pile of reconnects. When the
cool-down is over the breaker lets exactly one call through (*half-open*): its success
closes the breaker, its failure opens it for another cool-down. Answers of the provider,
whatever their status, are successes: the breaker is about reachability, not content.

Time is passed in (``clock``), so the states are testable without sleeping. One
`BreakerBoard` per gateway process holds the breakers by service and URL, so a registry
reload that moves a service to a new URL starts it with a fresh breaker.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final

from gateway.errors import GatewayError
from registry import ServiceEntry

__all__ = [
    "TRANSPORT_FAILURES",
    "BreakerBoard",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
]

_MAX_BREAKERS: Final = 100_000  # one per registered service at most; the oldest unused go
# Failures that say the provider is unreachable; any answer, even a refused one, is a success.
TRANSPORT_FAILURES: Final = frozenset(
    {"ServiceFailed.NetworkError", "ServiceFailed.Timeout", "ServiceFailed.SslAuthenticationFailed"}
)


class CircuitOpen(GatewayError):
    """The service's breaker is open: the call is refused without contacting the provider."""

    code = "ServiceFailed.NetworkError"


class BreakerState(Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """After ``failures`` consecutive failures, refuse calls for ``cooldown`` seconds."""

    failures: int = 5
    cooldown: float = 30.0

    def __post_init__(self) -> None:
        # The registry model bounds both; a bad value here is a programming error.
        if self.failures < 1:
            raise ValueError(f"a breaker needs failures >= 1, got {self.failures}")
        if not self.cooldown > 0:
            raise ValueError(f"a breaker needs a positive cooldown, got {self.cooldown}")


class CircuitBreaker:
    """The breaker of one service; used from the event loop only (no locking)."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """Closed, open (refusing) or half-open (cool-down over, one probe allowed or out)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.policy.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self, service: str) -> None:
        """Admit a call, or raise `CircuitOpen` while the breaker is open.

        In the half-open state one call is admitted as the probe; others are refused until
        it has reported back.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        raise CircuitOpen(
            f"calls to {service} are suspended after {self.policy.failures} consecutive"
            f" failures; the provider is probed again after {self.policy.cooldown:g} s"
        )

    def succeeded(self) -> None:
        """The provider answered: close the breaker."""
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        """The provider could not be reached: count it, open the breaker at the threshold."""
        self._failures += 1
        if self._probing or self._failures >= self.policy.failures:
            self._opened_at = self._clock()
            self._probing = False

    @contextlib.contextmanager
    def guard(self, service: str) -> Iterator[None]:
        """Admit one call (or raise `CircuitOpen`) and record how it ended.

        A `GatewayError` with a code of `TRANSPORT_FAILURES` is a failure; another
        ``ServiceFailed.*`` means the provider answered (wrongly); anything else (a cancel,
        an error of the gateway itself) says nothing of the provider and gives the probe
        slot back.
        """
        self.before_call(service)
        try:
            yield
        except GatewayError as exc:
            if exc.code in TRANSPORT_FAILURES:
                self.failed()
            elif exc.code.startswith("ServiceFailed."):
                self.succeeded()
            else:
                self.abandoned()
            raise
        except BaseException:
            self.abandoned()
            raise
        self.succeeded()

    def abandoned(self) -> None:
        """An admitted call ended without a verdict on the provider (the client went away,
        the gateway refused the answer): a probe slot is given back."""
        self._probing = False


class BreakerBoard:
    """The breakers of one gateway process, by (service, URL), created on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._breakers: OrderedDict[tuple[str, str, BreakerPolicy], CircuitBreaker] = OrderedDict()

    def breaker(self, service: str, url: str, policy: BreakerPolicy) -> CircuitBreaker:
        """The breaker for ``service`` at ``url`` under ``policy`` (a new one if any changed)."""
        key = (service, url, policy)
        found = self._breakers.get(key)
        if found is None:
            found = self._breakers[key] = CircuitBreaker(policy, self._clock)
            while len(self._breakers) > _MAX_BREAKERS:
                self._breakers.popitem(last=False)
        else:
            self._breakers.move_to_end(key)
        return found

    def for_service(self, service: ServiceEntry) -> CircuitBreaker:
        """The breaker of a registered service, under the policy its registry entry sets."""
        policy = BreakerPolicy(service.breaker_failures, service.breaker_cooldown)
        return self.breaker(str(service.id), service.url, policy)

    def __len__(self) -> int:
        return len(self._breakers)
