"""Gateway settings: a YAML file, overridable key by key from ``OBMIN_...`` variables.

``OBMIN_CLIENT__PORT=9080`` overrides ``client.port``: the variable name after ``OBMIN_`` is
the key path with ``__`` between levels, case-insensitive. A key whose value is a list or a
mapping (``admin_tokens``, a whole section such as ``limits``) takes JSON:
``OBMIN_ADMIN_TOKENS='[{"name": "ops", "sha256": "...", "roles": ["admin"]}]'``; a list
replaces the file's, a mapping is merged into the file's section. Relative paths
in the file are relative to the file's directory, so a deployment directory can be moved as a
whole; relative paths in variables are relative to the working directory. A wrong value from a
variable is reported with the variable's name, not the file's.

The override layer is hand-written (twenty lines) rather than taken from pydantic-settings,
whose YAML source and nested-delimiter rules would be a second configuration system to learn
for one feature.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from cryptography import x509
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from gateway.errors import GatewayError
from security.errors import PkiError
from security.pki_keys import pki_passphrase

__all__ = [
    "AdminCertificate",
    "AdminTlsSettings",
    "AdminToken",
    "AuditSettings",
    "BodyKeySettings",
    "ClientTlsSettings",
    "KeySettings",
    "LimitSettings",
    "ListenSettings",
    "RevocationSettings",
    "Settings",
    "SettingsError",
    "SharedStateSettings",
    "TsaSettings",
    "load_settings",
]

ENV_PREFIX = "OBMIN_"
# OBMIN_ variables that are not settings: secrets and tool switches.
NOT_SETTINGS = frozenset({"OBMIN_PKI_PASSPHRASE", "OBMIN_BENCH_PROFILE", "OBMIN_CONFIG"})


class SettingsError(GatewayError):
    """The settings file or an ``OBMIN_`` variable is wrong; the message names the key."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenSettings(_Model):
    """Where a port listens."""

    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class ClientTlsSettings(_Model):
    """The HTTPS client port: its address and server certificate (PEM files)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    certificate: Path
    key: Path


class KeySettings(_Model):
    """The gateway's own keys: signing certificate and key (PEM), audit log key (Ed25519).

    Private keys (these, the HTTPS port's and the provider TLS client keys of the registry)
    are decrypted with the passphrase in ``passphrase_file`` (its first line) or, without a
    file, in the environment variable named by ``passphrase_env``. Never on the command line.
    """

    signing_certificate: Path
    signing_key: Path
    log_key: Path | None = None
    passphrase_file: Path | None = None
    passphrase_env: str = Field(default="OBMIN_PKI_PASSPHRASE", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("passphrase_env")
    @classmethod
    def _not_a_setting(cls, value: str) -> str:
        # Other OBMIN_ variables are read as setting overrides (and would be refused).
        if value.upper().startswith(ENV_PREFIX) and value.upper() not in NOT_SETTINGS:
            raise ValueError(
                f"{value} would be read as a setting override; name a variable that does not "
                f"start with {ENV_PREFIX} (or keep OBMIN_PKI_PASSPHRASE)"
            )
        return value

    def passphrase(self, environ: Mapping[str, str]) -> bytes | None:
        """The configured key passphrase, or None when neither file nor variable is set.

        Raises `SettingsError` naming the file or variable when it cannot be used.
        """
        try:
            return pki_passphrase(environ, self.passphrase_file, variable=self.passphrase_env)
        except PkiError as exc:
            raise SettingsError(f"keys.passphrase: {exc}") from exc


class AdminToken(_Model):
    """A bearer token for the admin port, stored only as the SHA-256 of the token (hex)."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    roles: tuple[Literal["admin", "auditor"], ...] = ("auditor",)
    members: tuple[str, ...] = ()  # auditor scope: member identifiers; empty = all


class TsaSettings(_Model):
    """An RFC 3161 time-stamping authority for checkpoints (SPEC 8)."""

    url: str = Field(pattern=r"^https?://")
    ca_certificate: Path  # PEM: the CA(s) the TSA's certificate must chain to
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    policy: str | None = Field(default=None, pattern=r"^[0-2](\.[0-9]+)+$")  # dotted OID


class BodyKeySettings(_Model):
    """Keys for bodies under policy ``encrypted`` (SPEC 8): files of 32 random bytes (raw or
    base64), by key id. ``current`` seals new bodies; the others stay to open old ones."""

    current: str  # one of the key ids, so a key id too
    keys: dict[str, Path] = Field(min_length=1)

    @model_validator(mode="after")
    def _current_is_configured(self) -> BodyKeySettings:
        from gateway.audit.body_crypto import BodyKeyError, check_key_id

        for key_id in self.keys:
            try:
                check_key_id(key_id)  # the envelope format's rule, defined once there
            except BodyKeyError as exc:
                raise ValueError(str(exc)) from exc
        if self.current not in self.keys:
            raise ValueError(f"current key {self.current!r} is not among keys")
        return self


class AdminTlsSettings(_Model):
    """The admin port over HTTPS (SPEC 1): server certificate and key (PEM), and the CA(s)
    whose client certificates identify admin callers (`AdminCertificate`)."""

    certificate: Path
    key: Path
    client_ca: Path | None = None
    require_client_certificate: bool = False  # True: no handshake without a certificate


class AdminCertificate(_Model):
    """An admin-port caller known by its TLS client certificate: by the SHA-256 of the
    certificate (hex), or by its exact subject (RFC 4514, e.g. ``CN=auditor-1,O=Tax``).
    Roles and member scope work as for `AdminToken`. The subject is parsed once, here
    (`subject_name`), not on every request."""

    name: str
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    subject: str | None = None
    roles: tuple[Literal["admin", "auditor"], ...] = ("auditor",)
    members: tuple[str, ...] = ()  # auditor scope: member identifiers; empty = all
    _subject_name: x509.Name | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_identity(self) -> AdminCertificate:
        if (self.sha256 is None) == (self.subject is None):
            raise ValueError("give exactly one of sha256 and subject")
        if self.subject is not None:
            try:
                self._subject_name = x509.Name.from_rfc4514_string(self.subject)
            except ValueError as exc:
                raise ValueError(f"subject {self.subject!r} is not an RFC 4514 name") from exc
        return self

    @property
    def subject_name(self) -> x509.Name | None:
        """``subject`` as the `x509.Name` to compare with a certificate's subject."""
        return self._subject_name


class AuditSettings(_Model):
    """Where the audit log is kept, how it is checkpointed, and how long records stay.

    ``store: sqlite`` keeps the log in the file ``path``; ``store: postgres`` in the
    database ``dsn`` (a libpq URI; ``OBMIN_AUDIT__DSN`` overrides it, so a password need not
    be in the file), schema ``postgres_schema``, as the log of ``origin``.
    ``retention_max_age_days`` (unset: keep everything) moves older records to archive files
    in ``archive_dir``, checked every ``retention_interval_seconds``.
    """

    store: Literal["sqlite", "postgres"] = "sqlite"
    path: Path = Path("var/audit.db")
    dsn: str | None = None
    postgres_schema: str = Field(default="obmin_audit", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    origin: str = "obmin.local/gateway"
    checkpoint_interval_seconds: float = Field(default=5.0, gt=0)
    checkpoint_every_records: int = Field(default=1000, gt=0)
    tsa: TsaSettings | None = None
    body_keys: BodyKeySettings | None = None
    # Bodies under policy plain or encrypted are stored up to this size; a larger one is
    # recorded with its digest only (the record's body_policy then says digest).
    max_stored_body_bytes: int = Field(default=1024 * 1024, ge=0, le=64 * 1024 * 1024)
    retention_max_age_days: float | None = Field(default=None, gt=0)
    archive_dir: Path = Path("var/audit-archive")
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    archive_max_records: int = Field(default=1_000_000, gt=0)

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> AuditSettings:
        if self.store == "postgres" and not self.dsn:
            raise ValueError("audit.store postgres needs audit.dsn (or OBMIN_AUDIT__DSN)")
        return self


class SharedStateSettings(_Model):
    """Where the replay cache and rate limits live: this process, or Redis shared by several."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "obmin:"
    rate_limit_fail_open: bool = False  # Redis down: refuse (default) or let requests pass


class RevocationSettings(_Model):
    """How OCSP and CRL checks run, gateway-wide (SPEC 5.4); a trust anchor in the registry
    may override ``max_age_seconds``, ``timeout_seconds`` and ``require_nonce``.

    ``max_age_seconds`` is the configured freshness: an OCSP answer (or a CRL without
    nextUpdate) whose thisUpdate is older is stale even before its nextUpdate.
    """

    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_age_seconds: int = Field(default=3600, gt=0, le=30 * 86400)
    clock_skew_seconds: int = Field(default=300, ge=0, le=3600)
    crl_refresh_seconds: int = Field(default=3600, gt=0)
    unavailable_retry_seconds: float = Field(default=10.0, ge=0)
    require_nonce: bool = False
    cache_size: int = Field(default=10_000, gt=0)


class LimitSettings(_Model):
    """Bounds on what peers may send."""

    max_request_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_response_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_xml_depth: int = Field(default=64, gt=4)
    max_attachments: int = Field(default=32, ge=0)
    max_header_count: int = Field(default=100, gt=0)
    max_header_bytes: int = Field(default=8190, gt=256)  # one header line (name and value)
    # JSON request bodies (application/json, application/*+json) are validated before they
    # are forwarded; larger ones are refused rather than read whole (SPEC 11).
    max_json_depth: int = Field(default=64, gt=0)
    max_json_number_digits: int = Field(default=100, gt=0)
    max_json_validation_bytes: int = Field(default=8 * 1024 * 1024, gt=0)


class Settings(_Model):
    """Everything `obmin serve` needs to start."""

    client: ListenSettings = ListenSettings(port=8080)
    client_tls: ClientTlsSettings | None = None
    admin: ListenSettings = ListenSettings(port=4000)
    admin_tokens: tuple[AdminToken, ...] = ()
    admin_tls: AdminTlsSettings | None = None
    admin_certificates: tuple[AdminCertificate, ...] = ()
    registry_dir: Path
    registry_watch_seconds: float | None = Field(default=None, gt=0)
    # Refuse exchanges (OutdatedRegistry) once reloads have refused the files this long.
    registry_max_outdated_seconds: float | None = Field(default=None, gt=0)
    keys: KeySettings
    audit: AuditSettings = AuditSettings()
    limits: LimitSettings = LimitSettings()
    shared_state: SharedStateSettings = SharedStateSettings()
    revocation: RevocationSettings = RevocationSettings()
    allow_unauthenticated_clients: bool = False
    fault_code_style: Literal["legacy", "modern"] = "legacy"
    max_clock_skew_seconds: int = Field(default=300, gt=0)
    # How long the signed digest of a message without a signed Timestamp (``standard``
    # policy, e.g. zeep's BinarySignature) is remembered against replay (SPEC 5.5).
    replay_retention_without_timestamp_seconds: int = Field(default=86400, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("registry_dir")
    @classmethod
    def _registry_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"registry directory {value} does not exist")
        return value

    @model_validator(mode="after")
    def _retention_needs_log_key(self) -> Settings:
        # An archive is re-read and verified against the signed checkpoints before records
        # leave the database: without the log key there are no checkpoints to check.
        if self.audit.retention_max_age_days is not None and self.keys.log_key is None:
            raise ValueError("audit.retention_max_age_days needs keys.log_key")
        # Timestamps are over signed checkpoints: without the log key there are none.
        if self.audit.tsa is not None and self.keys.log_key is None:
            raise ValueError("audit.tsa needs keys.log_key (timestamps are over checkpoints)")
        return self


_PATH_KEYS = (
    ("registry_dir",),
    ("keys", "signing_certificate"),
    ("keys", "signing_key"),
    ("keys", "log_key"),
    ("keys", "passphrase_file"),
    ("audit", "path"),
    ("audit", "archive_dir"),
    ("audit", "tsa", "ca_certificate"),
    ("client_tls", "certificate"),
    ("client_tls", "key"),
    ("admin_tls", "certificate"),
    ("admin_tls", "key"),
    ("admin_tls", "client_ca"),
)


# Mappings whose every value is a path (key id -> key file).
_PATH_MAPS = (("audit", "body_keys", "keys"),)


def _field_type(path: list[str]) -> object:
    """The annotation of the setting at ``path`` (None when there is no such setting)."""
    model: object = Settings
    annotation: object = None
    for key in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(key)
        if field is None:
            return None
        annotation = _without_none(field.annotation)
        model = annotation
    return annotation


def _section_default(path: list[str]) -> dict[str, Any]:
    """The default of the section at ``path`` as a mapping ({} when it has none)."""
    model: type[BaseModel] = Settings
    default: object = None
    for key in path:
        field = model.model_fields.get(key)
        if field is None:
            return {}
        default = field.default
        annotation = _without_none(field.annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return {}
        model = annotation
    return default.model_dump(exclude_unset=True) if isinstance(default, BaseModel) else {}


def _without_none(annotation: object) -> object:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _takes_json(annotation: object) -> bool:
    """Lists, tuples, mappings and sections are given as JSON in a variable."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return get_origin(annotation) in (tuple, list, dict, frozenset, set)


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Apply the ``OBMIN_`` variables to ``data``; return which variable set which key path."""
    origins: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_SETTINGS:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for depth, key in enumerate(path[:-1]):
            # A section the file leaves out starts from its defaults (client.port is 8080);
            # what is missing from a section a variable opened is that variable's to give.
            if key not in node:
                node[key] = _section_default(path[: depth + 1])
                origins.setdefault(tuple(path[: depth + 1]), name)
            child = node[key]
            if not isinstance(child, dict):
                raise SettingsError(f"{name}: {'.'.join(path)} is not a section")
            node = child
        parsed: object = value
        if _takes_json(_field_type(path)):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise SettingsError(
                    f"{name}: {'.'.join(path)} takes a JSON list or mapping here; "
                    f"not valid JSON: {exc.msg} at character {exc.pos + 1}"
                ) from exc
        current = node.get(path[-1])
        if isinstance(parsed, dict) and isinstance(current, dict):
            # A section given as JSON is merged into the file's: it names what it changes.
            node[path[-1]] = {**current, **parsed}
            origins.update({(*path, str(key)): name for key in parsed})
        else:
            node[path[-1]] = parsed
            origins[tuple(path)] = name
    return origins


def _origin(loc: tuple[str | int, ...], origins: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable that set the key at ``loc`` or one of its parents, if any did."""
    for length in range(len(loc), 0, -1):
        name = origins.get(tuple(str(part) for part in loc[:length]))
        if name is not None:
            return name
    return None


def _describe(
    file: Path, errors: list[ErrorDetails], origins: Mapping[tuple[str, ...], str]
) -> str:
    """One message for all validation errors: the file's, then each variable's by name."""
    from_file: list[str] = []
    from_env: list[str] = []
    for err in errors:
        key = ".".join(str(p) for p in err["loc"]) or "(top)"
        variable = _origin(tuple(err["loc"]), origins)
        if variable is None:
            from_file.append(f"{key}: {err['msg']}")
        else:
            from_env.append(f"environment variable {variable} ({key}): {err['msg']}")
    parts = []
    if from_file:
        parts.append(f"{file}: invalid settings: {'; '.join(from_file)}")
    if from_env:
        parts.append(f"invalid settings: {'; '.join(from_env)}")
    return "; ".join(parts)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for path in _PATH_KEYS:
        node: Any = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(path[-1]), str):
            node[path[-1]] = os.path.normpath(base / node[path[-1]])
    for path in _PATH_MAPS:
        node = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            for name, value in node.items():
                if isinstance(value, str):
                    node[name] = os.path.normpath(base / value)


def load_settings(file: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Load ``file``, apply ``OBMIN_`` overrides and validate; raise `SettingsError`."""
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SettingsError(f"{file}: cannot read settings file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"{file}{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{file}: the settings file must be a mapping of keys")
    _resolve_paths(raw, file.parent.resolve())  # paths in the file: relative to the file
    origins = _apply_env(raw, environ)  # paths in variables: relative to the working directory
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(file, exc.errors(), origins)) from exc
