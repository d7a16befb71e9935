"""Registry reload: validate first, then swap the whole environment at once.

A reload never edits the environment in force: it loads and validates the new registry in a
worker thread (loading 100,000 services takes seconds), builds a new `ExchangeEnv` and
replaces the reference. An exchange holds the env it started with, so it finishes under the
rules it began with. An invalid registry is refused; the one in force stays, and the refusal
is logged, counted and shown in ``/readyz``. So is a registry that the gateway's settings
cannot serve (`check_body_policies`: a service with body policy ``encrypted`` while no
``audit.body_keys`` are configured), which also stops the gateway from starting.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from gateway.audit import BodyStorage
from gateway.audit.bodies import services_needing_body_keys
from gateway.provider_tls import ProviderTls
from gateway.tls import trust_registry_certs
from registry import Registry, RegistryError, load_registry, registry_files
from security import TrustStore

if TYPE_CHECKING:
    from gateway.state import GatewayState

__all__ = ["ReloadOutcome", "check_body_policies", "reload_registry", "watch_registry"]

log = structlog.get_logger("obmin.registry")

Trigger = Literal["signal", "admin", "watch"]


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: ``ok`` with the new registry's digest, or the refusal."""

    ok: bool
    trigger: Trigger
    at: datetime
    digest: str | None = None
    error: str | None = None


def check_body_policies(registry: Registry, bodies: BodyStorage) -> None:
    """Refuse a registry whose services ask for body policy ``encrypted`` when no body keys
    are configured (fail closed: such a body would have nowhere safe to go); the
    `RegistryError` names the services."""
    if bodies.keyring is not None:
        return
    needing = services_needing_body_keys(registry.services.values())
    if not needing:
        return
    shown = ", ".join(needing[:5]) + (f" and {len(needing) - 5} more" if len(needing) > 5 else "")
    raise RegistryError(
        f"registry {registry.loaded_from}: audit_body encrypted needs audit.body_keys in the"
        f" gateway settings, and none are configured; services: {shown}"
    )


async def reload_registry(state: GatewayState, trigger: Trigger) -> ReloadOutcome:
    """Load the registry directory again and put it in force if it is valid."""
    async with state.reload_lock:
        env = state.env
        if env is None:
            return ReloadOutcome(False, trigger, datetime.now(UTC), error="gateway not started")
        try:
            registry: Registry = await asyncio.to_thread(load_registry, env.settings.registry_dir)
            check_body_policies(registry, env.bodies)
        except RegistryError as exc:
            outcome = ReloadOutcome(False, trigger, datetime.now(UTC), error=str(exc))
            env.freshness.refused(outcome.at)  # the registry in force no longer is the files'
            state.last_reload = outcome
            state.metrics.registry_reloads.labels(outcome="refused", trigger=trigger).inc()
            state.metrics.registry_reload_failing.set(1)
            log.exception("registry reload refused; the registry in force stays", trigger=trigger,
                      error=str(exc))  # fmt: skip
            return outcome
        # Re-read the env: nothing else replaces it (the lock), but be explicit about it.
        current = state.env
        if current is None:
            return ReloadOutcome(False, trigger, datetime.now(UTC), error="gateway stopped")
        state.env = dataclasses.replace(
            current,
            registry=registry,
            trust=TrustStore(registry.trust_anchors, registry.intermediates),
            provider_tls=ProviderTls(current.key_passphrase),  # replaced files read anew
        )
        if state.tls_context is not None:
            trust_registry_certs(state.tls_context, registry)
        outcome = ReloadOutcome(True, trigger, datetime.now(UTC), digest=registry.digest)
        current.freshness.loaded()
        state.last_reload = outcome
        state.metrics.registry_reloads.labels(outcome="ok", trigger=trigger).inc()
        state.metrics.registry_reload_failing.set(0)
        state.metrics.registry_services.set(registry.counts.services)
        log.info("registry reloaded", trigger=trigger, digest=registry.digest,
                 services=registry.counts.services)  # fmt: skip
        return outcome


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = registry_files(directory)
    except RegistryError:
        return ()
    stamps = []
    for file in files:
        try:
            info = file.stat()
        except OSError:
            continue
        stamps.append((str(file), info.st_mtime_ns, info.st_size))
    return tuple(stamps)


async def watch_registry(state: GatewayState, interval: float) -> None:
    """Reload whenever a registry file changes (polled every ``interval`` seconds)."""
    directory = state.settings.registry_dir
    seen = await asyncio.to_thread(_fingerprint, directory)
    while True:
        await asyncio.sleep(interval)
        current = await asyncio.to_thread(_fingerprint, directory)
        if current != seen:
            seen = current
            await reload_registry(state, "watch")
