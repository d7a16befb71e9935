"""Crash safety (SPEC 8): SIGKILL `obmin serve` under load; every answered exchange is logged.

A real gateway process and a real example provider process on loopback. Eight clients send
plain X-Road SOAP requests for about two seconds and keep the message id of every answer
they receive; the gateway is killed with SIGKILL mid-load and started again on the same
audit database. Each answered message id must have both its request and its response
record, and the whole log (leaves, tree, signed checkpoints) must verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from lxml import etree

from adapters.client import build_soap_request
from gateway.audit import open_audit_store, verify_log_cli
from gateway.settings import load_settings
from registry.identifiers import ClientId, ServiceId
from tests.gateway.conftest import CLIENT_MEMBER, PROVIDER, registry_for
from tests.support import free_port

NS = "http://registry.example.gov.ua/person"
CLIENT = ClientId.parse(f"{CLIENT_MEMBER}/PLAIN")
SERVICE = ServiceId(ClientId.parse(PROVIDER), "getPerson", "v1")
CLIENTS = 8
LOAD_SECONDS = 2.0


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20) -> bytes:
    """Wait until ``url`` answers (any status); its body."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            return bytes(exc.read())  # it answered
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


@contextlib.asynccontextmanager
async def example_provider() -> AsyncIterator[str]:
    """The example provider in a process of its own on a free port: its URL once it answers."""
    port = free_port()
    process = _start(["example-provider", "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(_wait_http, f"{url}/", process)
        yield url
    finally:
        _stop(process)


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OBMIN_LOG_LEVEL": "warning"},
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def _request(message_id: str) -> bytes:
    body = etree.Element(f"{{{NS}}}getPerson", nsmap={"p": NS})
    etree.SubElement(body, f"{{{NS}}}rnokpp").text = "1234567890"
    envelope = build_soap_request(CLIENT, SERVICE, body, message_id=message_id)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


async def _drive(url: str, gateway: subprocess.Popen[bytes]) -> tuple[set[str], int]:
    """Load from `CLIENTS` clients; SIGKILL the gateway midway. (answered ids, faults)."""
    answered: set[str] = set()
    faults = 0
    stop_at = time.monotonic() + LOAD_SECONDS
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    timeout = aiohttp.ClientTimeout(total=5)

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal faults
        for i in range(100_000):  # bounded; the clock ends it long before
            if time.monotonic() >= stop_at:
                return
            message_id = f"crash-{n}-{i}-{uuid.uuid4()}"
            try:
                async with session.post(url, data=_request(message_id), headers=headers) as reply:
                    data = await reply.read()
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.01)  # the gateway is gone; keep trying until the end
                continue
            if reply.status == 200 and b"Fault" not in data and b"rnokpp" in data:
                answered.add(message_id)
            else:
                faults += 1

    async def killer() -> None:
        await asyncio.sleep(LOAD_SECONDS / 2)
        gateway.send_signal(signal.SIGKILL)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(killer(), *(client(session, n) for n in range(CLIENTS)))
    return answered, faults


def _config(tmp_path: Path, dev_pki: Path, provider_url: str) -> tuple[Path, str, str]:
    registry: dict[str, Any] = registry_for(dev_pki / "ca" / "ca.crt", provider_url)
    registry["members"][0]["subsystems"].append({"code": "PLAIN", "auth": "none"})
    registry["access"][0]["clients"].append(str(CLIENT))
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    client_port, admin_port = free_port(), free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "client": {"port": client_port},
                "admin": {"port": admin_port},
                "registry_dir": str(registry_dir),
                "allow_unauthenticated_clients": True,
                "keys": {
                    "signing_certificate": str(dev_pki / "gateway" / "sign.crt"),
                    "signing_key": str(dev_pki / "gateway" / "sign.key"),
                    "log_key": str(dev_pki / "gateway" / "log.key"),
                },
                "audit": {"path": str(tmp_path / "audit.db"), "checkpoint_every_records": 200},
            }
        ),
        encoding="utf-8",
    )
    return config, f"http://127.0.0.1:{client_port}/", f"http://127.0.0.1:{admin_port}"


async def _missing_records(config: Path, answered: set[str]) -> list[str]:
    """Answered message ids lacking a request or a response record."""
    store = await open_audit_store(load_settings(config).audit, read_only=True)
    missing = []
    try:
        for message_id in sorted(answered):
            records = await store.query(message_id=message_id, limit=10)
            directions = sorted(record.direction for record in records)
            if directions != ["request", "response"]:
                missing.append(f"{message_id}: {directions}")
    finally:
        await store.close()
    return missing


async def test_sigkill_under_load_loses_no_answered_exchange(dev_pki: Path, tmp_path: Path) -> None:
    async with example_provider() as provider_url:
        gateway: subprocess.Popen[bytes] | None = None
        try:
            config, client_url, admin_url = _config(tmp_path, dev_pki, provider_url)
            gateway = _start(["serve", "-c", str(config)])
            await asyncio.to_thread(_wait_http, f"{admin_url}/readyz", gateway)

            answered, faults = await _drive(client_url, gateway)
            assert gateway.wait(timeout=10) == -signal.SIGKILL
            assert faults == 0
            assert len(answered) >= 20, "too little load reached the gateway before the kill"

            gateway = _start(["serve", "-c", str(config)])  # same config, same audit database
            ready = await asyncio.to_thread(_wait_http, f"{admin_url}/readyz", gateway)
            assert json.loads(ready)["ready"] is True  # it reopened the log it was killed over

            assert await _missing_records(config, answered) == []
            status, text = await asyncio.to_thread(verify_log_cli, load_settings(config))
            assert status == 0, text
        finally:
            if gateway is not None:
                _stop(gateway)
