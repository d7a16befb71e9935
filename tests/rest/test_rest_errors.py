"""obmin's own REST errors: the status SPEC 3.2 gives them, and signed like every answer
(SPEC 5.3) with the X-Road headers known when the request was refused."""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.errors import Fault, fault_for
from gateway.rest.protocol import RestError
from security.errors import ReplayCacheUnavailable, ReplayedMessage, StaleMessage
from tests.rest.conftest import CLIENT, OTHER, SERVICE, RestDeployment, RestGatewayFactory
from tests.rest.wire import send, verify_answer

R1 = f"/r1/{SERVICE}"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RestError("x", code="InvalidRequest"), 400),
        (RestError("x", code="MessageTooLarge"), 400),
        (RestError("x", code="InvalidJson"), 400),
        (StaleMessage("x"), 400),
        (ReplayedMessage("x"), 400),
        (RestError("x", code="RateLimited"), 429),  # SPEC 7
        (RestError("x", code="UnknownMember"), 500),
        (RestError("x", code="UnknownService"), 500),
        (RestError("x", code="AccessDenied"), 500),
        (RestError("x", code="ServiceType"), 500),
        (RestError("x", code="SslAuthenticationFailed"), 500),
        (RestError("x", code="InternalError"), 500),
        (RestError("x", code="ServiceDisabled"), 503),
        (RestError("x", code="LoggingFailed"), 503),
        (ReplayCacheUnavailable("x"), 503),
        (RestError("x", code="ServiceFailed.NetworkError"), 502),
        (RestError("x", code="ServiceFailed.Timeout"), 504),
    ],
    ids=lambda v: v.code if isinstance(v, Exception) else str(v),
)
def test_status_is_400_for_the_client_and_5xx_for_the_gateways(
    error: Exception, status: int
) -> None:
    fault: Fault = fault_for(error)
    assert fault.http_status == status
    assert (status < 500) == fault.full_code().startswith("Client.")


async def test_refusal_before_parsing_is_signed(rest_gateway: RestDeployment) -> None:
    answer = await send(rest_gateway.client, "GET", f"{R1}/pet/1", [("Accept", "application/json")])
    assert (answer.status, answer["X-Road-Error"]) == (400, "Client.MissingHeaderField")
    assert answer.get("X-Road-Client") is None  # not known: the header is what is missing
    body = answer.body.decode()
    assert answer["X-Road-Request-Id"] in body
    verified = verify_answer(answer, rest_gateway.pki)
    assert '"x-road-error"' in verified.covered_components
    assert '"x-road-request-id"' in verified.covered_components


@pytest.mark.parametrize("accept", ["application/json", "application/xml"])
async def test_server_side_refusal_carries_the_exchange_headers(
    rest_gateway: RestDeployment, accept: str
) -> None:
    answer = await send(
        rest_gateway.client,
        "DELETE",
        f"{R1}/pet/1",
        [("X-Road-Client", OTHER), ("X-Road-Id", "denied-1"), ("Accept", accept)],
    )
    assert (answer.status, answer["X-Road-Error"]) == (500, "Server.ServerProxy.AccessDenied")
    assert answer["X-Road-Client"] == OTHER
    assert answer["X-Road-Service"] == SERVICE
    assert answer["X-Road-Id"] == "denied-1"
    if accept == "application/xml":
        assert etree.fromstring(answer.body).findtext("type") == "Server.ServerProxy.AccessDenied"
    verified = verify_answer(answer, rest_gateway.pki)
    for header in ("x-road-client", "x-road-service", "x-road-id", "x-road-request-hash"):
        assert f'"{header}"' in verified.covered_components
    assert rest_gateway.provider.requests == []


async def test_unknown_service_and_uxp_refusal_are_signed(rest_gateway: RestDeployment) -> None:
    unknown = await send(
        rest_gateway.client,
        "GET",
        "/r1/DEV/COM/222/TESTSERVICE/nosuch/x",
        [("X-Road-Client", CLIENT)],
    )
    assert (unknown.status, unknown["X-Road-Error"]) == (500, "Server.ServerProxy.UnknownService")
    verify_answer(unknown, rest_gateway.pki)
    uxp = await send(rest_gateway.client, "GET", "/restapi/pet/1", [("Uxp-Client", CLIENT)])
    assert uxp["Uxp-Error"] == "Client.MissingHeaderField"
    assert uxp.get("Uxp-Transaction-Id") is not None
    verify_answer(uxp, rest_gateway.pki, dialect="uxp")


async def test_oversize_body_answer_is_signed_without_a_request_hash(
    make_rest_gateway: RestGatewayFactory,
) -> None:
    gateway = await make_rest_gateway(limits={"max_request_bytes": 1024})
    answer = await send(
        gateway.client, "POST", f"{R1}/pets", [("X-Road-Client", CLIENT)], b"x" * 4096
    )
    assert (answer.status, answer["X-Road-Error"]) == (400, "Client.MessageTooLarge")
    assert answer.get("X-Road-Request-Hash") is None  # the request was not read whole
    assert answer["X-Road-Client"] == CLIENT
    verified = verify_answer(answer, gateway.pki, hashed=False)
    assert verified.request_hash is None


async def test_rate_limited_and_logging_failed_answers_are_signed(
    rest_gateway: RestDeployment,
) -> None:
    limited = [("X-Road-Client", "DEV/COM/222/LIMITED")]
    assert (await send(rest_gateway.client, "GET", f"{R1}/pet/1", limited)).status == 200
    answer = await send(rest_gateway.client, "GET", f"{R1}/pet/1", limited)
    assert (answer.status, answer["X-Road-Error"]) == (429, "Client.RateLimited")
    assert int(answer["Retry-After"]) >= 1
    verify_answer(answer, rest_gateway.pki)

    database = rest_gateway.settings.audit.path
    database.rename(database.with_suffix(".away"))
    try:
        failed = await send(rest_gateway.client, "GET", f"{R1}/pet/1", [("X-Road-Client", CLIENT)])
    finally:
        database.with_suffix(".away").rename(database)
    assert (failed.status, failed["X-Road-Error"]) == (503, "Server.ClientProxy.LoggingFailed")
    verify_answer(failed, rest_gateway.pki)
