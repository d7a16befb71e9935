"""``obmin audit verify``: recompute a log and check it against its signed checkpoints.

Two kinds of check, each reporting the first bad sequence number:

* every record (`_check_records`): the row's sequence number is the next one (no record
  deleted); the stored leaf hash is SHA-256(0x00 || canonical JSON) (the record was not
  edited in place); the bytes are exactly the canonical JSON of a valid record with that
  ``seq`` (a swapped or rewritten row says another ``seq``); the query columns beside it
  agree with it; a stored body matches its digest (an encrypted one is opened by
  ``open_body`` against the record's binding, which checks the digest).
* the tree (`_Tree`): the RFC 9162 tree is rebuilt from the leaf hashes; at every stored
  checkpoint's size its root must equal the checkpoint's, and the checkpoint must be a note
  signed by the log key for this origin (and its RFC 3161 token, if any, must pass
  ``timestamp_check``). A record rewritten together with its leaf hash passes the first
  kind of check and fails here: it lies between the previous good checkpoint and this one.
  A checkpoint larger than the log means records were removed.

A log that retention has cut, and every archive, starts at a *base*: the tree state (a
compact range) at its first record, which a signed checkpoint of that size in the same
piece must vouch for; so each piece verifies alone. `verify_chain` checks archives and
the live log as one log: they must follow each other without gap, each starting from the
tree state the previous one ended with.

Record checks dominate the cost, so for large logs they run in worker processes, chunk by
chunk, while this process rebuilds the tree. Nothing here trusts the stored tree states
(compact ranges) of the checkpointer.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.bodies import body_digest
from gateway.audit.body_crypto import BodyBinding, OpenBody
from gateway.audit.checkpoint import VerifierKey, verify_checkpoint
from gateway.audit.columns import QUERY_COLUMNS, columns_of_document
from gateway.audit.errors import AuditError, InvalidAuditRecord, InvalidCheckpoint
from gateway.audit.merkle import EMPTY_ROOT, HASH_SIZE, CompactRange
from gateway.audit.records import Direction, check_canonical
from gateway.audit.verify_sources import CheckpointRow, LogReader, LogSource, SqliteSource

if TYPE_CHECKING:
    from gateway.audit.sqlite_store import SqliteAuditStore

__all__ = ["OpenBody", "TimestampCheck", "VerifyReport", "verify_log"]

CHUNK: Final = 32_768  # records per unit of work
PARALLEL_FROM: Final = 200_000  # below this many records, worker start-up costs more than it saves
_CANONICAL, _LEAF, _BODY = 13, 14, 15  # positions in a row (RECORD_COLUMNS)
_P = ParamSpec("_P")
_T = TypeVar("_T")

# (note text, DER token) -> None, or InvalidCheckpoint when the token is bad.
TimestampCheck = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class _Chunk:
    """What a worker found in a range of records."""

    problem: tuple[int, str] | None  # (first bad seq, what is wrong)
    bodies_checked: int = 0
    bodies_not_checked: int = 0


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of verifying one log (or one piece of it): counts, roots, first problem.

    ``start`` is the first sequence number the piece holds (its base; 0 for a log that was
    never cut), ``records`` its size (last seq + 1). ``first_bad_seq`` and ``problem`` are
    None when it verifies. For a checkpoint that fails, ``first_bad_seq`` is the first
    record it no longer vouches for (the size of the previous good checkpoint) and
    ``bad_checkpoint`` its tree size. ``final`` is the tree state at ``records`` (None
    when the piece did not verify), from which the next piece must continue.
    """

    source: str
    records: int
    checkpoints: int
    covered: int
    root: bytes
    seconds: float
    start: int = 0
    start_root: bytes = EMPTY_ROOT
    timestamps: int = 0
    timestamps_not_checked: int = 0
    bodies_checked: int = 0
    bodies_not_checked: int = 0
    final: CompactRange | None = None
    first_bad_seq: int | None = None
    bad_checkpoint: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the whole log verified."""
        return self.problem is None

    @property
    def path(self) -> Path:
        """The log's file, for a SQLite log (what ``source`` names)."""
        return Path(self.source)

    def summary(self) -> str:
        """A few lines for the operator."""
        if not self.ok:
            return (
                f"FAILED: {self.source}: first bad record seq {self.first_bad_seq}:"
                f" {self.problem}\nchecked in {self.seconds:.2f} s"
            )
        checked = self.records - self.start
        rate = checked / self.seconds if self.seconds > 0 else 0.0
        span = f"records {self.start} to {self.records - 1}" if self.start else "records"
        lines = [
            f"OK: {self.source}: {checked} {span}, {self.checkpoints} checkpoints verified",
            f"tree root {base64.b64encode(self.root).decode()} at size {self.records}",
            f"checked in {self.seconds:.2f} s ({rate:.0f} records/s)",
        ]
        if self.start:
            lines.append(
                f"note: records 0 to {self.start - 1} are in archives (verify them with"
                " --archives DIR); this log continues from their signed tree state"
            )
        if self.timestamps or self.timestamps_not_checked:
            lines.append(
                f"timestamps: {self.timestamps} verified, {self.timestamps_not_checked} not checked"
            )
        if self.bodies_checked or self.bodies_not_checked:
            lines.append(
                f"stored bodies: {self.bodies_checked} checked against their digests,"
                f" {self.bodies_not_checked} encrypted ones not checked (no key given)"
            )
        if self.records > self.covered:
            lines.append(
                f"note: records {self.covered} to {self.records - 1} are not yet covered by a"
                " checkpoint (the gateway signs one within seconds)"
            )
        if self.checkpoints == 0 and self.records:
            lines.append("warning: no checkpoint vouches for this log")
        return "\n".join(lines)


def _column_problem(document: dict[str, object], row: tuple[object, ...]) -> str:
    for name, expected, stored in zip(
        QUERY_COLUMNS, columns_of_document(document), row[1:_CANONICAL], strict=True
    ):
        if expected != stored:
            return f"the {name} column says {stored!r}, the record {expected!r}"
    return "the query columns disagree with the record"  # pragma: no cover (caller checked)


def _body_problem(
    body: object, document: dict[str, object], open_body: OpenBody | None
) -> tuple[str | None, int, int]:
    """(problem, checked, not checked) for the body stored beside a record."""
    policy = document["body_policy"]
    if type(body) is not bytes:
        return "the stored body is not bytes", 0, 0
    if policy == "plain":
        if body_digest(body) != document["body_digest"]:
            return "the stored body does not match the record's body_digest", 0, 0
    elif policy == "encrypted":
        if open_body is None:
            return None, 0, 1
        try:
            # Opened against the record's binding, the plaintext matches its body_digest.
            open_body(body, _binding(document))
        except AuditError as exc:
            return f"the stored encrypted body cannot be opened: {exc}", 0, 0
    else:
        return f"a body is stored under policy {policy}", 0, 0
    return None, 1, 0


def _binding(document: dict[str, object]) -> BodyBinding:
    """The record's binding; check_canonical has required these fields (a digest under
    ``encrypted``), and `BodyBinding` checks them again (`InvalidEnvelope`)."""
    return BodyBinding(
        cast(str, document["request_id"]),
        cast(Direction, document["direction"]),
        base64.b64decode(cast(str, document["body_digest"])),
    )


def _check_records(
    source: LogSource, snapshot: str | None, start: int, end: int, open_body: OpenBody | None
) -> _Chunk:
    """The first bad record among seq ``start`` to ``end - 1``, or None (a worker's job)."""
    reader = source.open(snapshot)
    sha256 = hashlib.sha256
    expected = start
    checked = not_checked = 0
    rows = reader.rows(start, end)
    try:
        for row in rows:
            seq, canonical, leaf, body = row[0], row[_CANONICAL], row[_LEAF], row[_BODY]
            if seq != expected:
                return _Chunk((expected, f"record {expected} is missing (deleted)"))
            if type(canonical) is not bytes:
                return _Chunk((seq, "the stored record is not bytes"))
            if sha256(b"\x00" + canonical).digest() != leaf:
                return _Chunk((seq, "the stored leaf hash is not the hash of the record (edited)"))
            try:
                document = check_canonical(canonical, seq)
            except InvalidAuditRecord as exc:
                return _Chunk((seq, str(exc)))
            if columns_of_document(document) != row[1:_CANONICAL]:
                return _Chunk((seq, _column_problem(document, row)))
            if body is not None:
                problem, ok, unchecked = _body_problem(body, document, open_body)
                if problem is not None:
                    return _Chunk((seq, problem))
                checked, not_checked = checked + ok, not_checked + unchecked
            expected += 1
    finally:
        rows.close()
        reader.close()
    if expected < end:
        return _Chunk((expected, f"record {expected} is missing (deleted)"))
    return _Chunk(None, checked, not_checked)


class _Inline(Executor):
    """Runs each job at once in this process (small logs: no worker start-up)."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        """Run ``fn`` now; its result or exception is in the returned future."""
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever reads the future
            future.set_exception(exc)
        return future


class _Tree:
    """The tree rebuilt from the stored leaf hashes, checked at each checkpoint's size.

    It starts from the piece's base; a base above 0 must be vouched for by a signed
    checkpoint of exactly that size, whose root the base's root must be.
    """

    def __init__(
        self,
        reader: LogReader,
        key: VerifierKey,
        origin: str,
        timestamp_check: TimestampCheck | None,
    ) -> None:
        self.key, self.origin, self.timestamp_check = key, origin, timestamp_check
        self.base = reader.base
        self.compact = reader.base.copy()
        self.good_size = reader.base.size  # size of the last checkpoint that verified
        self.verified = self.timestamps = self.timestamps_not_checked = 0
        self._base_vouched = reader.base.size == 0
        self._checkpoints: Iterator[CheckpointRow] = iter(
            row for row in reader.checkpoints() if not _below(row[0], reader.base.size)
        )
        self._next = next(self._checkpoints, None)
        self.problem: tuple[int, int, str, int | None] | None = None  # (found at, seq, why, cp)

    def _fail(self, found_at: int, seq: int, why: str, checkpoint: int | None = None) -> None:
        self.problem = (found_at, seq, why, checkpoint)

    def _check_checkpoint(self, size: int, root: object, note: object, token: object) -> None:
        try:
            signed = verify_checkpoint(str(note), self.key, origin=self.origin)
        except InvalidCheckpoint as exc:
            self._fail(size, self.good_size, f"checkpoint {size}: {exc}", size)
            return
        if signed.size != size or signed.root != root:
            why = f"checkpoint {size}: its size or root column differs from its signed note"
            self._fail(size, self.good_size, why, size)
            return
        if signed.root != self.compact.root():
            if size == self.base.size:
                why = (
                    f"checkpoint {size}: the stored tree state at {size}, where this log"
                    " starts, does not have its signed root"
                )
            else:
                why = (
                    f"checkpoint {size}: the records do not hash to its signed root; a record"
                    f" from seq {self.good_size} to {size - 1} was changed"
                )
            self._fail(size, self.good_size, why, size)
            return
        if token is not None:
            if not isinstance(token, bytes) or self.timestamp_check is None:
                self.timestamps_not_checked += 1
            else:
                try:
                    self.timestamp_check(signed.note, token)
                except InvalidCheckpoint as exc:
                    why = f"checkpoint {size}: its timestamp token is bad: {exc}"
                    self._fail(size, self.good_size, why, size)
                    return
                self.timestamps += 1
        self.good_size = size
        self.verified += 1
        self._base_vouched = True

    def add(self, start: int, end: int, rows: list[tuple[object, object]]) -> None:
        """Add the leaves of records ``start`` to ``end - 1`` and check the checkpoints
        they complete (``end`` = ``start`` checks those of the records added so far)."""
        hashes: list[bytes] = []
        for seq, (stored_seq, leaf) in enumerate(rows, start):
            if stored_seq != seq:
                return self._fail(seq, seq, f"record {seq} is missing (deleted)")
            if type(leaf) is not bytes or len(leaf) != HASH_SIZE:
                return self._fail(seq, seq, "the stored leaf hash is not 32 bytes")
            hashes.append(leaf)
        if len(hashes) != end - start:
            missing = start + len(hashes)
            return self._fail(missing, missing, f"record {missing} is missing (deleted)")
        position = start
        while self._next is not None and self.problem is None:
            size, root, note, token = self._next
            if not isinstance(size, int) or size < self.compact.size:
                return self._fail(
                    self.compact.size, self.good_size, "a checkpoint row is malformed"
                )
            if size > end:
                break
            self.compact.extend(hashes[position - start : size - start])
            position = size
            self._check_checkpoint(size, root, note, token)
            self._next = next(self._checkpoints, None)
        if not self._base_vouched and self.problem is None:
            why = (
                f"the tree state at {self.base.size}, where this log starts, is not vouched for"
                f" by a signed checkpoint of size {self.base.size}"
            )
            return self._fail(self.base.size, self.base.size, why)
        self.compact.extend(hashes[position - start :])
        return None

    def finish(self, records: int) -> None:
        """After the last record: any checkpoint left is larger than the log (truncation)."""
        if self.problem is None and self._next is not None:
            size = self._next[0]
            why = (
                f"checkpoint {size} covers more records than the log holds ({records}):"
                f" records from seq {records} on were removed"
            )
            self._fail(records, records, why, size if isinstance(size, int) else None)


def _below(size: object, base: int) -> bool:
    return isinstance(size, int) and size < base


def _key(public_key: Ed25519PublicKey | VerifierKey, key_name: str | None) -> VerifierKey:
    if isinstance(public_key, VerifierKey):
        return public_key
    if key_name is None:
        raise InvalidCheckpoint("a bare public key needs its key name")
    return VerifierKey(key_name, public_key)


def _source(source: LogSource | Path | str | SqliteAuditStore) -> LogSource:
    if isinstance(source, str | Path):
        return SqliteSource(Path(source))
    path = getattr(source, "path", None)
    if isinstance(path, Path):  # a SqliteAuditStore: verify its file
        return SqliteSource(path)
    return source  # type: ignore[return-value]


def verify_log(
    source: LogSource | Path | str | SqliteAuditStore,
    public_key: Ed25519PublicKey | VerifierKey,
    key_name: str | None,
    origin: str,
    *,
    workers: int | None = None,
    timestamp_check: TimestampCheck | None = None,
    open_body: OpenBody | None = None,
) -> VerifyReport:
    """Recompute every record's leaf and the whole tree, and check every stored checkpoint.

    ``source`` is the log (a `SqliteSource` or `PostgresSource`; a path means a SQLite
    file); it is only read. ``public_key`` and ``key_name`` are the log key that signs
    checkpoints (or a `VerifierKey`), ``origin`` the log's origin line. ``workers``
    processes check records in parallel (default: one per CPU, up to 8, for logs of
    `PARALLEL_FROM` records or more); ``open_body`` must then be picklable.
    ``timestamp_check(note, token)`` checks each checkpoint's RFC 3161 token (raising
    `InvalidCheckpoint`); ``open_body(envelope, binding)`` (`BodyKeyring.open`) opens
    encrypted stored bodies against their records, which checks their digests. Without
    them, tokens and encrypted bodies are counted as not checked. Blocks: call it from a
    thread in async code. Raises `AuditError` only when the log cannot be read at all;
    everything wrong *in* the log is in the report.
    """
    log_source = _source(source)
    key = _key(public_key, key_name)
    started = time.perf_counter()
    reader = log_source.open()
    try:
        records = reader.records
        tree = _Tree(reader, key, origin, timestamp_check)
        tree.add(reader.base.size, reader.base.size, [])  # checkpoints at the base
        count = workers or (
            min(os.cpu_count() or 1, 8) if records - reader.base.size >= PARALLEL_FROM else 1
        )
        if count > 1 and open_body is not None and not _picklable(open_body):
            count = 1
        walk = _Walk(log_source, reader, tree, records, max(1, count), open_body)
        record_problem = walk.run() if tree.problem is None else None
        if record_problem is None:
            tree.finish(records)
    finally:
        reader.close()
    whole = tree.problem is None and record_problem is None and tree.compact.size == records
    report = VerifyReport(
        source=log_source.label,
        records=records,
        checkpoints=tree.verified,
        covered=tree.good_size,
        root=tree.compact.root() if tree.compact.size == records else EMPTY_ROOT,
        seconds=time.perf_counter() - started,
        start=reader.base.size,
        start_root=reader.base.root(),
        timestamps=tree.timestamps,
        timestamps_not_checked=tree.timestamps_not_checked,
        bodies_checked=walk.bodies_checked,
        bodies_not_checked=walk.bodies_not_checked,
        final=tree.compact if whole else None,
    )
    if record_problem is not None:
        return replace(report, first_bad_seq=record_problem[0], problem=record_problem[1])
    if tree.problem is not None:
        _, seq, why, checkpoint = tree.problem
        return replace(report, first_bad_seq=seq, bad_checkpoint=checkpoint, problem=why)
    return report


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return True


class _Walk:
    """Checks records chunk by chunk (in workers) while the tree is rebuilt here."""

    def __init__(
        self,
        source: LogSource,
        reader: LogReader,
        tree: _Tree,
        records: int,
        workers: int,
        open_body: OpenBody | None,
    ) -> None:
        self.source, self.reader, self.tree = source, reader, tree
        self.records, self.workers, self.open_body = records, workers, open_body
        self.bodies_checked = self.bodies_not_checked = 0

    def run(self) -> tuple[int, str] | None:
        """The first record problem, unless the tree found an earlier one."""
        executor: Executor = (
            ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            if self.workers > 1
            else _Inline()
        )
        chunks = iter(range(self.reader.base.size, self.records, CHUNK))
        queued: deque[tuple[int, int, Future[_Chunk]]] = deque()
        snapshot = self.reader.snapshot

        def queue_next() -> None:
            start = next(chunks, None)
            if start is not None:
                end = min(start + CHUNK, self.records)
                job = executor.submit(
                    _check_records, self.source, snapshot, start, end, self.open_body
                )
                queued.append((start, end, job))

        tree = self.tree
        with executor:
            for _ in range(2 * self.workers):  # keep every worker busy while this one waits
                queue_next()
            try:
                while queued:
                    start, end, future = queued.popleft()
                    tree.add(start, end, self.reader.leaves(start, end))
                    chunk = future.result()
                    self.bodies_checked += chunk.bodies_checked
                    self.bodies_not_checked += chunk.bodies_not_checked
                    problem = chunk.problem
                    if problem is not None and (
                        tree.problem is None or problem[0] < tree.problem[0]
                    ):
                        return problem
                    if tree.problem is not None:
                        return None
                    queue_next()
            finally:
                for _, _, pending in queued:
                    pending.cancel()
        return None
