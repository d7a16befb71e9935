"""The audit record: what is logged for each direction of an exchange, and its canonical form.

A pipeline stage builds an `AuditRecordDraft` (everything but the sequence number); the
store assigns ``seq`` inside the transaction that makes the record durable and returns the
`AuditRecord`. ``seq`` is 0-based and contiguous, so it is also the record's leaf index in the
RFC 9162 Merkle tree.

Canonical form (`AuditRecord.to_canonical_json`): RFC 8785 (JCS) JSON. JCS is simple for the
values a record holds — strings, integers, ``null``, arrays of strings — and never a float:
the one fractional quantity, the duration, is serialised as integer microseconds
(``duration_us``), so JCS's number rules reduce to integers within ±2^53. orjson with sorted
keys, compact separators, raw UTF-8 and JCS's string escapes gives exactly those bytes; the
tests check that against an independent serialiser. The body itself is *not* in the
canonical form: the leaf commits to ``body_digest``, and a stored body (policy ``plain``) sits
beside the record, where it can be checked against that digest — and archived or erased
without breaking the tree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import operator
import re
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypedDict, get_args

import orjson

from gateway.audit.errors import InvalidAuditRecord
from registry.models import AuditBody, AuthMode

__all__ = [
    "RECORD_VERSION",
    "AuditRecord",
    "AuditRecordDraft",
    "BodyFields",
    "Dialect",
    "Direction",
    "ExchangeProtocol",
    "Outcome",
    "body_digest",
    "body_fields",
    "format_time",
    "leaf_hash",
]

Direction = Literal["request", "response"]
ExchangeProtocol = Literal["soap", "rest"]
Dialect = Literal["xroad", "uxp"]
Outcome = Literal["ok", "fault"]

RECORD_VERSION: Final = 1
_MAX_INT: Final = 2**53 - 1  # JCS: integers must be exact as IEEE-754 doubles
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_CHOICES: Final[dict[str, frozenset[str]]] = {
    "direction": frozenset(get_args(Direction)),
    "protocol": frozenset(get_args(ExchangeProtocol)),
    "dialect": frozenset(get_args(Dialect)),
    "outcome": frozenset(get_args(Outcome)),
    "body_policy": frozenset(get_args(AuditBody)),
    "auth_mode": frozenset(get_args(AuthMode)),
}
# Optional free-text fields: any Unicode text that UTF-8 can encode.
_TEXT_FIELDS: Final = (
    "message_id",
    "client",
    "service",
    "user_id",
    "issue",
    "represented_party",
    "subject_id",
    "rest_method",
    "rest_path",
    "fault_code",
    "signature_value_digest",
    "signer_thumbprint",
)


def _bad(message: str) -> InvalidAuditRecord:
    return InvalidAuditRecord(f"invalid audit record: {message}")


def _check_text(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates (e.g. undecodable header bytes)
        raise _bad(f"{name} is not valid Unicode text") from exc


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(f"{name} must be an integer from {low} to {high}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecordDraft:
    """One audit record before the store has given it a sequence number (SPEC 8).

    ``time`` must be timezone-aware and is normalised to UTC; ``duration_ms`` (responses
    only) is rounded to whole microseconds. ``body_digest`` is absent only under body
    policy ``none``, ``body`` present only under ``plain``; `body_fields` fills ``size``,
    ``body_digest``, ``body`` and ``body_policy`` consistently from the body and the policy.
    Invalid values raise `InvalidAuditRecord` at construction, never later in the writer.
    """

    time: datetime
    direction: Direction
    request_id: str
    protocol: ExchangeProtocol
    outcome: Outcome
    size: int
    body_digest: str | None
    peer: str
    body_policy: AuditBody = "digest"
    dialect: Dialect | None = None
    message_id: str | None = None
    client: str | None = None
    service: str | None = None
    user_id: str | None = None
    issue: str | None = None
    represented_party: str | None = None
    subject_id: str | None = None
    purpose_ids: tuple[str, ...] = ()
    rest_method: str | None = None
    rest_path: str | None = None
    http_status: int | None = None
    fault_code: str | None = None
    body: bytes | None = field(default=None, repr=False)
    signature_value_digest: str | None = None
    signer_thumbprint: str | None = None
    auth_mode: AuthMode | None = None
    duration_ms: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise _bad("time must be a timezone-aware datetime")
        try:
            object.__setattr__(self, "time", self.time.astimezone(UTC))
        except OverflowError as exc:
            raise _bad(f"time {self.time!r} is out of range in UTC") from exc
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if not (value in allowed or (value is None and name in ("dialect", "auth_mode"))):
                raise _bad(f"{name} must be one of {sorted(allowed)}, got {value!r}")
        _check_text("request_id", self.request_id, optional=False)
        try:
            canonical_id = str(uuid.UUID(self.request_id))
        except ValueError as exc:
            raise _bad(f"request_id {self.request_id!r} is not a UUID") from exc
        if canonical_id != self.request_id:
            raise _bad(f"request_id {self.request_id!r} is not in lower-case UUID form")
        _check_text("peer", self.peer, optional=False)
        for name in _TEXT_FIELDS:
            _check_text(name, getattr(self, name), optional=True)
        if not isinstance(self.purpose_ids, tuple):
            raise _bad("purpose_ids must be a tuple of strings")
        for purpose in self.purpose_ids:
            _check_text("purpose_ids[]", purpose, optional=False)
        _check_int("size", self.size, 0, _MAX_INT)
        self._check_digest_and_body()
        if self.http_status is not None:
            _check_int("http_status", self.http_status, 100, 599)
        if self.fault_code is not None and self.outcome != "fault":
            raise _bad("a record with a fault_code must have outcome 'fault'")
        self._normalise_duration()

    def _check_digest_and_body(self) -> None:
        if self.body_policy == "none":
            if self.body_digest is not None or self.body is not None:
                raise _bad("policy 'none' records neither the body nor its digest")
            return
        if self.body_digest is None:
            raise _bad(f"policy {self.body_policy!r} requires body_digest")
        _check_text("body_digest", self.body_digest, optional=False)
        try:
            raw = base64.b64decode(self.body_digest, validate=True)
        except binascii.Error as exc:
            raise _bad("body_digest is not base64") from exc
        if len(raw) != hashlib.sha512().digest_size:
            raise _bad("body_digest is not a SHA-512 digest")
        if self.body is None:
            return
        if not isinstance(self.body, bytes):
            raise _bad("body must be bytes")
        if self.body_policy != "plain":
            raise _bad(f"a body may be stored only under policy 'plain', not {self.body_policy!r}")
        if len(self.body) != self.size:
            raise _bad(f"size {self.size} does not match the stored body ({len(self.body)} bytes)")

    def _normalise_duration(self) -> None:
        duration = self.duration_ms
        if duration is None:
            return
        if self.direction != "response":
            raise _bad("only a response record has a duration")
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise _bad("duration_ms must be a number")
        if not math.isfinite(duration) or not 0 <= duration * 1000 <= _MAX_INT:
            raise _bad(f"duration_ms {duration!r} is out of range")
        object.__setattr__(self, "duration_ms", round(duration * 1000) / 1000)

    def to_record(self, seq: int) -> AuditRecord:
        """The record this draft becomes once the store has assigned ``seq``."""
        _check_int("seq", seq, 0, _MAX_INT)
        # The draft was validated when it was built; copying its fields instead of calling
        # AuditRecord(...) keeps a second validation out of the writer's hot path.
        record = object.__new__(AuditRecord)
        for name in _DRAFT_FIELDS:
            object.__setattr__(record, name, getattr(self, name))
        object.__setattr__(record, "seq", seq)
        return record


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord(AuditRecordDraft):
    """A durable audit record: a draft plus the sequence number (= Merkle leaf index)."""

    seq: int

    def __post_init__(self) -> None:
        # Explicit base call: zero-argument super() does not work in slotted dataclasses.
        AuditRecordDraft.__post_init__(self)
        _check_int("seq", self.seq, 0, _MAX_INT)

    def to_canonical_json(self) -> bytes:
        """The record as RFC 8785 canonical JSON (UTF-8, sorted keys, no whitespace).

        Every field except ``body`` (see the module docstring), plus the format version
        ``v``; ``time`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``duration_us`` as an integer.
        """
        duration_us = None if self.duration_ms is None else round(self.duration_ms * 1000)
        document: dict[str, object] = {
            "v": RECORD_VERSION,
            "seq": self.seq,
            "time": format_time(self.time),
            "duration_us": duration_us,
            "purpose_ids": list(self.purpose_ids),
        }
        document.update(zip(_JSON_PLAIN_FIELDS, _plain_values(self), strict=True))
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_row(cls, canonical: bytes, body: bytes | None = None) -> AuditRecord:
        """Rebuild a record from its canonical JSON and the body stored beside it (if any).

        Raises `InvalidAuditRecord` when the JSON is not a record of this format version:
        a stored row that fails here is corruption or tampering.
        """
        try:
            document = orjson.loads(canonical)
        except orjson.JSONDecodeError as exc:
            raise _bad(f"stored record is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise _bad("stored record is not a JSON object")
        if document.get("v") != RECORD_VERSION:
            raise _bad(f"unsupported record version {document.get('v')!r}")
        if document.keys() != _JSON_KEYS:
            missing = sorted(_JSON_KEYS - document.keys())
            unexpected = sorted(document.keys() - _JSON_KEYS)
            raise _bad(f"stored record has missing keys {missing}, unexpected keys {unexpected}")
        values: dict[str, Any] = {name: document[name] for name in _JSON_PLAIN_FIELDS}
        values["seq"] = document["seq"]
        values["time"] = _parse_time(document["time"])
        values["duration_ms"] = _parse_duration(document["duration_us"])
        purposes = document["purpose_ids"]
        if not isinstance(purposes, list):
            raise _bad("purpose_ids must be a list")
        values["purpose_ids"] = tuple(purposes)
        return cls(**values, body=body)


_DRAFT_FIELDS: Final = tuple(f.name for f in fields(AuditRecordDraft))
# Fields serialised as they are; the others (seq, time, duration, purpose ids) are converted.
_JSON_PLAIN_FIELDS: Final = tuple(
    f.name
    for f in fields(AuditRecordDraft)
    if f.name not in ("time", "duration_ms", "purpose_ids", "body")
)
_plain_values: Final = operator.attrgetter(*_JSON_PLAIN_FIELDS)
_JSON_KEYS: Final = frozenset(
    {*_JSON_PLAIN_FIELDS, "v", "seq", "time", "duration_us", "purpose_ids"}
)


def format_time(value: datetime) -> str:
    """A UTC time as recorded: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as text)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise _bad(f"time {value!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise _bad(f"time {value!r} is not a valid date and time") from exc


def _parse_duration(value: object) -> float | None:
    if value is None:
        return None
    _check_int("duration_us", value, 0, _MAX_INT)
    assert isinstance(value, int)
    return value / 1000


def leaf_hash(record: AuditRecord | bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || canonical JSON) of a record (or of its JSON)."""
    canonical = record.to_canonical_json() if isinstance(record, AuditRecord) else record
    return hashlib.sha256(b"\x00" + canonical).digest()


def body_digest(data: bytes) -> str:
    """Base64 SHA-512 of a body's bytes, as recorded in ``body_digest``."""
    return base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


class BodyFields(TypedDict):
    """The body-related fields of a draft, filled consistently by `body_fields`."""

    size: int
    body_digest: str | None
    body: bytes | None
    body_policy: AuditBody


def body_fields(body: bytes, policy: AuditBody) -> BodyFields:
    """Size, digest and (under policy ``plain`` only) the body, for ``AuditRecordDraft(**...)``.

    ``none`` keeps the size only: a digest of a short body (a personal code) could be
    guessed by brute force. ``digest`` keeps the SHA-512; ``encrypted`` keeps only the digest
    too until the key configuration exists — storing less than asked, never more.
    """
    return BodyFields(
        size=len(body),
        body_digest=None if policy == "none" else body_digest(body),
        body=body if policy == "plain" else None,
        body_policy=policy,
    )
