"""The PostgreSQL audit schema: tables, migrations and the seam to asyncpg's errors.

One database (one schema in it, ``obmin_audit`` by default) holds the logs of several
gateway nodes. Each node's log is a row of ``logs``, found by its origin (the checkpoint
origin line); records and checkpoints carry its ``log_id``, so every log has its own
sequence space and its own Merkle tree. ``logs.next_seq`` is the log's size: the append
transaction reserves its sequence numbers by incrementing it, and the row lock that takes
serialises writers of the same log (two processes of one node, say) exactly as SQLite's
write lock does.

The schema is created, or migrated, by the first store that opens it, under an advisory
lock so that gateways starting together do not race. Every asyncpg and socket failure is
turned into `AuditError` here (`translate`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Final, TypeVar
from urllib.parse import urlsplit

import asyncpg

from gateway.audit.errors import AuditError

__all__ = [
    "DRIVER_ERRORS",
    "SCHEMA_VERSION",
    "Tables",
    "ensure_schema",
    "guarded",
    "log_id",
    "redact_dsn",
]

SCHEMA_VERSION: Final = 1
# Everything the driver or the socket raises when the database is unreachable or refuses.
DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_T = TypeVar("_T")


class Tables:
    """The qualified table names of one schema (a validated identifier, never user text)."""

    def __init__(self, schema: str) -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise AuditError(
                f"{schema!r} is not a valid PostgreSQL schema name for the audit log"
                " (lower-case letters, digits and _, starting with a letter or _)"
            )
        self.schema = schema
        self.meta = f"{schema}.meta"
        self.logs = f"{schema}.logs"
        self.records = f"{schema}.records"
        self.checkpoints = f"{schema}.checkpoints"
        self.nodes = f"{schema}.tree_nodes"

    def migrations(self) -> dict[int, tuple[str, ...]]:
        """The statements that bring a schema of version N (0 = empty) to N + 1."""
        records_indexes = [
            f"CREATE INDEX IF NOT EXISTS records_{column} ON {self.records}"
            f" (log_id, {column}, seq)" + (f" WHERE {column} IS NOT NULL" if sparse else "")
            for column, sparse in (
                ("request_id", False),
                ("message_id", False),
                ("client", False),
                ("service", False),
                ("client_member", False),
                ("service_member", False),
                ("user_id", True),
                ("subject_id", True),
                ("http_status", True),
                ("fault_code", True),
            )
        ]
        return {
            0: (
                f"CREATE TABLE IF NOT EXISTS {self.meta}"
                " (key text PRIMARY KEY, value text NOT NULL)",
                f"""CREATE TABLE IF NOT EXISTS {self.logs} (
                    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    origin text NOT NULL UNIQUE,
                    next_seq bigint NOT NULL DEFAULT 0,
                    base_size bigint NOT NULL DEFAULT 0,
                    base_range bytea NOT NULL DEFAULT ''::bytea,
                    created timestamptz NOT NULL DEFAULT now()
                )""",
                f"""CREATE TABLE IF NOT EXISTS {self.records} (
                    log_id integer NOT NULL REFERENCES {self.logs} (id),
                    seq bigint NOT NULL,
                    request_id text NOT NULL,
                    message_id text,
                    client text,
                    service text,
                    client_member text,
                    service_member text,
                    user_id text,
                    subject_id text,
                    http_status integer,
                    fault_code text,
                    time text NOT NULL,
                    direction text NOT NULL,
                    canonical bytea NOT NULL,
                    leaf_hash bytea NOT NULL,
                    body bytea,
                    PRIMARY KEY (log_id, seq)
                )""",
                *records_indexes,
                f"CREATE INDEX IF NOT EXISTS records_time ON {self.records} (log_id, time)",
                f"""CREATE TABLE IF NOT EXISTS {self.checkpoints} (
                    log_id integer NOT NULL REFERENCES {self.logs} (id),
                    tree_size bigint NOT NULL,
                    root bytea NOT NULL,
                    note text NOT NULL,
                    created text NOT NULL,
                    compact_range bytea NOT NULL,
                    timestamp_token bytea,
                    PRIMARY KEY (log_id, tree_size)
                )""",
                f"""CREATE TABLE IF NOT EXISTS {self.nodes} (
                    log_id integer NOT NULL REFERENCES {self.logs} (id),
                    height smallint NOT NULL,
                    start bigint NOT NULL,
                    hash bytea NOT NULL,
                    PRIMARY KEY (log_id, height, start)
                )""",
            ),
        }


async def ensure_schema(conn: asyncpg.Connection, tables: Tables) -> None:
    """Create the schema and its tables, or migrate them to `SCHEMA_VERSION`."""
    async with conn.transaction():
        # Gateways opening one database together: one creates, the others wait and see it.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"obmin-audit:{tables.schema}"
        )
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", tables.schema
        ):  # created only if missing: creating needs a privilege a schema's owner may lack
            await conn.execute(f"CREATE SCHEMA {tables.schema}")
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", tables.meta)
        version = 0
        if exists:
            text = await conn.fetchval(
                f"SELECT value FROM {tables.meta} WHERE key = 'schema_version'"  # noqa: S608 (validated identifier)
            )
            version = int(text) if isinstance(text, str) and text.isdigit() else 0
        if version > SCHEMA_VERSION:
            raise AuditError(
                f"the audit schema {tables.schema} is of version {version}, newer than this"
                f" obmin ({SCHEMA_VERSION})"
            )
        steps = tables.migrations()
        while version < SCHEMA_VERSION:
            for statement in steps[version]:
                await conn.execute(statement)
            version += 1
            await conn.execute(
                f"INSERT INTO {tables.meta} (key, value) VALUES ('schema_version', $1)"  # noqa: S608 (validated identifier)
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                str(version),
            )


async def log_id(conn: asyncpg.Connection, tables: Tables, origin: str, *, create: bool) -> int:
    """The id of the log of ``origin``, created if asked; raises `AuditError` if absent."""
    if create:
        await conn.execute(
            f"INSERT INTO {tables.logs} (origin) VALUES ($1) ON CONFLICT (origin) DO NOTHING",  # noqa: S608 (validated identifier)
            origin,
        )
    found = await conn.fetchval(f"SELECT id FROM {tables.logs} WHERE origin = $1", origin)  # noqa: S608 (validated identifier)
    if not isinstance(found, int):
        raise AuditError(f"there is no audit log for origin {origin!r} in {tables.schema}")
    return found


async def guarded(operation: Awaitable[_T], failure: str) -> _T:
    """Await ``operation``; a driver or socket failure becomes `AuditError(failure: ...)`."""
    try:
        return await operation
    except DRIVER_ERRORS as exc:
        raise AuditError(f"{failure}: {_describe(exc)}") from exc


def redact_dsn(dsn: str) -> str:
    """The DSN for messages: host, port and database, never the user's password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "PostgreSQL"
    if parts.scheme not in ("postgres", "postgresql"):
        return "PostgreSQL"
    return f"postgresql://{host}{port}{parts.path}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if isinstance(exc, OSError | TimeoutError) else text
