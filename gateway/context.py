"""The long-lived things an exchange needs, passed explicitly (no globals).

`ExchangeEnv` is frozen and built once per registry snapshot: an exchange takes the env that
was current when it started and keeps it to the end, so a reload never changes the rules in
the middle of an exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from cryptography.x509 import Certificate

from gateway.audit import AuditStore, BodyStorage
from gateway.breaker import BreakerBoard
from gateway.metrics import GatewayMetrics
from gateway.outdated import RegistryFreshness
from gateway.provider_tls import ProviderTls
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.soap.xml import XmlLimits
from registry import Registry
from security import SigningKey, TrustStore
from security.replay import ReplayCache
from security.revocation import RevocationChecker

__all__ = ["ExchangeEnv", "GatewaySigner"]


@dataclass(frozen=True, slots=True)
class GatewaySigner:
    """The gateway's own signing key and certificate (signs responses)."""

    key: SigningKey
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class ExchangeEnv:
    """Everything one exchange reads: settings, registry snapshot, trust, stores, keys."""

    settings: Settings
    registry: Registry
    trust: TrustStore
    audit: AuditStore
    session: aiohttp.ClientSession
    signer: GatewaySigner
    limits: XmlLimits
    max_clock_skew: timedelta
    metrics: GatewayMetrics
    revocation: RevocationChecker
    replay: ReplayCache
    rate_limiter: RateLimiter
    # Decrypts provider TLS client keys (keys.passphrase_*); kept out of repr and logs.
    key_passphrase: bytes | None = field(default=None, repr=False)
    # Per-service circuit breakers; a reload's new environment keeps the same board.
    breakers: BreakerBoard = field(default_factory=BreakerBoard)
    # How bodies are kept under policies plain and encrypted (keyring, size cap).
    bodies: BodyStorage = field(default_factory=BodyStorage)
    # TLS contexts towards providers, per snapshot: a reload starts a new set (files re-read).
    provider_tls: ProviderTls = field(default_factory=ProviderTls)
    # Since when reloads have refused the registry files; a reload's new env keeps it.
    freshness: RegistryFreshness = field(default_factory=RegistryFreshness)
