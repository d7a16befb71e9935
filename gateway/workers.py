"""``obmin serve --workers N``: N gateway processes behind the same client ports (SPEC 10).

This process, the supervisor, starts N workers. Each is an ``obmin serve`` of the same
settings (and environment) and binds the client ports with ``SO_REUSEPORT``, so the kernel
spreads connections among them. What must be one for the gateway is one:

- the audit log: both stores number records inside their own transaction, so the workers
  append to one log under one origin; worker 0, the *primary*, alone signs its checkpoints
  (reading every worker's records from the store) and runs retention;
- the replay cache and the rate limits: in Redis, required for more than one worker (each
  process's own memory would let a message replayed to another worker through, and multiply
  every rate limit by N);
- the admin port: served by the primary only. Its auditor API and evidence read the shared
  log, its ``/metrics`` adds up every worker's (through files in a directory the supervisor
  makes, `gateway.metrics`), its ``/readyz`` describes the primary.

Signals: SIGTERM or SIGINT stops the workers, the secondaries first, so that the primary's
final checkpoint covers their last records, then the supervisor. SIGHUP reloads the registry
in every worker. A reload asked on the admin port reaches the primary, which sends SIGUSR1
here; the supervisor passes it to the secondaries as SIGHUP. Workers ignore SIGINT (a
terminal's Ctrl-C reaches the whole process group; the supervisor orders the stop).

A worker that exits is started again. When one has exited `CRASH_LIMIT` times within
`CRASH_WINDOW` seconds, the supervisor stops the gateway with exit status 1: it would only
exit again (a port in use, a file it cannot read).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import structlog
from prometheus_client.multiprocess import mark_process_dead

from gateway.metrics import MULTIPROCESS_DIR_VARIABLE
from gateway.settings import Settings, SettingsError

__all__ = ["CRASH_LIMIT", "CRASH_WINDOW", "MAX_WORKERS", "check_workers", "supervise"]

log = structlog.get_logger("obmin")

MAX_WORKERS: Final = 64
CRASH_LIMIT: Final = 3  # exits of one worker within CRASH_WINDOW that stop the gateway
CRASH_WINDOW: Final = 60.0  # seconds
STOP_TIMEOUT: Final = 30.0  # seconds a worker has to finish its exchanges before SIGKILL
_POLL: Final = 0.2


def check_workers(settings: Settings, count: int) -> None:
    """Refuse a worker count the settings cannot serve correctly (`SettingsError`)."""
    if not 1 <= count <= MAX_WORKERS:
        raise SettingsError(f"--workers {count}: give a number from 1 to {MAX_WORKERS}")
    if count > 1 and settings.shared_state.backend != "redis":
        raise SettingsError(
            f"--workers {count}: shared_state.backend must be redis (it is"
            f" {settings.shared_state.backend}): the replay cache and the rate limits must be"
            " shared, or a message replayed to another worker would be accepted"
        )


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    exits: tuple[float, ...] = ()  # when this worker's earlier processes exited (monotonic)


def _ignore_reload_and_interrupt() -> None:
    # In the child before exec: SIG_IGN survives exec (handlers do not). A SIGHUP before
    # the worker's own handler is installed would otherwise kill it; SIGINT is the
    # supervisor's to act on.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _spawn(
    config: Path, index: int, count: int, metrics: Path, exits: tuple[float, ...] = ()
) -> _Worker:
    command = [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)]
    command += ["--workers", str(count), "--worker-index", str(index)]
    environment = {**os.environ, MULTIPROCESS_DIR_VARIABLE: str(metrics)}
    # The supervisor runs no threads, so preexec_fn is safe here.
    process = subprocess.Popen(command, env=environment, preexec_fn=_ignore_reload_and_interrupt)
    log.info("worker started", worker=index, pid=process.pid)
    return _Worker(index, process, exits)


def _stop(workers: list[_Worker]) -> None:
    """SIGTERM the secondaries, wait, then the primary (its final checkpoint is last)."""
    for group in (workers[1:], workers[:1]):
        for worker in group:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in group:
            try:
                worker.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killed", worker=worker.index)  # noqa: TRY400 (no traceback to show)
                worker.process.kill()
                worker.process.wait()


def supervise(config: Path, count: int) -> int:
    """Run ``count`` workers of the settings file ``config`` until SIGTERM or SIGINT.

    Returns the exit status: 0 after a requested stop, 1 when a worker kept exiting.
    """
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(handled, note)
    # Every worker's metric values, for the primary's /metrics (`gateway.metrics`).
    metrics = Path(tempfile.mkdtemp(prefix="obmin-metrics-"))
    workers = [_spawn(config, index, count, metrics) for index in range(count)]
    try:
        while True:
            while received:
                signum = received.pop(0)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("stopping the workers", signal=signal.Signals(signum).name)
                    _stop(workers)
                    return 0
                # SIGHUP: every worker reloads; SIGUSR1: the primary has, the others now.
                targets = workers if signum == signal.SIGHUP else workers[1:]
                for worker in targets:
                    if worker.process.poll() is None:
                        worker.process.send_signal(signal.SIGHUP)
            for position, worker in enumerate(workers):
                code = worker.process.poll()
                if code is None:
                    continue
                now = time.monotonic()
                exits = (*(t for t in worker.exits if now - t < CRASH_WINDOW), now)
                if len(exits) >= CRASH_LIMIT:
                    log.error(
                        "worker keeps exiting; stopping the gateway",
                        worker=worker.index,
                        status=code,
                        exits=len(exits),
                    )
                    _stop(workers)
                    return 1
                log.warning("worker exited; starting it again", worker=worker.index, status=code)
                # Its gauges no longer count (prometheus_client has no annotations here).
                mark_process_dead(worker.process.pid, str(metrics))  # type: ignore[no-untyped-call]
                workers[position] = _spawn(config, worker.index, count, metrics, exits)
            time.sleep(_POLL)
    except BaseException:
        _stop(workers)
        raise
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
