"""Prometheus metrics of one gateway process, on a registry of its own (no global state).

Under ``obmin serve --workers N`` the supervisor gives every worker the same
``PROMETHEUS_MULTIPROC_DIR``: prometheus_client then keeps each process's values in files
there, and the primary's ``/metrics`` adds up every worker's counters and histograms (gauges:
the largest or smallest value among the running workers, as each one says).
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["MULTIPROCESS_DIR_VARIABLE", "GatewayMetrics"]

# Read by prometheus_client when it is imported: set before the process starts.
MULTIPROCESS_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics:
    """The metrics SPEC 10 names, created once per gateway and passed explicitly."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.exchanges = Counter(
            "obmin_exchanges",
            "Exchanges by client, service, protocol and outcome (ok or the fault code).",
            ["client", "service", "protocol", "outcome"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "obmin_stage_seconds",
            "Time spent in each pipeline stage.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.exchange_seconds = Histogram(
            "obmin_exchange_seconds",
            "Time from request received to answer ready.",
            ["protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audit_commit_seconds = Histogram(
            "obmin_audit_commit_seconds",
            "Time until an audit append was durable.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audit_timestamps = Counter(
            "obmin_audit_timestamps",
            "RFC 3161 timestamp attempts on checkpoints by outcome (ok or the error code).",
            ["outcome"],
            registry=self.registry,
        )
        self.audit_timestamp_failing = Gauge(
            "obmin_audit_timestamp_failing",
            "1 while the newest checkpoint's timestamp failed and is being retried.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.registry_reloads = Counter(
            "obmin_registry_reloads",
            "Registry reloads by outcome (ok or refused).",
            ["outcome", "trigger"],
            registry=self.registry,
        )
        self.registry_reload_failing = Gauge(
            "obmin_registry_reload_failing",
            "1 while the last reload was refused and an older registry stays in force.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.registry_services = Gauge(
            "obmin_registry_services",
            "Services in the registry in force.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.certificate_days_left = Gauge(
            "obmin_certificate_days_to_expiry",
            "Days until the gateway's certificates expire.",
            ["certificate"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )

    def count_exchange(
        self,
        client: object | None,
        service: object | None,
        protocol: str,
        outcome: str,
        seconds: float,
    ) -> None:
        """Count one finished exchange. ``client`` and ``service`` must be what the registry
        vouches for (an authenticated client, a resolved service), never header values, so
        that nobody can mint label values."""
        self.exchanges.labels(
            client=str(client) if client is not None else "unauthenticated",
            service=str(service) if service is not None else "unresolved",
            protocol=protocol,
            outcome=outcome,
        ).inc()
        self.exchange_seconds.labels(protocol=protocol).observe(seconds)

    def count_timestamp(self, outcome: str) -> None:
        """Count one checkpoint timestamp attempt: ``ok`` or the error's code."""
        self.audit_timestamps.labels(outcome=outcome).inc()
        self.audit_timestamp_failing.set(0 if outcome == "ok" else 1)

    def render(self) -> bytes:
        """The metrics in the Prometheus text exposition format: this process's, or every
        worker's under ``obmin serve --workers N``."""
        directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
        if directory:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
