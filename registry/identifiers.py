"""X-Road identifiers: members, subsystems (clients) and services.

Identifiers appear in configuration, SOAP headers, REST paths, audit records and on the
command line. They are parsed once, at the edge, into frozen values; everything after that
compares values, never strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from registry.errors import InvalidIdentifier

__all__ = [
    "ClientId",
    "MemberId",
    "ServiceId",
    "check_part",
]

# SPEC 2: A-Z a-z 0-9 ' ( ) + , - . = ? and _ (Trembita service codes). Nothing else: no
# percent-encoding, no whitespace, no control characters, no non-ASCII look-alikes.
_PART = re.compile(r"[A-Za-z0-9'()+,\-.=?_]+")
_MAX_PART = 255


def check_part(value: str, what: str) -> str:
    """Return ``value`` if it is a valid identifier part, else raise `InvalidIdentifier`."""
    if not value:
        raise InvalidIdentifier(f"{what} is empty")
    if len(value) > _MAX_PART:
        raise InvalidIdentifier(f"{what} is longer than {_MAX_PART} characters")
    if not _PART.fullmatch(value):
        raise InvalidIdentifier(f"{what} {value!r} contains characters that are not allowed")
    return value


@dataclass(frozen=True, slots=True, order=True)
class MemberId:
    """A member: ``INSTANCE/CLASS/MEMBERCODE``."""

    instance: str
    member_class: str
    member_code: str

    object_type: ClassVar[str] = "MEMBER"

    def __post_init__(self) -> None:
        check_part(self.instance, "xRoadInstance")
        check_part(self.member_class, "memberClass")
        check_part(self.member_code, "memberCode")

    @classmethod
    def parse(cls, text: str) -> MemberId:
        """Parse ``INSTANCE/CLASS/MEMBERCODE``."""
        parts = text.split("/")
        if len(parts) != 3:
            raise InvalidIdentifier(f"member identifier {text!r} must have 3 parts")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.member_code}"


@dataclass(frozen=True, slots=True, order=True)
class ClientId:
    """A client: a member, or a subsystem ``INSTANCE/CLASS/MEMBERCODE/SUBSYSTEM``."""

    instance: str
    member_class: str
    member_code: str
    subsystem: str | None = None
    # Identifiers key every registry index and are hashed on each lookup: hash once.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_part(self.instance, "xRoadInstance")
        check_part(self.member_class, "memberClass")
        check_part(self.member_code, "memberCode")
        if self.subsystem is not None:
            check_part(self.subsystem, "subsystemCode")
        parts = (self.instance, self.member_class, self.member_code, self.subsystem)
        object.__setattr__(self, "_hash", hash(parts))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # As the dataclass's, field by field; the cached hashes rule most unequal pairs out.
        if other.__class__ is not ClientId:
            return NotImplemented
        assert isinstance(other, ClientId)
        return self is other or (
            self._hash == other._hash
            and self.member_code == other.member_code
            and self.subsystem == other.subsystem
            and self.member_class == other.member_class
            and self.instance == other.instance
        )

    def __reduce__(self) -> tuple[type[ClientId], tuple[str, str, str, str | None]]:
        # String hashes differ between processes: rebuild (and rehash) when unpickled.
        return ClientId, (self.instance, self.member_class, self.member_code, self.subsystem)

    @property
    def object_type(self) -> str:
        """``MEMBER`` or ``SUBSYSTEM``, as in the identifiers XML schema."""
        return "MEMBER" if self.subsystem is None else "SUBSYSTEM"

    @property
    def member(self) -> MemberId:
        """The member this client belongs to."""
        return MemberId(self.instance, self.member_class, self.member_code)

    @classmethod
    def parse(cls, text: str) -> ClientId:
        """Parse ``INSTANCE/CLASS/MEMBERCODE[/SUBSYSTEM]``."""
        parts = text.split("/")
        if len(parts) == 3:
            return cls(parts[0], parts[1], parts[2])
        if len(parts) == 4:
            return cls(parts[0], parts[1], parts[2], parts[3])
        raise InvalidIdentifier(f"client identifier {text!r} must have 3 or 4 parts")

    def __str__(self) -> str:
        base = f"{self.instance}/{self.member_class}/{self.member_code}"
        return base if self.subsystem is None else f"{base}/{self.subsystem}"


@dataclass(frozen=True, slots=True, order=True)
class ServiceId:
    """A service: ``INSTANCE/CLASS/MEMBERCODE/SUBSYSTEM/SERVICECODE[/VERSION]``.

    X-Road also allows services of a member without a subsystem; `provider` may therefore be
    a member-level `ClientId`.
    """

    provider: ClientId
    service_code: str
    service_version: str | None = None
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    object_type: ClassVar[str] = "SERVICE"

    def __post_init__(self) -> None:
        check_part(self.service_code, "serviceCode")
        if self.service_version is not None:
            check_part(self.service_version, "serviceVersion")
        parts = (self.provider, self.service_code, self.service_version)
        object.__setattr__(self, "_hash", hash(parts))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not ServiceId:
            return NotImplemented
        assert isinstance(other, ServiceId)
        return self is other or (
            self._hash == other._hash
            and self.service_code == other.service_code
            and self.service_version == other.service_version
            and self.provider == other.provider
        )

    def __reduce__(self) -> tuple[type[ServiceId], tuple[ClientId, str, str | None]]:
        return ServiceId, (self.provider, self.service_code, self.service_version)

    @property
    def unversioned(self) -> ServiceId:
        """The same service without a version: the key access rights are granted on."""
        return ServiceId(self.provider, self.service_code, None)

    @classmethod
    def parse(cls, text: str) -> ServiceId:
        """Parse ``INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICECODE[/VERSION]``."""
        parts = text.split("/")
        if len(parts) == 5:
            return cls(ClientId(*parts[:4]), parts[4])
        if len(parts) == 6:
            return cls(ClientId(*parts[:4]), parts[4], parts[5])
        raise InvalidIdentifier(f"service identifier {text!r} must have 5 or 6 parts")

    def __str__(self) -> str:
        base = f"{self.provider}/{self.service_code}"
        return base if self.service_version is None else f"{base}/{self.service_version}"
