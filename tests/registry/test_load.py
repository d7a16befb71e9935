"""Valid registries: the snapshot, its lookups, access decisions and the check command."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from registry import (
    ClientId,
    Registry,
    ServiceId,
    certificate_thumbprint,
    check_registry,
    load_registry,
    normalise_path,
)
from tests.registry.conftest import RegistryWriter

REPO = Path(__file__).resolve().parents[2]
PROVIDER = ClientId.parse("SEVDEIR-TEST/GOV/87654321/REGISTRY")
CLIENT = ClientId.parse("SEVDEIR-TEST/GOV/12345678/CLIENT")
LEGACY = ClientId.parse("SEVDEIR-TEST/GOV/12345678/LEGACY")
OTHER = ClientId.parse("SEVDEIR-TEST/GOV/12345678/OTHER")
MEMBER = ClientId.parse("SEVDEIR-TEST/GOV/12345678")

RICH: dict[str, str | bytes | None] = {
    "10-members.yaml": """\
members:
  - id: SEVDEIR-TEST/GOV/12345678
    name: Ministry of Social Policy
    auth: signature+mtls
    tls_certificates: [certs/client.pem]
    subsystems:
      - code: CLIENT
        name: Case management
        signing_certificates: [certs/client.pem]
        rate_limit: {per_second: 2.5, burst: 5}
      - code: LEGACY
        auth: none
        signature_policy: standard
      - code: OTHER
  - id: SEVDEIR-TEST/GOV/87654321
    name: State Registry Service
    subsystems:
      - code: REGISTRY
""",
    "20-services.yaml": """\
services:
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    code: getPerson
    version: v1
    type: soap
    url: http://127.0.0.1:8090/soap
    wsdl: docs/person.wsdl
    title: Find a person
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    code: getPerson
    version: v2
    type: soap
    url: https://registry.example.gov.ua:8443/soap/v2
    timeout: {connect: 1.5, total: 4}
    audit_body: encrypted
    tls:
      ca_certificates: [certs/ca.pem]
      client_certificate: certs/client.pem
      client_key: certs/client.key
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    code: getPerson
    type: soap
    url: http://127.0.0.1:8090/soap-unversioned
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    code: persons
    type: openapi
    url: http://127.0.0.1:8090/rest
    openapi: docs/persons.yaml
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    code: oldService
    type: rest
    url: http://127.0.0.1:8090/old
    disabled: true
    disabled_notice: Replaced by persons
""",
    "30-access.yaml": """\
groups:
  - code: LEGACY-SYSTEMS
    description: Systems that cannot sign yet
    members: [SEVDEIR-TEST/GOV/12345678/LEGACY]
access:
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: getPerson
    clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: persons
    clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: persons
    groups: [LEGACY-SYSTEMS]
    endpoints:
      - {method: GET, path: /persons/*}
      - {method: "*", path: /public/**}
      - {method: GET, path: /files/*.json}
""",
    "docs/person.wsdl": "<definitions/>\n",
    "docs/persons.yaml": "openapi: 3.0.3\n",
    "certs/client.key": "-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n",
}


@pytest.fixture
def rich(write_registry: RegistryWriter) -> Registry:
    return load_registry(write_registry(RICH))


def sid(text: str) -> ServiceId:
    return ServiceId.parse(text)


def test_snapshot_contents(rich: Registry, write_registry: RegistryWriter) -> None:
    assert rich.instance == "SEVDEIR-TEST"
    assert rich.loaded_from.name.startswith("registry")
    counts = rich.counts
    assert (counts.members, counts.subsystems, counts.services) == (2, 4, 5)
    assert (counts.access_rules, counts.groups, counts.trust_anchors) == (3, 1, 1)
    ca = (rich.loaded_from / "certs" / "ca.pem").read_bytes()
    assert rich.trust_anchors == (x509.load_pem_x509_certificate(ca),)
    anchor = rich.trust_anchor_entries[0]
    assert (anchor.name, anchor.revocation, anchor.on_unavailable) == ("dev-ca", "none", "reject")
    assert len(rich.digest) == 64


def test_clients(rich: Registry) -> None:
    client = rich.find_client(CLIENT)
    assert client is not None
    assert (client.name, client.member_name) == ("Case management", "Ministry of Social Policy")
    assert (client.auth, client.signature_policy) == ("signature", "strict")
    assert client.rate_limit is not None and client.rate_limit.burst == 5
    [pinned] = client.signing_certificates
    der = pinned.public_bytes(Encoding.DER)
    assert client.signing_thumbprints == {hashlib.sha256(der).hexdigest()}
    assert certificate_thumbprint(pinned) == hashlib.sha256(der).hexdigest()
    legacy = rich.find_client(LEGACY)
    assert legacy is not None
    assert (legacy.auth, legacy.signature_policy, legacy.name) == (
        "none",
        "standard",
        "Ministry of Social Policy",
    )
    # The member acting as a client has its own settings; subsystems do not inherit them.
    member = rich.find_client(MEMBER)
    assert member is not None and member.auth == "signature+mtls" and member.tls_thumbprints
    other = rich.find_client(OTHER)
    assert other is not None and other.auth == "signature" and not other.tls_certificates
    assert rich.find_client(ClientId.parse("SEVDEIR-TEST/GOV/12345678/NOPE")) is None
    assert [str(entry.id) for entry in rich.all_clients()][:2] == [str(MEMBER), str(CLIENT)]


def test_find_service_matches_the_full_identifier(rich: Registry) -> None:
    v1 = rich.find_service(sid(f"{PROVIDER}/getPerson/v1"))
    assert v1 is not None and v1.url == "http://127.0.0.1:8090/soap" and v1.title == "Find a person"
    assert v1.wsdl_path == rich.loaded_from / "docs" / "person.wsdl"
    assert (v1.connect_timeout, v1.total_timeout, v1.audit_body) == (5.0, 30.0, "digest")
    v2 = rich.find_service(sid(f"{PROVIDER}/getPerson/v2"))
    assert v2 is not None and (v2.connect_timeout, v2.total_timeout) == (1.5, 4.0)
    assert v2.audit_body == "encrypted" and v2.tls_verify
    assert v2.tls_ca_certificates == (rich.loaded_from / "certs" / "ca.pem",)
    assert v2.tls_client_key == rich.loaded_from / "certs" / "client.key"
    # No version in the request: only the service registered without a version.
    bare = rich.find_service(sid(f"{PROVIDER}/getPerson"))
    assert bare is not None and bare.url.endswith("/soap-unversioned")
    assert rich.find_service(sid(f"{PROVIDER}/getPerson/v3")) is None
    assert rich.find_service(sid(f"{CLIENT}/getPerson/v1")) is None
    old = rich.find_service(sid(f"{PROVIDER}/oldService"))
    assert old is not None and old.disabled and old.disabled_notice == "Replaced by persons"
    openapi = rich.find_service(sid(f"{PROVIDER}/persons"))
    assert openapi is not None and openapi.openapi_path is not None and openapi.type == "openapi"


def test_access_is_per_service_code_and_default_deny(rich: Registry) -> None:
    for version in ("v1", "v2", None):
        service = ServiceId(PROVIDER, "getPerson", version)
        assert rich.is_allowed(CLIENT, service)
        assert not rich.is_allowed(OTHER, service)
        assert not rich.is_allowed(LEGACY, service)
    # A right of a subsystem is not a right of its member, nor of a sibling.
    assert not rich.is_allowed(MEMBER, sid(f"{PROVIDER}/getPerson/v1"))
    # A version nobody registered is still decided on the code (find_service refuses it).
    assert rich.is_allowed(CLIENT, sid(f"{PROVIDER}/getPerson/v9"))
    assert not rich.is_allowed(CLIENT, sid(f"{PROVIDER}/oldService"))
    assert not rich.is_allowed(CLIENT, sid("SEVDEIR-TEST/GOV/11111111/X/getPerson"))


BAD_PATHS = ("/public/%2E%2E/%2E%2E/secret", "persons/1", "/persons/%zz", "/persons/1?x=1")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/persons/123", True),
        ("get", "/persons/123/", True),
        ("GET", "/persons", False),
        ("GET", "/persons/123/addresses", False),
        ("POST", "/persons/123", False),
        ("DELETE", "/public", True),
        ("PUT", "/public/a/b/c", True),
        ("GET", "/files/report.json", True),
        ("GET", "/files/report.xml", False),
        ("GET", "/files/a/report.json", False),
        ("GET", "/public/../persons/1/addresses", False),
        ("GET", "/public/%2e%2e/persons/1", True),
        ("GET", "/public/%2E%2E/%2E%2E/secret", False),
        ("GET", "/persons//123", True),
        ("GET", "/persons/1%2F2", True),
        ("GET", "persons/1", False),
        ("GET", "/persons/%zz", False),
        ("GET", "/persons/1?x=1", False),
        ("GET", "/other", False),
    ],
)
def test_rest_endpoint_rights(rich: Registry, method: str, path: str, allowed: bool) -> None:
    service = sid(f"{PROVIDER}/persons")
    assert rich.is_allowed(LEGACY, service, method, path) is allowed
    # The whole-service grant allows every endpoint, but never a path that escapes the root
    # or cannot be normalised (fail closed; the gateway refuses those before this anyway).
    usable = normalise_path(path) is not None
    assert rich.is_allowed(CLIENT, service, method, path) is usable
    assert usable is (path not in BAD_PATHS)


def test_endpoint_grant_needs_method_and_path(rich: Registry) -> None:
    service = sid(f"{PROVIDER}/persons")
    assert not rich.is_allowed(LEGACY, service)
    assert not rich.is_allowed(LEGACY, service, "GET", None)
    assert rich.is_allowed(CLIENT, service)


def test_allowed_services_and_services_of(rich: Registry) -> None:
    allowed = [str(entry.id) for entry in rich.allowed_services(CLIENT)]
    assert allowed == [
        f"{PROVIDER}/getPerson",
        f"{PROVIDER}/getPerson/v1",
        f"{PROVIDER}/getPerson/v2",
        f"{PROVIDER}/persons",
    ]
    assert [str(entry.id) for entry in rich.allowed_services(LEGACY)] == [f"{PROVIDER}/persons"]
    assert rich.allowed_services(OTHER) == []
    assert len(rich.services_of(PROVIDER)) == 5
    assert rich.services_of(CLIENT) == []


SHARED = """\
groups:
  - code: SHARED
    members: [SEVDEIR-TEST/GOV/12345678/LEGACY]
global_groups:
  - code: SHARED
    description: Every information system of the instance
    members: [SEVDEIR-TEST/GOV/12345678]
access:
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: getPerson
    groups: [SHARED]
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: persons
    global_groups: [SHARED]
    endpoints:
      - {method: GET, path: /persons/*}
"""


def test_global_group_grants_apart_from_a_local_group_of_the_same_code(
    write_registry: RegistryWriter,
) -> None:
    # A local and a global group share the code SHARED; each grants only what the rules that
    # name it (by groups / global_groups) grant, and only to its own members.
    registry = load_registry(write_registry({"35-groups.yaml": SHARED}))
    local, global_ = registry.groups["SHARED"], registry.global_groups["SHARED"]
    assert (local.members, local.description) == ((LEGACY,), None)
    assert global_.members == (MEMBER,)
    assert global_.description == "Every information system of the instance"
    assert (registry.counts.groups, registry.counts.global_groups) == (1, 1)
    get_person, persons = sid(f"{PROVIDER}/getPerson/v1"), sid(f"{PROVIDER}/persons")
    assert registry.is_allowed(LEGACY, get_person)
    assert not registry.is_allowed(MEMBER, get_person)
    assert registry.is_allowed(MEMBER, persons, "GET", "/persons/42")
    assert not registry.is_allowed(MEMBER, persons, "POST", "/persons/42")
    assert not registry.is_allowed(MEMBER, persons)  # an endpoint grant needs method and path
    assert not registry.is_allowed(LEGACY, persons, "GET", "/persons/42")
    assert [str(e.id) for e in registry.allowed_services(MEMBER)] == [f"{PROVIDER}/persons"]
    assert [str(e.id) for e in registry.allowed_services(LEGACY)] == [f"{PROVIDER}/getPerson/v1"]
    # The summary of `registry check` keeps its format.
    directory = registry.loaded_from
    assert check_registry(directory) == (
        0,
        f"registry OK: 2 members, 3 subsystems, 2 services, 3 access rules ({directory})",
    )


def test_global_and_direct_grants_combine(write_registry: RegistryWriter) -> None:
    # CLIENT holds getPerson directly (BASE) and persons only through a global group.
    groups = "global_groups:\n  - code: ALL\n    members: [SEVDEIR-TEST/GOV/12345678/CLIENT]\n"
    rule = f"access:\n  - provider: {PROVIDER}\n    service: persons\n    global_groups: [ALL]\n"
    registry = load_registry(write_registry({"35-groups.yaml": groups + rule}))
    assert registry.groups == {}
    assert [str(e.id) for e in registry.allowed_services(CLIENT)] == [
        f"{PROVIDER}/getPerson/v1",
        f"{PROVIDER}/persons",
    ]
    assert registry.is_allowed(CLIENT, sid(f"{PROVIDER}/persons"), "DELETE", "/anything")
    assert not registry.is_allowed(LEGACY, sid(f"{PROVIDER}/persons"))


def test_snapshot_is_immutable(rich: Registry) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        rich.instance = "X"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rich.clients[CLIENT] = rich.clients[LEGACY]  # type: ignore[index]


def test_digest_follows_content(write_registry: RegistryWriter) -> None:
    first = load_registry(write_registry({})).digest
    assert load_registry(write_registry({})).digest == first
    changed = write_registry({"30-access.yaml": "access: []\n"})
    assert load_registry(changed).digest != first


def test_directory_layout_rules(write_registry: RegistryWriter) -> None:
    # .yml is read; dotfiles, other suffixes and subdirectories are not; an empty section
    # (a key with only comments under it) is an empty list.
    directory = write_registry(
        {
            "50-more.yml": "groups:\n  # none yet\n",
            ".#30-access.yaml": "not: [valid\n",
            "notes.txt": "members: 5\n",
            "sub/ignored.yaml": "members: 5\n",
        }
    )
    assert load_registry(directory).counts.groups == 0


def test_check_output(write_registry: RegistryWriter) -> None:
    directory = write_registry({})
    assert check_registry(directory) == (
        0,
        f"registry OK: 2 members, 3 subsystems, 2 services, 1 access rules ({directory})",
    )
    broken = write_registry({"x.yaml": "members: 5\nservices: 7\n"})
    code, output = check_registry(str(broken))
    assert code == 1
    assert output.splitlines() == [
        f"{broken}/x.yaml:1: members: expected a list, got 5",
        f"{broken}/x.yaml:2: services: expected a list, got 7",
    ]


def test_example_registry(tmp_path: Path, ca_pem: bytes) -> None:
    # The example points at ../../../var/pki/ca/ca.crt (the PKI `make run` creates); copied
    # to the same depth under tmp_path, it finds a CA made here.
    example = tmp_path / "config" / "example" / "registry"
    shutil.copytree(REPO / "config" / "example" / "registry", example)
    (tmp_path / "var" / "pki" / "ca").mkdir(parents=True)
    (tmp_path / "var" / "pki" / "ca" / "ca.crt").write_bytes(ca_pem)
    assert check_registry(example) == (
        0,
        f"registry OK: 2 members, 3 subsystems, 1 services, 1 access rules ({example})",
    )
    registry = load_registry(example)
    service = sid("SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson/v1")
    entry = registry.find_service(service)
    assert entry is not None and entry.url == "http://127.0.0.1:8090/soap"
    assert entry.wsdl_path is not None and entry.wsdl_path.is_file()
    assert registry.is_allowed(CLIENT, service) and registry.is_allowed(LEGACY, service)
    assert not registry.is_allowed(MEMBER, service)
    client, legacy = registry.find_client(CLIENT), registry.find_client(LEGACY)
    assert client is not None and (client.auth, client.signature_policy) == ("signature", "strict")
    assert legacy is not None and legacy.auth == "none"
