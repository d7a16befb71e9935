"""Errors of the security package: one root, each class with its stable code.

The codes are the bare X-Road fault names; the gateway adds the ``Client.`` /
``Server.ClientProxy.`` prefix from one table (``gateway/errors.py``).

::

    SecurityError                 InternalError
     ├── MissingSignature         MissingSignature       no wsse:Security / ds:Signature
     ├── InvalidSignatureValue    InvalidSignatureValue  bad value or digest, wrapping, policy
     ├── CertValidation           CertValidation         untrusted, expired, wrong key usage
     ├── StaleMessage             StaleMessage           timestamp outside the clock skew
     ├── ReplayedMessage          ReplayedMessage        (client, message id) seen in the window
     ├── ReplayCacheFull          ReplayCacheFull        in-memory replay cache at its bound
     ├── ReplayCacheUnavailable   ReplayCacheUnavailable shared replay cache (Redis) unreachable
     ├── PkiError                 InternalError          development PKI files and keys
     ├── SigningError             InternalError          our own signer cannot sign
     │   HTTP Message Signatures (RFC 9421) and Content-Digest (RFC 9530), REST:
     ├── InvalidStructuredField   InvalidStructuredField a header is not a valid structured field
     ├── UnknownKey               UnknownKey             keyid names no registered certificate
     ├── InvalidContentDigest     InvalidContentDigest   malformed Content-Digest or body mismatch
     ├── MissingContentDigest     MissingContentDigest   a body came without Content-Digest
     └── InvalidSignatureValue
          ├── InvalidSignatureInput    InvalidSignatureInput   malformed or ambiguous signature
          ├── MissingCoveredComponent  MissingCoveredComponent policy component not signed
          └── UnsupportedAlgorithm     UnsupportedAlgorithm    alg unknown or unfit for the key
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CertValidation",
    "InvalidContentDigest",
    "InvalidSignatureInput",
    "InvalidSignatureValue",
    "InvalidStructuredField",
    "MissingContentDigest",
    "MissingCoveredComponent",
    "MissingSignature",
    "PkiError",
    "ReplayCacheFull",
    "ReplayCacheUnavailable",
    "ReplayedMessage",
    "SecurityError",
    "SigningError",
    "StaleMessage",
    "UnknownKey",
    "UnsupportedAlgorithm",
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


class ReplayedMessage(SecurityError):
    """The pair (client, message id) was already accepted within the freshness window."""

    code: ClassVar[str] = "ReplayedMessage"


class ReplayCacheFull(SecurityError):
    """The in-memory replay cache holds its maximum of unexpired entries.

    obmin's fault, not the client's: the message is refused rather than evicting an entry
    that is still needed to recognise a replay.
    """

    code: ClassVar[str] = "ReplayCacheFull"


class ReplayCacheUnavailable(SecurityError):
    """The shared replay cache cannot be reached or answered garbage; the message is refused."""

    code: ClassVar[str] = "ReplayCacheUnavailable"


class PkiError(SecurityError):
    """The development PKI cannot be created, or a key or certificate file cannot be read."""


class SigningError(SecurityError):
    """obmin's own signer was given something it cannot sign (no Body, unsupported key)."""


class InvalidStructuredField(SecurityError):
    """A header is not a valid RFC 9651 structured field (callers re-raise with their code)."""

    code: ClassVar[str] = "InvalidStructuredField"


class InvalidSignatureInput(InvalidSignatureValue):
    """``Signature-Input``/``Signature`` are malformed, inconsistent or ambiguous (RFC 9421).

    Also raised when a covered component cannot be resolved in the message (a signed header
    that is absent, an unsupported component parameter, a non-ASCII value).
    """

    code: ClassVar[str] = "InvalidSignatureInput"


class MissingCoveredComponent(InvalidSignatureValue):
    """The signature is well formed but does not cover a component the policy requires."""

    code: ClassVar[str] = "MissingCoveredComponent"


class UnsupportedAlgorithm(InvalidSignatureValue):
    """The ``alg`` parameter is not allowed, or does not fit the signer's key type."""

    code: ClassVar[str] = "UnsupportedAlgorithm"


class UnknownKey(SecurityError):
    """The signature's ``keyid`` names no certificate registered for the caller."""

    code: ClassVar[str] = "UnknownKey"


class InvalidContentDigest(SecurityError):
    """``Content-Digest`` is malformed, names no supported algorithm, or does not match."""

    code: ClassVar[str] = "InvalidContentDigest"


class MissingContentDigest(SecurityError):
    """A message with a body carries no ``Content-Digest`` header."""

    code: ClassVar[str] = "MissingContentDigest"
