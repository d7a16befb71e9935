"""SPEC 12 P1/P3: signed SOAP throughput and added latency, as ratios to baselines.

Three closed-loop runs with the same load generator, provider and messages, in one
invocation:
  direct   the load generator calls the provider itself (latency baseline);
  proxy    a bare aiohttp pass-through proxy in its own process (the Python ceiling, P1);
  obmin    the gateway: strict WS-Security verification, registry, durable audit with
           digest bodies, signed responses.
Then P3: an open-loop load at half of obmin's measured peak, sent to obmin and to the
provider directly; the latency added is the difference of their p50 and p99.
Each message is a distinct 2 KB request signed (RSA-2048, strict) before the run.
Usage: ``python -m bench.soap_throughput [REQUESTS] [CONCURRENCY] [WORKERS]``. With WORKERS
above 1 the gateway runs as ``obmin serve --workers WORKERS`` (replay state in the local
Redis) and a single-process gateway is measured too, as the baseline of that ratio; P1 itself
is defined for one worker process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from lxml import etree

from adapters.client import build_soap_request
from adapters.example_provider import create_provider_app
from bench.common import free_port, gateway_process, wait_http
from registry.identifiers import ClientId, MemberId, ServiceId
from security import issue_member_cert, load_certificate, load_private_key, sign_soap

NS = "http://registry.example.gov.ua/person"
CLIENT = ClientId("BENCH", "GOV", "12345678", "CLIENT")
_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
SERVICE = ServiceId(ClientId("BENCH", "GOV", "87654321", "REGISTRY"), "getPerson", "v1")


def _provider(port: int) -> None:
    web.run_app(create_provider_app(), host="127.0.0.1", port=port, print=None)


def _proxy(port: int, upstream: str) -> None:
    async def forward(request: web.Request) -> web.Response:
        session: aiohttp.ClientSession = request.app["session"]
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "text/xml")}
        async with session.post(upstream, data=body, headers=headers) as reply:
            data = await reply.read()
            return web.Response(body=data, status=reply.status, content_type="text/xml")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession()
        yield
        await app["session"].close()

    try:
        import uvloop  # the ceiling SPEC 12 names: aiohttp + uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/", forward)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000
        p99 = lat[int(len(lat) * 0.99) - 1] * 1000
        return f"{self.name:7s} {self.rps:8.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"


def _messages(pki_dir: object, count: int) -> list[bytes]:
    from pathlib import Path

    pki = Path(str(pki_dir))
    cert = issue_member_cert(pki, MemberId("BENCH", "GOV", "12345678"), name="Bench client")
    key, certificate = load_private_key(cert.key_path), load_certificate(cert.cert_path)
    messages = []
    for i in range(count):
        body = etree.Element(f"{{{NS}}}getPerson", nsmap={"p": NS})
        etree.SubElement(body, f"{{{NS}}}rnokpp").text = "1234567890"
        etree.SubElement(body, f"{{{NS}}}note").text = "x" * 600
        envelope = build_soap_request(CLIENT, SERVICE, body, message_id=f"bench-{i}-{uuid.uuid4()}")
        signed = sign_soap(envelope, key=key, certificate=certificate, now=datetime.now(UTC))
        messages.append(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
    return messages


async def _timed_post(session: aiohttp.ClientSession, name: str, url: str, data: bytes) -> float:
    """POST one message; the seconds until the whole answer was read (a fault stops the run)."""
    start = time.perf_counter()
    async with session.post(url, data=data, headers=_HEADERS) as response:
        body = await response.read()
    if b"faultcode" in body:
        raise RuntimeError(f"{name}: fault {body[:400]!r}")
    return time.perf_counter() - start


async def _load(name: str, url: str, messages: list[bytes], concurrency: int) -> Result:
    latencies: list[float] = []
    queue = list(reversed(messages))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                latencies.append(await _timed_post(session, name, url, queue.pop()))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Result(name, len(messages), time.perf_counter() - started, latencies)


async def _paced(name: str, url: str, messages: list[bytes], rate: float) -> Result:
    """Open-loop load: one request every 1/``rate`` seconds whatever the answers (SPEC P3 asks
    for latency at a given load, which a closed loop of N clients cannot hold)."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(data: bytes) -> None:
            latencies.append(await _timed_post(session, name, url, data))

        started = time.perf_counter()
        tasks = []
        for index, data in enumerate(messages):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(data)))
        await asyncio.gather(*tasks)
        return Result(name, len(messages), time.perf_counter() - started, latencies)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction) - 1)]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    provider_port, proxy_port = free_port(), free_port()
    procs = [multiprocessing.Process(target=_provider, args=(provider_port,), daemon=True)]
    upstream = f"http://127.0.0.1:{provider_port}/soap"
    procs.append(multiprocessing.Process(target=_proxy, args=(proxy_port, upstream), daemon=True))
    for proc in procs:
        proc.start()
    wait_http(f"http://127.0.0.1:{proxy_port}/ready")
    registry = {
        "instance": "BENCH",
        "trust_anchors": [{"name": "ca", "certificate": "@CA@"}],
        "members": [
            {"id": "BENCH/GOV/12345678", "name": "client", "subsystems": [{"code": "CLIENT"}]},
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
    try:
        with gateway_process(registry) as deployment:
            warm = _messages(deployment.pki, 200)
            messages = _messages(deployment.pki, count)
            size = sum(len(m) for m in messages) // len(messages)
            asyncio.run(_load("warmup", deployment.client_url + "/", warm, concurrency))
            direct = asyncio.run(_load("direct", upstream, messages, concurrency))
            proxy = asyncio.run(
                _load("proxy", f"http://127.0.0.1:{proxy_port}/", messages, concurrency)
            )
            messages = _messages(deployment.pki, count)  # fresh ids and timestamps
            obmin = asyncio.run(_load("obmin", deployment.client_url + "/", messages, concurrency))
            # P3: the latency obmin adds at half of its peak, against the provider at that rate.
            rate = obmin.rps / 2
            paced = _messages(deployment.pki, max(200, int(rate * 5)))  # about 5 s of load
            direct_half = asyncio.run(_paced("direct", upstream, paced, rate))
            paced = _messages(deployment.pki, len(paced))
            obmin_half = asyncio.run(_paced("obmin", deployment.client_url + "/", paced, rate))
        several = None
        if workers > 1:
            with gateway_process(registry, workers=workers) as deployment:
                warm = _messages(deployment.pki, 200)
                messages = _messages(deployment.pki, count)
                asyncio.run(_load("warmup", deployment.client_url + "/", warm, concurrency))
                several = asyncio.run(
                    _load(f"obmin x{workers}", deployment.client_url + "/", messages, concurrency)
                )
        print(f"{count} signed requests of {size} bytes, concurrency {concurrency}")
        for result in (direct, proxy, obmin, *([several] if several else [])):
            print(result.line())
        print(f"P1 throughput obmin / bare proxy: {obmin.rps / proxy.rps:.2f} (target >= 0.5)")
        if several is not None:
            print(
                f"{workers} workers / one process: {several.rps / obmin.rps:.2f};"
                f" {workers} workers / bare proxy: {several.rps / proxy.rps:.2f}"
            )
        added = statistics.median(obmin.latencies) - statistics.median(direct.latencies)
        print(
            f"median latency added at full load (concurrency {concurrency}): {added * 1000:.2f} ms"
        )
        print(f"P3 at half of obmin's peak ({rate:.0f} req/s, {len(paced)} requests, open loop):")
        for label, fraction, target in (("p50", 0.5, 1.0), ("p99", 0.99, 5.0)):
            gateway = _percentile(obmin_half.latencies, fraction) * 1000
            provider = _percentile(direct_half.latencies, fraction) * 1000
            print(
                f"  {label}: obmin {gateway:.2f} ms, provider directly {provider:.2f} ms,"
                f" added {gateway - provider:.2f} ms (target <= {target:g} ms)"
            )
    finally:
        for proc in procs:
            proc.terminate()


if __name__ == "__main__":
    main()
