"""SPEC 7 forwarding policy on real sockets: no retry unless the method is idempotent and the
service allows it, and a per-service circuit breaker that fails fast, then probes."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from lxml import etree

from tests.support import GatewayFactory, ProviderBehaviour

REST = "/r1/EE/BUSINESS/producer/subsys2/persons/lookup"
CLIENT = {"X-Road-Client": "EE/BUSINESS/consumer/subsys1"}
SOAP_REQUEST = (Path(__file__).parents[1] / "attacks" / "legitimate-request.xml").read_bytes()
SOAP_HEADERS = {"Content-Type": "text/xml; charset=UTF-8"}
NETWORK_ERROR = "Server.ServerProxy.ServiceFailed.NetworkError"


def _service(code: str, **options: Any) -> Any:
    def tweak(registry: dict[str, Any]) -> None:
        for service in registry["services"]:
            if service["code"] == code:
                service.update(copy.deepcopy(options))  # no YAML aliases

    return tweak


async def test_an_idempotent_call_is_not_retried_unless_the_service_allows_it(
    make_gateway: GatewayFactory,
) -> None:
    behaviour = ProviderBehaviour(body=b"{}", content_type="application/json", abort_first=1)
    client = await make_gateway(behaviour)
    response = await client.get(REST, headers=CLIENT)
    assert response.headers["X-Road-Error"] == NETWORK_ERROR
    assert len(behaviour.received) == 1  # aiohttp's own re-send of a GET is switched off


async def test_an_allowed_idempotent_call_is_retried_once(make_gateway: GatewayFactory) -> None:
    behaviour = ProviderBehaviour(body=b'{"ok": 1}', content_type="application/json")
    client = await make_gateway(behaviour, _service("persons", retry_idempotent=True))
    behaviour.abort_first = 1
    response = await client.get(REST, headers=CLIENT)
    assert response.status == 200, await response.text()
    assert await response.read() == b'{"ok": 1}'
    assert len(behaviour.received) == 2
    behaviour.received.clear()
    behaviour.abort_first = 2  # the retry breaks too: once only
    response = await client.put(REST, headers=CLIENT, data=b"{}")
    assert response.headers["X-Road-Error"] == NETWORK_ERROR
    assert len(behaviour.received) == 2


async def test_a_post_is_never_retried(make_gateway: GatewayFactory) -> None:
    behaviour = ProviderBehaviour(body=b"{}", content_type="application/json", abort_first=1)
    client = await make_gateway(behaviour, _service("persons", retry_idempotent=True))
    response = await client.post(REST, headers=CLIENT, data=b"{}")
    assert response.headers["X-Road-Error"] == NETWORK_ERROR
    assert len(behaviour.received) == 1


async def test_rest_breaker_opens_fails_fast_then_probes(make_gateway: GatewayFactory) -> None:
    behaviour = ProviderBehaviour(body=b"{}", content_type="application/json", abort=True)
    breaker = {"failures": 2, "cooldown_seconds": 0.3}
    client = await make_gateway(behaviour, _service("persons", circuit_breaker=breaker))
    for _ in range(2):
        response = await client.get(REST, headers=CLIENT)
        assert response.headers["X-Road-Error"] == NETWORK_ERROR
    fast = await client.get(REST, headers=CLIENT)
    assert fast.headers["X-Road-Error"] == NETWORK_ERROR
    assert "suspended after 2 consecutive failures" in (await fast.json())["message"]
    assert len(behaviour.received) == 2  # the provider was spared the third call
    behaviour.abort = False
    await asyncio.sleep(0.35)  # the cool-down (a state change, not a timing assertion)
    probe = await client.get(REST, headers=CLIENT)
    assert probe.status == 200
    again = await client.get(REST, headers=CLIENT)
    assert again.status == 200
    assert len(behaviour.received) == 4


async def test_an_answer_of_any_status_keeps_the_breaker_closed(
    make_gateway: GatewayFactory,
) -> None:
    behaviour = ProviderBehaviour(body=b"{}", content_type="application/json", status=503)
    breaker = {"failures": 1, "cooldown_seconds": 60}
    client = await make_gateway(behaviour, _service("persons", circuit_breaker=breaker))
    for _ in range(3):
        response = await client.get(REST, headers=CLIENT)
        assert response.status == 503 and "X-Road-Error" not in response.headers
    assert len(behaviour.received) == 3


async def test_soap_breaker_fails_fast(make_gateway: GatewayFactory) -> None:
    behaviour = ProviderBehaviour(abort=True)
    breaker = {"failures": 1, "cooldown_seconds": 60}
    client = await make_gateway(behaviour, _service("getState", circuit_breaker=breaker))
    faults = []
    for _ in range(2):
        response = await client.post("/", data=SOAP_REQUEST, headers=SOAP_HEADERS)
        root = etree.fromstring(await response.read())
        faults.append((root.findtext(".//faultcode"), root.findtext(".//faultstring")))
    assert [code for code, _ in faults] == [NETWORK_ERROR, NETWORK_ERROR]
    assert "suspended" in (faults[1][1] or "")
    assert len(behaviour.received) == 1
