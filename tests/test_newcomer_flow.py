"""What README tells a newcomer to do, run as real processes in a fresh directory.

The example deployment (``config/example``) is copied into a temporary directory laid out as
the repository is, so its relative paths (``../../var/pki``) land in the copy's ``var/``. Then,
each as its own process and on free ports: the PKI steps of ``make pki``, ``obmin
example-provider``, ``obmin serve -c config/example/gateway.yaml``, ``obmin demo -c ...``, and
after the gateway stopped, ``obmin audit verify -c ...``.

`PKI_STEPS` and the passphrase file mirror the Makefile's ``pki`` target: when that changes,
change them here and, if needed, `_environment`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE_FILE = "var/pki-passphrase"
_PKI = ("--dir", "var/pki", "--passphrase-file", PASSPHRASE_FILE)
PKI_STEPS: tuple[tuple[str, ...], ...] = (
    ("pki", "init", *_PKI),
    ("pki", "log-key", *_PKI),
    (
        "pki",
        "issue-member",
        "SEVDEIR-TEST/GOV/12345678",
        "--name",
        "Ministry of Social Policy",
        *_PKI,
    ),
)
CONFIG = "config/example/gateway.yaml"

pytestmark = pytest.mark.slow


def _obmin() -> list[str]:
    """The console script README names (.venv/bin/obmin), else the module behind it."""
    script = Path(sys.executable).with_name("obmin")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gateway.cli"]


def _run(args: tuple[str, ...] | list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [*_obmin(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"obmin {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def _environment(client_port: int, admin_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBMIN_")}
    # README: any setting can be overridden by an OBMIN_ variable; here, free ports.
    env.update(OBMIN_CLIENT__PORT=str(client_port), OBMIN_ADMIN__PORT=str(admin_port))
    return env


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def test_newcomer_gets_a_signed_exchange_and_its_audit_records(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config" / "example", tmp_path / "config" / "example")
    provider_port, client_port, admin_port = free_port(), free_port(), free_port()
    services = tmp_path / "config" / "example" / "registry" / "30-services.yaml"
    text = services.read_text(encoding="utf-8")
    assert "http://127.0.0.1:8090/soap" in text  # the port README's example provider uses
    services.write_text(text.replace(":8090/", f":{provider_port}/"), encoding="utf-8")
    env = _environment(client_port, admin_port)

    # make pki: a random passphrase kept in a 0600 file, then the keys encrypted under it
    passphrase = tmp_path / PASSPHRASE_FILE
    passphrase.parent.mkdir()
    passphrase.touch(mode=0o600)
    passphrase.write_text(secrets.token_urlsafe(32) + "\n", encoding="ascii")
    for step in PKI_STEPS:
        _run(step, tmp_path, env)
    assert (tmp_path / "var" / "pki" / "ca" / "ca.crt").is_file()

    logs = tmp_path / "logs"
    logs.mkdir()
    with (
        (logs / "provider.log").open("wb") as provider_log,
        (logs / "gateway.log").open("wb") as gateway_log,
    ):
        provider = subprocess.Popen(
            [*_obmin(), "example-provider", "--port", str(provider_port)],
            cwd=tmp_path,
            env=env,
            stdout=provider_log,
            stderr=subprocess.STDOUT,
        )
        gateway = subprocess.Popen(
            [*_obmin(), "serve", "-c", CONFIG],
            cwd=tmp_path,
            env=env,
            stdout=gateway_log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_http(f"http://127.0.0.1:{admin_port}/readyz", gateway)
            demo = _run(["demo", "-c", CONFIG, "--pki", "var/pki"], tmp_path, env)
        finally:
            gateway_code = _stop(gateway)
            _stop(provider)
    log_text = (logs / "gateway.log").read_text(errors="replace")
    assert gateway_code == 0, log_text

    # The provider's answer, through the gateway ...
    assert "familyName>Kovalenko</" in demo
    assert "faultcode" not in demo
    # ... signed by the gateway and bound to the request ...
    assert "answer signature verified: signed by" in demo
    assert "obmin gateway" in demo.split("answer signature verified: signed by", 1)[1]
    assert "requestHash matches the request:" in demo
    # ... and the two audit records of the exchange.
    table = demo.split("audit records of this exchange", 1)[1]
    rows = [line for line in table.splitlines() if "SEVDEIR-TEST/GOV/12345678/CLIENT" in line]
    assert len(rows) == 2, table
    assert rows[0].split()[2] == "request" and rows[1].split()[2] == "response"
    assert rows[0].split()[3] == rows[1].split()[3]  # one request id for both
    assert all("REGISTRY/getPerson/v1" in row and " ok " in row for row in rows)

    verified = _run(["audit", "verify", "-c", CONFIG], tmp_path, env)
    assert f"OK: {tmp_path / 'var' / 'audit.db'}: 2 records," in verified, verified
