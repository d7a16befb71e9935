"""The circuit breaker's states on an injected clock: closed, open, half-open with one probe."""

from __future__ import annotations

import pytest

from gateway.breaker import (
    BreakerBoard,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
)
from gateway.errors import GatewayError, fault_for

SERVICE = "DEV/COM/222/TESTSERVICE/getPerson"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, failures: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(BreakerPolicy(failures=failures, cooldown=cooldown), clock)


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call(SERVICE)
        breaker.failed()


def test_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 2)
    breaker.before_call(SERVICE)
    breaker.succeeded()  # a success in between resets the count
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="suspended after 3 consecutive failures"):
        breaker.before_call(SERVICE)


def test_an_open_breaker_is_a_network_error_fault() -> None:
    clock = Clock()
    breaker = _breaker(clock, failures=1)
    _fail(breaker, 1)
    with pytest.raises(CircuitOpen) as caught:
        breaker.before_call(SERVICE)
    assert fault_for(caught.value).full_code() == "Server.ServerProxy.ServiceFailed.NetworkError"


def test_after_the_cooldown_one_probe_is_let_through() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 9.9
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call(SERVICE)  # the probe
    with pytest.raises(CircuitOpen):
        breaker.before_call(SERVICE)  # others wait for the probe's verdict
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call(SERVICE)


def test_a_failed_probe_opens_for_another_cooldown() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 10
    breaker.before_call(SERVICE)
    breaker.failed()  # one failure is enough in half-open
    assert breaker.state is BreakerState.OPEN
    clock.now += 9
    with pytest.raises(CircuitOpen):
        breaker.before_call(SERVICE)
    clock.now += 1
    breaker.before_call(SERVICE)


def test_an_abandoned_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 10
    breaker.before_call(SERVICE)
    breaker.abandoned()
    breaker.before_call(SERVICE)  # a new probe may go


def test_policy_bounds() -> None:
    with pytest.raises(ValueError, match="failures >= 1"):
        BreakerPolicy(failures=0)
    with pytest.raises(ValueError, match="positive cooldown"):
        BreakerPolicy(cooldown=0)


def test_board_keys_by_service_url_and_policy() -> None:
    board = BreakerBoard(Clock())
    policy = BreakerPolicy()
    first = board.breaker(SERVICE, "http://a/", policy)
    assert board.breaker(SERVICE, "http://a/", policy) is first
    assert board.breaker(SERVICE, "http://b/", policy) is not first  # moved by a reload
    assert board.breaker(SERVICE, "http://a/", BreakerPolicy(failures=9)) is not first
    assert len(board) == 3


def test_guard_judges_only_what_the_provider_did() -> None:
    clock = Clock()
    breaker = _breaker(clock, failures=1)
    with pytest.raises(GatewayError), breaker.guard(SERVICE):
        raise GatewayError("unreachable", code="ServiceFailed.Timeout")
    assert breaker.state is BreakerState.OPEN
    clock.now += 10
    # The probe fails on the gateway's side (its TLS key cannot be read): no verdict, the
    # slot is free again and the breaker stays half-open rather than closing.
    with pytest.raises(GatewayError), breaker.guard(SERVICE):
        raise GatewayError("cannot load the client key", code="InternalError")
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(GatewayError), breaker.guard(SERVICE):  # the provider answered, badly
        raise GatewayError("garbage", code="ServiceFailed.InvalidSoap")
    assert breaker.state is BreakerState.CLOSED
