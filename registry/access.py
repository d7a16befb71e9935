"""Access rights, indexed for O(1) decisions: who may call which service code of a provider.

Rights are granted per service code regardless of version, as in X-Road: a right on
``getPerson`` covers ``getPerson/v1`` and ``getPerson/v2``. Default deny: no grant, no access.
Group grants are not expanded at load time (a large group times many services would blow up);
a decision looks at the client's own grant and at the grants of each group it belongs to, so
its cost depends on how many groups the client is in, not on the size of the registry.

Local groups (``groups``) and global groups (``global_groups``) have separate namespaces: a
group is indexed as a `GroupRef`, its kind and its code, so a local and a global group with the
same code never share grants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from registry.endpoints import EndpointRule, normalise_path
from registry.identifiers import ClientId

__all__ = ["AccessIndex", "AccessIndexBuilder", "Grant", "GroupKind", "GroupRef", "ServiceKey"]

ServiceKey = tuple[ClientId, str]
"""A provider and a service code: what access rights are granted on."""

GroupKind = Literal["local", "global"]
"""Which namespace a group code belongs to: ``groups`` or ``global_groups``."""

GroupRef = tuple[GroupKind, str]
"""A group as the access index knows it: its kind and its code."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What one client (or group) may do with one service code."""

    whole: bool
    endpoints: tuple[EndpointRule, ...] = ()

    def permits(self, method: str | None, path: str | None) -> bool:
        """True if the grant covers the call; without method and path, only a whole grant."""
        if self.whole:
            return True
        if method is None or path is None:
            return False
        return any(rule.matches(method, path) for rule in self.endpoints)


@dataclass(frozen=True, slots=True, eq=False)
class AccessIndex:
    """Grants by (client, provider, code) and by (group, provider, code)."""

    by_client: Mapping[tuple[ClientId, ClientId, str], Grant]
    by_group: Mapping[tuple[GroupRef, ClientId, str], Grant]
    groups_of: Mapping[ClientId, tuple[GroupRef, ...]]
    keys_of_client: Mapping[ClientId, tuple[ServiceKey, ...]]
    keys_of_group: Mapping[GroupRef, tuple[ServiceKey, ...]]

    def grants(self, client: ClientId, key: ServiceKey) -> list[Grant]:
        """Every grant that applies to ``client`` on ``key``, directly or through a group."""
        provider, code = key
        found: list[Grant] = []
        own = self.by_client.get((client, provider, code))
        if own is not None:
            found.append(own)
        for group in self.groups_of.get(client, ()):
            through = self.by_group.get((group, provider, code))
            if through is not None:
                found.append(through)
        return found

    def is_allowed(
        self, client: ClientId, key: ServiceKey, method: str | None, path: str | None
    ) -> bool:
        """The access decision; ``path`` is the raw request path and is normalised here."""
        grants = self.grants(client, key)
        if not grants:
            return False
        normalised = None if path is None else normalise_path(path)
        if path is not None and normalised is None:
            return False
        return any(grant.permits(method, normalised) for grant in grants)

    def granted_keys(self, client: ClientId) -> set[ServiceKey]:
        """Every (provider, code) the client holds any right on."""
        keys = set(self.keys_of_client.get(client, ()))
        for group in self.groups_of.get(client, ()):
            keys.update(self.keys_of_group.get(group, ()))
        return keys


_WHOLE = Grant(True)


class AccessIndexBuilder:
    """Collects grants while the registry is loaded; `build` freezes them."""

    def __init__(self) -> None:
        self._whole: dict[tuple[ClientId | GroupRef, ClientId, str], bool] = {}
        self._endpoints: dict[tuple[ClientId | GroupRef, ClientId, str], list[EndpointRule]] = {}

    def grant(
        self,
        subject: ClientId | GroupRef,
        key: ServiceKey,
        endpoints: tuple[EndpointRule, ...] | None,
    ) -> None:
        """Grant ``subject`` (a client, or a group) the service, or some endpoints of it."""
        full = (subject, *key)
        if endpoints is None:
            self._whole[full] = True
        else:
            self._whole.setdefault(full, False)
            self._endpoints.setdefault(full, []).extend(endpoints)

    def build(self, group_members: Mapping[GroupRef, tuple[ClientId, ...]]) -> AccessIndex:
        """Freeze the grants; ``group_members`` gives each group's clients."""
        by_client: dict[tuple[ClientId, ClientId, str], Grant] = {}
        by_group: dict[tuple[GroupRef, ClientId, str], Grant] = {}
        keys_of_client: dict[ClientId, list[ServiceKey]] = {}
        keys_of_group: dict[GroupRef, list[ServiceKey]] = {}
        for full, whole in self._whole.items():
            subject, provider, code = full
            # Grants are immutable: every whole-service grant can be the same object.
            grant = _WHOLE if whole else Grant(False, tuple(self._endpoints.get(full, ())))
            if isinstance(subject, ClientId):
                by_client[(subject, provider, code)] = grant
                keys_of_client.setdefault(subject, []).append((provider, code))
            else:
                by_group[(subject, provider, code)] = grant
                keys_of_group.setdefault(subject, []).append((provider, code))
        groups_of: dict[ClientId, list[GroupRef]] = {}
        for group, members in group_members.items():
            for member in members:
                groups_of.setdefault(member, []).append(group)
        return AccessIndex(
            by_client=MappingProxyType(by_client),
            by_group=MappingProxyType(by_group),
            groups_of=MappingProxyType({k: tuple(v) for k, v in groups_of.items()}),
            keys_of_client=MappingProxyType({k: tuple(v) for k, v in keys_of_client.items()}),
            keys_of_group=MappingProxyType({k: tuple(v) for k, v in keys_of_group.items()}),
        )
