"""A fresh SQLite audit store per test, always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import SqliteAuditStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's audit database lives (its directory does not exist yet)."""
    return tmp_path / "log" / "audit.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteAuditStore]:
    """An open store with group commit, closed after the test."""
    audit = SqliteAuditStore(db_path)
    await audit.open()
    try:
        yield audit
    finally:
        await audit.close()


@pytest.fixture
def log_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 log key (what ``obmin pki init`` writes to ``gateway/log.key``)."""
    return Ed25519PrivateKey.generate()
