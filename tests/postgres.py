"""PostgreSQL for tests: the server at 127.0.0.1:5432 (trust auth, database ``test``).

Tests that need it take the `postgres_dsn` fixture, which skips them with the reason when
the server cannot be reached. Each test gets its own schema (and, where it takes the
database away, its own login role), dropped afterwards, so tests never see each other's
logs. Administrative statements run through `admin`, on a private event loop in a thread,
never on the test's loop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DSN = os.environ.get("OBMIN_TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")


def admin(*statements: str, dsn: str = DSN) -> list[Any]:
    """Run ``statements`` as the server's superuser; the rows of the last one."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            rows: list[Any] = []
            for statement in statements:
                rows = list(await conn.fetch(statement))
            return rows
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


_reachable: str | None = None  # None: not tried yet; "": reachable; else why not


def require_postgres() -> str:
    """The DSN, or skip the test with the reason the server is unreachable."""
    global _reachable
    if _reachable is None:
        try:
            admin("SELECT 1")
            _reachable = ""
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _reachable = f"PostgreSQL is not reachable at {DSN}: {exc}"
    if _reachable:
        pytest.skip(_reachable)
    return DSN


@dataclass(frozen=True)
class PostgresLog:
    """A schema of one test (and a login role owning it, for taking the database away)."""

    schema: str
    role: str
    dsn: str  # connects as ``role``

    def take_away(self) -> None:
        """The database goes away for this role: no new logins, its sessions killed."""
        admin(
            f"ALTER ROLE {self.role} NOLOGIN",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{self.role}'",
        )

    def bring_back(self) -> None:
        """The database is back for this role."""
        admin(f"ALTER ROLE {self.role} LOGIN")


def _dsn_as(role: str) -> str:
    parts = urlsplit(DSN)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{role}@{host}{port}", parts.path, parts.query, ""))


@pytest.fixture
def postgres_log() -> Iterator[PostgresLog]:
    """A fresh schema owned by a fresh login role; both dropped after the test."""
    require_postgres()
    name = f"obmin_t_{uuid.uuid4().hex[:12]}"
    admin(f"CREATE ROLE {name} LOGIN", f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    try:
        yield PostgresLog(schema=name, role=name, dsn=_dsn_as(name))
    finally:
        admin(
            f"ALTER ROLE {name} LOGIN",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'",
            f"DROP SCHEMA IF EXISTS {name} CASCADE",
            f"DROP ROLE IF EXISTS {name}",
        )


def run_in(schema: str, sql: str, *params: object, dsn: str = DSN) -> list[Any]:
    """Run one statement with ``?`` placeholders in ``schema`` (as an intruder would)."""
    numbered = sql
    for index in range(1, sql.count("?") + 1):
        numbered = numbered.replace("?", f"${index}", 1)

    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn, timeout=5, server_settings={"search_path": schema})
        try:
            return [tuple(row) for row in await conn.fetch(numbered, *params)]
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()
