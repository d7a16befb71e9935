"""SPEC 12 P4: a 200 MB REST body passes with the gateway's peak RSS growing by < 64 MB.

Runs the gateway and a provider as separate processes, warms the gateway up with small
requests, then streams one large body through it and reads the gateway's peak RSS (VmHWM)
before and after. Usage: ``python bench/rest_large_body.py [SIZE_MB] [POLICY]``: POLICY is
the service's audit body policy (``digest`` by default; ``plain`` or ``encrypted`` store
bodies up to ``audit.max_stored_body_bytes``, so the large one keeps its digest only while
the warm-up bodies are stored, sealed under ``encrypted``).
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.common import free_port, gateway_process, peak_rss_mb, rss_mb, wait_http
from gateway.audit import write_body_key

CHUNK = 1024 * 1024


def _provider(port: int) -> None:
    async def sink(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    app = web.Application(client_max_size=1 << 40)
    app.router.add_route("*", "/{tail:.*}", sink)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def _body(size: int) -> AsyncIterator[bytes]:
    block = b"x" * CHUNK
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece


async def _send(url: str, size: int) -> dict[str, object]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        headers = {
            "X-Road-Client": "BENCH/GOV/1/CLIENT",
            "Content-Type": "application/octet-stream",
        }
        async with session.post(url, data=_body(size), headers=headers) as response:
            result: dict[str, object] = await response.json()
            assert response.status == 200, result
            return result


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    policy = sys.argv[2] if len(sys.argv) > 2 else "digest"
    size = size_mb * 1024 * 1024
    port = free_port()
    provider = multiprocessing.Process(target=_provider, args=(port,), daemon=True)
    provider.start()
    wait_http(f"http://127.0.0.1:{port}/ready")
    registry = {
        "instance": "BENCH",
        "trust_anchors": [{"name": "ca", "certificate": "@CA@"}],
        "members": [
            {
                "id": "BENCH/GOV/1",
                "name": "bench",
                "subsystems": [{"code": "CLIENT", "auth": "none"}, {"code": "SINK"}],
            }
        ],
        "services": [
            {
                "provider": "BENCH/GOV/1/SINK",
                "code": "sink",
                "type": "rest",
                "url": f"http://127.0.0.1:{port}/sink",
                "timeout": {"total": 600},
                "audit_body": policy,
            }
        ],
        "access": [
            {"provider": "BENCH/GOV/1/SINK", "service": "sink", "clients": ["BENCH/GOV/1/CLIENT"]}
        ],
    }
    settings: dict[str, object] = {
        "limits": {"max_request_bytes": size + 1, "max_response_bytes": 1 << 20}
    }
    keys = tempfile.TemporaryDirectory(prefix="obmin-bench-keys-")
    if policy == "encrypted":
        write_body_key(Path(keys.name) / "k1.key")
        settings["audit"] = {"body_keys": {"current": "k1", "keys": {"k1": f"{keys.name}/k1.key"}}}
    try:
        with gateway_process(registry, settings=settings) as deployment:
            url = f"{deployment.client_url}/r1/BENCH/GOV/1/SINK/sink/upload"
            for _ in range(20):  # warm up: imports, pools, first audit writes
                asyncio.run(_send(url, 64 * 1024))
            pid = deployment.gateway.pid
            before_peak, before_rss = peak_rss_mb(pid), rss_mb(pid)
            started = time.perf_counter()
            result = asyncio.run(_send(url, size))
            elapsed = time.perf_counter() - started
            after_peak = peak_rss_mb(pid)
            expected = hashlib.sha256(b"x" * size).hexdigest() if size_mb <= 512 else None
            assert result["size"] == size
            assert expected is None or result["sha256"] == expected
            print(f"audit body policy: {policy}")
            print(f"body: {size_mb} MiB in {elapsed:.1f} s ({size_mb / elapsed:.0f} MiB/s)")
            print(f"gateway RSS before: {before_rss:.1f} MiB, peak before: {before_peak:.1f} MiB")
            print(
                f"gateway peak RSS after: {after_peak:.1f} MiB; growth "
                f"{after_peak - before_peak:.1f} MiB (target < 64 MiB)"
            )
    finally:
        provider.terminate()
        keys.cleanup()


if __name__ == "__main__":
    main()
