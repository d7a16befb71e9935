"""Errors of the security package: one root, each class with its stable code.

The codes are the bare X-Road fault names; the gateway adds the ``Client.`` /
``Server.ClientProxy.`` prefix from one table (``gateway/errors.py``).

::

    SecurityError                 InternalError
     ├── MissingSignature         MissingSignature       no wsse:Security / ds:Signature
     ├── InvalidSignatureValue    InvalidSignatureValue  bad value or digest, wrapping, policy
     ├── CertValidation           CertValidation         untrusted, expired, wrong key usage
     ├── StaleMessage             StaleMessage           timestamp outside the clock skew
     ├── PkiError                 InternalError          development PKI files and keys
     └── SigningError             InternalError          our own signer cannot sign
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CertValidation",
    "InvalidSignatureValue",
    "MissingSignature",
    "PkiError",
    "SecurityError",
    "SigningError",
    "StaleMessage",
]


class SecurityError(Exception):
    """Root of every error the security package raises."""

    code: ClassVar[str] = "InternalError"


class MissingSignature(SecurityError):
    """The message carries no WS-Security header or no XML signature at all."""

    code: ClassVar[str] = "MissingSignature"


class InvalidSignatureValue(SecurityError):
    """The signature is present but does not prove what the message shows.

    Raised for a wrong signature value or digest, a disallowed algorithm or transform,
    ambiguous or dangling references, signature wrapping and missing required references.
    """

    code: ClassVar[str] = "InvalidSignatureValue"


class CertValidation(SecurityError):
    """The signer's certificate is malformed, untrusted, outside its validity or unfit."""

    code: ClassVar[str] = "CertValidation"


class StaleMessage(SecurityError):
    """The signed timestamp is too old, in the future, or past its expiry."""

    code: ClassVar[str] = "StaleMessage"


class PkiError(SecurityError):
    """The development PKI cannot be created, or a key or certificate file cannot be read."""


class SigningError(SecurityError):
    """obmin's own signer was given something it cannot sign (no Body, unsupported key)."""
