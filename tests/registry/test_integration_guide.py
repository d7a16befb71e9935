"""The examples of docs/integration-guide.md are a registry that `obmin registry check` accepts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from registry import check_registry, load_registry
from registry.identifiers import ClientId, MemberId, ServiceId
from security import init_pki, issue_member_cert

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "integration-guide.md"
BLOCK = re.compile(r"```yaml\n# file: (?P<name>[\w.-]+)\n(?P<body>.*?)```", re.DOTALL)


def test_guide_examples_form_a_valid_registry(tmp_path: Path) -> None:
    blocks = list(BLOCK.finditer(GUIDE.read_text(encoding="utf-8")))
    assert len(blocks) >= 6
    directory = tmp_path / "registry"
    (directory / "certs").mkdir(parents=True)
    (directory / "wsdl").mkdir()
    for block in blocks:
        (directory / block["name"]).write_text(block["body"], encoding="utf-8")
    # The files the examples refer to: a CA, a pinned certificate, the example WSDL.
    pki = init_pki(tmp_path / "pki")
    shutil.copy(pki.ca_cert, directory / "certs" / "ca.crt")
    pinned = issue_member_cert(pki, MemberId("SEVDEIR-TEST", "GOV", "22334455"), name="Tax")
    shutil.copy(pinned.cert_path, directory / "certs" / "tax-risk-signing.crt")
    shutil.copy(
        REPO / "config" / "example" / "registry" / "wsdl" / "person-registry.wsdl",
        directory / "wsdl" / "person-registry.wsdl",
    )

    code, output = check_registry(directory)
    assert code == 0, output
    assert output.startswith("registry OK:")

    registry = load_registry(directory)
    provider = ClientId.parse("SEVDEIR-TEST/GOV/87654321/REGISTRY")
    get_person = ServiceId(provider, "getPerson", "v1")
    archive = ClientId.parse("SEVDEIR-TEST/GOV/12345678/ARCHIVE")
    assert registry.is_allowed(archive, get_person)  # through the group
    risk = ClientId.parse("SEVDEIR-TEST/GOV/22334455/RISK")
    assert registry.is_allowed(risk, get_person)  # through the global group
    assert registry.global_groups["TAX-SYSTEMS"].members == (risk,)
    assert "TAX-SYSTEMS" not in registry.groups
    assert [str(entry.id) for entry in registry.allowed_services(risk)] == [str(get_person)]
    persons = ServiceId(provider, "persons")
    client = ClientId.parse("SEVDEIR-TEST/GOV/12345678/CLIENT")
    assert registry.is_allowed(client, persons, "GET", "/persons/42")
    assert not registry.is_allowed(client, persons, "DELETE", "/persons/42")
    assert not registry.is_allowed(archive, persons, "GET", "/persons/42")
