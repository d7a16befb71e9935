"""Shared state of the cross-file checks: what was parsed, what is known, what is wrong.

`Checker` holds the problems found so far and the clients registered so far, and the small
helpers every pass uses (report a problem, say where something was first defined, check an
identifier's instance, look up a referenced client, check and load referenced files).

Items that failed their own validation leave a *shadow* (whatever identity could be read from
them), so that one typo in a member does not also report every reference to that member.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from registry.access import GroupKind, ServiceKey
from registry.build_files import CertificateFiles, check_plain_file
from registry.errors import InvalidIdentifier
from registry.identifiers import ClientId, MemberId
from registry.models import (
    AccessModel,
    GroupModel,
    MemberModel,
    ServiceModel,
    TrustAnchorModel,
)
from registry.snapshot import ClientEntry
from registry.yamlfile import Loc, Problem, YamlDocument

__all__ = ["Checker", "ParsedFile", "Reported", "Shadows"]

Reported = tuple[YamlDocument | None, Problem]
"""A problem and the file it is in (None: the directory itself)."""


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """One file's validated items, each with its index in its section (for key paths).

    `failed` holds the raw value of every item (or whole section, index None) that did not
    validate; `instance_unreadable` is set when the file has an ``instance`` key that did not.
    """

    doc: YamlDocument
    instance: str | None = None
    instance_unreadable: bool = False
    members: tuple[tuple[int, MemberModel], ...] = ()
    groups: tuple[tuple[int, GroupModel], ...] = ()
    global_groups: tuple[tuple[int, GroupModel], ...] = ()
    trust_anchors: tuple[tuple[int, TrustAnchorModel], ...] = ()
    services: tuple[tuple[int, ServiceModel], ...] = ()
    access: tuple[tuple[int, AccessModel], ...] = ()
    failed: tuple[tuple[str, int | None, object], ...] = ()


@dataclass(slots=True)
class Shadows:
    """Identities of items that failed validation: references to them are not reported."""

    all_clients: bool = False
    members: set[MemberId] = field(default_factory=set)
    all_groups: bool = False
    groups: set[str] = field(default_factory=set)
    all_global_groups: bool = False
    global_groups: set[str] = field(default_factory=set)
    all_services: bool = False
    services: set[tuple[str, str]] = field(default_factory=set)

    def add(self, section: str, raw: object) -> None:
        """Remember what identity the invalid item ``raw`` of ``section`` would have had."""
        item = raw if isinstance(raw, dict) else {}
        if section == "members":
            try:
                self.members.add(MemberId.parse(str(item["id"])))
            except (KeyError, InvalidIdentifier):
                self.all_clients = True
        elif section == "groups":
            if isinstance(item.get("code"), str):
                self.groups.add(item["code"])
            else:
                self.all_groups = True
        elif section == "global_groups":
            if isinstance(item.get("code"), str):
                self.global_groups.add(item["code"])
            else:
                self.all_global_groups = True
        elif section == "services":
            provider, code = item.get("provider"), item.get("code")
            if isinstance(provider, str) and isinstance(code, str):
                self.services.add((provider, code))
            else:
                self.all_services = True
        # Trust anchors and access rules are never referred to: nothing to shadow.

    def hides_client(self, client: ClientId) -> bool:
        """True if ``client`` may have been defined by an invalid item."""
        return self.all_clients or client.member in self.members

    def hides_group(self, kind: GroupKind, code: str) -> bool:
        """True if the local or global group ``code`` may have been defined by an invalid item."""
        if kind == "local":
            return self.all_groups or code in self.groups
        return self.all_global_groups or code in self.global_groups

    def hides_service(self, key: ServiceKey) -> bool:
        """True if the service code may have been defined by an invalid item."""
        return self.all_services or (str(key[0]), key[1]) in self.services


class Checker:
    """Problems found so far, clients registered so far, and the helpers of every pass.

    When a whole file could not be read (``complete`` is false), references are not
    resolved: a reference into the unreadable file would only repeat its one problem.
    """

    def __init__(self, files: list[ParsedFile], complete: bool) -> None:
        self.files = files
        self.complete = complete
        self.problems: list[Reported] = []
        self.shadows = Shadows()
        self.instance: str | None = None
        self.certificates = CertificateFiles()
        self.clients: dict[ClientId, ClientEntry] = {}
        for parsed in files:
            for section, _, raw in parsed.failed:
                self.shadows.add(section, raw)

    def report(self, doc: YamlDocument | None, loc: Loc, message: str) -> None:
        """Record a problem at ``loc`` of ``doc`` (None: the directory)."""
        self.problems.append((doc, Problem(loc, message)))

    @staticmethod
    def where(origin: tuple[YamlDocument, Loc]) -> str:
        """``file:line`` of an earlier definition, for "duplicate" messages."""
        doc, loc = origin
        line = doc.line_of(loc)
        return doc.path.name if line is None else f"{doc.path.name}:{line}"

    def own(self, doc: YamlDocument, loc: Loc, ident: MemberId | ClientId, noun: str) -> bool:
        """Is an identifier of this registry's instance? Reports it (``noun ident``) when not."""
        if self.instance is None or ident.instance == self.instance:
            return True
        what = f"{noun} {ident}"  # only now: formatting every identifier costs at 100,000
        self.report(doc, loc, f"{what} belongs to instance {ident.instance}, not {self.instance}")
        return False

    def known_client(self, doc: YamlDocument, loc: Loc, client: ClientId, what: str) -> bool:
        """Is a referenced client registered? Reports it when not (and not shadowed)."""
        if not self.own(doc, loc, client, what):
            return False
        if client in self.clients:
            return True
        if self.complete and not self.shadows.hides_client(client):
            self.report(doc, loc, f"{what} {client} is not registered as a member or subsystem")
        return False

    def file(self, doc: YamlDocument, loc: Loc, value: str) -> Path | None:
        """The path of a referenced document, if it is a readable file; else report it."""
        path = doc.path.parent / value
        problem = check_plain_file(path)
        if problem is not None:
            self.report(doc, loc, problem)
            return None
        return path

    def cert_file(
        self, doc: YamlDocument, loc: Loc, value: str
    ) -> tuple[x509.Certificate, ...] | None:
        """The certificates of one referenced PEM file; None (reported) when it is wrong."""
        loaded = self.certificates.load(doc.path.parent / value)
        if isinstance(loaded, str):
            self.report(doc, loc, loaded)
            return None
        return loaded

    def certs(self, doc: YamlDocument, loc: Loc, values: Iterable[str]) -> list[x509.Certificate]:
        """The certificates of a list of PEM files, each problem at its own index."""
        found: list[x509.Certificate] = []
        for index, value in enumerate(values):
            found.extend(self.cert_file(doc, (*loc, index), value) or ())
        return found
