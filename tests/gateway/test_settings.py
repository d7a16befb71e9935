"""Settings: YAML file, OBMIN_ overrides, errors that name the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gateway.settings import KeySettings, SettingsError, load_settings

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
        ("keys: {signing_certificate: a, signing_key: b}\n", {}, "registry_dir: Field required"),
        (
            BASE.replace("registry_dir: registry", "registry_dir: nowhere"),
            {},
            "registry_dir: Value error, registry directory",
        ),
        ("registry_dir: [unclosed\n", {}, "gateway.yaml:2: not valid YAML"),
        ("- a list\n", {}, "must be a mapping"),
        (
            BASE + "registry_max_outdated_seconds: 0\n",
            {},
            "registry_max_outdated_seconds: Input should be greater than 0",
        ),
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


def test_key_passphrase_settings(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"from the file\nsecond line ignored\n")
    keys = KeySettings(signing_certificate=Path("a"), signing_key=Path("b"), passphrase_file=secret)
    assert keys.passphrase({"OBMIN_PKI_PASSPHRASE": "from the env"}) == b"from the file"
    by_env = KeySettings(
        signing_certificate=Path("a"), signing_key=Path("b"), passphrase_env="MY_PASS"
    )
    assert by_env.passphrase({"MY_PASS": "mine", "OBMIN_PKI_PASSPHRASE": "x"}) == b"mine"
    assert by_env.passphrase({}) is None
    missing = KeySettings(
        signing_certificate=Path("a"), signing_key=Path("b"), passphrase_file=tmp_path / "none"
    )
    with pytest.raises(SettingsError, match=r"keys\.passphrase: cannot read passphrase file"):
        missing.passphrase({})
    with pytest.raises(ValueError, match="would be read as a setting override"):
        KeySettings(signing_certificate=Path("a"), signing_key=Path("b"), passphrase_env="OBMIN_X")


TOKEN_SHA = hashlib.sha256(b"ops-token").hexdigest()


def test_list_and_mapping_settings_take_json_from_the_environment(tmp_path: Path) -> None:
    tokens = [{"name": "ops", "sha256": TOKEN_SHA, "roles": ["admin", "auditor"]}]
    environ = {
        "OBMIN_ADMIN_TOKENS": json.dumps(tokens),
        "OBMIN_LIMITS": '{"max_xml_depth": 20}',  # merged into the file's section
        "OBMIN_CLIENT__HOST": "[::1]",  # a plain text setting stays text, brackets and all
    }
    text = BASE + "limits: {max_attachments: 3}\n"
    settings = load_settings(_write(tmp_path, text), environ=environ)
    assert len(settings.admin_tokens) == 1
    token = settings.admin_tokens[0]
    assert (token.name, token.sha256, token.roles) == ("ops", TOKEN_SHA, ("admin", "auditor"))
    assert settings.limits.max_xml_depth == 20
    assert settings.limits.max_attachments == 3
    assert settings.client.host == "[::1]"


def test_a_json_list_from_the_environment_replaces_the_files(tmp_path: Path) -> None:
    text = BASE + f"admin_tokens: [{{name: file, sha256: '{TOKEN_SHA}'}}]\n"
    environ = {"OBMIN_ADMIN_TOKENS": "[]"}
    assert load_settings(_write(tmp_path, text), environ=environ).admin_tokens == ()
    assert load_settings(_write(tmp_path, text), environ={}).admin_tokens[0].name == "file"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OBMIN_CLIENT__PORT": "eighty"},
            "environment variable OBMIN_CLIENT__PORT (client.port): Input should be a valid "
            "integer",
        ),
        (
            {"OBMIN_FAULT_CODE_STYLE": "fancy"},
            "environment variable OBMIN_FAULT_CODE_STYLE (fault_code_style): Input should be "
            "'legacy'",
        ),
        (
            {"OBMIN_ADMIN_TOKENS": "[{name: ops}]"},
            "OBMIN_ADMIN_TOKENS: admin_tokens takes a JSON list or mapping here; not valid JSON: "
            "Expecting property name enclosed in double quotes at character 3",
        ),
        (
            {"OBMIN_ADMIN_TOKENS": '[{"name": "ops", "sha256": "short"}]'},
            "environment variable OBMIN_ADMIN_TOKENS (admin_tokens.0.sha256): String should "
            "match pattern",
        ),
        (
            {"OBMIN_ADMIN_TOKENS": '{"name": "ops"}'},
            "environment variable OBMIN_ADMIN_TOKENS (admin_tokens): Input should be a valid tuple",
        ),
        (
            {"OBMIN_LIMITS": '{"max_xml_depth": 2}'},
            "environment variable OBMIN_LIMITS (limits.max_xml_depth): Input should be greater "
            "than 4",
        ),
        (
            {"OBMIN_COLOUR": "blue"},
            "environment variable OBMIN_COLOUR (colour): Extra inputs are not permitted",
        ),
        (
            {"OBMIN_REGISTRY_DIR": "/nowhere/at/all"},
            "environment variable OBMIN_REGISTRY_DIR (registry_dir): Value error, registry "
            "directory /nowhere/at/all does not exist",
        ),
        ({"OBMIN_LOG_LEVEL__X": "1"}, "OBMIN_LOG_LEVEL__X: log_level.x is not a section"),
    ],
)
def test_wrong_variables_are_named_and_the_file_is_not_blamed(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    file = _write(tmp_path, BASE + "log_level: info\n")
    with pytest.raises(SettingsError) as info:
        load_settings(file, environ=environ)
    assert message in str(info.value)
    assert "gateway.yaml" not in str(info.value)


def test_errors_from_file_and_environment_are_each_attributed(tmp_path: Path) -> None:
    file = _write(tmp_path, BASE + "client: {port: 99999}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(file, environ={"OBMIN_ADMIN__PORT": "x"})
    text = str(info.value)
    assert f"{file}: invalid settings: client.port: Input should be less than or equal" in text
    assert "environment variable OBMIN_ADMIN__PORT (admin.port): Input should be a valid" in text
    assert "OBMIN_ADMIN__PORT" not in text.split("; invalid settings:")[0]


def test_a_variable_opening_a_section_starts_from_its_defaults(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, BASE), environ={"OBMIN_ADMIN__HOST": "0.0.0.0"})
    assert (settings.admin.host, settings.admin.port) == ("0.0.0.0", 4000)
    with pytest.raises(SettingsError) as info:
        load_settings(_write(tmp_path, BASE), environ={"OBMIN_CLIENT_TLS__PORT": "8443"})
    assert "environment variable OBMIN_CLIENT_TLS__PORT (client_tls.certificate): Field " in str(
        info.value
    )


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
