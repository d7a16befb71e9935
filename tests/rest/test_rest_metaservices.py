"""REST metaservices and the global listClients / wsdl calls, over HTTP."""

from __future__ import annotations

from lxml import etree

from tests.rest.conftest import CLIENT, OTHER, RestDeployment


async def test_list_and_allowed_methods(rest_gateway: RestDeployment) -> None:
    base = "/r1/DEV/COM/222/TESTSERVICE"
    listed = await rest_gateway.client.get(f"{base}/listMethods", headers={"X-Road-Client": OTHER})
    assert listed.status == 200
    body = await listed.json()
    assert [s["service_code"] for s in body["service"]] == ["petstore"]
    assert listed.headers["X-Road-Request-Id"]
    allowed = await rest_gateway.client.get(
        f"{base}/allowedMethods", headers={"X-Road-Client": OTHER}
    )
    assert [s["service_code"] for s in (await allowed.json())["service"]] == ["petstore"]
    assert rest_gateway.provider.requests == []  # answered by the gateway, not the provider


async def test_list_clients_json_and_xml(rest_gateway: RestDeployment) -> None:
    as_json = await rest_gateway.client.get(
        "/listClients", headers={"X-Road-Client": CLIENT, "Accept": "application/json"}
    )
    assert as_json.status == 200
    text = await as_json.text()
    assert "TESTCLIENT" in text
    as_xml = await rest_gateway.client.get("/listClients", headers={"X-Road-Client": CLIENT})
    root = etree.fromstring(await as_xml.read())
    assert etree.QName(root).localname == "clientList"


async def test_global_metaservices_need_an_authenticated_client(
    rest_gateway: RestDeployment,
) -> None:
    anonymous = await rest_gateway.client.get("/listClients")
    assert anonymous.status == 400
    assert anonymous.headers["X-Road-Error"] == "Client.MissingHeaderField"
    unknown = await rest_gateway.client.get(
        "/listClients", headers={"X-Road-Client": "DEV/COM/222/NOBODY"}
    )
    assert unknown.headers["X-Road-Error"] == "Server.ClientProxy.UnknownMember"
    wsdl = await rest_gateway.client.get(
        "/wsdl?xRoadInstance=DEV&memberClass=COM&memberCode=222&subsystemCode=TESTSERVICE"
        "&serviceCode=petstore",
        headers={"X-Road-Client": CLIENT},
    )
    assert wsdl.status >= 400  # a REST service has no WSDL
    assert "X-Road-Error" in wsdl.headers
