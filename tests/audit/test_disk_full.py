"""A full disk under the SQLite audit log (SPEC 8, 11): `obmin serve` fails closed and recovers.

A real gateway process writes its log while the kernel refuses to let it grow any file past a
few kilobytes (``RLIMIT_FSIZE``, set on the running process with ``prlimit``). To SQLite this
is a disk that is full: writes past the limit fail with EFBIG. Appends then fail, and the
exchanges are refused with ``Server.ClientProxy.LoggingFailed`` while ``/readyz`` says the
store cannot be written. Then the limit is lifted, which is the disk freed: without a restart
the gateway answers again, and the log, checkpoints included, verifies.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from gateway.audit import verify_log_cli
from gateway.settings import load_settings
from tests.audit.test_crash import (
    _config,
    _missing_records,
    _request,
    _start,
    _stop,
    _wait_http,
    example_provider,
)

pytestmark = pytest.mark.skipif(
    not hasattr(resource, "prlimit"), reason="needs prlimit(2) (Linux) to fill the disk"
)

FULL = 8192  # bytes: the largest size any file of the gateway may grow to while "full"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


def _readyz(admin_url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{admin_url}/readyz", timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _call(session: aiohttp.ClientSession, url: str) -> tuple[str, str | None]:
    """Send one request; its message id and fault code (None: answered)."""
    message_id = f"full-{uuid.uuid4()}"
    async with session.post(url, data=_request(message_id), headers=HEADERS) as reply:
        data = await reply.read()
    assert reply.status == 200, data
    return message_id, etree.fromstring(data).findtext(".//faultcode")


async def test_a_full_disk_fails_closed_and_the_gateway_recovers_when_it_is_freed(
    dev_pki: Path, tmp_path: Path
) -> None:
    async with example_provider() as provider_url:
        gateway: subprocess.Popen[bytes] | None = None
        try:
            config, client_url, admin_url = _config(tmp_path, dev_pki, provider_url)
            gateway = _start(["serve", "-c", str(config)])
            await asyncio.to_thread(_wait_http, f"{admin_url}/readyz", gateway)
            answered: set[str] = set()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                for _ in range(3):
                    message_id, fault = await _call(session, client_url)
                    assert fault is None
                    answered.add(message_id)

                soft, hard = resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE)
                resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE, (FULL, hard))  # disk full
                faults = []
                for _ in range(200):  # the WAL fills up within a few exchanges
                    message_id, fault = await _call(session, client_url)
                    if fault is None:
                        answered.add(message_id)
                    else:
                        faults.append(fault)
                        if len(faults) == 3:
                            break
                assert faults == ["Server.ClientProxy.LoggingFailed"] * 3
                status, ready = await asyncio.to_thread(_readyz, admin_url)
                assert status == 503 and ready["ready"] is False, ready
                assert gateway.poll() is None  # still serving, refusing

                resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE, (soft, hard))  # space freed
                for _ in range(3):  # no restart: the next exchanges are logged and answered
                    message_id, fault = await _call(session, client_url)
                    assert fault is None
                    answered.add(message_id)
                status, ready = await asyncio.to_thread(_readyz, admin_url)
                assert status == 200 and ready["ready"] is True, ready

            gateway.send_signal(signal.SIGTERM)  # graceful: the final checkpoint is written
            assert gateway.wait(timeout=20) == 0
            assert await _missing_records(config, answered) == []
            code, text = await asyncio.to_thread(verify_log_cli, load_settings(config))
            assert code == 0, text
        finally:
            if gateway is not None:
                _stop(gateway)
