"""The audit record: validation, canonical JSON (RFC 8785) and the RFC 9162 leaf hash."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import (
    AuditError,
    AuditRecord,
    AuditRecordDraft,
    BodyFields,
    BodyStorage,
    Direction,
    InvalidAuditRecord,
    body_digest,
    check_canonical,
    leaf_hash,
)
from registry.models import AuditBody
from tests.audit.drafts import draft_body, make_draft


def _jcs(document: Any) -> bytes:
    """RFC 8785 for strings, integers, null, booleans, arrays and objects with ASCII keys,
    by the standard library (an implementation independent of orjson)."""
    return json.dumps(
        document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def test_canonical_json_is_sorted_compact_utf8_and_stable() -> None:
    record = make_draft(user_id='\u0428\u0435\u0432\u0447\u0435\u043d\u043a\u043e\n"q"').to_record(
        7
    )
    canonical = record.to_canonical_json()
    document = orjson.loads(canonical)
    assert canonical == _jcs(document)
    assert list(document) == sorted(document)
    assert b"\xd0\xa8" in canonical  # raw UTF-8, not \u escapes
    assert b'"seq":7' in canonical and b'"v":1' in canonical
    assert document["time"] == "2025-03-14T09:26:53.589793Z"
    # Equal records, built separately, give the same bytes.
    again = dataclasses.replace(record)
    assert again == record and again.to_canonical_json() == canonical


def test_duration_is_integer_microseconds_and_body_is_not_in_the_leaf() -> None:
    record = make_draft(
        direction="response", duration_ms=1.2345678, body=b"secret-ish", policy="plain"
    ).to_record(0)
    assert record.duration_ms == 1.235
    document = orjson.loads(record.to_canonical_json())
    assert document["duration_us"] == 1235 and "duration_ms" not in document
    assert "body" not in document
    assert document["body_digest"] == body_digest(b"secret-ish")
    assert b"secret-ish" not in record.to_canonical_json()
    rebuilt = AuditRecord.from_row(record.to_canonical_json(), b"secret-ish")
    assert rebuilt == record and rebuilt.body == b"secret-ish"


def test_time_is_normalised_to_utc() -> None:
    kyiv = timezone(timedelta(hours=2))
    draft = make_draft(time=datetime(2025, 1, 1, 2, 0, 0, 1, tzinfo=kyiv))
    assert draft.time == datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert draft.time.tzinfo is UTC


def test_leaf_hash_is_rfc9162_leaf() -> None:
    # RFC 6962/9162 test data: the hash of the empty leaf.
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    record = make_draft().to_record(3)
    canonical = record.to_canonical_json()
    assert leaf_hash(record) == hashlib.sha256(b"\x00" + canonical).digest()
    assert leaf_hash(record) != hashlib.sha256(canonical).digest()


async def test_body_fields_follow_the_policy() -> None:
    """What the pipeline records (`BodyStorage`, here without body keys)."""
    body = b"<Envelope/>"
    digest = base64.b64encode(hashlib.sha512(body).digest()).decode()
    request_id = str(uuid.uuid4())

    async def fields(policy: AuditBody) -> BodyFields:
        return await BodyStorage().fields_of(body, policy, request_id, "request")

    assert await fields("none") == {
        "size": 11,
        "body_digest": None,
        "body": None,
        "body_policy": "none",
    }
    assert (await fields("digest"))["body_digest"] == digest
    assert (await fields("digest"))["body"] is None
    # Without keys, encrypted is refused: never recorded as if sealed, never less in silence.
    with pytest.raises(AuditError, match=r"audit\.body_keys is not configured"):
        await fields("encrypted")
    assert (await fields("plain"))["body"] == body


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"time": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"time": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=2)))}, "out of range"),
        ({"direction": "sideways"}, "direction"),
        ({"protocol": "smtp"}, "protocol"),
        ({"dialect": "estonian"}, "dialect"),
        ({"auth_mode": "password"}, "auth_mode"),
        ({"request_id": "not-a-uuid"}, "not a UUID"),
        ({"request_id": str(uuid.uuid4()).upper()}, "lower-case"),
        ({"user_id": "bad \udcff byte"}, "not valid Unicode"),
        ({"purpose_ids": ["list", "not", "tuple"]}, "tuple"),
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"http_status": 0}, "http_status"),
        ({"fault_code": "Client.InvalidSoap"}, "outcome 'fault'"),
        ({"body_digest": "abc"}, "base64"),
        ({"body_digest": base64.b64encode(b"x" * 32).decode()}, "SHA-512"),
        (
            {"body": b"<Envelope>person</Envelope>"},
            "only under policy 'plain' or 'encrypted', not digest",
        ),
        ({"body_policy": "none"}, "neither the body nor its digest"),
        ({"duration_ms": 3.0}, "only a response"),
    ],
)
def test_invalid_drafts_are_refused_at_construction(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidAuditRecord, match=reason) as info:
        dataclasses.replace(make_draft(), **changes)
    assert info.value.code == "InternalError"


@pytest.mark.parametrize("duration", [float("nan"), float("inf"), -1.0])
def test_bad_durations_are_refused(duration: float) -> None:
    with pytest.raises(InvalidAuditRecord, match="duration_ms"):
        make_draft(direction="response", duration_ms=duration)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("peer"), "missing keys \\['peer'\\]"),
        (lambda d: d.update(extra=1), "unexpected keys \\['extra'\\]"),
        (lambda d: d.update(v=2), "unsupported record version"),
        (lambda d: d.update(seq="1"), "seq must be an integer"),
        (lambda d: d.update(time="2025-01-01T00:00:00Z"), "YYYY-MM-DD"),
        (lambda d: d.update(time="2025-13-01T00:00:00.000000Z"), "valid date"),
        (lambda d: d.update(duration_us=1.5), "duration_us"),
        (lambda d: d.update(purpose_ids="x"), "purpose_ids must be a list"),
        (lambda d: d.update(client=5), "client must be a string"),
    ],
)
def test_from_row_refuses_rows_that_are_not_records(mutate: Any, reason: str) -> None:
    document = orjson.loads(make_draft(direction="response").to_record(1).to_canonical_json())
    mutate(document)
    with pytest.raises(InvalidAuditRecord, match=reason):
        AuditRecord.from_row(orjson.dumps(document))


@pytest.mark.parametrize("row", [b"not json", b"[1, 2]"])
def test_from_row_refuses_garbage(row: bytes) -> None:
    with pytest.raises(InvalidAuditRecord):
        AuditRecord.from_row(row)


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_OPTIONAL = st.none() | _TEXT


@st.composite
def _records(draw: st.DrawFn) -> AuditRecord:
    directions: tuple[Direction, ...] = ("request", "response")
    direction = draw(st.sampled_from(directions))
    body = draw(st.binary(max_size=64))
    policy = draw(st.sampled_from(["none", "digest", "encrypted", "plain"]))
    fault = draw(st.none() | st.sampled_from(["Client.InvalidSoap", "Server.ClientProxy.X"]))
    draft = AuditRecordDraft(
        time=draw(
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2200, 1, 1),
                timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
            )
        ),
        direction=direction,
        request_id=str(draw(st.uuids())),
        protocol=draw(st.sampled_from(["soap", "rest"])),
        dialect=draw(st.sampled_from([None, "xroad", "uxp"])),
        outcome="fault" if fault else draw(st.sampled_from(["ok", "fault"])),
        fault_code=fault,
        peer=draw(_TEXT),
        message_id=draw(_OPTIONAL),
        client=draw(_OPTIONAL),
        service=draw(_OPTIONAL),
        user_id=draw(_OPTIONAL),
        issue=draw(_OPTIONAL),
        represented_party=draw(_OPTIONAL),
        subject_id=draw(_OPTIONAL),
        purpose_ids=tuple(draw(st.lists(_TEXT, max_size=3))),
        rest_method=draw(st.none() | st.sampled_from(["GET", "POST"])),
        rest_path=draw(_OPTIONAL),
        http_status=draw(st.none() | st.integers(100, 599)),
        signature_value_digest=draw(_OPTIONAL),
        signer_thumbprint=draw(_OPTIONAL),
        auth_mode=draw(st.sampled_from([None, "signature", "mtls", "signature+mtls", "none"])),
        duration_ms=(
            draw(st.none() | st.floats(0, 1e9, allow_nan=False))
            if direction == "response"
            else None
        ),
        **draft_body(body, policy),  # type: ignore[arg-type]
    )
    return draft.to_record(draw(st.integers(0, 2**53 - 1)))


@given(_records())
def test_canonical_json_round_trip(record: AuditRecord) -> None:
    canonical = record.to_canonical_json()
    rebuilt = AuditRecord.from_row(canonical, record.body)
    assert rebuilt == record
    assert rebuilt.to_canonical_json() == canonical
    assert canonical == _jcs(orjson.loads(canonical))  # what an independent JCS gives
    assert leaf_hash(rebuilt) == leaf_hash(record)


@given(_records())
def test_check_canonical_agrees_with_from_row(record: AuditRecord) -> None:
    canonical = record.to_canonical_json()
    document = check_canonical(canonical, record.seq)
    assert document == orjson.loads(canonical)
    assert AuditRecord.from_row(canonical).to_canonical_json() == canonical


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: orjson.dumps(orjson.loads(c), option=orjson.OPT_INDENT_2), "canonical JSON"),
        (lambda c: c.replace(b'"auth_mode"', b' "auth_mode"', 1), "canonical JSON"),
        (lambda c: json.dumps(orjson.loads(c)).encode(), "canonical JSON"),  # unsorted, spaced
        (lambda c: c.replace(b'"seq":7', b'"seq":8'), "says seq 8"),
        (
            lambda c: c.replace(b'"direction":"response"', b'"direction":"request"'),
            "only a response",
        ),
    ],
)
def test_check_canonical_refuses_other_bytes(mutate: Any, reason: str) -> None:
    canonical = make_draft(direction="response").to_record(7).to_canonical_json()
    with pytest.raises(InvalidAuditRecord, match=reason):
        check_canonical(mutate(canonical), 7)


@given(st.lists(st.sampled_from(["A", "B", "", "x/y", "GOV", "1"]), max_size=6).map("/".join))
def test_member_of_is_the_first_three_parts(identifier: str) -> None:
    from gateway.audit import member_of

    expected = "/".join(identifier.split("/")[:3]) if identifier else None
    assert member_of(identifier) == expected
