"""XML-Signature building blocks: namespaces, the allowed algorithms, canonicalisation, and
signature values over bytes. Pure functions, no I/O.

Only what SPEC 5.1 allows is in the tables below; anything not listed (SHA-1, MD5, HMAC,
DSA, inclusive C14N, XPath, XSLT, ...) is refused by the verifier, which looks every URI up
here.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from lxml import etree

from security.errors import InvalidSignatureValue, SigningError
from security.pki import SigningKey

__all__ = [
    "BASE64_BINARY",
    "DIGESTS",
    "DS",
    "ECDSA_SHA256",
    "ECDSA_SHA384",
    "ED25519",
    "EXC_C14N",
    "REPR",
    "RSA_PSS",
    "RSA_SHA256",
    "RSA_SHA512",
    "SIGNATURE_METHODS",
    "SOAP11",
    "WSSE",
    "WSU",
    "WSU_ID",
    "X509V3",
    "XMLDSIG_MORE_2007",
    "XROAD",
    "SignatureMethod",
    "b64decode_strict",
    "default_method",
    "exc_c14n",
    "sign_value",
    "verify_value",
]

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
_OASIS = "http://docs.oasis-open.org/wss/2004/01/"
WSSE = _OASIS + "oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = _OASIS + "oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSU_ID = f"{{{WSU}}}Id"
X509V3 = _OASIS + "oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = _OASIS + "oasis-200401-wss-soap-message-security-1.0#Base64Binary"
DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
XROAD = "http://x-road.eu/xsd/xroad.xsd"
REPR = "http://x-road.eu/xsd/representation.xsd"
XMLDSIG_MORE_2007 = "http://www.w3.org/2007/05/xmldsig-more#"

_MORE_2001 = "http://www.w3.org/2001/04/xmldsig-more#"
RSA_SHA256 = _MORE_2001 + "rsa-sha256"
RSA_SHA512 = _MORE_2001 + "rsa-sha512"
ECDSA_SHA256 = _MORE_2001 + "ecdsa-sha256"
ECDSA_SHA384 = _MORE_2001 + "ecdsa-sha384"
ED25519 = "http://www.w3.org/2021/04/xmldsig-more#eddsa-ed25519"
RSA_PSS = XMLDSIG_MORE_2007 + "rsa-pss"

DIGESTS: dict[str, hashes.HashAlgorithm] = {
    "http://www.w3.org/2001/04/xmlenc#sha256": hashes.SHA256(),
    _MORE_2001 + "sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmlenc#sha512": hashes.SHA512(),
}

KeyFamily = Literal["rsa", "rsa-pss", "ecdsa", "ed25519"]


@dataclass(frozen=True, slots=True)
class SignatureMethod:
    """A signature algorithm with its parameters, as read from ``ds:SignatureMethod``.

    ``salt_length`` and ``mgf_hash`` matter for RSA-PSS only; ``hash`` is None for Ed25519.
    """

    uri: str
    family: KeyFamily
    hash: hashes.HashAlgorithm | None
    salt_length: int = 0
    mgf_hash: hashes.HashAlgorithm | None = None


def _pss(uri: str, algorithm: hashes.HashAlgorithm) -> SignatureMethod:
    # RFC 6931 2.3.10: MGF1 with the same hash, salt as long as the hash output.
    return SignatureMethod(uri, "rsa-pss", algorithm, algorithm.digest_size, algorithm)


# Methods without parameters; ``RSA_PSS`` (RFC 9231, with RSAPSSParams) is read by the verifier.
SIGNATURE_METHODS: dict[str, SignatureMethod] = {
    RSA_SHA256: SignatureMethod(RSA_SHA256, "rsa", hashes.SHA256()),
    RSA_SHA512: SignatureMethod(RSA_SHA512, "rsa", hashes.SHA512()),
    ECDSA_SHA256: SignatureMethod(ECDSA_SHA256, "ecdsa", hashes.SHA256()),
    ECDSA_SHA384: SignatureMethod(ECDSA_SHA384, "ecdsa", hashes.SHA384()),
    ED25519: SignatureMethod(ED25519, "ed25519", None),
    **{
        XMLDSIG_MORE_2007 + f"{name}-rsa-MGF1": _pss(XMLDSIG_MORE_2007 + f"{name}-rsa-MGF1", alg)
        for name, alg in (
            ("sha256", hashes.SHA256()),
            ("sha384", hashes.SHA384()),
            ("sha512", hashes.SHA512()),
        )
    },
}


def exc_c14n(element: etree._Element, inclusive_prefixes: tuple[str, ...] = ()) -> bytes:
    """Exclusive XML Canonicalization 1.0 (without comments) of ``element`` in its document.

    The element stays in its tree: namespaces declared on ancestors and used in the subtree
    are rendered as the specification says, so no copy of the document is made.
    """
    return etree.tostring(
        element,
        method="c14n",
        exclusive=True,
        with_comments=False,
        inclusive_ns_prefixes=list(inclusive_prefixes) or None,
    )


def b64decode_strict(text: str | None, what: str) -> bytes:
    """Decode base64 that may contain XML whitespace (line breaks); refuse anything else."""
    compact = "".join((text or "").split())
    if not compact:
        raise InvalidSignatureValue(f"{what} is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII characters
        raise InvalidSignatureValue(f"{what} is not valid base64") from exc


def _coordinate_size(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def verify_value(
    method: SignatureMethod, key: PublicKeyTypes, signature: bytes, data: bytes
) -> None:
    """Check ``signature`` over ``data``; raise `InvalidSignatureValue` if it does not hold."""
    try:
        if method.family in ("rsa", "rsa-pss"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise InvalidSignatureValue(f"{method.uri} needs an RSA key")
            assert method.hash is not None
            pad: padding.AsymmetricPadding = padding.PKCS1v15()
            if method.family == "rsa-pss":
                assert method.mgf_hash is not None
                pad = padding.PSS(padding.MGF1(method.mgf_hash), method.salt_length)
            key.verify(signature, data, pad, method.hash)
        elif method.family == "ecdsa":
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise InvalidSignatureValue(f"{method.uri} needs an EC key")
            assert method.hash is not None
            # XML-Signature carries r || s, each padded to the curve size (RFC 4050), not DER.
            size = _coordinate_size(key.curve)
            if len(signature) != 2 * size:
                raise InvalidSignatureValue("ECDSA signature value has the wrong length")
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            der = utils.encode_dss_signature(r, s)
            key.verify(der, data, ec.ECDSA(method.hash))
        else:
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise InvalidSignatureValue(f"{method.uri} needs an Ed25519 key")
            key.verify(signature, data)
    except InvalidSignature as exc:
        raise InvalidSignatureValue("the signature value does not match SignedInfo") from exc


def default_method(key: SigningKey) -> SignatureMethod:
    """The method obmin signs with for ``key``: RSA-SHA256, ECDSA-SHA256/384 or Ed25519."""
    if isinstance(key, rsa.RSAPrivateKey):
        return SIGNATURE_METHODS[RSA_SHA256]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        uri = ECDSA_SHA384 if key.curve.key_size >= 384 else ECDSA_SHA256
        return SIGNATURE_METHODS[uri]
    return SIGNATURE_METHODS[ED25519]


def sign_value(method: SignatureMethod, key: SigningKey, data: bytes) -> bytes:
    """Sign ``data`` with ``key`` under ``method``, producing the XML-Signature encoding."""
    if method.family in ("rsa", "rsa-pss"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningError(f"{method.uri} needs an RSA key")
        assert method.hash is not None
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
        if method.family == "rsa-pss":
            assert method.mgf_hash is not None
            pad = padding.PSS(padding.MGF1(method.mgf_hash), method.salt_length)
        return key.sign(data, pad, method.hash)
    if method.family == "ecdsa":
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SigningError(f"{method.uri} needs an EC key")
        assert method.hash is not None
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(method.hash)))
        size = _coordinate_size(key.curve)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{method.uri} needs an Ed25519 key")
    return key.sign(data)
