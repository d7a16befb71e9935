"""The running gateway signs checkpoints of its audit log with the key ``obmin pki init``
made, and the log it leaves behind verifies (SPEC 8, tamper evidence)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import load_log_key, verify_log, verify_log_cli
from gateway.server import create_client_app
from gateway.settings import Settings
from security import PkiLayout
from tests.conformance.conftest import base_registry
from tests.conformance.test_xroad_proxy_vectors import QUERIES, VECTORS
from tests.support import ProviderBehaviour, provider_app

pytestmark = pytest.mark.skipif(
    not VECTORS.is_dir(), reason=f"X-Road proxy test vectors not found at {VECTORS}"
)


def _checkpoints(db: Path) -> list[int]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT tree_size FROM checkpoints ORDER BY tree_size").fetchall()
    raw.close()
    return [size for (size,) in rows]


async def _gateway_settings(
    dev_pki: Path, tmp_path: Path, aiohttp_server: Callable[..., Any], audit: dict[str, Any]
) -> Settings:
    """Settings of a gateway in front of a real provider, with the log key and ``audit``."""
    behaviour = ProviderBehaviour(body=(QUERIES / "getstate.answer").read_bytes())
    provider: TestServer = await aiohttp_server(provider_app(behaviour))
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry = base_registry(dev_pki / "ca" / "ca.crt", str(provider.make_url("")).rstrip("/"))
    (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    return Settings.model_validate(
        {
            "registry_dir": registry_dir,
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
                "log_key": dev_pki / "gateway" / "log.key",
            },
            "audit": {"origin": "gateway.test/ee", **audit},
            "allow_unauthenticated_clients": True,
        }
    )


def test_pki_init_writes_an_ed25519_log_key(dev_pki: Path) -> None:
    layout = PkiLayout(dev_pki)
    assert layout.log_key == dev_pki / "gateway" / "log.key"
    assert stat.S_IMODE(os.stat(layout.log_key).st_mode) == 0o600
    assert layout.log_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(load_log_key(layout.log_key), Ed25519PrivateKey)


async def test_the_gateway_checkpoints_its_log_and_the_log_verifies(
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    db = tmp_path / "audit.db"
    settings = await _gateway_settings(
        dev_pki,
        tmp_path,
        aiohttp_server,
        {"path": db, "checkpoint_every_records": 4, "checkpoint_interval_seconds": 60},
    )
    client = await aiohttp_client(create_client_app(settings))
    request = (QUERIES / "getstate.query").read_bytes()
    for _ in range(3):
        response = await client.post("/", data=request, headers={"Content-Type": "text/xml"})
        assert response.status == 200
        await response.read()
    for _ in range(500):  # every 4 records: a checkpoint signed in the background
        if _checkpoints(db)[-1:] >= [4]:
            break
        await asyncio.sleep(0.01)
    assert _checkpoints(db)[0] == 0 and max(_checkpoints(db)) >= 4

    await client.close()  # shutdown: a final checkpoint covers every record
    assert _checkpoints(db)[-1] == 6
    status, text = verify_log_cli(settings)
    assert status == 0, text
    public = load_log_key(dev_pki / "gateway" / "log.key").public_key()
    report = verify_log(db, public, "gateway.test/ee", "gateway.test/ee")
    assert (report.records, report.covered) == (6, 6)


async def test_the_gateway_archives_old_records_in_the_background(
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    db, archive_dir = tmp_path / "audit.db", tmp_path / "archive"
    settings = await _gateway_settings(
        dev_pki,
        tmp_path,
        aiohttp_server,
        {
            "path": db,
            "checkpoint_every_records": 2,
            "checkpoint_interval_seconds": 0.1,
            "retention_max_age_days": 0.2 / 86400,  # records older than 0.2 s
            "retention_interval_seconds": 0.1,
            "archive_dir": archive_dir,
        },
    )
    client = await aiohttp_client(create_client_app(settings))
    request = (QUERIES / "getstate.query").read_bytes()
    for _ in range(3):
        response = await client.post("/", data=request, headers={"Content-Type": "text/xml"})
        assert response.status == 200
        await response.read()
    for _ in range(500):  # the owned retention task archives them within a few intervals
        if sorted(archive_dir.glob("*.archive.db")) and _kept(db) == 0:
            break
        await asyncio.sleep(0.02)
    assert _kept(db) == 0, "the records did not leave the database"
    response = await client.post("/", data=request, headers={"Content-Type": "text/xml"})
    assert response.status == 200  # the gateway goes on logging after retention
    await response.read()
    await client.close()
    status, text = verify_log_cli(settings, archives=archive_dir)
    assert status == 0, text
    assert "pieces form one log of 8 records" in text


def _kept(db: Path) -> int:
    with sqlite3.connect(db) as raw:
        (count,) = raw.execute("SELECT count(*) FROM records").fetchone()
    raw.close()
    return int(count)
