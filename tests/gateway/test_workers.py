"""``obmin serve --workers 2`` (SPEC 10): real processes behind one client port.

The supervisor starts two workers that bind the client port with SO_REUSEPORT. Every test
connection is a new one, so the kernel spreads them over both workers. Checked here:
- both workers answer;
- a signed message replayed to both is accepted once (the replay cache is in Redis);
- a worker killed is started again;
- a reload asked on the admin port reaches every worker;
- SIGTERM stops the workers in order, and the shared log verifies, its final checkpoint
  covering every record.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from lxml import etree

from adapters.client import build_soap_request
from gateway.audit import open_audit_store, verify_log_cli
from gateway.settings import load_settings
from registry.identifiers import ClientId
from security import IssuedCert, load_certificate, load_private_key, sign_soap
from tests.audit.test_crash import _config, _start, _stop, _wait_http, example_provider
from tests.gateway.conftest import CLIENT_MEMBER, registry_for
from tests.gateway.test_signed_exchange import SERVICE, _body
from tests.postgres import PostgresLog, postgres_log
from tests.support import redis_up

__all__ = ["postgres_log"]  # the fixture, for the PostgreSQL run

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc (Linux)"
)

CLIENT = ClientId.parse(f"{CLIENT_MEMBER}/CLIENT")
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _cpu_ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12])


async def _workers(supervisor: subprocess.Popen[bytes], count: int) -> list[int]:
    for _ in range(200):
        assert supervisor.poll() is None, f"the supervisor exited with {supervisor.returncode}"
        pids = _children(supervisor.pid)
        if len(pids) == count:
            return pids
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} workers did not start")


class Signer:
    def __init__(self, cert: IssuedCert) -> None:
        self.key = load_private_key(cert.key_path)
        self.certificate = load_certificate(cert.cert_path)

    def message(self) -> bytes:
        envelope = build_soap_request(CLIENT, SERVICE, _body(), message_id=str(uuid.uuid4()))
        signed = sign_soap(
            envelope, key=self.key, certificate=self.certificate, now=datetime.now(UTC)
        )
        return bytes(etree.tostring(signed))


async def _send(url: str, data: bytes) -> str | None:
    """POST on a new connection; the fault code (None: answered)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=data, headers=HEADERS) as reply,
    ):
        return etree.fromstring(await reply.read()).findtext(".//faultcode")


@pytest.fixture(params=["sqlite", "postgres"])
def audit_store(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """The audit settings the workers share (None: the SQLite file of `_config`)."""
    if request.param == "postgres":
        log: PostgresLog = request.getfixturevalue("postgres_log")
        return {"store": "postgres", "dsn": log.dsn, "postgres_schema": log.schema}
    return None


async def test_two_workers_share_the_port_the_log_and_the_replay_cache(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    audit_store: dict[str, Any] | None,
) -> None:
    if not redis_up():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (workers share it)")
    async with example_provider() as provider_url:
        supervisor: subprocess.Popen[bytes] | None = None
        try:
            config, client_url, admin_url = _config(tmp_path, dev_pki, provider_url)
            settings = yaml.safe_load(config.read_text())
            settings["shared_state"] = {"backend": "redis", "key_prefix": f"t-{uuid.uuid4()}:"}
            if audit_store is not None:
                settings["audit"].update(audit_store)
            settings["admin_tokens"] = [
                {
                    "name": "ops",
                    "roles": ["admin"],
                    "sha256": hashlib.sha256(b"workers-token").hexdigest(),
                }
            ]
            config.write_text(yaml.safe_dump(settings))
            registry_file = tmp_path / "registry" / "registry.yaml"
            registry = registry_for(dev_pki / "ca" / "ca.crt", provider_url)
            registry_file.write_text(yaml.safe_dump(registry))
            supervisor = _start(["serve", "-c", str(config), "--workers", "2"])
            await asyncio.to_thread(_wait_http, f"{admin_url}/readyz", supervisor)
            primary, secondary = await _workers(supervisor, 2)
            signer = Signer(member_certs["client"])

            # Both workers answer: 40 new connections, each spent by the one that accepted it.
            before = {pid: _cpu_ticks(pid) for pid in (primary, secondary)}
            faults = [await _send(client_url, signer.message()) for _ in range(40)]
            assert faults == [None] * 40
            used = {pid: _cpu_ticks(pid) - ticks for pid, ticks in before.items()}
            assert all(ticks >= 3 for ticks in used.values()), used  # 30 ms of CPU each at least
            # The primary's /metrics counts both workers' exchanges.
            async with aiohttp.ClientSession() as session:
                text = await (await session.get(f"{admin_url}/metrics")).text()
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("obmin_exchanges_total{") and 'outcome="ok"' in line
            )
            assert counted == 40, text
            assert re.search(r"^obmin_registry_services 1\.0$", text, re.M), text

            # One signed message sent ten times on ten connections: accepted once, whoever got it.
            message = signer.message()
            faults = [await _send(client_url, message) for _ in range(10)]
            assert faults == [None] + ["Client.ReplayedMessage"] * 9, faults

            # A worker that dies is started again; the gateway keeps answering meanwhile.
            os.kill(secondary, signal.SIGKILL)
            await asyncio.sleep(0.3)
            assert await _send(client_url, signer.message()) is None
            pids = await _workers(supervisor, 2)
            assert primary in pids and secondary not in pids
            secondary = next(pid for pid in pids if pid != primary)

            # A reload asked on the admin port puts the new rights in force in every worker.
            registry["access"][0]["clients"] = [f"{CLIENT_MEMBER}/WSCLIENT"]
            registry_file.write_text(yaml.safe_dump(registry))
            async with aiohttp.ClientSession() as session:
                reply = await session.post(
                    f"{admin_url}/admin/v1/registry/reload",
                    headers={"Authorization": "Bearer workers-token"},
                )
                assert reply.status == 200, await reply.text()
            denied = "Server.ServerProxy.AccessDenied"
            deadline = time.monotonic() + 10
            while True:  # the secondary reloads on the supervisor's signal, moments later
                faults = [await _send(client_url, signer.message()) for _ in range(20)]
                if faults == [denied] * 20 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert faults == [denied] * 20, faults

            supervisor.send_signal(signal.SIGTERM)
            assert supervisor.wait(timeout=60) == 0
            assert not _alive(primary) and not _alive(secondary)
            store = await open_audit_store(load_settings(config).audit, read_only=True)
            try:
                latest = await store.latest_checkpoint()
                records = await store.count()
            finally:
                await store.close()
            assert latest is not None and latest.checkpoint.size == records  # the primary's last
            code, text = await asyncio.to_thread(verify_log_cli, load_settings(config))
            assert code == 0, text
        finally:
            if supervisor is not None:
                _stop(supervisor)


def test_several_workers_need_shared_state_in_redis(dev_pki: Path, tmp_path: Path) -> None:
    config, _, _ = _config(tmp_path, dev_pki, "http://127.0.0.1:9")
    for workers, message in (
        ("2", "--workers 2: shared_state.backend must be redis (it is memory)"),
        ("0", "--workers 0: give a number from 1 to 64"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config), "--workers", workers],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0
        assert message in done.stderr, done.stderr


def test_workers_that_keep_exiting_stop_the_gateway(dev_pki: Path, tmp_path: Path) -> None:
    """The client port is taken by another program: each worker exits at start, is started
    again, and after `CRASH_LIMIT` exits the supervisor gives up with status 1."""
    if not redis_up():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (workers share it)")
    config, client_url, _ = _config(tmp_path, dev_pki, "http://127.0.0.1:9")
    settings = yaml.safe_load(config.read_text())
    settings["shared_state"] = {"backend": "redis", "key_prefix": f"t-{uuid.uuid4()}:"}
    config.write_text(yaml.safe_dump(settings))
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody else may bind the port
        taken.bind(("127.0.0.1", int(client_url.rsplit(":", 1)[1].rstrip("/"))))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "worker keeps exiting; stopping the gateway" in done.stderr
