"""The auditor API: who accessed data about a person, and why; proofs that verify."""

from __future__ import annotations

import asyncio
import base64

from gateway.audit.merkle import verify_inclusion
from tests.rest.conftest import CLIENT, SERVICE, RestDeployment

AUDITOR = {"Authorization": "Bearer aud"}
SCOPED = {"Authorization": "Bearer scoped"}


async def _exchanges(gw: RestDeployment) -> None:
    for subject, purposes in (("UA-1111111111", "SOC-17"), ("UA-2222222222", "TAX-2, SOC-17")):
        response = await gw.client.get(
            "/restapi/pet/1",
            headers={
                "Uxp-Client": CLIENT,
                "Uxp-Service": SERVICE,
                "Uxp-Subject-Id": subject,
                "Uxp-Purpose-Ids": purposes,
            },
        )
        assert response.status == 200


async def test_who_accessed_data_about_a_subject_and_why(rest_gateway: RestDeployment) -> None:
    await _exchanges(rest_gateway)
    response = await rest_gateway.admin.get(
        "/audit/v1/records?subject_id=UA-2222222222&direction=request", headers=AUDITOR
    )
    assert response.status == 200
    records = (await response.json())["records"]
    assert len(records) == 1
    assert records[0]["client"] == CLIENT
    assert records[0]["purpose_ids"] == ["TAX-2", "SOC-17"]
    assert records[0]["rest_method"] == "GET"


async def test_scope_tokens_and_errors(rest_gateway: RestDeployment) -> None:
    await _exchanges(rest_gateway)
    assert (await rest_gateway.admin.get("/audit/v1/records")).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await rest_gateway.admin.get("/audit/v1/records", headers=wrong)).status == 401
    scoped = await rest_gateway.admin.get("/audit/v1/records", headers=SCOPED)
    assert (await scoped.json())["records"] == []  # another member's auditor sees nothing
    hidden = await rest_gateway.admin.get("/audit/v1/records/0", headers=SCOPED)
    assert hidden.status == 404
    bad = await rest_gateway.admin.get("/audit/v1/records?limit=0", headers=AUDITOR)
    assert bad.status == 400
    unknown = await rest_gateway.admin.get("/audit/v1/records?colour=red", headers=AUDITOR)
    assert unknown.status == 400
    spec = await (await rest_gateway.admin.get("/audit/v1/openapi.json")).json()
    assert "/audit/v1/records/{seq}" in spec["paths"]


async def test_record_with_inclusion_proof_and_consistency(rest_gateway: RestDeployment) -> None:
    await _exchanges(rest_gateway)
    for _ in range(50):  # checkpoints every 2 records or 0.2 s
        checkpoint = await rest_gateway.admin.get("/audit/v1/checkpoint", headers=AUDITOR)
        if checkpoint.status == 200 and (await checkpoint.json())["tree_size"] >= 4:
            break
        await asyncio.sleep(0.1)
    latest = await checkpoint.json()
    assert latest["note"].startswith(latest["origin"] + "\n")
    answer = await (await rest_gateway.admin.get("/audit/v1/records/1", headers=AUDITOR)).json()
    proof = answer["inclusion_proof"]
    assert proof is not None and proof["tree_size"] >= 2
    leaf = base64.b64decode(answer["record"]["leaf_hash"])
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    root_line = proof["checkpoint"].splitlines()[2]
    # Raises InvalidProof unless the record is leaf 1 of the signed tree.
    verify_inclusion(leaf, 1, proof["tree_size"], hashes, base64.b64decode(root_line))
    size = latest["tree_size"]
    consistency = await rest_gateway.admin.get(
        f"/audit/v1/proofs/consistency?from=1&to={size}", headers=AUDITOR
    )
    assert consistency.status == 200
    assert len((await consistency.json())["hashes"]) >= 1


async def test_rest_exchanges_are_counted_in_metrics(rest_gateway: RestDeployment) -> None:
    await _exchanges(rest_gateway)
    await rest_gateway.client.get("/restapi/pet/1", headers={"Uxp-Client": CLIENT})  # refused
    metrics = (await (await rest_gateway.admin.get("/metrics")).read()).decode()
    labels = f'client="{CLIENT}",outcome="ok",protocol="rest",service="{SERVICE}"'
    assert f"obmin_exchanges_total{{{labels}}} 2.0" in metrics
    assert 'outcome="Client.MissingHeaderField",protocol="rest"' in metrics
