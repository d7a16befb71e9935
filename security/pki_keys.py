"""Key and certificate files of the development PKI, with optional encryption at rest.

A private key is written as PKCS#8 PEM with mode 0600. When a passphrase is configured it is
encrypted (``BestAvailableEncryption``: AES-256-CBC under a scrypt- or PBKDF2-derived key, as
the installed OpenSSL chooses); without one it stays unencrypted, which is what a developer
laptop and the test suite use. The passphrase never comes from the command line, where every
local user could read it in the process list: it comes from the environment variable
``OBMIN_PKI_PASSPHRASE`` or from a file named with ``--passphrase-file`` (see `pki_passphrase`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from security.errors import PkiError

__all__ = [
    "PASSPHRASE_ENV",
    "KeyType",
    "SigningKey",
    "load_certificate",
    "load_private_key",
    "new_key",
    "pki_passphrase",
    "write_cert",
    "write_key",
]

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""The private key types obmin signs with."""

_SIGNING_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)

KeyType = Literal["rsa", "ec", "ed25519"]
"""Key algorithm of an issued certificate: RSA-2048, EC P-256 or Ed25519."""

PASSPHRASE_ENV = "OBMIN_PKI_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
"""The environment variable that holds the passphrase of the PKI's private keys."""


def pki_passphrase(
    environ: Mapping[str, str],
    passphrase_file: Path | None = None,
    *,
    variable: str = PASSPHRASE_ENV,
) -> bytes | None:
    """The configured key passphrase: the file's first line if a file is named, else the
    ``variable`` (default ``OBMIN_PKI_PASSPHRASE``) of ``environ``, else None.

    An empty passphrase is refused: it would look like protection and be none.
    """
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_bytes()
        except OSError as exc:
            raise PkiError(
                f"cannot read passphrase file {passphrase_file}: {exc.strerror}"
            ) from exc
        value = text.splitlines()[0] if text else b""
        where = f"passphrase file {passphrase_file}"
    elif variable in environ:
        value = environ[variable].encode("utf-8")
        where = f"environment variable {variable}"
    else:
        return None
    if not value:
        raise PkiError(f"the {where} holds an empty passphrase")
    return value


def new_key(key_type: KeyType) -> SigningKey:
    """A fresh private key: RSA-2048, EC P-256 or Ed25519."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def write_key(path: Path, key: SigningKey, passphrase: bytes | None = None) -> None:
    """Write ``key`` as PKCS#8 PEM with mode 0600, encrypted when ``passphrase`` is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with 0600 from the start (no window in which the key is world-readable), and
    # tighten an existing file that a previous run left with other bits.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    path.chmod(0o600)


def write_cert(path: Path, cert: x509.Certificate) -> None:
    """Write ``cert`` as PEM, creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_private_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """Read a PEM private key (RSA, EC or Ed25519), encrypted or not, or raise `PkiError`.

    An unencrypted key is read even when a passphrase is configured, so that development
    keys made before the passphrase was set keep working.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read private key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        # Either "password was given but the key is not encrypted" or the reverse.
        if passphrase is None:
            raise PkiError(
                f"{path} is encrypted; set {PASSPHRASE_ENV} or pass a passphrase file"
            ) from exc
        key = _load_unencrypted(path, data)
    except ValueError as exc:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise PkiError(f"cannot decrypt {path}: wrong passphrase") from exc
        raise PkiError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise PkiError(f"{path} holds a {type(key).__name__}; expected RSA, EC or Ed25519")
    return key


def _load_unencrypted(path: Path, data: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as exc:
        raise PkiError(f"{path} is not a PEM private key") from exc


def load_certificate(path: Path) -> x509.Certificate:
    """Read the first certificate of a PEM file (or a DER file) or raise `PkiError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read certificate {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise PkiError(f"{path} is not a PEM or DER X.509 certificate") from exc
