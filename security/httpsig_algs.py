"""The four RFC 9421 signature algorithms obmin accepts, and how a key type selects them.

``rsa-pss-sha512`` (MGF1-SHA-512, 64-byte salt, RFC 9421 3.3.1), ``rsa-v1_5-sha256`` (3.3.2),
``ecdsa-p256-sha256`` with the signature as the 64-byte ``r || s`` (3.3.4, not DER) and
``ed25519`` (3.3.6). HMAC is not offered: a gateway cannot hold its clients' shared secrets.

RFC 9421 3.2 step 6: the algorithm follows from the key and, when present, the ``alg``
parameter, and both must agree. An RSA key fits two algorithms; without ``alg`` both are
tried (each is a sound scheme for that key, so accepting either proves the key holder signed).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509 import Certificate

from security.errors import SigningError, UnknownKey, UnsupportedAlgorithm

__all__ = [
    "HTTPSIG_ALGORITHMS",
    "HttpSigAlgorithm",
    "HttpSigPrivateKey",
    "HttpSigPublicKey",
    "algorithms_for",
    "default_algorithm",
    "http_keyid",
    "public_key_of",
    "sign_base",
    "signature_value_digest",
    "verify_base",
]

HttpSigAlgorithm = Literal["rsa-pss-sha512", "rsa-v1_5-sha256", "ecdsa-p256-sha256", "ed25519"]
"""The ``alg`` values obmin accepts (SPEC 5.2)."""

HTTPSIG_ALGORITHMS: tuple[HttpSigAlgorithm, ...] = (
    "rsa-pss-sha512",
    "rsa-v1_5-sha256",
    "ecdsa-p256-sha256",
    "ed25519",
)

HttpSigPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
HttpSigPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
_P256_COORDINATE = 32
_MIN_RSA_BITS = 2048


def http_keyid(certificate: Certificate) -> str:
    """The ``keyid`` of a certificate: base64url, unpadded, SHA-256 of its DER (SPEC 5.2)."""
    digest = certificate.fingerprint(hashes.SHA256())
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _key_algorithms(key: object) -> tuple[HttpSigAlgorithm, ...]:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise UnsupportedAlgorithm(f"RSA keys need at least {_MIN_RSA_BITS} bits")
        return ("rsa-pss-sha512", "rsa-v1_5-sha256")
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise UnsupportedAlgorithm(f"EC curve {key.curve.name} has no accepted algorithm")
        return ("ecdsa-p256-sha256",)
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return ("ed25519",)
    raise UnsupportedAlgorithm(f"{type(key).__name__} keys have no accepted algorithm")


def algorithms_for(key: HttpSigPublicKey, alg: str | None) -> tuple[HttpSigAlgorithm, ...]:
    """The algorithms to verify with: the key's, narrowed to ``alg`` when it is given.

    Raises `UnsupportedAlgorithm` for an ``alg`` outside the four, or one the key cannot use.
    """
    fitting = _key_algorithms(key)
    if alg is None:
        return fitting
    if alg not in HTTPSIG_ALGORITHMS:
        raise UnsupportedAlgorithm(f"signature algorithm {alg!r} is not accepted")
    for candidate in fitting:
        if candidate == alg:
            return (candidate,)
    raise UnsupportedAlgorithm(f"alg {alg!r} does not fit the signer's {fitting[0]} key")


def default_algorithm(key: HttpSigPrivateKey) -> HttpSigAlgorithm:
    """The algorithm obmin signs with for ``key`` (RSA: ``rsa-pss-sha512``)."""
    try:
        return _key_algorithms(key)[0]
    except UnsupportedAlgorithm as exc:
        raise SigningError(f"cannot sign HTTP messages with this key: {exc}") from exc


def verify_base(
    algorithm: HttpSigAlgorithm, key: HttpSigPublicKey, signature: bytes, base: bytes
) -> bool:
    """Whether ``signature`` is valid for ``base`` under ``algorithm`` and ``key``.

    The key must fit the algorithm (see `algorithms_for`); a misfit is reported as invalid.
    """
    try:
        if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, base)
        elif algorithm == "ecdsa-p256-sha256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 2 * _P256_COORDINATE:
                return False
            r = int.from_bytes(signature[:_P256_COORDINATE], "big")
            s = int.from_bytes(signature[_P256_COORDINATE:], "big")
            key.verify(encode_dss_signature(r, s), base, ec.ECDSA(hashes.SHA256()))
        elif algorithm == "rsa-pss-sha512" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, base, _PSS, hashes.SHA512())
        elif algorithm == "rsa-v1_5-sha256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, base, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


def sign_base(algorithm: HttpSigAlgorithm, key: HttpSigPrivateKey, base: bytes) -> bytes:
    """Sign a signature base; raises `SigningError` when the key does not fit ``algorithm``."""
    if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(base)
    if algorithm == "ecdsa-p256-sha256" and isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(base, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_P256_COORDINATE, "big") + s.to_bytes(_P256_COORDINATE, "big")
    if algorithm == "rsa-pss-sha512" and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(base, _PSS, hashes.SHA512())
    if algorithm == "rsa-v1_5-sha256" and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(base, padding.PKCS1v15(), hashes.SHA256())
    raise SigningError(f"a {type(key).__name__} cannot sign with {algorithm}")


def public_key_of(certificate: Certificate) -> HttpSigPublicKey:
    """The certificate's public key if it is of a type obmin verifies with, else `UnknownKey`."""
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise UnknownKey(f"the certificate holds a {type(key).__name__}, not a signing key")
    return key


def signature_value_digest(signature: bytes) -> str:
    """Base64 SHA-512 of a signature value, as the audit log records it."""
    return base64.b64encode(hashlib.sha512(signature).digest()).decode("ascii")
