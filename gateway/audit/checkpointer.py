"""The checkpointer: signs the log's tree head every few seconds and every N records.

It keeps the tree state — a `CompactRange` over the leaves checkpointed so far — and on
each checkpoint reads only the leaf hashes appended since the last one. The state is saved
with each checkpoint, so after a restart it continues from the latest checkpoint (once its
signature and root check out) instead of re-reading the log.

Lifetime: `start` loads the state and starts one background task, kept by reference;
`stop` cancels it and signs a final checkpoint covering everything appended. Hashing a
large catch-up runs in a worker thread, never on the event loop.

Timestamps (SPEC 8, batch timestamping): with a ``timestamper`` (an RFC 3161 `TsaClient`),
every new checkpoint is timestamped by a second owned task, so one TSA call covers every
record since the previous checkpoint. That task never holds the checkpoint lock and the
log never waits for it: appends and checkpoints go on while a TSA call is slow or failing.
A failure is logged and reported (``on_timestamp``, for the metrics); the newest
checkpoint is then retried every ``timestamp_retry_seconds`` until it gets a token, and as
soon as a newer checkpoint is signed, that one is timestamped instead: its token covers
the records of the older one too (a checkpoint commits to the whole tree), which keeps no
token of its own. After a restart, a newest checkpoint still without token is timestamped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoint import (
    Checkpoint,
    VerifierKey,
    sign_checkpoint,
    verify_checkpoint,
)
from gateway.audit.errors import AuditError
from gateway.audit.merkle import NODE_HEIGHT, CompactRange
from gateway.audit.store import CheckpointStore, StoredCheckpoint
from security import SecurityError, load_private_key

if TYPE_CHECKING:
    from gateway.audit.tsa_verify import VerifiedTimestamp
    from gateway.settings import AuditSettings, Settings

__all__ = [
    "Checkpointer",
    "TimestampOutcome",
    "Timestamper",
    "load_log_key",
    "verifier_key_from_settings",
]

log = structlog.get_logger("obmin.audit")

_CHUNK: Final = 65_536  # leaf hashes read (and hashed in a thread) at a time


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Timestamper(Protocol):
    """What timestamps a checkpoint: `gateway.audit.tsa.TsaClient`."""

    @property
    def url(self) -> str:
        """Where the time-stamping authority is (for messages and ``/readyz``)."""
        ...

    async def timestamp(self, data: bytes) -> VerifiedTimestamp:
        """A verified RFC 3161 token over SHA-256 of ``data``; raises `AuditError`."""
        ...


@dataclass(frozen=True, slots=True)
class TimestampOutcome:
    """One attempt to timestamp the checkpoint of ``tree_size``: ``code`` is ``ok`` or the
    error's code (``TsaUnavailable``, ``TimestampRejected``, ``InvalidTimestamp``...)."""

    tree_size: int
    at: datetime
    code: str
    error: str | None = None
    gen_time: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether the checkpoint got its token (and the token is stored)."""
        return self.code == "ok"


def load_log_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read the gateway's Ed25519 log key (PEM PKCS#8, encrypted when ``passphrase`` is
    given, as the development PKI writes it); raises `AuditError`."""
    try:
        key = load_private_key(path, passphrase)
    except SecurityError as exc:
        raise AuditError(f"cannot load the audit log key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"the audit log key {path} is not an Ed25519 key")
    return key


def verifier_key_from_settings(settings: Settings, passphrase: bytes | None) -> VerifierKey:
    """The log's verifier key from the configured ``keys.log_key`` (read with
    ``passphrase``), named by the origin as the checkpointer signs: what the ``obmin audit``
    commands check checkpoints with. Blocks (a passphrase-encrypted key is slow to read).
    A running gateway has it already: `Checkpointer.verifier_key`. Raises `AuditError`."""
    if settings.keys.log_key is None:
        raise AuditError("keys.log_key is not configured: the log has no checkpoints")
    public = load_log_key(settings.keys.log_key, passphrase).public_key()
    return VerifierKey(settings.audit.origin, public)


class Checkpointer:
    """Signs C2SP checkpoints of one store's log with the gateway's log key.

    A checkpoint is signed when ``every_records`` records have been committed since the
    last one, or ``interval_seconds`` after the last one if the log has grown since; never
    twice for the same size. ``key_name`` (the note signer's name) defaults to ``origin``.
    ``clock`` gives the creation time kept beside each checkpoint. ``timestamper`` (when
    a TSA is configured) timestamps each new checkpoint; ``on_timestamp`` hears of every
    attempt (see the module docstring).
    """

    def __init__(
        self,
        store: CheckpointStore,
        key: Ed25519PrivateKey,
        *,
        origin: str,
        key_name: str | None = None,
        interval_seconds: float = 5.0,
        every_records: int = 1000,
        clock: Callable[[], datetime] = _utc_now,
        timestamper: Timestamper | None = None,
        on_timestamp: Callable[[TimestampOutcome], None] | None = None,
        timestamp_retry_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self.origin = origin
        self.key_name = key_name or origin
        self._interval = interval_seconds
        self._every = max(1, every_records)
        self._clock = clock
        self._compact: CompactRange | None = None
        self._latest: Checkpoint | None = None
        self._stored_size: int | None = None  # of the newest stored checkpoint, ours or not
        self._pending = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[Checkpoint | None] | None = None
        self._timestamper = timestamper
        self._on_timestamp = on_timestamp
        self._retry = timestamp_retry_seconds or interval_seconds
        self._unstamped: Checkpoint | None = None  # the newest checkpoint, while it has no token
        self._stamp_wake = asyncio.Event()
        self._stamp_task: asyncio.Task[None] | None = None
        self.last_timestamp: TimestampOutcome | None = None

    @classmethod
    def from_settings(
        cls,
        store: CheckpointStore,
        settings: AuditSettings,
        log_key: Path,
        passphrase: bytes | None = None,
        *,
        timestamper: Timestamper | None = None,
        on_timestamp: Callable[[TimestampOutcome], None] | None = None,
    ) -> Checkpointer:
        """A checkpointer configured by the ``audit`` settings and the log key file."""
        return cls(
            store,
            load_log_key(log_key, passphrase),
            origin=settings.origin,
            interval_seconds=settings.checkpoint_interval_seconds,
            every_records=settings.checkpoint_every_records,
            timestamper=timestamper,
            on_timestamp=on_timestamp,
        )

    @property
    def timestamper(self) -> Timestamper | None:
        """What timestamps checkpoints, when a TSA is configured."""
        return self._timestamper

    @property
    def unstamped(self) -> Checkpoint | None:
        """The newest checkpoint while it still waits for its token (TSA configured)."""
        return self._unstamped

    @property
    def verifier_key(self) -> VerifierKey:
        """The public half of the log key, as auditors hold it (named as it signs)."""
        return VerifierKey(self.key_name, self._key.public_key())

    @property
    def latest(self) -> Checkpoint | None:
        """The newest checkpoint signed or loaded by this checkpointer."""
        return self._latest

    # --- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the tree state, sign a checkpoint if the log grew, start the timer task."""
        if self._task is not None:
            raise AuditError("the checkpointer was already started")
        await self._load_state()
        self._store.add_commit_listener(self._on_commit)
        await self.checkpoint()
        self._task = asyncio.create_task(self._run(), name="obmin-audit-checkpointer")
        if self._timestamper is not None:
            self._stamp_task = asyncio.create_task(
                self._stamp_loop(), name="obmin-audit-timestamps"
            )

    async def stop(self) -> Checkpoint | None:
        """Stop the timer task and sign a final checkpoint; returns the latest checkpoint.

        A failure of the final checkpoint is logged, not raised: the gateway is stopping.
        """
        self._store.remove_commit_listener(self._on_commit)
        if self._compact is None:  # never started (or its start failed): nothing to flush
            return None
        for task in (self._task, self._stamp_task):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])  # a cancel of stop() itself still propagates
        self._task = self._stamp_task = None
        if self._inflight is not None:  # a checkpoint the timer started, shielded from cancel
            with contextlib.suppress(AuditError):
                await self._inflight
        try:
            await self.checkpoint()
        except AuditError as exc:
            log.exception("final audit checkpoint failed", reason=str(exc))
        if self._unstamped is not None:  # one attempt (bounded by the TSA timeout)
            await self._stamp(self._unstamped)
        return self._latest

    def _on_commit(self, records: int) -> None:
        self._pending += records
        if self._pending >= self._every:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancel that
            # arrives as the wait ends, and stop() would then wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            # Shielded: a stop() during the commit must not leave a stored checkpoint that
            # this object does not know about.
            self._inflight = asyncio.ensure_future(self.checkpoint())
            try:
                await asyncio.shield(self._inflight)
            except AuditError as exc:
                log.exception("audit checkpoint failed", reason=str(exc))

    # --- work ------------------------------------------------------------------------------

    async def _load_state(self) -> None:
        stored = await self._store.latest_checkpoint()
        # After retention the log starts at its base: rebuilding starts there, not at 0.
        self._compact = await self._store.tree_base()
        if stored is None:
            return
        self._stored_size = stored.checkpoint.size  # never sign that size a second time
        try:
            checkpoint = verify_checkpoint(
                stored.checkpoint.note,
                self._key.public_key(),
                self.key_name,
                origin=self.origin,
            )
        except AuditError as exc:
            log.warning("latest checkpoint not ours; rebuilding the tree", reason=str(exc))
            return
        compact = stored.compact_range
        if checkpoint.size != compact.size or checkpoint.root != compact.root():
            log.warning("stored tree state does not match its checkpoint; rebuilding the tree")
            return
        self._compact, self._latest = compact, checkpoint
        if self._timestamper is not None and stored.timestamp_token is None:
            self._unstamped = checkpoint  # after a restart: ours, still to be timestamped

    async def checkpoint(self) -> Checkpoint | None:
        """Sign and store a checkpoint now if the log grew since the last one.

        Returns the new checkpoint, or None when there was nothing new. Raises
        `AuditError` when the log cannot be read or the checkpoint stored; the tree state
        is then unchanged and the next attempt starts over from it.
        """
        async with self._lock:
            if self._compact is None:
                raise AuditError("the checkpointer was not started")
            self._pending = 0
            compact = self._compact.copy()
            nodes: list[tuple[int, int, bytes]] = []
            while True:
                hashes = await self._store.leaf_hashes(compact.size, _CHUNK)
                if len(hashes) > 256:
                    nodes += await asyncio.to_thread(compact.extend_collecting, hashes, NODE_HEIGHT)
                else:
                    nodes += compact.extend_collecting(hashes, NODE_HEIGHT)
                if len(hashes) < _CHUNK:
                    break
            if compact.size == self._stored_size:
                return None
            checkpoint = sign_checkpoint(
                self.origin, compact.size, compact.root(), self._key, self.key_name
            )
            stored = StoredCheckpoint(
                checkpoint=checkpoint,
                created=self._clock(),
                compact_range=compact,
                nodes=tuple(nodes),
            )
            await self._store.add_checkpoint(stored)
            self._compact, self._latest = compact, checkpoint
            self._stored_size = checkpoint.size
            log.debug("audit checkpoint", size=checkpoint.size, origin=self.origin)
            if self._timestamper is not None:
                self._unstamped = checkpoint  # supersedes an older one still without token
                self._stamp_wake.set()
            return checkpoint

    # --- timestamps ------------------------------------------------------------------------

    async def _stamp_loop(self) -> None:
        """Timestamp the newest checkpoint; after a failure, retry it every ``_retry``
        seconds, or go on at once to a newer checkpoint."""
        while True:
            target = self._unstamped
            if target is None:
                await self._stamp_wake.wait()
                self._stamp_wake.clear()
                continue
            if await self._stamp(target) or self._unstamped is not target:
                continue
            self._stamp_wake.clear()  # no await since the check: no wake-up is lost
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._retry):
                    await self._stamp_wake.wait()

    async def _stamp(self, target: Checkpoint) -> bool:
        """One attempt to timestamp ``target`` and store the token; whether it worked.

        Runs outside the checkpoint lock: the TSA call may take its whole timeout.
        """
        assert self._timestamper is not None
        try:
            verified = await self._timestamper.timestamp(target.note.encode("utf-8"))
            await self._store.set_checkpoint_timestamp(target.size, verified.token)
        except AuditError as exc:
            outcome = TimestampOutcome(target.size, self._clock(), exc.code, str(exc))
            log.warning(
                "checkpoint timestamp failed; the log goes on, the timestamp is retried",
                size=target.size, code=exc.code, reason=str(exc),
            )  # fmt: skip
            self._report(outcome)
            return False
        except Exception as exc:  # a bug must not end timestamping for good
            log.exception("checkpoint timestamp failed unexpectedly", size=target.size)
            self._report(TimestampOutcome(target.size, self._clock(), "InternalError", str(exc)))
            return False
        if self._unstamped is not None and self._unstamped.size == target.size:
            self._unstamped = None
        log.debug("audit checkpoint timestamped", size=target.size, tsa=self._timestamper.url)
        self._report(TimestampOutcome(target.size, self._clock(), "ok", gen_time=verified.gen_time))
        return True

    def _report(self, outcome: TimestampOutcome) -> None:
        self.last_timestamp = outcome
        if self._on_timestamp is not None:
            self._on_timestamp(outcome)
