"""Helpers shared by the benchmarks: a throwaway deployment run as real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from security import init_pki


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found")


def rss_mb(pid: int) -> float:
    """Current resident set size (VmRSS) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")


def wait_http(url: str, timeout: float = 20) -> None:
    """Wait until ``url`` answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered, even if not with 200
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@dataclass
class Deployment:
    """A gateway process and where it listens."""

    directory: Path
    gateway: subprocess.Popen[bytes]
    client_url: str
    admin_url: str
    pki: Path


@contextmanager
def gateway_process(
    registry: dict[str, Any],
    *,
    settings: dict[str, Any] | None = None,
    directory: Path | None = None,
    workers: int = 1,
) -> Iterator[Deployment]:
    """Run `obmin serve` with ``registry`` in a temporary directory (``workers`` processes:
    more than one shares replay state in the Redis on 127.0.0.1:6379)."""
    with tempfile.TemporaryDirectory(prefix="obmin-bench-") as tmp:
        base = directory or Path(tmp)
        pki = base / "pki"
        if not (pki / "ca" / "ca.crt").exists():
            init_pki(pki)
        registry = json.loads(json.dumps(registry).replace("@CA@", str(pki / "ca" / "ca.crt")))
        (base / "registry").mkdir(exist_ok=True)
        (base / "registry" / "r.yaml").write_text(yaml.safe_dump(registry))
        client_port, admin_port = free_port(), free_port()
        config = {
            "client": {"port": client_port},
            "admin": {"port": admin_port},
            "registry_dir": str(base / "registry"),
            "keys": {
                "signing_certificate": str(pki / "gateway" / "sign.crt"),
                "signing_key": str(pki / "gateway" / "sign.key"),
            },
            "allow_unauthenticated_clients": True,
            "log_level": "warning",
            **(settings or {}),
        }
        if workers > 1:
            config["shared_state"] = {"backend": "redis", "key_prefix": f"bench-{os.getpid()}:"}
        # An ``audit`` section given is completed with the log's path, not replaced by it.
        config["audit"] = {"path": str(base / "audit.db"), **(settings or {}).get("audit", {})}
        (base / "gateway.yaml").write_text(yaml.safe_dump(config))
        profile = os.environ.get("OBMIN_BENCH_PROFILE")  # a file: run the gateway under cProfile
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        process = subprocess.Popen(
            [
                sys.executable,
                *prefix,
                "-m",
                "gateway.cli",
                "serve",
                "-c",
                str(base / "gateway.yaml"),
                *(["--workers", str(workers)] if workers > 1 else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        try:
            wait_http(f"http://127.0.0.1:{admin_port}/healthz")
            yield Deployment(
                base,
                process,
                f"http://127.0.0.1:{client_port}",
                f"http://127.0.0.1:{admin_port}",
                pki,
            )
        finally:
            process.terminate()
            process.wait(timeout=20)
