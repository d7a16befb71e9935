"""Gateway settings: a YAML file, overridable key by key from ``OBMIN_...`` variables.

``OBMIN_CLIENT__PORT=9080`` overrides ``client.port``: the variable name after ``OBMIN_`` is
the key path with ``__`` between levels, case-insensitive. Relative paths in the file are
relative to the file's directory, so a deployment directory can be moved as a whole; relative
paths in variables are relative to the working directory.

The override layer is hand-written (twenty lines) rather than taken from pydantic-settings,
whose YAML source and nested-delimiter rules would be a second configuration system to learn
for one feature.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import GatewayError

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
    """The gateway's own keys: signing certificate and key (PEM), audit log key (Ed25519)."""

    signing_certificate: Path
    signing_key: Path
    log_key: Path | None = None


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

    current: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    keys: dict[str, Path] = Field(min_length=1)

    @model_validator(mode="after")
    def _current_is_configured(self) -> BodyKeySettings:
        for key_id in self.keys:
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", key_id):
                raise ValueError(f"key id {key_id!r} is not 1-64 of a-z 0-9 . _ -")
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
    Roles and member scope work as for `AdminToken`."""

    name: str
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    subject: str | None = None
    roles: tuple[Literal["admin", "auditor"], ...] = ("auditor",)
    members: tuple[str, ...] = ()  # auditor scope: member identifiers; empty = all

    @model_validator(mode="after")
    def _one_identity(self) -> AdminCertificate:
        if (self.sha256 is None) == (self.subject is None):
            raise ValueError("give exactly one of sha256 and subject")
        if self.subject is not None:
            from cryptography import x509

            try:
                x509.Name.from_rfc4514_string(self.subject)
            except ValueError as exc:
                raise ValueError(f"subject {self.subject!r} is not an RFC 4514 name") from exc
        return self


class AuditSettings(_Model):
    """Where the audit log is kept."""

    store: Literal["sqlite"] = "sqlite"
    path: Path = Path("var/audit.db")
    origin: str = "obmin.local/gateway"
    checkpoint_interval_seconds: float = Field(default=5.0, gt=0)
    checkpoint_every_records: int = Field(default=1000, gt=0)
    tsa: TsaSettings | None = None
    body_keys: BodyKeySettings | None = None


class SharedStateSettings(_Model):
    """Where the replay cache and rate limits live: this process, or Redis shared by several."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "obmin:"
    rate_limit_fail_open: bool = False  # Redis down: refuse (default) or let requests pass


class LimitSettings(_Model):
    """Bounds on what peers may send."""

    max_request_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_response_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_xml_depth: int = Field(default=64, gt=4)
    max_attachments: int = Field(default=32, ge=0)
    max_header_count: int = Field(default=100, gt=0)
    max_header_bytes: int = Field(default=8190, gt=256)  # one header line (name and value)


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
    keys: KeySettings
    audit: AuditSettings = AuditSettings()
    limits: LimitSettings = LimitSettings()
    shared_state: SharedStateSettings = SharedStateSettings()
    allow_unauthenticated_clients: bool = False
    fault_code_style: Literal["legacy", "modern"] = "legacy"
    max_clock_skew_seconds: int = Field(default=300, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("registry_dir")
    @classmethod
    def _registry_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"registry directory {value} does not exist")
        return value


_PATH_KEYS = (
    ("registry_dir",),
    ("keys", "signing_certificate"),
    ("keys", "signing_key"),
    ("keys", "log_key"),
    ("audit", "path"),
    ("audit", "tsa", "ca_certificate"),
    ("client_tls", "certificate"),
    ("client_tls", "key"),
    ("admin_tls", "certificate"),
    ("admin_tls", "key"),
    ("admin_tls", "client_ca"),
)


# Mappings whose every value is a path (key id -> key file).
_PATH_MAPS = (("audit", "body_keys", "keys"),)


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_SETTINGS:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise SettingsError(f"{name}: {'.'.join(path)} is not a section")
            node = child
        node[path[-1]] = value


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
    _apply_env(raw, environ)  # paths in variables: relative to the working directory
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"{file}: invalid settings: {problems}") from exc
