"""Every X-Road/UXP request header that obmin interprets or audits must be signed when it is
present (SPEC 5.2, 8): a relay cannot change who asks, for whom, why, or under which id."""

from __future__ import annotations

import uuid

import pytest

from gateway.audit import open_audit_store
from security.httpsig import UXP_SIGNED_IF_PRESENT, XROAD_SIGNED_IF_PRESENT
from tests.rest.conftest import SERVICE, SIGNED, RestDeployment
from tests.rest.wire import send, sign, verify_answer

# A valid value for each header the gateway reads.
VALUES = {
    "x-road-id": "cover-id",
    "x-road-userid": "UA1234567890",
    "x-road-issue": "CASE-17",
    "x-road-represented-party": "COM/99999999",
    "x-road-security-server": "DEV/COM/222/SS1",
    "uxp-queryid": "cover-queryid",
    "uxp-id": "cover-uxp-id",
    "uxp-service": SERVICE,
    "uxp-userid": "UA1234567890",
    "uxp-issue": "CASE-17",
    "uxp-represented-party": "COM/99999999",
    "uxp-security-server": "DEV/COM/222/SS1",
    "uxp-purpose-ids": "SOC-17, TAX-2",
    "uxp-subject-id": "UA-1234567890",
    "uxp-consent-ref": "consent-42",
}
XROAD_CASES = ["x-road-id", *XROAD_SIGNED_IF_PRESENT]
UXP_CASES = ["uxp-queryid", *(h for h in UXP_SIGNED_IF_PRESENT if h != "uxp-service")]


def _target(dialect: str) -> str:
    return f"/r1/{SERVICE}/pet/1" if dialect == "xroad" else "/restapi/pet/1"


def _base(dialect: str) -> tuple[dict[str, str], list[str]]:
    if dialect == "xroad":
        return {"X-Road-Client": SIGNED}, ["@method", "@target-uri", "x-road-client"]
    return (
        {"Uxp-Client": SIGNED, "Uxp-Service": SERVICE},
        ["@method", "@target-uri", "uxp-client", "uxp-service"],
    )


@pytest.mark.parametrize(
    ("dialect", "header"),
    [("xroad", h) for h in XROAD_CASES] + [("uxp", h) for h in UXP_CASES],
)
async def test_unsigned_interpreted_header_is_refused(
    rest_gateway: RestDeployment, dialect: str, header: str
) -> None:
    headers, components = _base(dialect)
    headers[header] = VALUES[header]
    signed = sign(
        rest_gateway.client,
        "GET",
        _target(dialect),
        headers,
        rest_gateway.signer,
        components=tuple(components),
    )
    answer = await send(rest_gateway.client, "GET", _target(dialect), signed)
    error = "X-Road-Error" if dialect == "xroad" else "Uxp-Error"
    assert (answer.status, answer[error]) == (400, "Client.MissingCoveredComponent")
    assert header in answer.body.decode(), answer.body  # the message names the header
    assert rest_gateway.provider.requests == []


async def test_uxp_service_must_be_signed(rest_gateway: RestDeployment) -> None:
    headers = {"Uxp-Client": SIGNED, "Uxp-Service": SERVICE}
    signed = sign(
        rest_gateway.client,
        "GET",
        "/restapi/pet/1",
        headers,
        rest_gateway.signer,
        components=("@method", "@target-uri", "uxp-client"),
    )
    answer = await send(rest_gateway.client, "GET", "/restapi/pet/1", signed)
    assert answer["Uxp-Error"] == "Client.MissingCoveredComponent"
    assert "uxp-service" in answer.body.decode()


async def test_changing_a_signed_uxp_id_breaks_the_signature(rest_gateway: RestDeployment) -> None:
    """The replay bypass of the audit: Uxp-Id supplies the message id, so it is signed, and a
    copy with another Uxp-Id is no longer a valid message."""
    headers, components = _base("uxp")
    headers["Uxp-Id"] = f"uxp-{uuid.uuid4()}"
    signed = sign(
        rest_gateway.client,
        "GET",
        "/restapi/pet/1",
        headers,
        rest_gateway.signer,
        components=(*components, "uxp-id"),
    )
    first = await send(rest_gateway.client, "GET", "/restapi/pet/1", signed)
    assert first.status == 200
    assert first["Uxp-Queryid"] == headers["Uxp-Id"]
    renamed = await send(
        rest_gateway.client, "GET", "/restapi/pet/1", {**signed, "Uxp-Id": f"uxp-{uuid.uuid4()}"}
    )
    assert renamed["Uxp-Error"] == "Client.InvalidSignatureValue"
    again = await send(rest_gateway.client, "GET", "/restapi/pet/1", signed)
    assert again["Uxp-Error"] == "Client.ReplayedMessage"
    assert len(rest_gateway.provider.requests) == 1


@pytest.mark.parametrize("dialect", ["xroad", "uxp"])
async def test_signed_who_and_why_reach_the_audit_log(
    rest_gateway: RestDeployment, dialect: str
) -> None:
    headers, components = _base(dialect)
    cases = XROAD_CASES if dialect == "xroad" else UXP_CASES
    message_id = f"audited-{uuid.uuid4()}"
    for header in cases:
        if header in ("uxp-id",):  # Uxp-Queryid supplies the id
            continue
        headers[header] = message_id if header in ("x-road-id", "uxp-queryid") else VALUES[header]
        components.append(header)
    headers["X-Road-Extension-Header"] = "not interpreted, so not required to be signed"
    signed = sign(
        rest_gateway.client,
        "GET",
        _target(dialect),
        headers,
        rest_gateway.signer,
        components=tuple(components),
    )
    answer = await send(rest_gateway.client, "GET", _target(dialect), signed)
    assert answer.status == 200, answer.body
    verify_answer(answer, rest_gateway.pki, dialect=dialect)
    store = await open_audit_store(rest_gateway.settings.audit)
    try:
        request, _ = list(await store.query(message_id=message_id))
    finally:
        await store.close()
    prefix = "x-road-" if dialect == "xroad" else "uxp-"
    assert request.user_id == VALUES[f"{prefix}userid"]
    assert request.issue == VALUES[f"{prefix}issue"]
    assert request.represented_party == VALUES[f"{prefix}represented-party"]
    assert request.subject_id == VALUES["uxp-subject-id"]
    assert request.purpose_ids == ("SOC-17", "TAX-2")
