"""Invalid registries: every problem reported at once, each with file, line, key path and a
sentence saying what was expected. One case per kind of error; the texts are exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import RegistryError, RegistryInvalid, load_registry
from tests.registry.conftest import RegistryWriter

P = "SEVDEIR-TEST/GOV/87654321/REGISTRY"
C = "SEVDEIR-TEST/GOV/12345678/CLIENT"


def service(extra: str = "", code: str = "extra", kind: str = "soap") -> str:
    return (
        f"services:\n  - provider: {P}\n    code: {code}\n    type: {kind}\n"
        f"    url: http://127.0.0.1:8090/x\n{extra}"
    )


def rule(extra: str, code: str = "getPerson") -> str:
    return f"access:\n  - provider: {P}\n    service: {code}\n{extra}"


CASES = [
    pytest.param(
        {"x.yaml": "members: [1, 2\n"},
        [
            "DIR/x.yaml:2: invalid YAML: did not find expected ',' or ']' "
            "(while parsing a flow sequence)"
        ],
        id="yaml-syntax",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/11112222\n    name: x\n    colour: red\n"},
        [
            "DIR/x.yaml:4: members[0].colour: unknown key 'colour'; expected one of: id, name, "
            "auth, signature_policy, signing_certificates, tls_certificates, rate_limit, "
            "subsystems"
        ],
        id="unknown-key",
    ),
    pytest.param(
        {"x.yaml": "servics: []\n"},
        [
            "DIR/x.yaml:1: servics: unknown key 'servics'; expected one of: instance, members, "
            "groups, global_groups, trust_anchors, services, access"
        ],
        id="unknown-top-level-key",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/11112222\n    name: 12\n"},
        ["DIR/x.yaml:3: members[0].name: expected a string, got 12"],
        id="wrong-type-scalar",
    ),
    pytest.param(
        {"x.yaml": "groups: 5\n"},
        ["DIR/x.yaml:1: groups: expected a list, got 5"],
        id="wrong-type-list",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - name: x\n"},
        ["DIR/x.yaml:2: members[0]: missing required key 'id'"],
        id="missing-key",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV\n    name: x\n"},
        ["DIR/x.yaml:2: members[0].id: member identifier 'SEVDEIR-TEST/GOV' must have 3 parts"],
        id="bad-identifier-shape",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/1234 5678\n    name: x\n"},
        [
            "DIR/x.yaml:2: members[0].id: memberCode '1234 5678' contains characters that are "
            "not allowed"
        ],
        id="bad-identifier-character",
    ),
    pytest.param(
        {"x.yaml": service("    version: 1.0\n")},
        [
            "DIR/x.yaml:6: services[0].version: expected a code as a string, got 1.0 "
            "(quote it: '1.0')"
        ],
        id="version-not-text",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - id: SEVDEIR-PROD/GOV/11112222\n    name: x\n"},
        [
            "DIR/x.yaml:2: members[0].id: member SEVDEIR-PROD/GOV/11112222 belongs to instance "
            "SEVDEIR-PROD, not SEVDEIR-TEST"
        ],
        id="other-instance",
    ),
    pytest.param(
        {"x.yaml": rule("    clients: [SEVDEIR-TEST/GOV/12345678/NOPE]\n")},
        [
            "DIR/x.yaml:4: access[0].clients[0]: client SEVDEIR-TEST/GOV/12345678/NOPE is not "
            "registered as a member or subsystem"
        ],
        id="dangling-client",
    ),
    pytest.param(
        {"x.yaml": rule("    groups: [NOPE]\n")},
        ["DIR/x.yaml:4: access[0].groups[0]: group NOPE is not defined in groups"],
        id="unknown-group",
    ),
    pytest.param(
        {"x.yaml": "groups:\n  - code: G\n    members:\n      - SEVDEIR-TEST/GOV/99999999\n"},
        [
            "DIR/x.yaml:4: groups[0].members[0]: client SEVDEIR-TEST/GOV/99999999 is not "
            "registered as a member or subsystem"
        ],
        id="group-member-unknown",
    ),
    pytest.param(
        {"x.yaml": rule("    global_groups: [NOPE]\n")},
        [
            "DIR/x.yaml:4: access[0].global_groups[0]: global group NOPE is not defined in "
            "global_groups"
        ],
        id="unknown-global-group",
    ),
    pytest.param(
        # A local group does not satisfy a reference to a global group of the same code.
        {
            "x.yaml": f"groups:\n  - code: G\n    members: [{C}]\n"
            + rule("    global_groups: [G]\n")
        },
        [
            "DIR/x.yaml:7: access[0].global_groups[0]: global group G is not defined in "
            "global_groups"
        ],
        id="global-group-is-not-local",
    ),
    pytest.param(
        # ... nor a global group a reference to a local one.
        {
            "x.yaml": f"global_groups:\n  - code: G\n    members: [{C}]\n"
            + rule("    groups: [G]\n")
        },
        ["DIR/x.yaml:7: access[0].groups[0]: group G is not defined in groups"],
        id="local-group-is-not-global",
    ),
    pytest.param(
        {
            "x.yaml": "global_groups:\n  - code: G\n    members:\n"
            "      - SEVDEIR-TEST/GOV/99999999\n"
        },
        [
            "DIR/x.yaml:4: global_groups[0].members[0]: client SEVDEIR-TEST/GOV/99999999 is not "
            "registered as a member or subsystem"
        ],
        id="global-group-member-unknown",
    ),
    pytest.param(
        {"x.yaml": f"global_groups:\n  - code: G\n    members: [{C}, {C}]\n"},
        [f"DIR/x.yaml:3: global_groups[0].members[1]: client {C} is listed twice"],
        id="global-group-member-twice",
    ),
    pytest.param(
        {"x.yaml": "global_groups:\n  - code: G\n    colour: red\n"},
        [
            "DIR/x.yaml:3: global_groups[0].colour: unknown key 'colour'; expected one of: code, "
            "description, members"
        ],
        id="global-group-unknown-key",
    ),
    pytest.param(
        {"x.yaml": "global_groups: 5\n"},
        ["DIR/x.yaml:1: global_groups: expected a list, got 5"],
        id="global-groups-not-a-list",
    ),
    pytest.param(
        {"x.yaml": rule("    global_groups: G\n")},
        ["DIR/x.yaml:4: access[0].global_groups: expected a list, got 'G'"],
        id="access-global-groups-not-a-list",
    ),
    pytest.param(
        {"x.yaml": rule("    clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]\n", code="getAddress")},
        [
            "DIR/x.yaml:3: access[0].service: no service 'getAddress' is registered for provider "
            "SEVDEIR-TEST/GOV/87654321/REGISTRY"
        ],
        id="access-unknown-service",
    ),
    pytest.param(
        {"x.yaml": service().replace(P, "SEVDEIR-TEST/GOV/55555555/REGISTRY")},
        [
            "DIR/x.yaml:2: services[0].provider: provider SEVDEIR-TEST/GOV/55555555/REGISTRY is "
            "not registered as a member or subsystem"
        ],
        id="provider-unknown",
    ),
    pytest.param(
        {"x.yaml": "trust_anchors:\n  - name: other\n    certificate: certs/missing.pem\n"},
        ["DIR/x.yaml:3: trust_anchors[0].certificate: file not found: DIR/certs/missing.pem"],
        id="certificate-missing",
    ),
    pytest.param(
        {"x.yaml": "trust_anchors:\n  - name: other\n    certificate: x.yaml\n"},
        ["DIR/x.yaml:3: trust_anchors[0].certificate: not a PEM certificate: DIR/x.yaml"],
        id="certificate-not-pem",
    ),
    pytest.param(
        {"x.yaml": "trust_anchors:\n  - name: other\n    certificate: certs/client.pem\n"},
        [
            "DIR/x.yaml:3: trust_anchors[0].certificate: DIR/certs/client.pem is not a CA "
            "certificate (basicConstraints cA is false)"
        ],
        id="trust-anchor-not-ca",
    ),
    pytest.param(
        {
            "x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/11112222\n    name: x\n"
            "    subsystems:\n      - code: A\n        tls_certificates: [certs]\n"
        },
        [
            "DIR/x.yaml:6: members[0].subsystems[0].tls_certificates[0]: not a regular file: "
            "DIR/certs"
        ],
        id="certificate-is-directory",
    ),
    pytest.param(
        {"x.yaml": service("    wsdl: wsdl/none.wsdl\n")},
        ["DIR/x.yaml:6: services[0].wsdl: file not found: DIR/wsdl/none.wsdl"],
        id="wsdl-missing",
    ),
    pytest.param(
        {"x.yaml": service(kind="openapi")},
        ["DIR/x.yaml:2: services[0]: a service of type openapi needs an 'openapi' document"],
        id="openapi-without-document",
    ),
    pytest.param(
        {"x.yaml": service("    openapi: openapi/none.yaml\n", kind="openapi")},
        ["DIR/x.yaml:6: services[0].openapi: file not found: DIR/openapi/none.yaml"],
        id="openapi-missing",
    ),
    pytest.param(
        {"x.yaml": service("    openapi: docs/petstore.json\n", kind="rest")},
        ["DIR/x.yaml:6: services[0].openapi: file not found: DIR/docs/petstore.json"],
        id="openapi-missing-rest",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/12345678\n    name: again\n"},
        [
            "DIR/x.yaml:2: members[0].id: duplicate member SEVDEIR-TEST/GOV/12345678 "
            "(first defined at 10-members.yaml:2)"
        ],
        id="duplicate-member",
    ),
    pytest.param(
        {
            "x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/11112222\n    name: x\n"
            "    subsystems:\n      - code: A\n      - code: A\n"
        },
        [
            "DIR/x.yaml:6: members[0].subsystems[1].code: duplicate subsystem "
            "SEVDEIR-TEST/GOV/11112222/A (first defined at x.yaml:5)"
        ],
        id="duplicate-subsystem",
    ),
    pytest.param(
        {"x.yaml": service("    version: v1\n", code="getPerson")},
        [
            "DIR/x.yaml:2: services[0]: duplicate service "
            "SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson/v1 (first defined at 20-services.yaml:2)"
        ],
        id="duplicate-service",
    ),
    pytest.param(
        {"x.yaml": f"groups:\n  - code: G\n    members: [{C}]\n  - code: G\n"},
        ["DIR/x.yaml:4: groups[1].code: duplicate group G (first defined at x.yaml:2)"],
        id="duplicate-group",
    ),
    pytest.param(
        {
            "x.yaml": f"global_groups:\n  - code: G\n    members: [{C}]\n",
            "y.yaml": "global_groups:\n  - code: G\n",
        },
        [
            "DIR/y.yaml:2: global_groups[0].code: duplicate global group G (first defined at "
            "x.yaml:2)"
        ],
        id="duplicate-global-group",
    ),
    pytest.param(
        {"x.yaml": "trust_anchors:\n  - name: dev-ca\n    certificate: certs/ca.pem\n"},
        [
            "DIR/x.yaml:2: trust_anchors[0].name: duplicate trust anchor 'dev-ca' "
            "(first defined at 00-instance.yaml:3)"
        ],
        id="duplicate-trust-anchor",
    ),
    pytest.param(
        {"00-instance.yaml": "trust_anchors:\n  - name: dev-ca\n    certificate: certs/ca.pem\n"},
        ["DIR: instance: no file sets the instance (add 'instance: NAME' to one file)"],
        id="missing-instance",
    ),
    pytest.param(
        {"x.yaml": "instance: SEVDEIR-TEST\n"},
        [
            "DIR/x.yaml:1: instance: the instance is already set in 00-instance.yaml:1; exactly "
            "one file sets it"
        ],
        id="instance-twice",
    ),
    pytest.param(
        {
            "x.yaml": rule(
                f"    clients: [{C}]\n    endpoints:\n      - {{method: GET, path: /a/../b}}\n",
                code="persons",
            )
        },
        [
            "DIR/x.yaml:6: access[0].endpoints[0].path: path glob '/a/../b' contains a '..' "
            "segment; write the path out"
        ],
        id="endpoint-dotdot",
    ),
    pytest.param(
        {
            "x.yaml": rule(
                f"    clients: [{C}]\n    endpoints:\n      - {{method: FETCH, path: /a}}\n",
                code="persons",
            )
        },
        [
            "DIR/x.yaml:6: access[0].endpoints[0].method: expected 'GET', 'HEAD', 'POST', 'PUT', "
            "'PATCH', 'DELETE', 'OPTIONS' or '*', got 'FETCH'"
        ],
        id="endpoint-method",
    ),
    pytest.param(
        {
            "x.yaml": rule(
                f"    clients: [{C}]\n    endpoints:\n      - {{method: GET, path: /x}}\n"
            )
        },
        [
            "DIR/x.yaml:5: access[0].endpoints: endpoints apply to REST services; "
            "SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson is SOAP"
        ],
        id="endpoints-on-soap",
    ),
    pytest.param(
        {"x.yaml": rule("    clients: []\n")},
        ["DIR/x.yaml:2: access[0]: the rule grants nothing: name clients, groups or global_groups"],
        id="access-grants-nothing",
    ),
    pytest.param(
        {"x.yaml": service().replace("http://127.0.0.1:8090/x", "ftp://x")},
        ["DIR/x.yaml:5: services[0].url: expected an http(s) URL, got 'ftp://x'"],
        id="url-scheme",
    ),
    pytest.param(
        {"x.yaml": service().replace("http://127.0.0.1:8090/x", "http://user@host/x")},
        ["DIR/x.yaml:5: services[0].url: expected an http(s) URL, got 'http://user@host/x'"],
        id="url-userinfo",
    ),
    pytest.param(
        {"x.yaml": service("    audit_body: full\n")},
        [
            "DIR/x.yaml:6: services[0].audit_body: expected 'none', 'digest', 'encrypted' or "
            "'plain', got 'full'"
        ],
        id="enum-value",
    ),
    pytest.param(
        {"x.yaml": service("    timeout: {connect: 10, total: 5}\n")},
        [
            "DIR/x.yaml:6: services[0].timeout: the connect timeout (10.0 s) is longer than the "
            "total timeout (5.0 s)"
        ],
        id="timeout-order",
    ),
    pytest.param(
        {"x.yaml": service("    timeout: {connect: 0}\n")},
        ["DIR/x.yaml:6: services[0].timeout.connect: expected a number greater than 0, got 0"],
        id="timeout-bound",
    ),
    pytest.param(
        {"x.yaml": "members: &m []\ngroups: *m\n"},
        ["DIR/x.yaml:2: groups: YAML aliases (*name) are not allowed; write the value out"],
        id="alias",
    ),
    pytest.param(
        {"x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/11112222\n    name: x\n    name: y\n"},
        ["DIR/x.yaml:4: members[0].name: duplicate key: a key may appear once in a mapping"],
        id="duplicate-key",
    ),
    pytest.param(
        {"x.yaml": "members: []\n<<: {groups: []}\n7: x\n"},
        [
            "DIR/x.yaml:2: merge keys (<<) are not allowed",
            "DIR/x.yaml:3: keys must be strings, got 7",
        ],
        id="merge-and-non-string-keys",
    ),
    pytest.param(
        {"x.yaml": "instance: !!python/name:os.system x\n"},
        ["DIR/x.yaml:1: instance: YAML tag tag:yaml.org,2002:python/name:os.system is not allowed"],
        id="tag",
    ),
    pytest.param(
        {"x.yaml": "members: []\n---\ngroups: []\n"},
        ["DIR/x.yaml:2: a registry file holds one YAML document, not several"],
        id="several-documents",
    ),
    pytest.param(
        {"x.yaml": "- members\n"},
        [
            "DIR/x.yaml:1: expected a mapping with any of the keys instance, members, groups, "
            "global_groups, trust_anchors, services, access; got a list"
        ],
        id="not-a-mapping",
    ),
    pytest.param(
        {"x.yaml": b"members: []\ngroups: [\xff]\n"},
        ["DIR/x.yaml:2: not UTF-8 text (byte 0xff)"],
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CASES)
def test_invalid_registry(
    write_registry: RegistryWriter, files: dict[str, str | bytes | None], expected: list[str]
) -> None:
    directory = write_registry(files)
    with pytest.raises(RegistryInvalid) as caught:
        load_registry(directory)
    assert [str(issue).replace(str(directory), "DIR") for issue in caught.value.issues] == expected
    assert isinstance(caught.value, RegistryError)
    assert caught.value.code == "InvalidRegistry"


def test_all_problems_reported_at_once(write_registry: RegistryWriter) -> None:
    directory = write_registry(
        {
            "x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/11112222\n    name: x\n    colour: red\n",
            "y.yaml": service().replace("http://127.0.0.1:8090/x", "ftp://x"),
            "z.yaml": rule("    groups: [NOPE]\n"),
        }
    )
    with pytest.raises(RegistryInvalid) as caught:
        load_registry(directory)
    lines = [str(issue).replace(str(directory), "DIR") for issue in caught.value.issues]
    assert [line.split(": ")[0] for line in lines] == [
        "DIR/x.yaml:4",
        "DIR/y.yaml:5",
        "DIR/z.yaml:4",
    ]
    assert str(caught.value).startswith(f"registry {directory} is invalid (3 problems):\n")


def test_invalid_item_does_not_cascade(write_registry: RegistryWriter) -> None:
    # The member is invalid (unknown key), so the rule that names its subsystem is not also
    # reported as a dangling reference: one typo, one message.
    directory = write_registry(
        {
            "x.yaml": "members:\n  - id: SEVDEIR-TEST/GOV/11112222\n    name: x\n    colour: red\n"
            "    subsystems: [{code: A}]\n",
            "y.yaml": rule("    clients: [SEVDEIR-TEST/GOV/11112222/A]\n"),
        }
    )
    with pytest.raises(RegistryInvalid) as caught:
        load_registry(directory)
    assert len(caught.value.issues) == 1
    assert caught.value.issues[0].key_path == "members[0].colour"


def test_invalid_global_group_does_not_cascade(write_registry: RegistryWriter) -> None:
    # The global group is invalid; the rule naming it is not also reported, but a rule naming
    # a local group of the same code is: the namespaces are separate, and so are the shadows.
    directory = write_registry(
        {
            "x.yaml": "global_groups:\n  - code: G\n    colour: red\n",
            "y.yaml": rule("    global_groups: [G]\n    groups: [G]\n"),
        }
    )
    with pytest.raises(RegistryInvalid) as caught:
        load_registry(directory)
    assert [issue.key_path for issue in caught.value.issues] == [
        "global_groups[0].colour",
        "access[0].groups[0]",
    ]


def test_unreadable_file_suppresses_reference_checks(write_registry: RegistryWriter) -> None:
    # The members file cannot be parsed; references to its members are not reported again.
    directory = write_registry({"10-members.yaml": "members: [\n"})
    with pytest.raises(RegistryInvalid) as caught:
        load_registry(directory)
    assert [issue.file.name for issue in caught.value.issues] == ["10-members.yaml"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "registry directory not found"),
        (
            lambda root: (root / "file.yaml", (root / "file.yaml").write_text("{}"))[0],
            "not a directory",
        ),
        (
            lambda root: (root / "empty", (root / "empty").mkdir())[0],
            "no registry files (*.yaml, *.yml) in the directory",
        ),
    ],
    ids=["missing", "file", "empty"],
)
def test_directory_problems(tmp_path: Path, make: object, message: str) -> None:
    assert callable(make)
    directory = make(tmp_path)
    with pytest.raises(RegistryInvalid) as caught:
        load_registry(directory)
    assert [str(issue) for issue in caught.value.issues] == [f"{directory}: {message}"]
