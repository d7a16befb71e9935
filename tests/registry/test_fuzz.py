"""Whatever text a registry file holds, loading either succeeds or raises RegistryInvalid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry import Registry, RegistryInvalid, load_registry
from tests.registry.conftest import BASE

KEYS = st.sampled_from(
    [
        "instance", "members", "groups", "global_groups", "trust_anchors", "services", "access",
        "id", "name", "code", "subsystems", "auth", "provider", "service", "clients", "type", "url",
        "version", "timeout", "connect", "total", "endpoints", "method", "path", "certificate",
        "signing_certificates", "rate_limit", "per_second", "burst", "tls", "wsdl", "x",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "SEVDEIR-TEST",
            "SEVDEIR-TEST/GOV/12345678",
            "SEVDEIR-TEST/GOV/87654321/REGISTRY",
            "OTHER/GOV/1/A",
            "soap",
            "rest",
            "http://127.0.0.1/x",
            "/a/**",
            "GET",
            "certs/ca.pem",
            "../x",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _load(directory: Path, text: str | bytes) -> Registry | None:
    path = directory / "fuzz.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load_registry(directory)
    except RegistryInvalid as exc:
        assert exc.issues
        for issue in exc.issues:
            assert str(issue)
            assert issue.line is None or issue.line >= 1
        return None


def _base(tmp_path: Path, ca_pem: bytes) -> Path:
    directory = tmp_path / "registry"
    if not directory.exists():
        (directory / "certs").mkdir(parents=True)
        (directory / "certs" / "ca.pem").write_bytes(ca_pem)
        (directory / "00-instance.yaml").write_text(BASE["00-instance.yaml"], encoding="utf-8")
    return directory


@SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text(tmp_path: Path, ca_pem: bytes, text: str) -> None:
    _load(_base(tmp_path, ca_pem), text.encode("utf-8", errors="surrogatepass"))


@SETTINGS
@given(text=st.text(alphabet="{}[]:,-?&*!|>'\"#%@` \n\tab1.<=~", max_size=120))
def test_yaml_punctuation(tmp_path: Path, ca_pem: bytes, text: str) -> None:
    _load(_base(tmp_path, ca_pem), text)


@SETTINGS
@given(value=st.dictionaries(KEYS, VALUES, max_size=6))
def test_registry_shaped_values(tmp_path: Path, ca_pem: bytes, value: dict[str, Any]) -> None:
    if any(isinstance(v, float) and math.isinf(v) for v in value.values()):
        value = {k: v for k, v in value.items() if not isinstance(v, float)}
    _load(_base(tmp_path, ca_pem), yaml.safe_dump(value))


def test_alias_bomb_is_refused_quickly(tmp_path: Path, ca_pem: bytes) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    directory = _base(tmp_path, ca_pem)
    (directory / "fuzz.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        load_registry(directory)
    except RegistryInvalid as exc:
        assert len(exc.issues) == 110
        assert all("aliases" in issue.message for issue in exc.issues)
    else:
        raise AssertionError("an alias bomb loaded")


def test_deep_nesting_is_refused(tmp_path: Path, ca_pem: bytes) -> None:
    directory = _base(tmp_path, ca_pem)
    for depth in (40, 5000):
        (directory / "fuzz.yaml").write_text("members: " + "[" * depth + "]" * depth + "\n")
        try:
            load_registry(directory)
        except RegistryInvalid as exc:
            assert len(exc.issues) == 1
            assert "nest" in exc.issues[0].message
        else:
            raise AssertionError("deep nesting loaded")
