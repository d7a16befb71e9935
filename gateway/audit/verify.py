"""``obmin audit verify``: recompute the whole log and check it against its signed checkpoints.

Two kinds of check, each reporting the first bad sequence number:

* every record (`_check_records`): the row's sequence number is the next one (no record
  deleted); the stored leaf hash is SHA-256(0x00 || canonical JSON) (the record was not
  edited in place); the bytes are exactly the canonical JSON of a valid record with that
  ``seq`` (a swapped or rewritten row says another ``seq``); the query columns beside it
  agree with it; a stored body matches its digest.
* the tree (`verify_log`): the RFC 9162 tree is rebuilt from the leaf hashes; at every
  stored checkpoint's size its root must equal the checkpoint's, and the checkpoint must be
  a note signed by the log key for this origin. A record rewritten together with its leaf
  hash passes the first kind of check and fails here: it lies between the previous good
  checkpoint and this one. A checkpoint larger than the log means records were removed.

Record checks dominate the cost, so for large logs they run in worker processes, chunk by
chunk, while this process rebuilds the tree; the log is read in batches by primary key.
Nothing here trusts the stored tree state (compact ranges) of the checkpointer.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import operator
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.bodies import body_digest
from gateway.audit.checkpoint import VerifierKey, verify_checkpoint
from gateway.audit.checkpointer import load_log_key
from gateway.audit.errors import AuditError, InvalidAuditRecord, InvalidCheckpoint
from gateway.audit.merkle import EMPTY_ROOT, HASH_SIZE, CompactRange
from gateway.audit.records import check_canonical

if TYPE_CHECKING:
    from gateway.audit.sqlite_store import SqliteAuditStore
    from gateway.settings import Settings

__all__ = ["VerifyReport", "verify_log", "verify_log_cli"]

CHUNK: Final = 32_768  # records per unit of work
PARALLEL_FROM: Final = 200_000  # below this many records, worker start-up costs more than it saves
_ROWS: Final = (
    "SELECT seq, canonical, leaf_hash, body, request_id, message_id, client, service, time,"
    " direction FROM records WHERE seq >= ? AND seq < ? ORDER BY seq"
)
_LEAVES: Final = "SELECT seq, leaf_hash FROM records WHERE seq >= ? AND seq < ? ORDER BY seq"
_COLUMNS: Final = ("request_id", "message_id", "client", "service", "time", "direction")
_columns = operator.itemgetter(*_COLUMNS)
_Problem = tuple[int, str]  # (first bad seq, what is wrong)
_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of `verify_log`: counts, the recomputed root, and the first problem.

    ``first_bad_seq`` and ``problem`` are None when the log verifies. For a checkpoint that
    fails, ``first_bad_seq`` is the first record it no longer vouches for (the size of the
    previous good checkpoint) and ``bad_checkpoint`` its tree size.
    """

    path: Path
    records: int
    checkpoints: int
    covered: int
    root: bytes
    seconds: float
    first_bad_seq: int | None = None
    bad_checkpoint: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the whole log verified."""
        return self.problem is None

    def summary(self) -> str:
        """A few lines for the operator."""
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        if not self.ok:
            return (
                f"FAILED: {self.path}: first bad record seq {self.first_bad_seq}: {self.problem}\n"
                f"checked in {self.seconds:.2f} s"
            )
        lines = [
            f"OK: {self.path}: {self.records} records, {self.checkpoints} checkpoints verified",
            f"tree root {self.root.hex()} at size {self.records}",
            f"checked in {self.seconds:.2f} s ({rate:.0f} records/s)",
        ]
        if self.records > self.covered:
            lines.append(
                f"note: records {self.covered} to {self.records - 1} are not yet covered by a"
                " checkpoint (the gateway signs one within seconds)"
            )
        if self.checkpoints == 0 and self.records:
            lines.append("warning: no checkpoint vouches for this log")
        return "\n".join(lines)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise AuditError(f"cannot open the audit database {path}: {exc}") from exc


def _column_problem(document: dict[str, object], row: tuple[object, ...]) -> str:
    for name, stored in zip(_COLUMNS, row, strict=True):
        if document[name] != stored:
            return f"the {name} column says {stored!r}, the record {document[name]!r}"
    return "the query columns disagree with the record"  # pragma: no cover (caller checked)


def _check_records(path: str, start: int, end: int) -> _Problem | None:
    """The first bad record among seq ``start`` to ``end - 1``, or None (a worker's job)."""
    conn = _connect(Path(path))
    sha256 = hashlib.sha256
    expected = start
    try:
        cursor = conn.execute(_ROWS, (start, end))
        while rows := cursor.fetchmany(4096):
            for row in rows:
                seq, canonical, leaf, body = row[0], row[1], row[2], row[3]
                if seq != expected:
                    return expected, f"record {expected} is missing (deleted)"
                if type(canonical) is not bytes:
                    return seq, "the stored record is not a blob"
                if sha256(b"\x00" + canonical).digest() != leaf:
                    return seq, "the stored leaf hash is not the hash of the record (edited)"
                try:
                    document = check_canonical(canonical, seq)
                except InvalidAuditRecord as exc:
                    return seq, str(exc)
                if _columns(document) != row[4:]:
                    return seq, _column_problem(document, row[4:])
                if body is not None and (
                    type(body) is not bytes or body_digest(body) != document["body_digest"]
                ):
                    return seq, "the stored body does not match the record's body_digest"
                expected += 1
    except sqlite3.Error as exc:
        raise AuditError(f"cannot read the audit database {path}: {exc}") from exc
    finally:
        conn.close()
    if expected < end:
        return expected, f"record {expected} is missing (deleted)"
    return None


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
    """The tree rebuilt from the stored leaf hashes, checked at each checkpoint's size."""

    def __init__(self, conn: sqlite3.Connection, key: VerifierKey, origin: str) -> None:
        self.conn, self.key, self.origin = conn, key, origin
        self.compact = CompactRange()
        self.good_size = 0  # size of the last checkpoint that verified
        self.verified = 0
        self._checkpoints = self._read_checkpoints()
        self._next = next(self._checkpoints, None)
        self.problem: tuple[int, int, str, int | None] | None = None  # (found at, seq, why, cp)

    def _read_checkpoints(self) -> Iterator[tuple[object, object, object]]:
        (version,) = self.conn.execute("PRAGMA user_version").fetchone()
        if version not in (1, 2):
            raise AuditError(f"not an obmin audit log (schema version {version})")
        if version == 1:
            return iter(())
        cursor = self.conn.execute(
            "SELECT tree_size, root, note FROM checkpoints ORDER BY tree_size"
        )
        return iter(cursor)

    def _fail(self, found_at: int, seq: int, why: str, checkpoint: int | None = None) -> None:
        self.problem = (found_at, seq, why, checkpoint)

    def _check_checkpoint(self, size: int, root: object, note: object) -> None:
        try:
            signed = verify_checkpoint(str(note), self.key, origin=self.origin)
        except InvalidCheckpoint as exc:
            self._fail(size, self.good_size, f"checkpoint {size}: {exc}", size)
            return
        if signed.size != size or signed.root != root:
            why = f"checkpoint {size}: its size or root column differs from its signed note"
            self._fail(size, self.good_size, why, size)
        elif signed.root != self.compact.root():
            why = (
                f"checkpoint {size}: the records do not hash to its signed root; a record"
                f" from seq {self.good_size} to {size - 1} was changed"
            )
            self._fail(size, self.good_size, why, size)
        else:
            self.good_size = size
            self.verified += 1

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
            size, root, note = self._next
            if not isinstance(size, int) or size < self.compact.size:
                return self._fail(
                    self.compact.size, self.good_size, "a checkpoint row is malformed"
                )
            if size > end:
                break
            self.compact.extend(hashes[position - start : size - start])
            position = size
            self._check_checkpoint(size, root, note)
            self._next = next(self._checkpoints, None)
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


def _key(public_key: Ed25519PublicKey | VerifierKey, key_name: str | None) -> VerifierKey:
    if isinstance(public_key, VerifierKey):
        return public_key
    if key_name is None:
        raise InvalidCheckpoint("a bare public key needs its key name")
    return VerifierKey(key_name, public_key)


def verify_log(
    source: Path | str | SqliteAuditStore,
    public_key: Ed25519PublicKey | VerifierKey,
    key_name: str | None,
    origin: str,
    *,
    workers: int | None = None,
) -> VerifyReport:
    """Recompute every record's leaf and the whole tree, and check every stored checkpoint.

    ``source`` is the SQLite file (or a store on it); it is only read. ``public_key`` and
    ``key_name`` are the log key that signs checkpoints (or a `VerifierKey`), ``origin`` the
    log's origin line. ``workers`` processes check records in parallel (default: one per
    CPU, up to 8, for logs of `PARALLEL_FROM` records or more). Blocks: call it from a
    thread in async code. Raises `AuditError` only when the file cannot be read at all;
    everything wrong *in* the log is in the report.
    """
    path = Path(source) if isinstance(source, str | Path) else source.path
    key = _key(public_key, key_name)
    started = time.perf_counter()
    if not path.is_file():
        raise AuditError(f"no audit log at {path}")
    conn = _connect(path)
    try:
        conn.execute("BEGIN")  # one snapshot: records and checkpoints as of now
        (records,) = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM records").fetchone()
        tree = _Tree(conn, key, origin)
        tree.add(0, 0, [])  # a checkpoint of the empty log
        count = workers or (min(os.cpu_count() or 1, 8) if records >= PARALLEL_FROM else 1)
        record_problem = _walk(conn, path, tree, records, max(1, count))
        if record_problem is None:
            tree.finish(records)
    except sqlite3.Error as exc:
        raise AuditError(f"cannot read the audit database {path}: {exc}") from exc
    finally:
        conn.close()
    report = VerifyReport(
        path=path,
        records=records,
        checkpoints=tree.verified,
        covered=tree.good_size,
        root=tree.compact.root() if tree.compact.size == records else EMPTY_ROOT,
        seconds=time.perf_counter() - started,
    )
    if record_problem is not None:
        return _with_problem(report, record_problem[0], record_problem[1], None)
    if tree.problem is not None:
        _, seq, why, checkpoint = tree.problem
        return _with_problem(report, seq, why, checkpoint)
    return report


def _with_problem(report: VerifyReport, seq: int, why: str, checkpoint: int | None) -> VerifyReport:
    return VerifyReport(
        path=report.path,
        records=report.records,
        checkpoints=report.checkpoints,
        covered=report.covered,
        root=report.root,
        seconds=report.seconds,
        first_bad_seq=seq,
        bad_checkpoint=checkpoint,
        problem=why,
    )


def _walk(
    conn: sqlite3.Connection, path: Path, tree: _Tree, records: int, workers: int
) -> _Problem | None:
    """Check records chunk by chunk (in workers) while rebuilding the tree here.

    Returns the first record problem unless the tree found an earlier one.
    """
    executor: Executor = (
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        if workers > 1
        else _Inline()
    )
    chunks = iter(range(0, records, CHUNK))
    queued: deque[tuple[int, int, Future[_Problem | None]]] = deque()

    def queue_next() -> None:
        start = next(chunks, None)
        if start is not None:
            end = min(start + CHUNK, records)
            queued.append((start, end, executor.submit(_check_records, str(path), start, end)))

    with executor:
        for _ in range(2 * workers):  # keep every worker busy while this process waits
            queue_next()
        try:
            while queued:
                start, end, future = queued.popleft()
                rows = conn.execute(_LEAVES, (start, end)).fetchall()
                tree.add(start, end, rows)
                problem = future.result()
                if problem is not None and (tree.problem is None or problem[0] < tree.problem[0]):
                    return problem
                if tree.problem is not None:
                    return None
                queue_next()
        finally:
            for _, _, pending in queued:
                pending.cancel()
    return None


def verify_log_cli(
    settings: Settings,
    *,
    vkey: str | None = None,
    workers: int | None = None,
    passphrase: bytes | None = None,
) -> tuple[int, str]:
    """``obmin audit verify``: (exit status, text). Exit 1 on any mismatch or error.

    The key is the ``vkey`` given (what an auditor holds) or else the public half of the
    configured ``keys.log_key`` (read with ``passphrase``); the key name is the origin, as
    the checkpointer signs.
    """
    try:
        if vkey is not None:
            key = VerifierKey.parse(vkey)
        elif settings.keys.log_key is not None:
            public = load_log_key(settings.keys.log_key, passphrase).public_key()
            key = VerifierKey(settings.audit.origin, public)
        else:
            return 1, "cannot check checkpoints: configure keys.log_key or give the log's vkey"
        report = verify_log(settings.audit.path, key, None, settings.audit.origin, workers=workers)
    except AuditError as exc:
        return 1, f"FAILED: {exc}"
    return (0 if report.ok else 1), f"log key {key.to_vkey()}\n{report.summary()}"
