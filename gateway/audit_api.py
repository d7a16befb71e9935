"""The auditor API on the admin port (SPEC 8): records, proofs, the latest checkpoint.

Auditors authenticate with a bearer token that has the ``auditor`` role. A token scoped to
members (``members:`` in its configuration) sees only records whose client or service
belongs to one of those members: other records are not filtered out of a page, they do not
exist for that auditor (a record asked for by number answers 404, as an unknown one does).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.admin_auth import authenticate_token, json_response
from gateway.audit import AuditRecord, AuditStore, InvalidAuditQuery, leaf_hash
from gateway.settings import AdminToken
from gateway.state import STATE

__all__ = ["add_audit_routes"]

PAGE_MAX = 500
SCAN_MAX = 20_000  # records examined per request for filters the store cannot index

_EQUALITY_FILTERS = ("client", "service", "message_id", "request_id")
_SCANNED_FILTERS = ("user_id", "subject_id", "direction", "outcome", "fault_code")


def _error(status: int, message: str) -> web.Response:
    return json_response(
        {"type": "InvalidQuery" if status == 400 else "NotFound", "message": message}, status=status
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _recordjson_response(record: AuditRecord) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(record.to_canonical_json())
    data["seq"] = record.seq
    data["leaf_hash"] = _b64(leaf_hash(record))
    return data


def _in_scope(token: AdminToken) -> Callable[[AuditRecord], bool]:
    if not token.members:
        return lambda record: True
    members = set(token.members)

    def visible(record: AuditRecord) -> bool:
        for identifier in (record.client, record.service):
            if identifier and "/".join(identifier.split("/")[:3]) in members:
                return True
        return False

    return visible


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidAuditQuery(f"{name} must be an ISO 8601 time, got {value!r}") from exc
    if parsed.tzinfo is None:
        raise InvalidAuditQuery(f"{name} must carry a time zone")
    return parsed


def _store(request: web.Request) -> AuditStore:
    env = request.app[STATE].env
    if env is None:
        raise web.HTTPServiceUnavailable()
    return env.audit


async def _records(request: web.Request) -> web.Response:
    token = authenticate_token(request, "auditor")
    if isinstance(token, web.Response):
        return token
    query = request.query
    unknown = set(query) - {
        *_EQUALITY_FILTERS,
        *_SCANNED_FILTERS,
        "since",
        "until",
        "status",
        "cursor",
        "limit",
    }
    if unknown:
        return _error(400, f"unknown query parameters: {', '.join(sorted(unknown))}")
    try:
        limit = int(query.get("limit", "100"))
        cursor = int(query.get("cursor", "-1"))
        since, until = _time(query.get("since"), "since"), _time(query.get("until"), "until")
        status = int(query["status"]) if "status" in query else None
    except (ValueError, InvalidAuditQuery) as exc:
        return _error(400, str(exc))
    if not 1 <= limit <= PAGE_MAX:
        return _error(400, f"limit must be from 1 to {PAGE_MAX}")
    visible = _in_scope(token)
    indexed = {k: query[k] for k in _EQUALITY_FILTERS if k in query}
    scanned = {k: query[k] for k in _SCANNED_FILTERS if k in query}
    found: list[AuditRecord] = []
    examined = 0
    after = cursor
    store = _store(request)
    exhausted = False
    while len(found) < limit and examined < SCAN_MAX:
        batch = await store.query(
            after_seq=after,
            limit=PAGE_MAX,
            client=indexed.get("client"),
            service=indexed.get("service"),
            message_id=indexed.get("message_id"),
            request_id=indexed.get("request_id"),
        )
        if not batch:
            exhausted = True
            break
        for record in batch:
            after = record.seq
            examined += 1
            if not visible(record):
                continue
            if any(str(getattr(record, k) or "") != v for k, v in scanned.items()):
                continue
            if status is not None and record.http_status != status:
                continue
            if (since and record.time < since) or (until and record.time > until):
                continue
            found.append(record)
            if len(found) == limit:
                break
    body: dict[str, Any] = {"records": [_recordjson_response(r) for r in found]}
    body["next_cursor"] = None if exhausted else after
    return json_response(body)


async def _record(request: web.Request) -> web.Response:
    token = authenticate_token(request, "auditor")
    if isinstance(token, web.Response):
        return token
    try:
        seq = int(request.match_info["seq"])
    except ValueError:
        return _error(400, "the sequence number must be an integer")
    store = _store(request)
    batch = await store.query(after_seq=seq - 1, limit=1) if seq >= 0 else []
    if not batch or batch[0].seq != seq or not _in_scope(token)(batch[0]):
        return _error(404, f"no record {seq}")
    record = batch[0]
    body: dict[str, Any] = {"record": _recordjson_response(record), "inclusion_proof": None}
    latest = await store.latest_checkpoint()
    if latest is not None and seq < latest.checkpoint.size:
        proof = await store.inclusion_proof(seq, latest.checkpoint.size)
        body["inclusion_proof"] = {
            "leaf_index": seq,
            "tree_size": latest.checkpoint.size,
            "hashes": [_b64(h) for h in proof],
            "checkpoint": latest.checkpoint.note,
        }
    return json_response(body)


async def _checkpoint(request: web.Request) -> web.Response:
    token = authenticate_token(request, "auditor")
    if isinstance(token, web.Response):
        return token
    latest = await _store(request).latest_checkpoint()
    if latest is None:
        return _error(404, "no checkpoint has been signed yet")
    cp = latest.checkpoint
    return json_response(
        {
            "origin": cp.origin,
            "tree_size": cp.size,
            "root_hash": _b64(cp.root),
            "note": cp.note,
            "created": latest.created.isoformat(),
        }
    )


async def _consistency(request: web.Request) -> web.Response:
    token = authenticate_token(request, "auditor")
    if isinstance(token, web.Response):
        return token
    try:
        old, new = int(request.query["from"]), int(request.query["to"])
    except (KeyError, ValueError):
        return _error(400, "from and to must be tree sizes")
    store = _store(request)
    size = await store.count()
    if not 0 < old <= new <= size:
        return _error(400, f"need 0 < from <= to <= {size}")
    proof = await store.consistency_proof(old, new)
    return json_response({"from": old, "to": new, "hashes": [_b64(h) for h in proof]})


async def _openapi(request: web.Request) -> web.Response:
    return json_response(OPENAPI)


def add_audit_routes(app: web.Application) -> None:
    """Add the auditor API to the admin application."""
    app.router.add_get("/audit/v1/records", _records)
    app.router.add_get("/audit/v1/records/{seq}", _record)
    app.router.add_get("/audit/v1/checkpoint", _checkpoint)
    app.router.add_get("/audit/v1/proofs/consistency", _consistency)
    app.router.add_get("/audit/v1/openapi.json", _openapi)


def _param(name: str, kind: str = "string", description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": description,
    }


_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "obmin auditor API", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/audit/v1/records": {
            "get": {
                "summary": "Audit records matching every filter, oldest first, with a cursor",
                "security": _AUTH,
                "parameters": [
                    *(_param(n) for n in (*_EQUALITY_FILTERS, *_SCANNED_FILTERS)),
                    _param("status", "integer", "HTTP status of the record"),
                    _param("since", description="ISO 8601 time with zone"),
                    _param("until", description="ISO 8601 time with zone"),
                    _param("cursor", "integer", "next_cursor of the previous page"),
                    _param("limit", "integer", f"1..{PAGE_MAX}"),
                ],
                "responses": {
                    "200": {"description": "records and next_cursor"},
                    "400": {"description": "invalid query"},
                    "401": {"description": "no valid token"},
                },
            }
        },
        "/audit/v1/records/{seq}": {
            "get": {
                "summary": "One record with its inclusion proof against the latest checkpoint",
                "security": _AUTH,
                "parameters": [
                    {"name": "seq", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {
                    "200": {"description": "record and proof"},
                    "404": {"description": "unknown or out of scope"},
                },
            }
        },
        "/audit/v1/checkpoint": {
            "get": {
                "summary": "The latest signed checkpoint (C2SP tlog-checkpoint note)",
                "security": _AUTH,
                "responses": {"200": {"description": "checkpoint"}},
            }
        },
        "/audit/v1/proofs/consistency": {
            "get": {
                "summary": "RFC 9162 consistency proof between two tree sizes",
                "security": _AUTH,
                "parameters": [_param("from", "integer"), _param("to", "integer")],
                "responses": {"200": {"description": "proof hashes"}},
            }
        },
    },
}
