"""The shape of one registry YAML file, as frozen pydantic models (SPEC 6).

These models check what one file can check on its own: keys, types, identifier syntax, URLs,
endpoint globs. Everything that needs the whole directory (the instance, duplicates,
references, certificate and document files) is checked by `registry.build`.

YAML sequences arrive as tuples (see `registry.yamlfile`), so list-valued keys are tuples here
and the models are immutable all the way down. Validation is strict: YAML ``5`` is not the
string ``"5"``, and ``"yes"`` is not a boolean.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from registry.endpoints import check_endpoint_glob
from registry.errors import InvalidIdentifier
from registry.identifiers import ClientId, MemberId, check_part

__all__ = [
    "AccessModel",
    "AuditBody",
    "AuthMode",
    "EndpointModel",
    "GroupModel",
    "HttpMethod",
    "MemberModel",
    "RateLimitModel",
    "RegistryFile",
    "ServiceModel",
    "ServiceTlsModel",
    "ServiceType",
    "SignaturePolicy",
    "SubsystemModel",
    "TimeoutModel",
    "TrustAnchorModel",
]

AuthMode = Literal["signature", "mtls", "signature+mtls", "none"]
SignaturePolicy = Literal["strict", "standard"]
ServiceType = Literal["soap", "rest", "openapi"]
AuditBody = Literal["none", "digest", "encrypted", "plain"]
Revocation = Literal["none", "ocsp", "crl"]
OnUnavailable = Literal["reject", "accept"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]


def _require_text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    hint = f" (quote it: '{value}')" if number else ""
    raise PydanticCustomError(
        "identifier_type",
        "expected {what} as a string, got {got}{hint}",
        {"what": what, "got": _show(value), "hint": hint},
    )


def _got(value: object) -> dict[str, Any]:
    return {"got": _show(value)}


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _member_id(value: object) -> MemberId:
    text = _require_text(value, "a member identifier INSTANCE/CLASS/CODE")
    try:
        return MemberId.parse(text)
    except InvalidIdentifier as exc:
        raise PydanticCustomError("identifier", "{reason}", {"reason": str(exc)}) from exc


# Identifiers are immutable values and the same few thousand recur across 100,000 services
# and access rules: parsing each distinct text once makes loading measurably faster.
_parse_client = lru_cache(maxsize=65536)(ClientId.parse)


def _client_id(value: object) -> ClientId:
    # `type(...) is str` first: this runs for every identifier of a 100,000-service registry.
    text = value if type(value) is str else _require_text(value, _CLIENT_WORDS)
    try:
        return _parse_client(text)
    except InvalidIdentifier as exc:
        raise PydanticCustomError("identifier", "{reason}", {"reason": str(exc)}) from exc


_CLIENT_WORDS = "a client identifier INSTANCE/CLASS/CODE[/SUBSYSTEM]"


# Codes recur too (versions, subsystem codes, each service code in services and in access).
_check_code = lru_cache(maxsize=1 << 18)(lambda text: check_part(text, "code"))


def _part(value: object) -> str:
    text = value if type(value) is str else _require_text(value, "a code")
    try:
        result: str = _check_code(text)
    except InvalidIdentifier as exc:
        raise PydanticCustomError("identifier", "{reason}", {"reason": str(exc)}) from exc
    return result


# scheme://host[:port][/path][?query]: no user info, no fragment, no whitespace or controls.
_HTTP_URL = re.compile(
    r"https?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:[/?][^\x00-\x20\x7f#]*)?"
)


def _http_url(value: object) -> str:
    if isinstance(value, str):
        match = _HTTP_URL.fullmatch(value)
        if match is not None and (match["port"] is None or 0 < int(match["port"]) < 65536):
            return value
    raise PydanticCustomError("url", "expected an http(s) URL, got {got}", _got(value))


def _file_path(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("file_path", "expected a file path, got {got}", _got(value))
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise PydanticCustomError(
            "file_path", "file path {got} contains control characters", _got(value)
        )
    return value


def _glob(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "glob", "expected a path glob such as /users/*, got {got}", _got(value)
        )
    problem = check_endpoint_glob(value)
    if problem is not None:
        raise PydanticCustomError("glob", "{reason}", {"reason": problem})
    return value


MemberIdField = Annotated[MemberId, PlainValidator(_member_id)]
ClientIdField = Annotated[ClientId, PlainValidator(_client_id)]
Code = Annotated[str, PlainValidator(_part)]
HttpUrl = Annotated[str, PlainValidator(_http_url)]
PathGlob = Annotated[str, PlainValidator(_glob)]
FilePath = Annotated[str, PlainValidator(_file_path)]
Text = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class RateLimitModel(_Model):
    """Requests per second and burst size for one client (SPEC 7)."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class SubsystemModel(_Model):
    """A subsystem of a member: the usual client and provider unit in X-Road."""

    code: Code
    name: Text | None = None
    auth: AuthMode = "signature"
    signature_policy: SignaturePolicy = "strict"
    signing_certificates: tuple[FilePath, ...] = ()
    tls_certificates: tuple[FilePath, ...] = ()
    rate_limit: RateLimitModel | None = None


class MemberModel(_Model):
    """A member (an agency). Its own settings apply when the member itself is the client."""

    id: MemberIdField
    name: Text
    auth: AuthMode = "signature"
    signature_policy: SignaturePolicy = "strict"
    signing_certificates: tuple[FilePath, ...] = ()
    tls_certificates: tuple[FilePath, ...] = ()
    rate_limit: RateLimitModel | None = None
    subsystems: tuple[SubsystemModel, ...] = ()


class GroupModel(_Model):
    """A group of clients that access rights can name: local (``groups``) or global
    (``global_groups``); the two kinds have separate namespaces."""

    code: Code
    description: str | None = None
    members: tuple[ClientIdField, ...] = ()


class TrustAnchorModel(_Model):
    """A CA whose certificates are trusted, with its revocation settings (SPEC 5.4).

    ``intermediates`` are CA certificates issued below the anchor (not trusted themselves)
    that path building may use. ``max_age_seconds`` (the freshness of an OCSP answer or of a
    CRL without nextUpdate), ``timeout_seconds`` and ``require_nonce`` override the
    gateway's ``revocation`` settings for the certificates of this anchor.
    """

    name: Text
    certificate: FilePath
    intermediates: tuple[FilePath, ...] = ()
    revocation: Revocation = "none"
    on_unavailable: OnUnavailable = "reject"
    ocsp_url: HttpUrl | None = None
    max_age_seconds: int | None = Field(default=None, gt=0, le=30 * 86400)
    timeout_seconds: float | None = Field(default=None, gt=0, le=60)
    require_nonce: bool | None = None


class TimeoutModel(_Model):
    """Connect and total timeouts in seconds for calls to the provider."""

    connect: float = Field(default=5.0, gt=0, le=3600)
    total: float = Field(default=30.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _connect_within_total(self) -> TimeoutModel:
        if self.connect > self.total:
            raise PydanticCustomError(
                "timeout",
                "the connect timeout ({connect} s) is longer than the total timeout ({total} s)",
                {"connect": self.connect, "total": self.total},
            )
        return self


class CircuitBreakerModel(_Model):
    """After ``failures`` consecutive transport failures, fail fast for ``cooldown_seconds``."""

    failures: int = Field(default=5, ge=1, le=10_000)
    cooldown_seconds: float = Field(default=30.0, gt=0, le=86400)


class ServiceTlsModel(_Model):
    """How obmin talks TLS to the provider: verification and its own client certificate."""

    verify: bool = True
    ca_certificates: tuple[FilePath, ...] = ()
    client_certificate: FilePath | None = None
    client_key: FilePath | None = None

    @model_validator(mode="after")
    def _certificate_with_key(self) -> ServiceTlsModel:
        if (self.client_certificate is None) != (self.client_key is None):
            raise PydanticCustomError(
                "tls_pair", "client_certificate and client_key must be given together", {}
            )
        return self


class ServiceModel(_Model):
    """A service a provider offers, and how obmin forwards to it."""

    provider: ClientIdField
    code: Code
    version: Code | None = None
    type: ServiceType
    url: HttpUrl
    timeout: TimeoutModel = TimeoutModel()
    disabled: bool = False
    disabled_notice: Text | None = None
    audit_body: AuditBody = "digest"
    wsdl: FilePath | None = None
    openapi: FilePath | None = None
    title: str | None = None
    tls: ServiceTlsModel | None = None
    circuit_breaker: CircuitBreakerModel = CircuitBreakerModel()
    # Retry once a REST call with an idempotent method (GET, HEAD, OPTIONS, PUT, DELETE) whose
    # connection broke after it was sent (SPEC 7); other calls are never retried.
    retry_idempotent: bool = False


class EndpointModel(_Model):
    """A REST endpoint an access rule is limited to: method (or ``*``) and path glob."""

    method: HttpMethod
    path: PathGlob


class AccessModel(_Model):
    """Who may call a service code of a provider (all versions); optionally per endpoint."""

    provider: ClientIdField
    service: Code
    clients: tuple[ClientIdField, ...] = ()
    groups: tuple[Code, ...] = ()
    global_groups: tuple[Code, ...] = ()
    endpoints: tuple[EndpointModel, ...] | None = None

    @model_validator(mode="after")
    def _grants_something(self) -> AccessModel:
        if not self.clients and not self.groups and not self.global_groups:
            raise PydanticCustomError(
                "access_empty",
                "the rule grants nothing: name clients, groups or global_groups",
                {},
            )
        if self.endpoints is not None and not self.endpoints:
            raise PydanticCustomError(
                "access_endpoints",
                "endpoints is empty: list endpoints, or leave the key out to grant the whole "
                "service",
                {},
            )
        return self


class RegistryFile(_Model):
    """One YAML file of a registry directory: any of the sections, all optional.

    A section key with nothing under it (``members:`` followed by only comments) is empty.
    """

    instance: Code | None = None
    members: tuple[MemberModel, ...] = ()
    groups: tuple[GroupModel, ...] = ()
    global_groups: tuple[GroupModel, ...] = ()
    trust_anchors: tuple[TrustAnchorModel, ...] = ()
    services: tuple[ServiceModel, ...] = ()
    access: tuple[AccessModel, ...] = ()

    @field_validator(
        "members", "groups", "global_groups", "trust_anchors", "services", "access", mode="before"
    )
    @classmethod
    def _empty_section(cls, value: object) -> object:
        return () if value is None else value
