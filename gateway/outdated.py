"""Whether the registry in force is outdated: SPEC 3.5 ``Server.ClientProxy.OutdatedRegistry``.

The registry is what the integration engineers' files say. When a reload refuses the files
(invalid), the registry in force stays, and from then on it no longer says what the files
say: an access right revoked in them is still granted. X-Road stops serving when its global
configuration is too old; obmin's counterpart is ``registry_max_outdated_seconds``. Once the
files have been refused for longer than that, every exchange is refused with
``OutdatedRegistry`` (HTTP 503 for REST), and ``/readyz`` answers 503, until a reload
succeeds. Unset (the default), the gateway keeps serving the registry in force, and
``/readyz`` and the reload metric say that the files were refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.errors import GatewayError

__all__ = ["OutdatedRegistry", "RegistryFreshness"]


class OutdatedRegistry(GatewayError):
    """The registry in force has been out of step with its files for too long."""

    code = "OutdatedRegistry"


class RegistryFreshness:
    """Since when the registry files have been refused, and how long that may last.

    One per gateway, carried from environment to environment across reloads.
    """

    def __init__(self, max_outdated: timedelta | None = None) -> None:
        self.max_outdated = max_outdated
        self.refused_since: datetime | None = None

    def refused(self, at: datetime) -> None:
        """A reload refused the files at ``at`` (the first refusal since a success counts)."""
        if self.refused_since is None:
            self.refused_since = at

    def loaded(self) -> None:
        """A reload put the files in force: the registry is up to date again."""
        self.refused_since = None

    def outdated(self, now: datetime) -> bool:
        """Whether exchanges must be refused at ``now``."""
        try:
            self.check(now)
        except OutdatedRegistry:
            return True
        return False

    def check(self, now: datetime) -> None:
        """Raise `OutdatedRegistry` when the registry is outdated at ``now``."""
        limit, since = self.max_outdated, self.refused_since
        if limit is not None and since is not None and now - since > limit:
            raise OutdatedRegistry(
                f"the registry in force is outdated: its files have been refused since"
                f" {since.isoformat()} (registry_max_outdated_seconds {limit.total_seconds():g});"
                " exchanges are refused until a reload succeeds"
            )
