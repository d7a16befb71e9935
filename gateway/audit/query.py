"""Which records a query asks for: one validated value, turned into SQL for either store.

`RecordQuery` holds every filter of SPEC 8's auditor API (time range, client, service,
message id, request id, user id, subject id, status, direction), an auditor's member scope,
the cursor and the page size. It is checked once, at construction, so a store never sees an
out-of-range cursor or limit (SQLite raises ``OverflowError`` on integers past 2^63, which
would otherwise surface as a server error). `where_clause` renders it for a store's SQL
dialect; values are always bound parameters, column names come from this module only.

Every filter has an index in both stores (``(column, seq)``, so a filtered page is read in
``seq`` order from the index), except ``direction``: with two values, reading by ``seq``
and skipping the other direction examines at most about two rows per match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypedDict, get_args

from gateway.audit.errors import InvalidAuditQuery
from gateway.audit.records import Direction, format_time

__all__ = [
    "MAX_QUERY_LIMIT",
    "MAX_SEQ",
    "QueryFilters",
    "RecordQuery",
    "parse_status",
    "where_clause",
]

MAX_QUERY_LIMIT: Final = 10_000
MAX_SEQ: Final = 2**63 - 1  # the largest value either database stores in a seq column
_MAX_TEXT: Final = 4096  # longer filter values cannot match a stored identifier

# (filter, column) for the equality filters on text columns.
_TEXT_FILTERS: Final = (
    ("client", "client"),
    ("service", "service"),
    ("message_id", "message_id"),
    ("request_id", "request_id"),
    ("user_id", "user_id"),
    ("subject_id", "subject_id"),
)


class QueryFilters(TypedDict, total=False):
    """The keyword arguments of `AuditStore.query` (all optional)."""

    since: datetime | None
    until: datetime | None
    client: str | None
    service: str | None
    message_id: str | None
    request_id: str | None
    user_id: str | None
    subject_id: str | None
    status: int | str | None
    direction: Direction | None
    members: tuple[str, ...] | None
    after_seq: int | None
    limit: int
    newest_first: bool


def parse_status(text: str) -> int | str:
    """An auditor's ``status`` value: digits are an HTTP status, anything else a fault code."""
    if text.isascii() and text.isdigit():
        return int(text)
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordQuery:
    """Records matching every given filter, ``limit`` at most, in ``seq`` order.

    ``since`` and ``until`` bound the record time (both inclusive; timezone-aware).
    ``status`` is an HTTP status (int) or a fault code (str). ``members`` scopes the query
    to records whose client or service belongs to one of those members (``None``: no scope).
    ``after_seq`` is the cursor: only records with a larger ``seq`` (ignored when
    ``newest_first``, which returns the newest records first). Raises `InvalidAuditQuery`.
    """

    since: datetime | None = None
    until: datetime | None = None
    client: str | None = None
    service: str | None = None
    message_id: str | None = None
    request_id: str | None = None
    user_id: str | None = None
    subject_id: str | None = None
    status: int | str | None = None
    direction: Direction | None = None
    members: tuple[str, ...] | None = None
    after_seq: int | None = None
    limit: int = 100
    newest_first: bool = False

    def __post_init__(self) -> None:
        if type(self.limit) is not int or not 1 <= self.limit <= MAX_QUERY_LIMIT:
            raise InvalidAuditQuery(f"limit must be from 1 to {MAX_QUERY_LIMIT}, got {self.limit}")
        if self.after_seq is not None and (
            type(self.after_seq) is not int or not -1 <= self.after_seq <= MAX_SEQ
        ):
            raise InvalidAuditQuery(
                f"the cursor must be from -1 to {MAX_SEQ}, got {self.after_seq}"
            )
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
                raise InvalidAuditQuery(f"{name} must be a timezone-aware time")
            if value is not None:
                try:
                    format_time(value)
                except OverflowError as exc:
                    raise InvalidAuditQuery(f"{name} {value} is out of range in UTC") from exc
        for name, _ in _TEXT_FILTERS:
            _check_text(name, getattr(self, name))
        self._check_status()
        if self.direction is not None and self.direction not in get_args(Direction):
            raise InvalidAuditQuery(
                f"direction must be request or response, got {self.direction!r}"
            )
        if self.members is not None:
            if not isinstance(self.members, tuple) or not self.members:
                raise InvalidAuditQuery("a member scope is a non-empty tuple of member ids")
            for member in self.members:
                _check_text("members[]", member)

    def _check_status(self) -> None:
        status = self.status
        if status is None:
            return
        if type(status) is int:
            if not 100 <= status <= 599:
                raise InvalidAuditQuery(f"an HTTP status is from 100 to 599, got {status}")
            return
        if type(status) is not str or not status:
            raise InvalidAuditQuery("status must be an HTTP status or a fault code")
        _check_text("status", status)


def _check_text(name: str, value: object) -> None:
    if value is None:
        return
    if type(value) is not str:
        raise InvalidAuditQuery(f"{name} must be text, got {type(value).__name__}")
    if len(value) > _MAX_TEXT:
        raise InvalidAuditQuery(f"{name} is longer than {_MAX_TEXT} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidAuditQuery(f"{name} is not valid Unicode text") from exc
    if "\x00" in value:
        raise InvalidAuditQuery(f"{name} must not contain NUL characters")


def where_clause(query: RecordQuery, bind: Callable[[object], str]) -> list[str]:
    """The SQL conditions of ``query`` (to be joined with AND); ``bind(value)`` adds a
    parameter and returns its placeholder (``?`` for SQLite, ``$n`` for PostgreSQL)."""
    clauses: list[str] = []
    for name, column in _TEXT_FILTERS:
        value = getattr(query, name)
        if value is not None:
            clauses.append(f"{column} = {bind(value)}")
    if query.since is not None:
        clauses.append(f"time >= {bind(format_time(query.since))}")
    if query.until is not None:
        clauses.append(f"time <= {bind(format_time(query.until))}")
    if isinstance(query.status, int):
        clauses.append(f"http_status = {bind(query.status)}")
    elif query.status is not None:
        clauses.append(f"fault_code = {bind(query.status)}")
    if query.direction is not None:
        clauses.append(f"direction = {bind(query.direction)}")
    if query.members is not None:
        client_in = ", ".join(bind(member) for member in query.members)
        service_in = ", ".join(bind(member) for member in query.members)
        clauses.append(f"(client_member IN ({client_in}) OR service_member IN ({service_in}))")
    if query.after_seq is not None and not query.newest_first:
        clauses.append(f"seq > {bind(query.after_seq)}")
    return clauses
