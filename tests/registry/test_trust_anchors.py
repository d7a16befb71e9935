"""Trust anchors with intermediates and revocation overrides: loaded, and checked in full."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from registry import RegistryInvalid, check_registry, load_registry
from tests.registry.conftest import RegistryWriter, _certificate


@pytest.fixture(scope="module")
def hierarchy() -> dict[str, bytes]:
    """A root CA, an intermediate under it, one under that, and a CA of another root."""
    root_name, root_key, root = _certificate("root CA", ca=True)
    inter_name, inter_key, inter = _certificate("issuing CA", ca=True, issuer=(root_name, root_key))
    _, _, second = _certificate("second-level CA", ca=True, issuer=(inter_name, inter_key))
    other_name, other_key, _ = _certificate("other root", ca=True)
    _, _, foreign = _certificate("foreign CA", ca=True, issuer=(other_name, other_key))
    _, _, leaf = _certificate("a leaf", ca=False, issuer=(inter_name, inter_key))
    return {
        "root": root,
        "inter": inter,
        "second": second,
        "foreign": foreign,
        "leaf": leaf,
    }


def _anchor(extra: str) -> str:
    head = "instance: SEVDEIR-TEST\ntrust_anchors:\n  - name: dev-ca\n"
    return f"{head}    certificate: certs/root.pem\n{extra}"


def _write(write_registry: RegistryWriter, hierarchy: dict[str, bytes], extra: str) -> Path:
    files: dict[str, str | bytes | None] = {"00-instance.yaml": _anchor(extra)}
    files.update({f"certs/{name}.pem": pem for name, pem in hierarchy.items()})
    files["10-members.yaml"] = files_members()
    return write_registry(files)


def files_members() -> str:
    return (
        "members:\n  - id: SEVDEIR-TEST/GOV/87654321\n    name: State Registry Service\n"
        "    subsystems:\n      - code: REGISTRY\n"
        "  - id: SEVDEIR-TEST/GOV/12345678\n    name: Ministry\n"
        "    subsystems:\n      - code: CLIENT\n"
    )


def test_intermediates_and_revocation_overrides_are_loaded(
    write_registry: RegistryWriter, hierarchy: dict[str, bytes]
) -> None:
    directory = _write(
        write_registry,
        hierarchy,
        "    intermediates: [certs/inter.pem, certs/second.pem]\n"
        "    revocation: ocsp\n"
        "    ocsp_url: http://127.0.0.1:8888/\n"
        "    max_age_seconds: 600\n"
        "    timeout_seconds: 1.5\n"
        "    require_nonce: true\n",
    )
    registry = load_registry(directory)
    (entry,) = registry.trust_anchor_entries
    assert [c.subject.rfc4514_string() for c in entry.intermediates] == [
        "CN=issuing CA",
        "CN=second-level CA",
    ]
    assert registry.intermediates == entry.intermediates
    assert entry.max_age == timedelta(seconds=600)
    assert entry.timeout == 1.5
    assert entry.require_nonce is True


def test_overrides_default_to_the_gateway_settings(
    write_registry: RegistryWriter, hierarchy: dict[str, bytes]
) -> None:
    (entry,) = load_registry(_write(write_registry, hierarchy, "")).trust_anchor_entries
    assert entry.intermediates == ()
    assert (entry.max_age, entry.timeout, entry.require_nonce) == (None, None, None)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            "    intermediates: [certs/missing.pem]\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].intermediates[0]: file not found: "
            "DIR/certs/missing.pem",
            id="dangling-file",
        ),
        pytest.param(
            "    intermediates: [certs/inter.pem, 00-instance.yaml]\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].intermediates[1]: not a PEM certificate: "
            "DIR/00-instance.yaml",
            id="not-pem",
        ),
        pytest.param(
            "    intermediates: [certs/leaf.pem]\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].intermediates[0]: DIR/certs/leaf.pem is "
            "not a CA certificate (basicConstraints cA is false)",
            id="not-a-ca",
        ),
        pytest.param(
            "    intermediates: [certs/foreign.pem]\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].intermediates[0]: CN=foreign CA is not "
            "issued by trust anchor 'dev-ca' or by one of its intermediates",
            id="not-below-the-anchor",
        ),
        pytest.param(
            "    intermediates: [certs/second.pem]\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].intermediates[0]: CN=second-level CA is "
            "not issued by trust anchor 'dev-ca' or by one of its intermediates",
            id="gap-in-the-chain",
        ),
        pytest.param(
            "    max_age_seconds: 0\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].max_age_seconds: expected a number "
            "greater than 0, got 0",
            id="max-age-zero",
        ),
        pytest.param(
            "    timeout_seconds: 600\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].timeout_seconds: expected a number at "
            "most 60, got 600",
            id="timeout-too-long",
        ),
        pytest.param(
            "    require_nonce: 'yes'\n",
            "DIR/00-instance.yaml:5: trust_anchors[0].require_nonce: expected true or false, "
            "got 'yes'",
            id="nonce-not-boolean",
        ),
    ],
)
def test_invalid_trust_anchor_settings(
    write_registry: RegistryWriter, hierarchy: dict[str, bytes], extra: str, expected: str
) -> None:
    directory = _write(write_registry, hierarchy, extra)
    with pytest.raises(RegistryInvalid) as caught:
        load_registry(directory)
    messages = [str(issue).replace(str(directory), "DIR") for issue in caught.value.issues]
    assert messages == [expected]
    # `obmin registry check` prints the same and exits 1.
    code, output = check_registry(directory)
    assert code == 1
    assert expected in output.replace(str(directory), "DIR")


def test_pem_bundle_as_intermediate_is_refused(
    write_registry: RegistryWriter, hierarchy: dict[str, bytes]
) -> None:
    directory = _write(write_registry, hierarchy, "    intermediates: [certs/bundle.pem]\n")
    (directory / "certs" / "bundle.pem").write_bytes(hierarchy["inter"] + hierarchy["second"])
    with pytest.raises(RegistryInvalid, match="holds 2 certificates; an intermediate is one CA"):
        load_registry(directory)
