"""The registry by configuration: who the members are, what services exist, who may call them.

`load_registry` reads a directory of YAML files into an immutable `Registry` snapshot with
O(1) lookups, or raises `RegistryInvalid` listing every problem with its file, line and key
path. `check_registry` is ``obmin registry check``.
"""

from registry.check import check_registry
from registry.endpoints import normalise_path
from registry.errors import InvalidIdentifier, RegistryError, RegistryInvalid, RegistryIssue
from registry.identifiers import ClientId, MemberId, ServiceId
from registry.loader import load_registry, registry_files
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

__all__ = [
    "ClientEntry",
    "ClientId",
    "GroupEntry",
    "InvalidIdentifier",
    "MemberId",
    "RateLimit",
    "Registry",
    "RegistryCounts",
    "RegistryError",
    "RegistryInvalid",
    "RegistryIssue",
    "ServiceEntry",
    "ServiceId",
    "TrustAnchorEntry",
    "certificate_thumbprint",
    "check_registry",
    "load_registry",
    "normalise_path",
    "registry_files",
]
