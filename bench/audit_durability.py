"""SPEC 12 P6: what the durable audit log (group commit, fsync) costs in gateway throughput.

Two gateways run side by side in one invocation, identical but for where the audit database
lives: a directory under /tmp on the normal filesystem (``disk``: every commit is fsynced to
the device) and one under /dev/shm (``ram``: a RAM disk, where fsync is nearly free). The
same load generator sends the same unsigned X-Road SOAP requests (the client subsystem has
``auth: none``, so no signature work dilutes the audit's share) to the same example provider
through each gateway in turn; rounds alternate between the two to spread any drift, and each
gateway's best round counts. Target: durable throughput at least 85 % of the RAM disk's.
Usage: ``python -m bench.audit_durability [REQUESTS] [CONCURRENCY] [ROUNDS]``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from lxml import etree

from adapters.client import build_soap_request
from adapters.example_provider import create_provider_app
from bench.common import Deployment, free_port, gateway_process, wait_http
from registry.identifiers import ClientId, ServiceId

NS = "http://registry.example.gov.ua/person"
CLIENT = ClientId("BENCH", "GOV", "12345678", "CLIENT")
SERVICE = ServiceId(ClientId("BENCH", "GOV", "87654321", "REGISTRY"), "getPerson", "v1")
RAM_DISK = Path("/dev/shm")
DISK = Path("/tmp")
TARGET = 0.85  # durable throughput / RAM-disk throughput


def _provider(port: int) -> None:
    web.run_app(create_provider_app(), host="127.0.0.1", port=port, print=None)


def _registry(upstream: str) -> dict[str, Any]:
    return {
        "instance": "BENCH",
        "trust_anchors": [{"name": "ca", "certificate": "@CA@"}],
        "members": [
            {
                "id": "BENCH/GOV/12345678",
                "name": "client",
                "subsystems": [{"code": "CLIENT", "auth": "none"}],
            },
            {"id": "BENCH/GOV/87654321", "name": "provider", "subsystems": [{"code": "REGISTRY"}]},
        ],
        "services": [
            {
                "provider": "BENCH/GOV/87654321/REGISTRY",
                "code": "getPerson",
                "version": "v1",
                "type": "soap",
                "url": upstream,
            }
        ],
        "access": [
            {
                "provider": "BENCH/GOV/87654321/REGISTRY",
                "service": "getPerson",
                "clients": ["BENCH/GOV/12345678/CLIENT"],
            }
        ],
    }


def _messages(count: int) -> list[bytes]:
    """``count`` distinct 1 KB requests (fresh message ids)."""
    messages = []
    for i in range(count):
        body = etree.Element(f"{{{NS}}}getPerson", nsmap={"p": NS})
        etree.SubElement(body, f"{{{NS}}}rnokpp").text = "1234567890"
        etree.SubElement(body, f"{{{NS}}}note").text = "x" * 300
        envelope = build_soap_request(CLIENT, SERVICE, body, message_id=f"p6-{i}-{uuid.uuid4()}")
        messages.append(bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")))
    return messages


@dataclass(frozen=True, slots=True)
class Result:
    """One timed run: requests answered, wall time and per-request latencies (seconds)."""

    name: str
    requests: int
    seconds: float
    latencies: tuple[float, ...]

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    def line(self) -> str:
        """A one-line summary."""
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000
        p99 = lat[max(int(len(lat) * 0.99) - 1, 0)] * 1000
        return f"{self.name:5s} {self.rps:8.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"


async def _load(name: str, url: str, messages: list[bytes], concurrency: int) -> Result:
    latencies: list[float] = []
    queue = list(reversed(messages))
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                data = queue.pop()
                start = time.perf_counter()
                async with session.post(url, data=data, headers=headers) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - start)
                if response.status != 200 or b"Fault" in body:
                    raise RuntimeError(f"{name}: fault {body[:400]!r}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Result(name, len(messages), time.perf_counter() - started, tuple(latencies))


def _run(deployments: dict[str, Deployment], count: int, concurrency: int, rounds: int) -> None:
    for name, deployment in deployments.items():
        asyncio.run(_load(name, deployment.client_url + "/", _messages(300), concurrency))
    best: dict[str, Result] = {}
    for round_no in range(rounds):
        order = list(deployments) if round_no % 2 == 0 else list(reversed(deployments))
        for name in order:
            messages = _messages(count)
            url = deployments[name].client_url + "/"
            result = asyncio.run(_load(name, url, messages, concurrency))
            print(f"round {round_no + 1}: {result.line()}")
            if name not in best or result.rps > best[name].rps:
                best[name] = result
    disk, ram = best["disk"], best["ram"]
    print(f"{count} unsigned requests per round, concurrency {concurrency}, best of {rounds}:")
    print(f"  audit store on disk ({DISK}):      {disk.line()}")
    print(f"  audit store on RAM disk ({RAM_DISK}): {ram.line()}")
    ratio = disk.rps / ram.rps
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(
        f"P6 throughput disk / RAM disk: {ratio:.3f} (durable costs {(1 - ratio) * 100:.1f} %; "
        f"target: at most {(1 - TARGET) * 100:.0f} %, {verdict})"
    )


def main() -> None:
    """Run the benchmark; arguments: requests per round, concurrency, rounds."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    if not RAM_DISK.is_dir():
        raise SystemExit(f"no RAM disk at {RAM_DISK}")
    provider_port = free_port()
    provider = multiprocessing.Process(target=_provider, args=(provider_port,), daemon=True)
    provider.start()
    upstream = f"http://127.0.0.1:{provider_port}/soap"
    wait_http(f"http://127.0.0.1:{provider_port}/")  # any answer: it listens
    registry = _registry(upstream)
    try:
        with ExitStack() as stack:
            deployments = {}
            for name, parent in (("disk", DISK), ("ram", RAM_DISK)):
                base = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=parent)))
                deployments[name] = stack.enter_context(gateway_process(registry, directory=base))
            _run(deployments, count, concurrency, rounds)
    finally:
        provider.terminate()
        provider.join(timeout=10)


if __name__ == "__main__":
    main()
