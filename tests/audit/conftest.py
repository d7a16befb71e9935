"""Audit stores for the tests: SQLite, PostgreSQL, or each of them in turn.

`store` and `make_store` are parametrised over both stores, so a test that takes them is
the same test run against SQLite and against PostgreSQL (skipped, with the reason, when
PostgreSQL is unreachable). `db_path`, `sqlite_store`... are for SQLite-only tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import SqliteAuditStore
from gateway.audit.postgres_store import PostgresAuditStore
from gateway.audit.store import RetentionStore
from tests.postgres import PostgresLog, postgres_log

__all__ = ["postgres_log"]

ORIGIN = "obmin.test/gateway"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's audit database lives (its directory does not exist yet)."""
    return tmp_path / "log" / "audit.db"


@dataclass
class StoreMaker:
    """Makes (unopened) stores on the test's one log; closes what it opened at the end."""

    kind: str
    path: Path
    postgres: PostgresLog | None
    opened: list[RetentionStore] = field(default_factory=list)

    def __call__(self, *, origin: str = ORIGIN, **options: Any) -> RetentionStore:
        """A new store on the test's log (or on another origin's log in PostgreSQL)."""
        store: RetentionStore
        if self.postgres is not None:
            store = PostgresAuditStore(
                self.postgres.dsn, origin, schema=self.postgres.schema, **options
            )
        else:
            store = SqliteAuditStore(self.path, **options)
        self.opened.append(store)
        return store

    async def open(self, **options: Any) -> RetentionStore:
        """A new store, opened."""
        store = self(**options)
        await store.open()
        return store


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store the test runs against."""
    return str(request.param)


@pytest.fixture
async def make_store(
    store_kind: str, db_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StoreMaker]:
    """Stores of the parametrised kind on one fresh log, closed after the test."""
    postgres = request.getfixturevalue("postgres_log") if store_kind == "postgres" else None
    maker = StoreMaker(store_kind, db_path, postgres)
    try:
        yield maker
    finally:
        for store in maker.opened:
            await store.close()


@pytest.fixture
async def store(make_store: StoreMaker) -> RetentionStore:
    """An open store (of each kind in turn) with group commit, closed after the test."""
    return await make_store.open()


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SqliteAuditStore]:
    """An open SQLite store with group commit, closed after the test."""
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
