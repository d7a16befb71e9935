"""`obmin serve` as a real process: start, readiness, SIGHUP reload, SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from lxml import etree

from adapters.client import build_soap_request
from adapters.demo import DEMO_NS
from registry.identifiers import ClientId, ServiceId
from tests.gateway.conftest import CLIENT_MEMBER, PROVIDER, registry_for
from tests.gateway.test_signed_exchange import _body
from tests.support import free_port


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


def _get_person(client_port: int) -> str:
    """Send an unsigned getPerson from the LEGACY client; the fault code or the family name."""
    request = build_soap_request(
        ClientId.parse(f"{CLIENT_MEMBER}/LEGACY"),
        ServiceId(ClientId.parse(PROVIDER), "getPerson", "v1"),
        _body(),
    )
    post = urllib.request.Request(
        f"http://127.0.0.1:{client_port}/",
        data=etree.tostring(request),
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )
    with urllib.request.urlopen(post, timeout=10) as response:
        root = etree.fromstring(response.read())
    fault = root.findtext(".//faultcode")
    return fault if fault is not None else root.findtext(f".//{{{DEMO_NS}}}familyName") or ""


def test_serve_reload_on_sighup_and_stop_on_sigterm(dev_pki: Path, tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry = registry_for(dev_pki / "ca" / "ca.crt", "http://127.0.0.1:9")
    registry["members"][0]["subsystems"].append({"code": "LEGACY", "auth": "none"})
    registry["access"][0]["clients"].append(f"{CLIENT_MEMBER}/LEGACY")
    provider_port = free_port()
    (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    client_port, admin_port = free_port(), free_port()
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
                "allow_unauthenticated_clients": True,
            }
        ),
        encoding="utf-8",
    )
    provider = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "example-provider", "--port", str(provider_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        # The service's URL leads nowhere: the provider cannot be reached.
        assert _get_person(client_port) == "Server.ServerProxy.ServiceFailed.NetworkError"

        registry["services"][0]["url"] = f"http://127.0.0.1:{provider_port}/soap"
        (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        last = None
        while time.monotonic() < deadline and last is None:
            details = _get_json(f"http://127.0.0.1:{admin_port}/readyz")["details"]
            last = details["registry"]["last_reload"]  # type: ignore[index]
            time.sleep(0.1)
        assert last == {"ok": True, "trigger": "signal", "at": last["at"], "error": None}
        # The new registry is in force: the same request now reaches the example provider.
        deadline = time.monotonic() + 10
        while _get_person(client_port) != "Kovalenko":  # the provider may still be starting
            assert time.monotonic() < deadline, _get_person(client_port)
            time.sleep(0.1)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        for child in (process, provider):
            if child.poll() is None:
                child.kill()
                child.wait()
        if process.stderr:
            process.stderr.close()
