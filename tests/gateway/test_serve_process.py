"""`obmin serve` as a real process: start, readiness, SIGHUP reload, SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.gateway.conftest import registry_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return dict(json.loads(response.read()))


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return _get_json(url)
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the gateway did not become ready")


def test_serve_reload_on_sighup_and_stop_on_sigterm(dev_pki: Path, tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry = registry_for(dev_pki / "ca" / "ca.crt", "http://127.0.0.1:9")
    (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    client_port, admin_port = _free_port(), _free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "client": {"port": client_port},
                "admin": {"port": admin_port},
                "registry_dir": str(registry_dir),
                "keys": {
                    "signing_certificate": str(dev_pki / "gateway" / "sign.crt"),
                    "signing_key": str(dev_pki / "gateway" / "sign.key"),
                },
                "audit": {"path": str(tmp_path / "audit.db")},
            }
        ),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OBMIN_LOG_LEVEL": "warning"},
    )
    try:
        ready = _wait_ready(f"http://127.0.0.1:{admin_port}/readyz", process)
        assert ready["ready"] is True

        registry["services"][0]["url"] = "http://127.0.0.1:10/moved"
        (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        last = None
        while time.monotonic() < deadline and last is None:
            details = _get_json(f"http://127.0.0.1:{admin_port}/readyz")["details"]
            last = details["registry"]["last_reload"]  # type: ignore[index]
            time.sleep(0.1)
        assert last == {"ok": True, "trigger": "signal", "at": last["at"], "error": None}

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
