"""The container image's default start, replayed without Docker.

Docker is not available to the tests, so this test reads the ``Dockerfile``: it lays out the
files its ``COPY config/...`` lines put into the image under a temporary root directory, and
runs its ``CMD`` with every absolute path moved under that root. The first start must create
the PKI in the volume directory and serve (``HEALTHCHECK``'s ``/healthz``, ``/readyz`` ready);
a second start must reuse that PKI; nothing may be written outside the volume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
VOLUME = "/var/lib/obmin"


def _lay_out_image(root: Path) -> None:
    """Apply the Dockerfile's ``COPY config/... DEST`` lines under ``root``."""
    copies = re.findall(r"^COPY (config/\S*) (/\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert copies, "the Dockerfile copies no configuration"
    for source, dest in copies:
        target = root / dest.lstrip("/")
        # Docker: a source directory's contents are copied into the destination directory.
        shutil.copytree(REPO / source, target, dirs_exist_ok=True)


def _instruction(name: str) -> list[str]:
    """An exec-form instruction of the Dockerfile (``CMD ["serve", ...]``)."""
    match = re.search(rf"^{name} (\[.*\])$", DOCKERFILE, flags=re.MULTILINE)
    assert match is not None, f"the Dockerfile has no exec-form {name}"
    value = json.loads(match[1])
    assert isinstance(value, list)
    return [str(item) for item in value]


def _command(root: Path) -> list[str]:
    """The image's ENTRYPOINT and CMD, absolute paths moved under ``root``."""
    entrypoint = _instruction("ENTRYPOINT")
    cmd = _instruction("CMD")
    assert entrypoint == ["obmin"]
    return [
        str(Path(sys.executable).with_name("obmin")),
        *(str(root / arg.lstrip("/")) if arg.startswith("/") else arg for arg in cmd),
    ]


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _start(root: Path, client_port: int, admin_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBMIN_")}
    # Loopback and free ports instead of the image's 0.0.0.0:8080/4000; paths untouched.
    env.update(
        OBMIN_CLIENT__HOST="127.0.0.1",
        OBMIN_CLIENT__PORT=str(client_port),
        OBMIN_ADMIN__HOST="127.0.0.1",
        OBMIN_ADMIN__PORT=str(admin_port),
        OBMIN_LOG_LEVEL="warning",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return subprocess.Popen(
        _command(root), cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _healthy(admin_port: int, process: subprocess.Popen[bytes]) -> dict[str, object]:
    url = re.search(r"urlopen\('(http://127\.0\.0\.1:4000/healthz)'", DOCKERFILE)
    assert url is not None, "the HEALTHCHECK calls /healthz on the admin port"
    healthz = url[1].replace(":4000", f":{admin_port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the gateway exited: {out.decode()} {err.decode()}")
        try:
            with urllib.request.urlopen(healthz, timeout=1) as response:
                assert response.status == 200
            with urllib.request.urlopen(healthz.replace("healthz", "readyz"), timeout=2) as ready:
                return dict(json.loads(ready.read()))
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the gateway did not become healthy")


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out.decode() + err.decode()


def test_default_start_creates_the_pki_in_the_volume_and_serves(tmp_path: Path) -> None:
    root = tmp_path / "image"
    _lay_out_image(root)
    (root / VOLUME.lstrip("/")).mkdir(parents=True)  # the (empty) volume
    config_before = _files(root / "etc")
    volume = root / VOLUME.lstrip("/")

    client_port, admin_port = free_port(), free_port()
    first = _start(root, client_port, admin_port)
    try:
        ready = _healthy(admin_port, first)
    finally:
        code, output = _stop(first)
    assert code == 0, output
    assert ready["ready"] is True, ready
    assert f"created a development PKI (CA {volume / 'pki' / 'ca' / 'ca.crt'})" in output
    for name in ("ca/ca.crt", "gateway/sign.crt", "gateway/sign.key", "gateway/log.key"):
        assert (volume / "pki" / name).is_file(), name
    assert (volume / "audit.db").is_file()
    # keys encrypted at rest, under a passphrase only the gateway's user can read
    assert (volume / "pki-passphrase").stat().st_mode & 0o777 == 0o600
    for key in ("gateway/sign.key", "gateway/log.key"):
        assert b"ENCRYPTED PRIVATE KEY" in (volume / "pki" / key).read_bytes(), key
    assert _files(root / "etc") == config_before  # the read-only part stayed as it was
    for path in (p for p in root.rglob("*") if p.is_file()):  # nothing outside the volume
        parts = path.relative_to(root).parts
        assert parts[:2] == ("etc", "obmin") or parts[:3] == ("var", "lib", "obmin"), parts

    ca = (volume / "pki" / "ca" / "ca.crt").read_bytes()
    second = _start(root, client_port, admin_port)
    try:
        assert _healthy(admin_port, second)["ready"] is True
    finally:
        code, output = _stop(second)
    assert code == 0, output
    assert "created a development PKI" not in output
    assert (volume / "pki" / "ca" / "ca.crt").read_bytes() == ca  # kept, not replaced
