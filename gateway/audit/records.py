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
from typing import Any, Final, Literal, get_args

import orjson

from gateway.audit.errors import InvalidAuditRecord
from gateway.audit.merkle import hash_leaf
from registry.models import AuditBody, AuthMode

__all__ = [
    "RECORD_VERSION",
    "AuditRecord",
    "AuditRecordDraft",
    "Dialect",
    "Direction",
    "ExchangeProtocol",
    "Outcome",
    "check_canonical",
    "format_time",
    "leaf_hash",
    "member_of",
]

Direction = Literal["request", "response"]
ExchangeProtocol = Literal["soap", "rest"]
Dialect = Literal["xroad", "uxp"]
Outcome = Literal["ok", "fault"]

RECORD_VERSION: Final = 1
_MAX_INT: Final = 2**53 - 1  # JCS: integers must be exact as IEEE-754 doubles
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA512_B64 = re.compile(r"[A-Za-z0-9+/]{86}==")  # base64 of exactly 64 bytes
_CHOICES: Final[dict[str, frozenset[str | None]]] = {
    "direction": frozenset(get_args(Direction)),
    "protocol": frozenset(get_args(ExchangeProtocol)),
    "dialect": frozenset((*get_args(Dialect), None)),
    "outcome": frozenset(get_args(Outcome)),
    "body_policy": frozenset(get_args(AuditBody)),
    "auth_mode": frozenset((*get_args(AuthMode), None)),
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


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise _bad(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _check_encodable(name: str, value: object) -> None:
    """Strings built in Python may hold lone surrogates, which UTF-8 (and JSON) cannot carry."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # e.g. undecodable header bytes
            raise _bad(f"{name} is not valid Unicode text") from exc


def _check_document(document: dict[str, Any]) -> None:
    """Every rule of the record format, on the JSON form of a record (the one validator).

    Drafts are checked on the document they will serialise to, stored rows on the document
    they parse to, so a record read back is held to exactly the rules it was written under.
    The common path is a handful of type tests and three regular expressions.
    """
    for name in _TEXT_FIELDS:
        value = document[name]
        if value is not None and type(value) is not str:
            raise _bad(f"{name} must be a string, got {type(value).__name__}")
    for name in ("request_id", "peer"):
        if type(document[name]) is not str:
            raise _bad(f"{name} must be a string, got {type(document[name]).__name__}")
    if not _UUID.fullmatch(document["request_id"]):
        _explain_request_id(document["request_id"])
    for name, allowed in _CHOICES.items():
        value = document[name]
        if (value is not None and type(value) is not str) or value not in allowed:
            raise _bad(f"{name} must be one of {sorted(map(str, allowed))}, got {value!r}")
    time = document["time"]
    if type(time) is not str or not _TIME.fullmatch(time):
        raise _bad(f"time {time!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    purposes = document["purpose_ids"]
    if type(purposes) is not list:
        raise _bad("purpose_ids must be a list")
    for purpose in purposes:
        if type(purpose) is not str:
            raise _bad(f"purpose_ids[] must be a string, got {type(purpose).__name__}")
    size = document["size"]
    if type(size) is not int or not 0 <= size <= _MAX_INT:
        _check_int("size", size, 0, _MAX_INT)
    if document["http_status"] is not None:
        _check_int("http_status", document["http_status"], 100, 599)
    if document["fault_code"] is not None and document["outcome"] != "fault":
        raise _bad("a record with a fault_code must have outcome 'fault'")
    _check_digest(document["body_policy"], document["body_digest"])
    duration = document["duration_us"]
    if duration is not None:
        _check_int("duration_us", duration, 0, _MAX_INT)
        if document["direction"] != "response":
            raise _bad("only a response record has a duration")


def _explain_request_id(value: str) -> None:
    try:
        canonical_id = str(uuid.UUID(value))
    except ValueError as exc:
        raise _bad(f"request_id {value!r} is not a UUID") from exc
    if canonical_id != value:
        raise _bad(f"request_id {value!r} is not in lower-case UUID form")


def _check_digest(policy: object, digest: object) -> None:
    if policy == "none":
        if digest is not None:
            raise _bad("policy 'none' records neither the body nor its digest")
        return
    if digest is None:
        raise _bad(f"policy {policy!r} requires body_digest")
    if type(digest) is not str:
        raise _bad(f"body_digest must be a string, got {type(digest).__name__}")
    if _SHA512_B64.fullmatch(digest):
        return
    try:
        raw = base64.b64decode(digest, validate=True)
    except binascii.Error as exc:
        raise _bad("body_digest is not base64") from exc
    if len(raw) != hashlib.sha512().digest_size:
        raise _bad("body_digest is not a SHA-512 digest")


def _check_body(body: object, policy: str, size: int) -> None:
    """The body stored beside a record (it is not part of the canonical JSON)."""
    if body is None:
        return
    if not isinstance(body, bytes):
        raise _bad("body must be bytes")
    if policy == "none":
        raise _bad("policy 'none' records neither the body nor its digest")
    if policy == "encrypted":
        return  # an opaque envelope (key id, nonce, ciphertext): any length
    if policy != "plain":
        raise _bad(f"a body may be stored only under policy 'plain' or 'encrypted', not {policy}")
    if len(body) != size:
        raise _bad(f"size {size} does not match the stored body ({len(body)} bytes)")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecordDraft:
    """One audit record before the store has given it a sequence number (SPEC 8).

    ``time`` must be timezone-aware and is normalised to UTC; ``duration_ms`` (responses
    only) is rounded to whole microseconds. ``body_digest`` is absent only under body
    policy ``none``; ``body`` is present only under ``plain`` (the bytes, ``size`` long) or
    ``encrypted`` (an opaque envelope of any length); `BodyStorage` fills ``size``,
    ``body_digest``, ``body`` and ``body_policy`` consistently from the body and the policy
    (a request body refused as too large while it was read is incomplete: its size, no
    digest, policy ``none``, `BodyStorage.incomplete`).
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
        # What JSON cannot express is checked here; everything else on the JSON document.
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise _bad("time must be a timezone-aware datetime")
        try:
            object.__setattr__(self, "time", self.time.astimezone(UTC))
        except OverflowError as exc:
            raise _bad(f"time {self.time!r} is out of range in UTC") from exc
        if not isinstance(self.purpose_ids, tuple):
            raise _bad("purpose_ids must be a tuple of strings")
        for name in _ENCODED_FIELDS:
            _check_encodable(name, getattr(self, name))
        for purpose in self.purpose_ids:
            _check_encodable("purpose_ids[]", purpose)
        self._normalise_duration()
        _check_document(self._document())
        _check_body(self.body, self.body_policy, self.size)

    def _normalise_duration(self) -> None:
        duration = self.duration_ms
        if duration is None:
            return
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise _bad("duration_ms must be a number")
        if not math.isfinite(duration) or not 0 <= duration * 1000 <= _MAX_INT:
            raise _bad(f"duration_ms {duration!r} is out of range")
        object.__setattr__(self, "duration_ms", round(duration * 1000) / 1000)

    def _document(self) -> dict[str, Any]:
        """The JSON document of this record, without ``v`` and ``seq``."""
        duration_us = None if self.duration_ms is None else round(self.duration_ms * 1000)
        document: dict[str, Any] = {
            "time": format_time(self.time),
            "duration_us": duration_us,
            "purpose_ids": list(self.purpose_ids),
        }
        document.update(zip(_JSON_PLAIN_FIELDS, _plain_values(self), strict=True))
        return document

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
        document = self._document()
        document["v"] = RECORD_VERSION
        document["seq"] = self.seq
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_row(cls, canonical: bytes, body: bytes | None = None) -> AuditRecord:
        """Rebuild a record from its canonical JSON and the body stored beside it (if any).

        Raises `InvalidAuditRecord` when the JSON is not a record of this format version:
        a stored row that fails here is corruption or tampering.
        """
        document, time = _load_document(canonical)
        _check_body(body, document["body_policy"], document["size"])
        record = object.__new__(cls)
        for name in _JSON_PLAIN_FIELDS:
            object.__setattr__(record, name, document[name])
        object.__setattr__(record, "seq", document["seq"])
        object.__setattr__(record, "time", time)
        duration = document["duration_us"]
        object.__setattr__(record, "duration_ms", None if duration is None else duration / 1000)
        object.__setattr__(record, "purpose_ids", tuple(document["purpose_ids"]))
        object.__setattr__(record, "body", body)
        return record


def _load_document(canonical: bytes) -> tuple[dict[str, Any], datetime]:
    """Parse and validate a stored record's JSON (not yet known to be canonical)."""
    try:
        document = orjson.loads(canonical)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"stored record is not JSON: {exc}") from exc
    if type(document) is not dict:
        raise _bad("stored record is not a JSON object")
    if document.get("v") != RECORD_VERSION:
        raise _bad(f"unsupported record version {document.get('v')!r}")
    if document.keys() != _JSON_KEYS:
        missing = sorted(_JSON_KEYS - document.keys())
        unexpected = sorted(document.keys() - _JSON_KEYS)
        raise _bad(f"stored record has missing keys {missing}, unexpected keys {unexpected}")
    seq = document["seq"]
    if type(seq) is not int or not 0 <= seq <= _MAX_INT:
        _check_int("seq", seq, 0, _MAX_INT)
    _check_document(document)
    return document, _parse_time(document["time"])


def check_canonical(canonical: bytes, seq: int) -> dict[str, Any]:
    """Check that stored bytes are exactly the canonical JSON of a valid record ``seq``.

    Equivalent to ``AuditRecord.from_row(canonical)`` succeeding with ``.seq == seq`` and
    ``.to_canonical_json() == canonical``, without building the record (the verifier's hot
    path). Returns the parsed document; raises `InvalidAuditRecord` naming what is wrong.
    """
    document, _ = _load_document(canonical)
    if document["seq"] != seq:
        raise _bad(f"the record stored at seq {seq} says seq {document['seq']}")
    duration = document["duration_us"]
    if duration is not None and round(duration / 1000 * 1000) != duration:
        raise _bad(f"duration_us {duration} does not survive the conversion to milliseconds")
    if orjson.dumps(document, option=orjson.OPT_SORT_KEYS) != canonical:
        raise _bad("the stored bytes are not the record's canonical JSON")
    return document


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
_ENCODED_FIELDS: Final = (*_TEXT_FIELDS, "request_id", "peer")


def format_time(value: datetime) -> str:
    """A UTC time as recorded: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as text)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _parse_time(value: str) -> datetime:
    """A time already matched against ``_TIME``, as an aware UTC datetime."""
    try:
        return datetime.fromisoformat(value)  # Python 3.11 reads the "Z" as UTC
    except ValueError as exc:
        raise _bad(f"time {value!r} is not a valid date and time") from exc


def member_of(identifier: str | None) -> str | None:
    """The member part (``INSTANCE/CLASS/CODE``) of a client or service identifier.

    What auditor scopes are matched against; stored beside each record so that a scoped
    query is answered by the store's indexes.
    """
    if not identifier:
        return None
    # "/".join(identifier.split("/")[:3]), without the lists (the verifier calls it per row)
    first = identifier.find("/")
    second = identifier.find("/", first + 1) if first >= 0 else -1
    third = identifier.find("/", second + 1) if second >= 0 else -1
    return identifier if third < 0 else identifier[:third]


def leaf_hash(record: AuditRecord | bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || canonical JSON) of a record (or of its JSON)."""
    canonical = record.to_canonical_json() if isinstance(record, AuditRecord) else record
    return hash_leaf(canonical)
