"""Checks across the files of a registry directory, and the snapshot built from them.

`registry.loader` has already checked each file on its own (YAML, keys, types, identifier
syntax). Here: exactly one instance and every identifier in it; no duplicate member,
subsystem, local or global group, trust anchor or service; every reference (provider, client,
group, service code) registered; every certificate, WSDL and OpenAPI file present and of the
right kind. The passes run in dependency order: members, then groups and trust anchors, then
services, then access rights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from registry.access import AccessIndexBuilder, GroupKind, GroupRef, ServiceKey
from registry.build_files import check_private_key
from registry.checker import Checker, ParsedFile, Reported
from registry.endpoints import compile_endpoint
from registry.identifiers import ClientId, ServiceId
from registry.models import (
    AccessModel,
    GroupModel,
    MemberModel,
    ServiceModel,
    SubsystemModel,
    TrustAnchorModel,
)
from registry.snapshot import (
    ClientEntry,
    GroupEntry,
    RateLimit,
    Registry,
    RegistryCounts,
    ServiceEntry,
    TrustAnchorEntry,
    certificate_thumbprint,
)
from registry.yamlfile import Loc, YamlDocument

__all__ = ["ParsedFile", "Reported", "build_registry"]

# Each kind of group: the registry key that defines it and how messages name one.
_GROUP_WORDS: dict[GroupKind, tuple[str, str]] = {
    "local": ("groups", "group"),
    "global": ("global_groups", "global group"),
}


_ServiceFiles = tuple[Path | None, Path | None, tuple[Path, ...], Path | None, Path | None]
"""A service's WSDL, OpenAPI document, TLS CA certificates, client certificate and key."""
_NO_FILES: _ServiceFiles = (None, None, (), None, None)


class _Builder(Checker):
    """One pass over the parsed files; collects problems and the snapshot's indexes."""

    def __init__(self, directory: Path, files: list[ParsedFile], complete: bool) -> None:
        super().__init__(files, complete)
        self.directory = directory
        self.client_origin: dict[ClientId, tuple[YamlDocument, Loc]] = {}
        self.groups: dict[str, GroupEntry] = {}
        self.global_groups: dict[str, GroupEntry] = {}
        self.group_tables: dict[GroupKind, dict[str, GroupEntry]] = {"local": self.groups}
        self.group_tables["global"] = self.global_groups
        self.group_origin: dict[GroupRef, tuple[YamlDocument, Loc]] = {}
        self.anchors: list[TrustAnchorEntry] = []
        self.anchor_origin: dict[str, tuple[YamlDocument, Loc]] = {}
        self.services: dict[ServiceId, ServiceEntry] = {}
        self.service_origin: dict[ServiceId, tuple[YamlDocument, Loc]] = {}
        self.by_code: dict[ServiceKey, list[ServiceEntry]] = {}
        self.by_provider: dict[ClientId, list[ServiceEntry]] = {}
        self.access = AccessIndexBuilder()
        self.members = self.subsystems = self.rules = 0

    # --- passes ---------------------------------------------------------------------------

    def run(self) -> Registry | None:
        """All passes in dependency order; the snapshot when nothing was wrong."""
        self.find_instance()
        for parsed in self.files:
            for index, member in parsed.members:
                self.add_member(parsed.doc, ("members", index), member)
        for parsed in self.files:
            for index, group in parsed.groups:
                self.add_group(parsed.doc, ("groups", index), group, "local")
            for index, group in parsed.global_groups:
                self.add_group(parsed.doc, ("global_groups", index), group, "global")
            for index, anchor in parsed.trust_anchors:
                self.add_anchor(parsed.doc, ("trust_anchors", index), anchor)
        for parsed in self.files:
            for index, service in parsed.services:
                self.add_service(parsed.doc, ("services", index), service)
        for parsed in self.files:
            for index, rule in parsed.access:
                self.add_access(parsed.doc, ("access", index), rule)
        if self.problems or self.instance is None:
            return None
        return self.snapshot()

    def find_instance(self) -> None:
        """Exactly one file sets the instance."""
        first: tuple[YamlDocument, str] | None = None
        unreadable = any(parsed.instance_unreadable for parsed in self.files)
        for parsed in self.files:
            if parsed.instance is None:
                continue
            if first is None:
                first = (parsed.doc, parsed.instance)
                continue
            self.report(
                parsed.doc,
                ("instance",),
                f"the instance is already set in {self.where((first[0], ('instance',)))}; "
                "exactly one file sets it",
            )
        if first is not None:
            self.instance = first[1]
        elif self.complete and not unreadable:
            self.report(
                None, ("instance",), "no file sets the instance (add 'instance: NAME' to one file)"
            )

    def add_member(self, doc: YamlDocument, loc: Loc, member: MemberModel) -> None:
        """Register a member as a client, and each of its subsystems."""
        mid = member.id
        if not self.own(doc, (*loc, "id"), mid, "member"):
            return
        client = ClientId(mid.instance, mid.member_class, mid.member_code)
        if client in self.clients:
            where = self.where(self.client_origin[client])
            self.report(doc, (*loc, "id"), f"duplicate member {mid} (first defined at {where})")
            return
        self.members += 1
        self.register(doc, loc, (*loc, "id"), client, member, member.name, member.name)
        for index, subsystem in enumerate(member.subsystems):
            sub_loc = (*loc, "subsystems", index)
            sub = ClientId(mid.instance, mid.member_class, mid.member_code, subsystem.code)
            if sub in self.clients:
                where = self.where(self.client_origin[sub])
                self.report(
                    doc, (*sub_loc, "code"), f"duplicate subsystem {sub} (first defined at {where})"
                )
                continue
            self.subsystems += 1
            name = subsystem.name or member.name
            self.register(doc, sub_loc, (*sub_loc, "code"), sub, subsystem, name, member.name)

    def register(
        self,
        doc: YamlDocument,
        loc: Loc,
        origin: Loc,
        client: ClientId,
        model: MemberModel | SubsystemModel,
        name: str,
        member_name: str,
    ) -> None:
        """Register one client with its certificates loaded; ``origin`` is where it is named."""
        signing = tuple(self.certs(doc, (*loc, "signing_certificates"), model.signing_certificates))
        tls = tuple(self.certs(doc, (*loc, "tls_certificates"), model.tls_certificates))
        limit = model.rate_limit
        self.clients[client] = ClientEntry(
            id=client,
            name=name,
            member_name=member_name,
            auth=model.auth,
            signature_policy=model.signature_policy,
            signing_certificates=signing,
            tls_certificates=tls,
            rate_limit=None if limit is None else RateLimit(limit.per_second, limit.burst),
            signing_thumbprints=frozenset(certificate_thumbprint(c) for c in signing),
            tls_thumbprints=frozenset(certificate_thumbprint(c) for c in tls),
        )
        self.client_origin[client] = (doc, origin)

    def add_group(self, doc: YamlDocument, loc: Loc, group: GroupModel, kind: GroupKind) -> None:
        """Define a local or a global group of registered clients."""
        ref: GroupRef = (kind, group.code)
        if ref in self.group_origin:
            where = self.where(self.group_origin[ref])
            noun = _GROUP_WORDS[kind][1]
            self.report(
                doc, (*loc, "code"), f"duplicate {noun} {group.code} (first defined at {where})"
            )
            return
        members: list[ClientId] = []
        seen: set[ClientId] = set()
        for index, client in enumerate(group.members):
            member_loc = (*loc, "members", index)
            if client in seen:
                self.report(doc, member_loc, f"client {client} is listed twice")
            elif self.known_client(doc, member_loc, client, "client"):
                members.append(client)
            seen.add(client)
        entry = GroupEntry(group.code, group.description, tuple(members))
        self.group_tables[kind][group.code] = entry
        self.group_origin[ref] = (doc, (*loc, "code"))

    def add_anchor(self, doc: YamlDocument, loc: Loc, anchor: TrustAnchorModel) -> None:
        """Add a trust anchor: one CA certificate."""
        if anchor.name in self.anchor_origin:
            where = self.where(self.anchor_origin[anchor.name])
            self.report(
                doc,
                (*loc, "name"),
                f"duplicate trust anchor {anchor.name!r} (first defined at {where})",
            )
            return
        self.anchor_origin[anchor.name] = (doc, (*loc, "name"))
        path = doc.path.parent / anchor.certificate
        loaded = self.certificates.load(path)
        if isinstance(loaded, str):
            self.report(doc, (*loc, "certificate"), loaded)
            return
        problem = self.certificates.ca_problem(path, loaded)
        if problem is not None:
            self.report(doc, (*loc, "certificate"), problem)
            return
        intermediates = self.anchor_intermediates(doc, loc, anchor, loaded[0])
        if intermediates is None:
            return
        max_age = anchor.max_age_seconds
        self.anchors.append(
            TrustAnchorEntry(
                anchor.name,
                loaded[0],
                anchor.revocation,
                anchor.on_unavailable,
                anchor.ocsp_url,
                intermediates=intermediates,
                max_age=timedelta(seconds=max_age) if max_age is not None else None,
                timeout=anchor.timeout_seconds,
                require_nonce=anchor.require_nonce,
            )
        )

    def anchor_intermediates(
        self, doc: YamlDocument, loc: Loc, anchor: TrustAnchorModel, root: x509.Certificate
    ) -> tuple[x509.Certificate, ...] | None:
        """The anchor's intermediate CA certificates, each one CA issued below the anchor."""
        found: list[x509.Certificate] = []
        ok = True
        for index, value in enumerate(anchor.intermediates):
            where = (*loc, "intermediates", index)
            path = doc.path.parent / value
            loaded = self.certificates.load(path)
            problem = (
                loaded if isinstance(loaded, str) else self.certificates.ca_problem(path, loaded)
            )
            if problem is not None:
                self.report(
                    doc,
                    where,
                    problem.replace("a trust anchor is one CA", "an intermediate is one CA"),
                )
                ok = False
                continue
            assert not isinstance(loaded, str)
            found.append(loaded[0])
        issuers = [root, *found]
        for index, cert in enumerate(found):
            if not any(_issued_by(cert, issuer) for issuer in issuers if issuer is not cert):
                self.report(
                    doc,
                    (*loc, "intermediates", index),
                    f"{cert.subject.rfc4514_string()} is not issued by trust anchor "
                    f"{anchor.name!r} or by one of its intermediates",
                )
                ok = False
        return tuple(found) if ok else None

    def add_service(self, doc: YamlDocument, loc: Loc, service: ServiceModel) -> None:
        """Register a service of a registered provider, with its documents checked."""
        provider = service.provider
        if provider.instance != self.instance and not self.own(
            doc, (*loc, "provider"), provider, "provider"
        ):
            return
        unknown = provider not in self.clients and not self.shadows.hides_client(provider)
        if unknown and self.complete:
            self.report(
                doc,
                (*loc, "provider"),
                f"provider {provider} is not registered as a member or subsystem",
            )
        sid = ServiceId(provider, service.code, service.version)
        if sid in self.services:
            where = self.where(self.service_origin[sid])
            self.report(doc, loc, f"duplicate service {sid} (first defined at {where})")
            return
        if service.wsdl is None and service.openapi is None and service.tls is None:
            if service.type == "openapi":  # needs a document: service_files reports it
                self.service_files(doc, loc, service)
                return
            paths: _ServiceFiles | None = _NO_FILES
        else:
            paths = self.service_files(doc, loc, service)
        if paths is None:
            return
        wsdl, openapi, tls_cas, tls_cert, tls_key = paths
        tls = service.tls
        entry = ServiceEntry(
            id=sid,
            type=service.type,
            url=service.url,
            connect_timeout=service.timeout.connect,
            total_timeout=service.timeout.total,
            disabled=service.disabled,
            disabled_notice=service.disabled_notice,
            audit_body=service.audit_body,
            wsdl_path=wsdl,
            openapi_path=openapi,
            title=service.title,
            tls_verify=True if tls is None else tls.verify,
            tls_ca_certificates=tls_cas,
            tls_client_certificate=tls_cert,
            tls_client_key=tls_key,
            breaker_failures=service.circuit_breaker.failures,
            breaker_cooldown=service.circuit_breaker.cooldown_seconds,
            retry_idempotent=service.retry_idempotent,
        )
        self.services[sid] = entry
        self.service_origin[sid] = (doc, loc)
        self.by_code.setdefault((provider, service.code), []).append(entry)
        self.by_provider.setdefault(provider, []).append(entry)

    def service_files(
        self, doc: YamlDocument, loc: Loc, service: ServiceModel
    ) -> _ServiceFiles | None:
        """The WSDL, OpenAPI and TLS files of a service, checked; None if any is wrong."""
        before = len(self.problems)
        wsdl = openapi = cert = key = None
        if service.wsdl is not None:
            if service.type != "soap":
                self.report(doc, (*loc, "wsdl"), f"a {service.type} service has no WSDL")
            else:
                wsdl = self.file(doc, (*loc, "wsdl"), service.wsdl)
        if service.openapi is not None:
            if service.type == "soap":
                self.report(doc, (*loc, "openapi"), "a soap service has no OpenAPI document")
            else:
                openapi = self.file(doc, (*loc, "openapi"), service.openapi)
        elif service.type == "openapi":
            self.report(doc, loc, "a service of type openapi needs an 'openapi' document")
        cas: list[Path] = []
        if service.tls is not None:
            tls, tls_loc = service.tls, (*loc, "tls")
            for index, value in enumerate(tls.ca_certificates):
                if self.cert_file(doc, (*tls_loc, "ca_certificates", index), value):
                    cas.append(doc.path.parent / value)
            if tls.client_certificate is not None and tls.client_key is not None:
                cert_loc = (*tls_loc, "client_certificate")
                if self.cert_file(doc, cert_loc, tls.client_certificate):
                    cert = doc.path.parent / tls.client_certificate
                key_path = doc.path.parent / tls.client_key
                problem = check_private_key(key_path)
                if problem is None:
                    key = key_path
                else:
                    self.report(doc, (*tls_loc, "client_key"), problem)
        if len(self.problems) != before:
            return None
        return wsdl, openapi, tuple(cas), cert, key

    def add_access(self, doc: YamlDocument, loc: Loc, rule: AccessModel) -> None:
        """Grant a service code to clients, local and global groups, wholly or per endpoint."""
        self.rules += 1
        provider = rule.provider
        if provider.instance != self.instance and not self.own(
            doc, (*loc, "provider"), provider, "provider"
        ):
            return
        key = (provider, rule.service)
        versions = self.by_code.get(key)
        if versions is None:
            if self.complete and not self.shadows.hides_service(key):
                self.report(
                    doc,
                    (*loc, "service"),
                    f"no service {rule.service!r} is registered for provider {provider}",
                )
            return
        endpoints = None
        if rule.endpoints is not None:
            if any(entry.type == "soap" for entry in versions):
                self.report(
                    doc,
                    (*loc, "endpoints"),
                    f"endpoints apply to REST services; {provider}/{rule.service} is SOAP",
                )
                return
            endpoints = tuple(compile_endpoint(e.method, e.path) for e in rule.endpoints)
        clients, grant = self.clients, self.access.grant
        for index, client in enumerate(rule.clients):
            # A registered client is of this instance (checked when it was registered).
            if client in clients or self.known_client(
                doc, (*loc, "clients", index), client, "client"
            ):
                grant(client, key, endpoints)
        named: dict[GroupKind, tuple[str, ...]] = {"local": rule.groups}
        named["global"] = rule.global_groups
        for kind, codes in named.items():
            section, noun = _GROUP_WORDS[kind]
            for index, code in enumerate(codes):
                if code in self.group_tables[kind]:
                    self.access.grant((kind, code), key, endpoints)
                elif self.complete and not self.shadows.hides_group(kind, code):
                    message = f"{noun} {code} is not defined in {section}"
                    self.report(doc, (*loc, section, index), message)

    # --- the snapshot ---------------------------------------------------------------------

    def snapshot(self) -> Registry:
        """Freeze what was registered; the digest covers YAML and certificate contents."""
        assert self.instance is not None
        digest = hashlib.sha256()
        for parsed in self.files:
            digest.update(f"yaml {parsed.doc.path.name} {parsed.doc.sha256}\n".encode())
        for cert_digest in sorted(self.certificates.digests):
            digest.update(f"certificate {cert_digest}\n".encode())
        group_members: dict[GroupRef, tuple[ClientId, ...]] = {
            (kind, code): group.members
            for kind, table in self.group_tables.items()
            for code, group in table.items()
        }
        return Registry(
            instance=self.instance,
            loaded_from=self.directory,
            digest=digest.hexdigest(),
            counts=RegistryCounts(
                members=self.members,
                subsystems=self.subsystems,
                services=len(self.services),
                access_rules=self.rules,
                groups=len(self.groups),
                global_groups=len(self.global_groups),
                trust_anchors=len(self.anchors),
            ),
            clients=MappingProxyType(self.clients),
            services=MappingProxyType(self.services),
            groups=MappingProxyType(self.groups),
            global_groups=MappingProxyType(self.global_groups),
            trust_anchor_entries=tuple(self.anchors),
            access=self.access.build(group_members),
            provider_services=_frozen(self.by_provider),
            code_services=_frozen(self.by_code),
        )


K = TypeVar("K")
V = TypeVar("V")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _frozen(index: dict[K, list[V]]) -> Mapping[K, tuple[V, ...]]:
    return MappingProxyType({key: tuple(values) for key, values in index.items()})


def build_registry(
    directory: Path, files: list[ParsedFile], complete: bool
) -> tuple[Registry | None, list[Reported]]:
    """Check the files against each other; the snapshot, or None and the problems found."""
    builder = _Builder(directory, files, complete)
    registry = builder.run()
    return registry, builder.problems
