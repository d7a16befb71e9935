"""The auditor API on the admin port (SPEC 8): records, proofs, the latest checkpoint.

Auditors authenticate with the ``auditor`` role by TLS client certificate
(``admin_certificates``, on the HTTPS admin port) or bearer token (`authenticate_admin`).
An auditor scoped to members (``members:`` in its configuration) sees only records whose
client or service belongs to one of those members: the scope is a filter of the store's
query, like the auditor's own filters, so a page is never short because of it, and other
records do not exist for that auditor (a record asked for by number answers 404, as an
unknown one does).

Every filter is answered by the store's indexes (`RecordQuery`); query parameters are parsed
by `parse_records_query`, a pure function that turns anything malformed into
`InvalidAuditQuery` (400 with a message), never into a server error.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Final, cast

import orjson
import structlog
from aiohttp import web
from multidict import MultiMapping

from gateway.admin_auth import AdminPrincipal, authenticate_admin, json_response
from gateway.audit import (
    AuditError,
    AuditRecord,
    AuditStore,
    Direction,
    InvalidAuditQuery,
    RecordQuery,
    RecordsArchived,
    leaf_hash,
)
from gateway.audit.evidence_export import EvidenceNotReady
from gateway.audit.query import MAX_SEQ, parse_status
from gateway.state import STATE

__all__ = [
    "PAGE_MAX",
    "add_audit_routes",
    "auditor_endpoint",
    "auditor_error",
    "parse_records_query",
]

log = structlog.get_logger("obmin.audit")

PAGE_MAX: Final = 500
_TEXT_FILTERS: Final = ("client", "service", "message_id", "request_id", "user_id", "subject_id")
_PARAMETERS: Final = frozenset(
    {*_TEXT_FILTERS, "direction", "status", "since", "until", "cursor", "limit"}
)
_INTEGER = re.compile(r"-?[0-9]{1,20}")  # ASCII digits only: int() also reads other scripts'


# The one status table of the auditor API (records, proofs, checkpoint, evidence): the
# ``type`` each status answers with, unless the answer names a more precise code.
_KINDS: Final[dict[int, str]] = {
    400: "InvalidQuery",
    404: "NotFound",
    409: "EvidenceNotReady",
    410: "RecordsArchived",
    503: "LoggingFailed",
}


def auditor_error(status: int, message: str, code: str | None = None) -> web.Response:
    """An auditor API error: ``{"type", "message"}`` with the status; ``message`` is a plain
    sentence for the caller (never an exception's internal text), ``code`` overrides the
    status's ``type``."""
    return json_response({"type": code or _KINDS[status], "message": message}, status=status)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _recordjson_response(record: AuditRecord) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(record.to_canonical_json())
    data["seq"] = record.seq
    data["leaf_hash"] = _b64(leaf_hash(record))
    return data


def _integer(value: str, name: str, low: int, high: int) -> int:
    if not _INTEGER.fullmatch(value) or not low <= int(value) <= high:
        raise InvalidAuditQuery(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


def _time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidAuditQuery(f"{name} must be an ISO 8601 time, got {value!r}") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidAuditQuery(f"{name} must carry a time zone, got {value!r}")
    return parsed


def parse_records_query(
    query: Mapping[str, str] | MultiMapping[str], members: tuple[str, ...] = ()
) -> RecordQuery:
    """The store query an auditor's ``GET /audit/v1/records`` asks for; `InvalidAuditQuery`.

    ``members`` is the auditor's scope (empty: every record). The page is fetched one record
    longer than ``limit``, to know whether there is a next page.
    """
    unknown = set(query) - _PARAMETERS
    if unknown:
        raise InvalidAuditQuery(
            f"unknown query parameters: {', '.join(sorted(map(repr, unknown)))}"
        )
    values: dict[str, str] = {}
    for name in query:
        given = query.getall(name) if isinstance(query, MultiMapping) else [query[name]]
        if len(given) > 1:
            raise InvalidAuditQuery(f"{name} is given {len(given)} times")
        values[name] = given[0]
    limit = _integer(values.get("limit", "100"), "limit", 1, PAGE_MAX)
    cursor = _integer(values.get("cursor", "-1"), "cursor", -1, MAX_SEQ)
    since = _time(values["since"], "since") if "since" in values else None
    until = _time(values["until"], "until") if "until" in values else None
    direction = values.get("direction")
    if direction is not None and direction not in ("request", "response"):
        raise InvalidAuditQuery(f"direction must be request or response, got {direction!r}")
    for name in _TEXT_FILTERS:
        if values.get(name) == "":
            raise InvalidAuditQuery(f"{name} must not be empty")
    status = parse_status(values["status"]) if "status" in values else None
    selection = RecordQuery(
        since=since,
        until=until,
        client=values.get("client"),
        service=values.get("service"),
        message_id=values.get("message_id"),
        request_id=values.get("request_id"),
        user_id=values.get("user_id"),
        subject_id=values.get("subject_id"),
        status=status,
        direction=cast(Direction | None, direction),  # checked above
        members=members or None,
        after_seq=cursor,
        limit=limit + 1,
    )
    if since is not None and until is not None and since > until:
        raise InvalidAuditQuery("since is later than until")
    return selection


_Handler = Callable[[web.Request, AdminPrincipal, AuditStore], Awaitable[web.Response]]


def auditor_endpoint(handler: _Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Authenticate, find the store, and map audit errors to statuses (never a 500).

    Every auditor endpoint goes through here. The messages of `InvalidAuditQuery`,
    `EvidenceNotReady` (409, with ``Retry-After``: the next checkpoint) and
    `RecordsArchived` (410, naming the archive file) are written for the auditor; any other
    `AuditError` (a store or key failure, whose text may name paths or database errors) is
    logged with its details and answered 503 with a plain sentence.
    """

    async def handle(request: web.Request) -> web.Response:
        principal = authenticate_admin(request, "auditor")
        if isinstance(principal, web.Response):
            return principal
        state = request.app[STATE]
        env = state.env
        if env is None:
            raise web.HTTPServiceUnavailable()
        try:
            return await handler(request, principal, env.audit)
        except InvalidAuditQuery as exc:
            return auditor_error(400, str(exc))
        except EvidenceNotReady as exc:
            response = auditor_error(409, str(exc))
            interval = state.settings.audit.checkpoint_interval_seconds
            response.headers["Retry-After"] = str(max(1, math.ceil(interval)))
            return response
        except RecordsArchived as exc:
            return auditor_error(410, str(exc))
        except AuditError as exc:
            log.exception(
                "auditor API: the audit log failed",
                path=request.path, code=exc.code, reason=str(exc),
            )  # fmt: skip
            return auditor_error(503, "the audit log cannot be read now")

    return handle


async def _records(
    request: web.Request, principal: AdminPrincipal, store: AuditStore
) -> web.Response:
    selection = parse_records_query(request.query, principal.members)
    found = await store.query(**_filters(selection))
    page = found[: selection.limit - 1]
    more = len(found) == selection.limit
    body: dict[str, Any] = {"records": [_recordjson_response(r) for r in page]}
    body["next_cursor"] = page[-1].seq if more and page else None
    return json_response(body)


def _filters(selection: RecordQuery) -> dict[str, Any]:
    return {name: getattr(selection, name) for name in RecordQuery.__dataclass_fields__}


async def _record(
    request: web.Request, principal: AdminPrincipal, store: AuditStore
) -> web.Response:
    text = request.match_info["seq"]
    seq = _integer(text, "the sequence number", 0, MAX_SEQ)
    batch = await store.query(after_seq=seq - 1, limit=1, members=principal.members or None)
    if not batch or batch[0].seq != seq:
        return auditor_error(404, f"no record {seq}")
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


async def _checkpoint(
    request: web.Request, principal: AdminPrincipal, store: AuditStore
) -> web.Response:
    latest = await store.latest_checkpoint()
    if latest is None:
        return auditor_error(404, "no checkpoint has been signed yet")
    cp = latest.checkpoint
    return json_response(
        {
            "origin": cp.origin,
            "tree_size": cp.size,
            "root_hash": _b64(cp.root),
            "note": cp.note,
            "created": latest.created.isoformat(),
            # RFC 3161 token over the note (DER, base64) once the TSA has given one.
            "timestamp_token": None
            if latest.timestamp_token is None
            else _b64(latest.timestamp_token),
        }
    )


async def _consistency(
    request: web.Request, principal: AdminPrincipal, store: AuditStore
) -> web.Response:
    unknown = set(request.query) - {"from", "to"}
    if unknown or "from" not in request.query or "to" not in request.query:
        return auditor_error(400, "give exactly from and to (tree sizes)")
    old = _integer(request.query["from"], "from", 1, MAX_SEQ)
    new = _integer(request.query["to"], "to", 1, MAX_SEQ)
    size = await store.count()
    if not old <= new <= size:
        return auditor_error(400, f"need 0 < from <= to <= {size}")
    proof = await store.consistency_proof(old, new)
    return json_response({"from": old, "to": new, "hashes": [_b64(h) for h in proof]})


async def _openapi(request: web.Request) -> web.Response:
    return json_response(OPENAPI)


def add_audit_routes(app: web.Application) -> None:
    """Add the auditor API to the admin application."""
    app.router.add_get("/audit/v1/records", auditor_endpoint(_records))
    app.router.add_get("/audit/v1/records/{seq}", auditor_endpoint(_record))
    app.router.add_get("/audit/v1/checkpoint", auditor_endpoint(_checkpoint))
    app.router.add_get("/audit/v1/proofs/consistency", auditor_endpoint(_consistency))
    app.router.add_get("/audit/v1/openapi.json", _openapi)


def _param(name: str, kind: str = "string", description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": description,
    }


_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"clientCertificate": []}]
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "obmin auditor API", "version": "1"},
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "clientCertificate": {"type": "mutualTLS"},
        }
    },
    "paths": {
        "/audit/v1/records": {
            "get": {
                "summary": "Audit records matching every filter, oldest first, with a cursor",
                "security": _AUTH,
                "parameters": [
                    *(_param(n) for n in _TEXT_FILTERS),
                    _param("direction", description="request or response"),
                    _param("status", description="HTTP status (digits) or fault code"),
                    _param("since", description="ISO 8601 time with zone"),
                    _param("until", description="ISO 8601 time with zone"),
                    _param("cursor", "integer", "next_cursor of the previous page"),
                    _param("limit", "integer", f"1..{PAGE_MAX}"),
                ],
                "responses": {
                    "200": {"description": "records and next_cursor"},
                    "400": {"description": "invalid query"},
                    "401": {"description": "no valid token"},
                    "503": {"description": "the audit store cannot be read now"},
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
                "summary": "The latest signed checkpoint (C2SP tlog-checkpoint note) and its"
                " RFC 3161 timestamp token (base64 DER, or null)",
                "security": _AUTH,
                "responses": {"200": {"description": "checkpoint"}},
            }
        },
        "/audit/v1/proofs/consistency": {
            "get": {
                "summary": "RFC 9162 consistency proof between two tree sizes",
                "security": _AUTH,
                "parameters": [_param("from", "integer"), _param("to", "integer")],
                "responses": {
                    "200": {"description": "proof hashes"},
                    "400": {"description": "invalid tree sizes"},
                    "410": {"description": "the proof needs archived records"},
                },
            }
        },
    },
}
