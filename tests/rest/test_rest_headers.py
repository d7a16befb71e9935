"""Header filtering both ways (SPEC 3.2) and the methods other than GET/POST/PUT/DELETE."""

from __future__ import annotations

from tests.rest.conftest import CLIENT, HOP_ANSWER, SERVICE, THING, RestDeployment
from tests.rest.wire import send, verify_answer

R1 = f"/r1/{SERVICE}"
# Every hop-by-hop header of SPEC 3.2 the client can send without breaking its own framing,
# a header named by Connection, and proxy-* ones.
HOP_REQUEST = [
    ("X-Road-Client", CLIENT),
    ("Connection", "keep-alive, X-Client-Hop"),
    ("X-Client-Hop", "client-secret"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "websocket-not-really"),
    ("Expect", "100-continue"),  # answered by the gateway's HTTP server, never forwarded
    ("User-Agent", "client-agent/1.0"),
    ("Server", "client-server/1.0"),
    ("Proxy-Authorization", "Basic Y2xpZW50OnNlY3JldA=="),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Client-Thing", "1"),
    ("X-Client-Kept", "yes"),
]
CLIENT_VALUES = {v for k, v in HOP_REQUEST if k not in ("X-Road-Client", "X-Client-Kept", "Expect")}


async def test_provider_gets_no_hop_by_hop_header(rest_gateway: RestDeployment) -> None:
    answer = await send(
        rest_gateway.client,
        "POST",
        f"{R1}/hop",
        [*HOP_REQUEST, ("Content-Type", "text/plain")],
        b"body",
    )
    assert answer.status == 200, answer.body
    _, _, received, size = rest_gateway.provider.requests[-1]
    names = {name.lower() for name in received}
    assert size == 4
    for name in (
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "user-agent",
        "server",
        "transfer-encoding",
        "x-client-hop",
    ):
        assert name not in names, name
    assert not any(name.startswith("proxy-") for name in names)
    assert CLIENT_VALUES.isdisjoint(received.values()), received
    assert received["Host"] != answer.sent.split(b"\r\n")[1].decode()[6:]  # the provider's own
    assert received["Content-Length"] == "4"
    assert received["X-Client-Kept"] == "yes"
    assert received["X-Road-Client"] == CLIENT


async def test_client_gets_no_hop_by_hop_header_from_the_provider(
    rest_gateway: RestDeployment,
) -> None:
    answer = await send(rest_gateway.client, "GET", f"{R1}/hop", [("X-Road-Client", CLIENT)])
    assert answer.status == 200, answer.body
    names = {name.lower() for name, _ in answer.headers}
    for name in ("keep-alive", "trailer", "upgrade", "x-provider-hop", "proxy-authenticate"):
        assert name not in names, name
    assert not any(name.startswith("proxy-") for name in names)
    provider_values = {v for k, v in HOP_ANSWER.items() if k != "X-Provider-Kept"}
    assert provider_values.isdisjoint(value for _, value in answer.headers), answer.headers
    assert answer["X-Provider-Kept"] == "yes"
    verify_answer(answer, rest_gateway.pki)


async def test_head_keeps_the_providers_content_length(rest_gateway: RestDeployment) -> None:
    answer = await send(rest_gateway.client, "HEAD", f"{R1}/things/5", [("X-Road-Client", CLIENT)])
    assert answer.status == 200
    assert answer["Content-Length"] == str(len(THING))  # what a GET would carry, not 0
    assert answer.body == b""
    assert rest_gateway.provider.requests[-1][0] == "HEAD"
    verify_answer(answer, rest_gateway.pki)
    get = await send(rest_gateway.client, "GET", f"{R1}/things/5", [("X-Road-Client", CLIENT)])
    assert get.body == THING and get["Content-Length"] == answer["Content-Length"]


async def test_options_and_patch_pass_through(rest_gateway: RestDeployment) -> None:
    options = await send(
        rest_gateway.client, "OPTIONS", f"{R1}/things/5", [("X-Road-Client", CLIENT)]
    )
    assert options.status == 204
    assert options["Allow"] == "GET, HEAD, PATCH, OPTIONS"
    verify_answer(options, rest_gateway.pki)
    patch = b'{"name": "patched"}'
    answer = await send(
        rest_gateway.client,
        "PATCH",
        f"{R1}/things/5",
        [("X-Road-Client", CLIENT), ("Content-Type", "application/merge-patch+json")],
        patch,
    )
    assert answer.status == 200, answer.body
    assert answer.body == patch
    assert answer["Content-Type"] == "application/merge-patch+json"
    verify_answer(answer, rest_gateway.pki)
    methods = [method for method, *_ in rest_gateway.provider.requests]
    assert methods == ["OPTIONS", "PATCH"]
