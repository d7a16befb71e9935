"""Settings: YAML file, OBMIN_ overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "registry").mkdir(exist_ok=True)
    file = tmp_path / "gateway.yaml"
    file.write_text(text, encoding="utf-8")
    return file


BASE = """
registry_dir: registry
keys: {signing_certificate: pki/sign.crt, signing_key: pki/sign.key}
"""


def test_example_settings_load() -> None:
    settings = load_settings(REPO / "config" / "example" / "gateway.yaml", environ={})
    assert settings.client.port == 8080
    assert settings.admin.port == 4000
    assert settings.registry_dir == REPO / "config" / "example" / "registry"
    assert settings.audit.path == (REPO / "var" / "audit.db").resolve()


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, BASE), environ={})
    assert settings.keys.signing_key == tmp_path / "pki" / "sign.key"
    assert settings.fault_code_style == "legacy"


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    environ = {
        "OBMIN_CLIENT__PORT": "9080",
        "OBMIN_FAULT_CODE_STYLE": "modern",
        "OBMIN_LIMITS__MAX_XML_DEPTH": "20",
        "OBMIN_AUDIT__PATH": "/tmp/x.db",
        "OTHER": "ignored",
    }
    settings = load_settings(_write(tmp_path, BASE), environ=environ)
    assert settings.client.port == 9080
    assert settings.fault_code_style == "modern"
    assert settings.limits.max_xml_depth == 20
    assert settings.audit.path == Path("/tmp/x.db")


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (BASE + "client: {port: 99999}\n", {}, "client.port: Input should be less than or equal"),
        (BASE + "colour: blue\n", {}, "colour: Extra inputs are not permitted"),
        (BASE, {"OBMIN_CLIENT__PORT": "eighty"}, "client.port: Input should be a valid integer"),
        (BASE, {"OBMIN_FAULT_CODE_STYLE": "fancy"}, "fault_code_style: Input should be 'legacy'"),
        ("keys: {signing_certificate: a, signing_key: b}\n", {}, "registry_dir: Field required"),
        (
            BASE.replace("registry_dir: registry", "registry_dir: nowhere"),
            {},
            "registry_dir: Value error, registry directory",
        ),
        ("registry_dir: [unclosed\n", {}, "gateway.yaml:2: not valid YAML"),
        ("- a list\n", {}, "must be a mapping"),
    ],
)
def test_wrong_settings_name_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(_write(tmp_path, text), environ=environ)
    assert message in str(info.value)
    assert "gateway.yaml" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_the_audit_store_is_chosen_by_settings_and_the_dsn_by_the_environment(
    tmp_path: Path,
) -> None:
    text = BASE + "audit: {store: postgres, dsn: 'postgresql://db/obmin', origin: gw-1}\n"
    environ = {"OBMIN_AUDIT__DSN": "postgresql://obmin:secret@db.internal:5432/obmin"}
    settings = load_settings(_write(tmp_path, text), environ=environ)
    assert settings.audit.store == "postgres"
    assert settings.audit.dsn == "postgresql://obmin:secret@db.internal:5432/obmin"
    assert settings.audit.postgres_schema == "obmin_audit"
    retention = BASE + "audit: {retention_max_age_days: 30, archive_dir: archive}\n"
    settings = load_settings(
        _write(tmp_path, retention.replace("sign.key}", "sign.key, log_key: pki/log.key}")),
        environ={},
    )
    assert settings.audit.archive_dir == tmp_path / "archive"
    assert settings.audit.retention_max_age_days == 30


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        ("{store: postgres}", "audit: Value error, audit.store postgres needs audit.dsn"),
        ("{store: mysql}", "audit.store: Input should be 'sqlite' or 'postgres'"),
        ("{postgres_schema: 'a; drop'}", "audit.postgres_schema: String should match pattern"),
        ("{retention_max_age_days: 30}", "retention_max_age_days needs keys.log_key"),
        ("{retention_max_age_days: 0}", "audit.retention_max_age_days: Input should be greater"),
    ],
)
def test_bad_audit_settings_name_the_key(tmp_path: Path, audit: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(_write(tmp_path, BASE + f"audit: {audit}\n"), environ={})
