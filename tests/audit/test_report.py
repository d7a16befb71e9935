"""``obmin audit query`` output and opening the configured store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.audit import (
    AuditError,
    AuditRecord,
    format_records,
    open_audit_store,
    query_records_cli,
)
from gateway.settings import AuditSettings
from tests.audit.drafts import CLIENT, exchange, make_draft


async def _fill(path: Path) -> list[AuditRecord]:
    store = await open_audit_store(AuditSettings(path=path))
    try:
        records = await store.append(exchange("m-1"))
        records += await store.append(
            [
                make_draft(message_id="m-2", outcome="fault", fault_code="Client.InvalidSoap"),
                make_draft(message_id="m-3", client="SEVDEIR-TEST/GOV/11112222/OTHER"),
            ]
        )
    finally:
        await store.close()
    return records


async def test_table_lists_newest_records_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "var" / "audit.db"
    records = await _fill(path)
    text = await query_records_cli(AuditSettings(path=path), limit=3)
    lines = text.splitlines()
    assert lines[0].split() == [
        "SEQ",
        "TIME",
        "DIR",
        "REQUEST",
        "ID",
        "MESSAGE",
        "ID",
        "CLIENT",
        "SERVICE",
        "RESULT",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert lines[1].split()[-2:] == ["ok", "200"]
    assert lines[2].endswith("Client.InvalidSoap")
    # Columns line up: every row starts its REQUEST ID column at the same place.
    start = lines[0].index("REQUEST ID")
    assert {line[start:].split()[0] for line in lines[1:]} == {r.request_id for r in records[1:]}

    only_client = await query_records_cli(AuditSettings(path=path), client=CLIENT, limit=10)
    assert len(only_client.splitlines()) == 1 + 3
    nothing = await query_records_cli(AuditSettings(path=path), message_id="none")
    assert nothing.splitlines()[-1] == "(no matching records)"


async def test_json_lines_are_the_canonical_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    records = await _fill(path)
    text = await query_records_cli(
        AuditSettings(path=path), request_id=records[0].request_id, fmt="jsonl"
    )
    lines = text.encode().splitlines()
    assert lines == [r.to_canonical_json() for r in records[:2]]
    assert orjson.loads(lines[0])["direction"] == "request"
    assert format_records([], "jsonl") == ""


async def test_query_of_a_missing_log_is_an_error_not_a_new_log(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "audit.db"
    with pytest.raises(AuditError, match="cannot open the audit database"):
        await query_records_cli(AuditSettings(path=path))
    assert not path.parent.exists()
