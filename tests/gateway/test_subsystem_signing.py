"""A subsystem signing certificate (`obmin pki issue-subsystem`) speaks for the one subsystem
that pins it in the registry, not for its member's other subsystems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from registry.identifiers import ClientId
from security import init_pki, issue_subsystem_cert
from tests.gateway.deploy import provider_app, registry, rest_call, soap_call, start_gateway

PINNED = ClientId("SEVDEIR-TEST", "GOV", "12345678", "PINNED")
SIBLING = ClientId("SEVDEIR-TEST", "GOV", "12345678", "SIBLING")


async def test_pinned_for_one_subsystem_only(
    tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    pki = init_pki(tmp_path / "pki")
    cert = issue_subsystem_cert(pki, PINNED, key_type="ed25519")
    assert cert.cert_path == pki.root / "members" / "12345678" / "PINNED" / "sign.crt"
    provider: TestServer = await aiohttp_server(provider_app())
    subsystems = [
        {"code": "PINNED", "signing_certificates": [str(cert.cert_path)]},
        {"code": "SIBLING"},
    ]
    anchors = [{"name": "dev-ca", "certificate": str(pki.ca_cert)}]
    data = registry(anchors, subsystems, str(provider.make_url("")).rstrip("/"))
    gateway = await start_gateway(tmp_path, data, pki.root)
    signer = (cert.cert_path, cert.key_path)
    try:
        assert (await soap_call(gateway, PINNED, signer=signer)).fault is None
        served = await rest_call(gateway, PINNED, signer=signer)
        assert (served.status, served.error) == (200, None), served.body
        # The same member's other subsystem: the certificate names no member, so it is not
        # the client's (SOAP); REST finds no registered key for the keyid at all.
        sibling = await soap_call(gateway, SIBLING, signer=signer)
        assert sibling.fault == "Client.IncorrectCertificate"
        rest = await rest_call(gateway, SIBLING, signer=signer)
        assert (rest.status, rest.error) == (400, "Client.UnknownKey")
    finally:
        await gateway.server.close()
