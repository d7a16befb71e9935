"""Files a registry refers to: certificates (loaded and checked), documents and keys (checked).

Paths are relative to the YAML file that names them. Messages name the path as it was joined,
so an integration engineer sees which file was looked for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509

__all__ = ["CertificateFiles", "check_plain_file", "check_private_key"]

# Certificates and keys are small; a larger file is a wrong path, not a certificate.
_MAX_PEM_BYTES = 1024 * 1024


def check_plain_file(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file, or None when it is."""
    try:
        if not path.exists():
            return f"file not found: {path}"
        if not path.is_file():
            return f"not a regular file: {path}"
        with path.open("rb"):
            pass
    except (OSError, ValueError) as exc:
        return f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    return None


def _read_small(path: Path) -> bytes | str:
    """The file's bytes, or why they cannot be had."""
    problem = check_plain_file(path)
    if problem is not None:
        return problem
    try:
        if path.stat().st_size > _MAX_PEM_BYTES:
            return f"{path} is larger than 1 MiB; expected a PEM file"
        return path.read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"


def check_private_key(path: Path) -> str | None:
    """Why ``path`` is not a PEM private key file, or None. The key is not loaded here."""
    data = _read_small(path)
    if isinstance(data, str):
        return data
    if b"-----BEGIN " not in data or b"PRIVATE KEY-----" not in data:
        return f"not a PEM private key: {path}"
    return None


class CertificateFiles:
    """Loads PEM certificate files once each and remembers their digests for the registry's."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[x509.Certificate, ...] | str] = {}
        self.digests: set[str] = set()

    def load(self, path: Path) -> tuple[x509.Certificate, ...] | str:
        """The certificates in a PEM file (one or more), or a message saying what is wrong."""
        try:
            key = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            key = path.absolute()
        cached = self._cache.get(key)
        if cached is None:
            cached = self._load(path)
            self._cache[key] = cached
        return cached

    def _load(self, path: Path) -> tuple[x509.Certificate, ...] | str:
        data = _read_small(path)
        if isinstance(data, str):
            return data
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except (ValueError, x509.InvalidVersion):
            return f"not a PEM certificate: {path}"
        self.digests.add(hashlib.sha256(data).hexdigest())
        return tuple(certificates)

    @staticmethod
    def ca_problem(path: Path, certificates: tuple[x509.Certificate, ...]) -> str | None:
        """Why the certificates of ``path`` are not one CA certificate, or None."""
        if len(certificates) != 1:
            return f"{path} holds {len(certificates)} certificates; a trust anchor is one CA"
        try:
            constraints = certificates[0].extensions.get_extension_for_class(x509.BasicConstraints)
        except (x509.ExtensionNotFound, ValueError):
            return f"{path} is not a CA certificate (no basicConstraints extension)"
        if not constraints.value.ca:
            return f"{path} is not a CA certificate (basicConstraints cA is false)"
        return None
