"""Registry test fixtures: certificates made here with `cryptography`, registry directories
written into ``tmp_path``."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _certificate(
    common_name: str,
    *,
    ca: bool,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return name, key, certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def ca_pem() -> bytes:
    """A self-signed CA certificate (PEM)."""
    return _certificate("obmin registry test CA", ca=True)[2]


@pytest.fixture(scope="session")
def leaf_pem() -> bytes:
    """An end-entity certificate (PEM), not a CA: what subsystems pin."""
    name, key, _ = _certificate("issuer", ca=True)
    return _certificate("SEVDEIR-TEST/GOV/12345678 CLIENT", ca=False, issuer=(name, key))[2]


# The base registry that every case of the table-driven tests starts from. The line numbers
# in the expected messages refer to these texts.
BASE: dict[str, str] = {
    "00-instance.yaml": """\
instance: SEVDEIR-TEST
trust_anchors:
  - name: dev-ca
    certificate: certs/ca.pem
""",
    "10-members.yaml": """\
members:
  - id: SEVDEIR-TEST/GOV/12345678
    name: Ministry of Social Policy
    subsystems:
      - code: CLIENT
        signing_certificates: [certs/client.pem]
      - code: LEGACY
        auth: none
  - id: SEVDEIR-TEST/GOV/87654321
    name: State Registry Service
    subsystems:
      - code: REGISTRY
""",
    "20-services.yaml": """\
services:
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    code: getPerson
    version: v1
    type: soap
    url: http://127.0.0.1:8090/soap
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    code: persons
    type: rest
    url: http://127.0.0.1:8090/rest
""",
    "30-access.yaml": """\
access:
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: getPerson
    clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]
""",
}

RegistryWriter = Callable[[dict[str, str | bytes | None]], Path]


@pytest.fixture
def write_registry(tmp_path: Path, ca_pem: bytes, leaf_pem: bytes) -> RegistryWriter:
    """Write `BASE` changed by ``files`` (None removes a file) into a new directory."""
    counter = iter(range(1_000_000))

    def write(files: dict[str, str | bytes | None]) -> Path:
        directory = tmp_path / f"registry{next(counter)}"
        (directory / "certs").mkdir(parents=True)
        (directory / "certs" / "ca.pem").write_bytes(ca_pem)
        (directory / "certs" / "client.pem").write_bytes(leaf_pem)
        for name, content in {**BASE, **files}.items():
            if content is None:
                continue
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return directory

    return write
