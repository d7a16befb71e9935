"""The loaded registry: an immutable snapshot with O(1) lookups.

A `Registry` is built once by `registry.load_registry` and never changes; a reload builds a new
one and swaps it in whole, so an exchange keeps the snapshot it started with.

Service lookup is an exact match on the full identifier, version included, as X-Road's
security server does: a request for ``.../getPerson/v1`` finds only ``getPerson`` registered
with version ``v1``, and a request without a version finds only ``getPerson`` registered
without one. Access rights, by contrast, are per service code (see `registry.access`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from registry.access import AccessIndex
from registry.identifiers import ClientId, ServiceId
from registry.models import AuditBody, AuthMode, ServiceType, SignaturePolicy

__all__ = [
    "ClientEntry",
    "GroupEntry",
    "RateLimit",
    "Registry",
    "RegistryCounts",
    "ServiceEntry",
    "TrustAnchorEntry",
    "certificate_thumbprint",
]


def certificate_thumbprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex: how pinned certs are matched."""
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests per second and burst size allowed to one client."""

    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class ClientEntry:
    """A registered client: a member acting as a client, or a subsystem.

    A subsystem does not inherit its member's auth mode, policy, certificates or rate limit:
    each is given explicitly or takes the fail-closed default (``signature``, ``strict``).
    `signing_thumbprints` and `tls_thumbprints` are `certificate_thumbprint` values of the
    pinned certificates, for O(1) matching.
    """

    id: ClientId
    name: str
    member_name: str
    auth: AuthMode
    signature_policy: SignaturePolicy
    signing_certificates: tuple[x509.Certificate, ...]
    tls_certificates: tuple[x509.Certificate, ...]
    rate_limit: RateLimit | None
    signing_thumbprints: frozenset[str]
    tls_thumbprints: frozenset[str]


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """A registered service and how to forward to it.

    File paths are the registry directory joined with the path configured (relative to the
    YAML file that names them), so they are absolute when the directory was given absolute.
    """

    id: ServiceId
    type: ServiceType
    url: str
    connect_timeout: float
    total_timeout: float
    disabled: bool
    disabled_notice: str | None
    audit_body: AuditBody
    wsdl_path: Path | None
    openapi_path: Path | None
    title: str | None
    tls_verify: bool = True
    tls_ca_certificates: tuple[Path, ...] = ()
    tls_client_certificate: Path | None = None
    tls_client_key: Path | None = None
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    retry_idempotent: bool = False


@dataclass(frozen=True, slots=True)
class TrustAnchorEntry:
    """A trusted CA certificate and how revocation of what it issued is checked.

    ``intermediates`` are the configured CA certificates below the anchor (offered to path
    building, never trusted alone). ``max_age``, ``timeout`` and ``require_nonce`` override
    the gateway's revocation settings when not None.
    """

    name: str
    certificate: x509.Certificate
    revocation: str
    on_unavailable: str
    ocsp_url: str | None
    intermediates: tuple[x509.Certificate, ...] = ()
    max_age: timedelta | None = None
    timeout: float | None = None
    require_nonce: bool | None = None


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """A group of clients: local (``Registry.groups``) or global (``Registry.global_groups``)."""

    code: str
    description: str | None
    members: tuple[ClientId, ...]


@dataclass(frozen=True, slots=True)
class RegistryCounts:
    """Sizes reported by ``obmin registry check`` and readiness details."""

    members: int
    subsystems: int
    services: int
    access_rules: int
    groups: int
    trust_anchors: int
    global_groups: int = 0


def _service_order(entry: ServiceEntry) -> tuple[str, str, str]:
    return (str(entry.id.provider), entry.id.service_code, entry.id.service_version or "")


@dataclass(frozen=True, slots=True, eq=False)
class Registry:
    """One immutable registry snapshot. Build it with `registry.load_registry`.

    The mappings are read-only views built at load time; every lookup is a dict access.
    `groups` (local) and `global_groups` are separate namespaces keyed by group code.
    Snapshots compare and hash by identity; `digest` tells whether two hold the same content.
    """

    instance: str
    loaded_from: Path
    digest: str
    counts: RegistryCounts
    clients: Mapping[ClientId, ClientEntry]
    services: Mapping[ServiceId, ServiceEntry]
    groups: Mapping[str, GroupEntry]
    global_groups: Mapping[str, GroupEntry]
    trust_anchor_entries: tuple[TrustAnchorEntry, ...]
    access: AccessIndex
    provider_services: Mapping[ClientId, tuple[ServiceEntry, ...]]
    code_services: Mapping[tuple[ClientId, str], tuple[ServiceEntry, ...]]

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        """The trusted CA certificates, in registry order."""
        return tuple(entry.certificate for entry in self.trust_anchor_entries)

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The configured intermediate CA certificates of every anchor, in registry order."""
        return tuple(cert for entry in self.trust_anchor_entries for cert in entry.intermediates)

    def find_client(self, client: ClientId) -> ClientEntry | None:
        """The registered member-level client or subsystem, or None."""
        return self.clients.get(client)

    def find_service(self, service: ServiceId) -> ServiceEntry | None:
        """The service with exactly this identifier (version included), or None."""
        return self.services.get(service)

    def is_allowed(
        self,
        client: ClientId,
        service: ServiceId,
        method: str | None = None,
        path: str | None = None,
    ) -> bool:
        """May ``client`` call ``service``? Default deny.

        Decided on the service code, whatever the version. For REST, pass the HTTP method and
        the raw request path (below the service code, without the query): a right limited to
        endpoints then applies when one endpoint matches. Without method and path only a right
        on the whole service counts, so a caller that forgets them fails closed. A path that
        `registry.normalise_path` refuses (``..`` above the root, a bad escape, a ``?``) is
        denied whatever the grant.
        """
        key = (service.provider, service.service_code)
        return self.access.is_allowed(client, key, method, path)

    def allowed_services(self, client: ClientId) -> list[ServiceEntry]:
        """Every registered service (all versions) the client holds any right on, sorted."""
        found: list[ServiceEntry] = []
        for key in self.access.granted_keys(client):
            found.extend(self.code_services.get(key, ()))
        return sorted(found, key=_service_order)

    def services_of(self, provider: ClientId) -> list[ServiceEntry]:
        """Every service the provider offers, sorted by code and version."""
        return sorted(self.provider_services.get(provider, ()), key=_service_order)

    def all_clients(self) -> list[ClientEntry]:
        """Every registered client, members before their subsystems (for ``listClients``)."""
        return sorted(
            self.clients.values(),
            key=lambda entry: (str(entry.id.member), entry.id.subsystem or ""),
        )
