"""The auditor API's queries: every SPEC 8 filter and the member scope answered by the store,
full pages, cursors, and query parameters that only ever give 400 with a message (Hypothesis).

A real gateway (client and admin ports) runs on its own event loop in a thread, over a real
SQLite log filled beforehand, so that Hypothesis can drive it with plain blocking requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admin import create_admin_app
from gateway.audit import InvalidAuditQuery, RecordQuery, SqliteAuditStore
from gateway.audit_api import parse_records_query
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.state import GatewayState
from tests.audit.drafts import NOW, exchange, make_draft
from tests.conformance.conftest import base_registry

OTHER_CLIENT = "SEVDEIR-TEST/GOV/11112222/OTHER"
OTHER_MEMBER = "SEVDEIR-TEST/GOV/11112222"
FULL = {"Authorization": "Bearer aud"}
SCOPED = {"Authorization": "Bearer scoped"}


@dataclass
class Api:
    """A running admin port and the log behind it."""

    url: str
    database: Path

    def get(self, path: str, headers: dict[str, str] = FULL) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


async def _fill(path: Path) -> None:
    """60 records: 20 exchanges of the usual client, then 5 of OTHER_CLIENT, ..."""
    store = SqliteAuditStore(path)
    await store.open()
    try:
        for i in range(20):
            await store.append(exchange(f"x-{i}"))
        for i in range(5):
            await store.append(exchange(f"o-{i}", client=OTHER_CLIENT, subject_id="UA-5"))
        await store.append(
            [
                make_draft(message_id="f", time=NOW + timedelta(days=1)),
                make_draft(
                    direction="response",
                    message_id="f",
                    time=NOW + timedelta(days=1),
                    outcome="fault",
                    http_status=502,
                    fault_code="Server.ServerProxy.ServiceFailed",
                ),
            ]
        )
        for i in range(4):
            await store.append(exchange(f"y-{i}", time=NOW + timedelta(days=2)))
    finally:
        await store.close()


@pytest.fixture(scope="module")
def api(dev_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    directory = tmp_path_factory.mktemp("auditor")
    (directory / "registry").mkdir()
    registry = base_registry(dev_pki / "ca" / "ca.crt", "http://127.0.0.1:9")
    (directory / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    database = directory / "audit.db"
    asyncio.run(_fill(database))
    gateway_settings = Settings.model_validate(
        {
            "registry_dir": directory / "registry",
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": database},
            "admin": {"port": 0},
            "admin_tokens": [
                {
                    "name": "full",
                    "roles": ["auditor"],
                    "sha256": hashlib.sha256(b"aud").hexdigest(),
                },
                {
                    "name": "scoped",
                    "roles": ["auditor"],
                    "members": [OTHER_MEMBER],
                    "sha256": hashlib.sha256(b"scoped").hexdigest(),
                },
            ],
        }
    )
    loop = asyncio.new_event_loop()
    state = GatewayState(gateway_settings)
    client = web.AppRunner(create_client_app(gateway_settings, state))
    admin = web.AppRunner(create_admin_app(state))

    async def start() -> int:
        await client.setup()  # opens the audit store
        await admin.setup()
        site = web.TCPSite(admin, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield Api(f"http://127.0.0.1:{port}", database)
    finally:

        async def stop() -> None:
            await admin.cleanup()
            await client.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _messages(body: Any) -> list[str]:
    return [record["message_id"] for record in body["records"]]


def test_every_filter_reaches_the_store(api: Api) -> None:
    status, body = api.get("/audit/v1/records?subject_id=UA-5&direction=response")
    assert status == 200 and _messages(body) == [f"o-{i}" for i in range(5)]
    status, body = api.get("/audit/v1/records?status=502")
    assert _messages(body) == ["f"]
    status, body = api.get("/audit/v1/records?status=Server.ServerProxy.ServiceFailed")
    assert _messages(body) == ["f"]
    since = urllib.parse.quote((NOW + timedelta(hours=12)).isoformat())
    status, body = api.get(f"/audit/v1/records?since={since}&limit=500")
    assert _messages(body) == ["f", "f"] + [f"y-{i}" for i in range(4) for _ in range(2)]
    until = urllib.parse.quote((NOW + timedelta(days=1)).isoformat())
    status, body = api.get(f"/audit/v1/records?since={since}&until={until}")
    assert _messages(body) == ["f", "f"]
    status, body = api.get("/audit/v1/records?client=" + urllib.parse.quote(OTHER_CLIENT))
    assert len(body["records"]) == 10 and body["next_cursor"] is None
    status, body = api.get("/audit/v1/records?message_id=x-3")
    request_id = body["records"][0]["request_id"]
    status, body = api.get(f"/audit/v1/records?request_id={request_id}")
    assert [r["direction"] for r in body["records"]] == ["request", "response"]
    status, body = api.get("/audit/v1/records?user_id=UA:1234567890&limit=1")
    assert len(body["records"]) == 1 and body["next_cursor"] == 0


def test_a_scoped_auditor_gets_full_pages(api: Api) -> None:
    status, body = api.get("/audit/v1/records?limit=4", SCOPED)
    # 40 records of other members come first: the scope is part of the store's query.
    assert status == 200 and [r["seq"] for r in body["records"]] == [40, 41, 42, 43]
    assert body["next_cursor"] == 43
    seen = [r["seq"] for r in body["records"]]
    while body["next_cursor"] is not None:
        status, body = api.get(f"/audit/v1/records?limit=4&cursor={body['next_cursor']}", SCOPED)
        seen += [r["seq"] for r in body["records"]]
    assert seen == list(range(40, 50))
    assert api.get("/audit/v1/records/3", SCOPED)[0] == 404
    assert api.get("/audit/v1/records/45", SCOPED)[0] == 200


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/audit/v1/records?cursor=18446744073709551616", "cursor must be an integer"),
        ("/audit/v1/records?cursor=9223372036854775808", "cursor must be an integer"),
        ("/audit/v1/records/18446744073709551616", "sequence number must be an integer"),
        ("/audit/v1/records/-1", "sequence number must be an integer"),
        ("/audit/v1/proofs/consistency?from=1&to=18446744073709551616", "to must be an integer"),
        ("/audit/v1/records?limit=%D9%A1", "limit must be an integer"),
        ("/audit/v1/records?since=0001-01-01T00:00:00%2B01:00", "out of range"),
        ("/audit/v1/records?since=2025-01-01T00:00:00", "time zone"),
        ("/audit/v1/records?status=600", "HTTP status"),
        ("/audit/v1/records?direction=up", "direction"),
        ("/audit/v1/records?limit=1&limit=2", "given 2 times"),
        ("/audit/v1/records?client=", "must not be empty"),
        ("/audit/v1/records?outcome=ok", "unknown query parameters"),
        (
            "/audit/v1/records?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "later than until",
        ),
    ],
)
def test_bad_parameters_are_400_with_a_message(api: Api, path: str, message: str) -> None:
    status, body = api.get(path)
    assert status == 400, body
    assert body["type"] == "InvalidQuery" and message in body["message"]


def test_an_unreadable_store_is_503_and_recovers(api: Api) -> None:
    away = api.database.with_name("moved.db")
    api.database.rename(away)
    try:
        status, body = api.get("/audit/v1/records?limit=1")
        assert status == 503 and body["type"] == "LoggingFailed"
    finally:
        away.rename(api.database)
    assert api.get("/audit/v1/records?limit=1")[0] == 200


_NAMES = st.sampled_from(
    [
        "client",
        "service",
        "message_id",
        "request_id",
        "user_id",
        "subject_id",
        "direction",
        "status",
        "since",
        "until",
        "cursor",
        "limit",
        "colour",
        "",
    ]
)
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_VALUES = st.one_of(
    _TEXT,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda t: t.isoformat()),
    st.sampled_from(["request", "response", "200", "Server.X", "0", "-1", "500", "9" * 30]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
def test_any_records_query_parses_or_is_refused(pairs: list[tuple[str, str]]) -> None:
    from multidict import MultiDict

    try:
        query = parse_records_query(MultiDict(pairs))
    except InvalidAuditQuery as exc:
        assert str(exc)
    else:
        assert isinstance(query, RecordQuery)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pairs=st.lists(st.tuples(_NAMES, _VALUES), max_size=5),
    # One path segment that reaches the handler: aiohttp's router itself answers 404 for an
    # empty or dotted segment and for one with braces (its {seq} pattern is [^{}/]+).
    seq=st.one_of(
        _TEXT.filter(lambda s: s.strip(".") != "" and not set(s) & set("/{}")),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
    ),
    sizes=st.tuples(_VALUES, _VALUES),
)
def test_the_api_answers_200_or_400_never_500(
    api: Api, pairs: list[tuple[str, str]], seq: str, sizes: tuple[str, str]
) -> None:
    for path in (
        "/audit/v1/records?" + urllib.parse.urlencode(pairs),
        "/audit/v1/records/" + urllib.parse.quote(seq, safe=""),
        "/audit/v1/proofs/consistency?"
        + urllib.parse.urlencode({"from": sizes[0], "to": sizes[1]}),
    ):
        status, body = api.get(path)
        assert status in (200, 400, 404), (path, status, body)
        if status != 200:
            assert body["type"] in ("InvalidQuery", "NotFound") and body["message"], body
