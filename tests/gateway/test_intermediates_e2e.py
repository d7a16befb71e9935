"""Signers issued by an intermediate CA configured in the registry: SOAP and REST end to end,
with revocation checked for every certificate of the path (CRLs of the root and of the
intermediate, served over loopback)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from registry.identifiers import ClientId, MemberId
from security import IssuedCert, PkiLayout, init_pki, issue_member_cert
from security.pki_certs import issue_intermediate_ca
from security.pki_revoke import revoke, write_crl
from tests.gateway.deploy import provider_app, registry, rest_call, soap_call, start_gateway

MEMBER = MemberId("SEVDEIR-TEST", "GOV", "12345678")
SOAP_CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT")
REST_CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "RESTCLIENT")


class TwoLevel:
    """Root and intermediate PKIs with their CRLs served, and signers under the intermediate."""

    def __init__(self, base: Path, crl_base: str) -> None:
        self.root = init_pki(base / "root")
        write_crl(self.root)
        self.inter: PkiLayout = issue_intermediate_ca(
            self.root, base / "inter", name="obmin issuing CA", crl_url=f"{crl_base}/root.crl"
        )
        write_crl(self.inter)
        inter_crl = f"{crl_base}/inter.crl"
        self.soap: IssuedCert = issue_member_cert(
            self.inter, MEMBER, name="SOAP signer", out_dir=base / "soap", crl_url=inter_crl
        )
        self.rest: IssuedCert = issue_member_cert(
            self.inter,
            MEMBER,
            name="REST signer",
            out_dir=base / "rest",
            key_type="ed25519",
            crl_url=inter_crl,
        )

    def anchors(self, *, intermediates: bool) -> list[dict[str, Any]]:
        anchor: dict[str, Any] = {
            "name": "root",
            "certificate": str(self.root.ca_cert),
            "revocation": "crl",
        }
        if intermediates:
            anchor["intermediates"] = [str(self.inter.ca_cert)]
        return [anchor]

    def subsystems(self) -> list[dict[str, Any]]:
        return [
            {"code": "CLIENT", "auth": "signature"},
            {"code": "RESTCLIENT", "signing_certificates": [str(self.rest.cert_path)]},
        ]


@pytest.fixture
async def pkis(tmp_path: Path, aiohttp_server: Callable[..., Any]) -> TwoLevel:
    files: dict[str, Path] = {}

    async def crl(request: web.Request) -> web.Response:
        return web.Response(body=files[request.match_info["name"]].read_bytes())

    app = web.Application()
    app.router.add_get("/{name}.crl", crl)
    server: TestServer = await aiohttp_server(app)
    two = TwoLevel(tmp_path / "pki", str(server.make_url("")).rstrip("/"))
    files.update({"root": two.root.ca_crl, "inter": two.inter.ca_crl})
    return two


async def test_signers_under_a_configured_intermediate(
    pkis: TwoLevel, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    provider: TestServer = await aiohttp_server(provider_app())
    provider_url = str(provider.make_url("")).rstrip("/")
    soap_signer = (pkis.soap.cert_path, pkis.soap.key_path)
    rest_signer = (pkis.rest.cert_path, pkis.rest.key_path)

    # 1. The intermediate in the registry: both signers are served (neither message carries
    #    the intermediate; SOAP's carries only the signer's token, REST's nothing at all).
    configured = registry(pkis.anchors(intermediates=True), pkis.subsystems(), provider_url)
    gateway = await start_gateway(tmp_path, configured, pkis.root.root, name="configured")
    try:
        assert (await soap_call(gateway, SOAP_CLIENT, signer=soap_signer)).fault is None
        served = await rest_call(gateway, REST_CLIENT, signer=rest_signer)
        assert (served.status, served.error) == (200, None), served.body
    finally:
        await gateway.server.close()

    # 2. Without it the path cannot be built: refused.
    bare = registry(pkis.anchors(intermediates=False), pkis.subsystems(), provider_url)
    gateway = await start_gateway(tmp_path, bare, pkis.root.root, name="bare")
    try:
        refused = await soap_call(gateway, SOAP_CLIENT, signer=soap_signer)
        assert refused.fault == "Client.CertValidation"
        assert "does not chain to a trusted CA" in (refused.faultstring or "")
        rest_refused = await rest_call(gateway, REST_CLIENT, signer=rest_signer)
        assert (rest_refused.status, rest_refused.error) == (400, "Client.CertValidation")
    finally:
        await gateway.server.close()


async def test_a_revoked_intermediate_revokes_its_signers(
    pkis: TwoLevel, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    provider: TestServer = await aiohttp_server(provider_app())
    provider_url = str(provider.make_url("")).rstrip("/")
    soap_signer = (pkis.soap.cert_path, pkis.soap.key_path)
    rest_signer = (pkis.rest.cert_path, pkis.rest.key_path)
    configured = registry(pkis.anchors(intermediates=True), pkis.subsystems(), provider_url)

    # The root revokes the intermediate; the signers themselves are not on any CRL.
    revoke(pkis.root, pkis.inter.ca_cert, reason="CACompromise")
    gateway = await start_gateway(tmp_path, configured, pkis.root.root, name="revoked")
    try:
        refused = await soap_call(gateway, SOAP_CLIENT, signer=soap_signer)
        assert refused.fault == "Client.CertValidation"
        assert "obmin issuing CA" in (refused.faultstring or "")
        assert "was revoked" in (refused.faultstring or "")
        rest_refused = await rest_call(gateway, REST_CLIENT, signer=rest_signer)
        assert (rest_refused.status, rest_refused.error) == (400, "Client.CertValidation")
        assert b"was revoked" in rest_refused.body
    finally:
        await gateway.server.close()


async def test_a_revoked_signer_under_the_intermediate_is_refused(
    pkis: TwoLevel, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    provider: TestServer = await aiohttp_server(provider_app())
    provider_url = str(provider.make_url("")).rstrip("/")
    configured = registry(pkis.anchors(intermediates=True), pkis.subsystems(), provider_url)
    revoke(pkis.inter, pkis.rest.cert_path, reason="keyCompromise")
    gateway = await start_gateway(tmp_path, configured, pkis.root.root, name="signer-revoked")
    try:
        soap = await soap_call(
            gateway, SOAP_CLIENT, signer=(pkis.soap.cert_path, pkis.soap.key_path)
        )
        assert soap.fault is None  # the intermediate and this signer are good
        rest = await rest_call(
            gateway, REST_CLIENT, signer=(pkis.rest.cert_path, pkis.rest.key_path)
        )
        assert (rest.status, rest.error) == (400, "Client.CertValidation")
        assert b"REST signer" in rest.body and b"was revoked" in rest.body
    finally:
        await gateway.server.close()
