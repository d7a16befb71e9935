"""Reading ``ds:Signature`` into frozen values, refusing every form SPEC 5.1 does not allow.

The reader is deliberately narrow: one CanonicalizationMethod (exclusive C14N without
comments), a signature method from the allow-list, and References that are same-document
``#id`` pointers with exactly one exclusive C14N transform. Anything else (XPath, XSLT,
enveloped-signature, inclusive C14N, SHA-1, ``ds:Object``, HMAC output lengths) is an
`InvalidSignatureValue` with a sentence that names it. Pure, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from lxml import etree

from security.errors import InvalidSignatureValue
from security.xmldsig import (
    DIGESTS,
    DS,
    EXC_C14N,
    RSA_PSS,
    SIGNATURE_METHODS,
    XMLDSIG_MORE_2007,
    SignatureMethod,
    b64decode_strict,
)

__all__ = ["MAX_REFERENCES", "Reference", "SignatureParts", "read_signature"]

# Every reference costs a canonicalisation of its target; a signature that repeats a large
# element many times must not turn into a CPU sink.
MAX_REFERENCES = 32

_INCLUSIVE_NAMESPACES = f"{{{EXC_C14N}}}InclusiveNamespaces"
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
_MGF1 = XMLDSIG_MORE_2007 + "MGF1"
_XPATH_LIKE = ("xpath", "xslt", "xpointer", "filter2")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``ds:Reference``: the Id it points at, its digest algorithm and expected value."""

    target_id: str
    digest: hashes.HashAlgorithm
    digest_value: bytes
    inclusive_prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SignatureParts:
    """The checked pieces of a ``ds:Signature`` element."""

    signed_info: etree._Element
    inclusive_prefixes: tuple[str, ...]
    method: SignatureMethod
    references: tuple[Reference, ...]
    signature_value: bytes
    key_info: etree._Element


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def _children(element: etree._Element) -> list[etree._Element]:
    # Comments and processing instructions are not part of the structure.
    return list(element.iterchildren(etree.Element))


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _prefix_list(parent: etree._Element, what: str) -> tuple[str, ...]:
    children = _children(parent)
    if not children:
        return ()
    if len(children) != 1 or children[0].tag != _INCLUSIVE_NAMESPACES:
        raise InvalidSignatureValue(f"{what} has unexpected content <{_local(children[0])}>")
    prefixes = tuple((children[0].get("PrefixList") or "").split())
    if "#default" in prefixes:
        # libxml2 and the specification disagree on #default; refusing is the safe reading.
        raise InvalidSignatureValue(f"{what}: InclusiveNamespaces #default is not supported")
    return prefixes


def _algorithm(element: etree._Element, what: str) -> str:
    uri = element.get("Algorithm")
    if not uri:
        raise InvalidSignatureValue(f"{what} has no Algorithm")
    return uri


def _refused_transform(uri: str) -> str:
    lowered = uri.lower()
    if any(word in lowered for word in _XPATH_LIKE):
        return f"transform {uri} (XPath/XSLT) is not allowed"
    return f"transform {uri} is not allowed; only exclusive C14N"


def _digest(element: etree._Element) -> hashes.HashAlgorithm:
    uri = _algorithm(element, "DigestMethod")
    algorithm = DIGESTS.get(uri)
    if algorithm is None:
        raise InvalidSignatureValue(f"digest algorithm {uri} is not allowed")
    return algorithm


def _reference_uri(uri: str | None) -> str:
    if uri is None or uri == "":
        raise InvalidSignatureValue("a reference to the whole document is not allowed")
    if uri.startswith("#xpointer("):
        raise InvalidSignatureValue(f"XPointer reference {uri!r} is not allowed")
    if not uri.startswith("#") or not _NCNAME.fullmatch(uri[1:]):
        raise InvalidSignatureValue(f"reference {uri!r} is not a same-document #id reference")
    return uri[1:]


def _reference(element: etree._Element) -> Reference:
    target = _reference_uri(element.get("URI"))
    children = _children(element)
    tags = [child.tag for child in children]
    if tags != [_ds("Transforms"), _ds("DigestMethod"), _ds("DigestValue")]:
        raise InvalidSignatureValue(
            f"reference #{target} must hold Transforms, DigestMethod and DigestValue"
        )
    transforms = _children(children[0])
    if len(transforms) != 1 or transforms[0].tag != _ds("Transform"):
        raise InvalidSignatureValue(f"reference #{target} must have exactly one Transform")
    uri = _algorithm(transforms[0], "Transform")
    if uri != EXC_C14N:
        raise InvalidSignatureValue(_refused_transform(uri))
    return Reference(
        target_id=target,
        digest=_digest(children[1]),
        digest_value=b64decode_strict(children[2].text, f"DigestValue of #{target}"),
        inclusive_prefixes=_prefix_list(transforms[0], "Transform"),
    )


def _pss_method(element: etree._Element) -> SignatureMethod:
    # RFC 9231 2.3.10: optional RSAPSSParams; defaults SHA-256, MGF1 with the same hash,
    # salt as long as the hash output, trailer field 1.
    params = _children(element)
    digest: hashes.HashAlgorithm = hashes.SHA256()
    mgf_hash: hashes.HashAlgorithm | None = None
    salt: int | None = None
    if len(params) > 1 or (params and params[0].tag != f"{{{XMLDSIG_MORE_2007}}}RSAPSSParams"):
        raise InvalidSignatureValue("RSA-PSS SignatureMethod has unexpected content")
    for child in _children(params[0]) if params else []:
        name = _local(child)
        if child.tag == _ds("DigestMethod"):
            digest = _digest(child)
        elif name == "MaskGenerationFunction":
            if _algorithm(child, "MaskGenerationFunction") != _MGF1:
                raise InvalidSignatureValue("RSA-PSS mask generation function must be MGF1")
            inner = _children(child)
            mgf_hash = _digest(inner[0]) if inner else None
        elif name == "SaltLength" and (child.text or "").strip().isdigit():
            salt = int((child.text or "").strip())
        elif name == "TrailerField" and (child.text or "").strip() == "1":
            continue
        else:
            raise InvalidSignatureValue(f"RSA-PSS parameter <{name}> is not supported")
    salt = digest.digest_size if salt is None else salt
    if salt > 512:
        raise InvalidSignatureValue("RSA-PSS salt length is out of range")
    return SignatureMethod(RSA_PSS, "rsa-pss", digest, salt, mgf_hash or digest)


def _signature_method(element: etree._Element) -> SignatureMethod:
    uri = _algorithm(element, "SignatureMethod")
    if uri == RSA_PSS:
        return _pss_method(element)
    method = SIGNATURE_METHODS.get(uri)
    if method is None:
        raise InvalidSignatureValue(f"signature algorithm {uri} is not allowed")
    if _children(element):
        raise InvalidSignatureValue(f"SignatureMethod {uri} takes no parameters")
    return method


def read_signature(signature: etree._Element) -> SignatureParts:
    """Check the shape and algorithms of ``signature`` and return its parts."""
    parts = _children(signature)
    tags = [child.tag for child in parts]
    if tags != [_ds("SignedInfo"), _ds("SignatureValue"), _ds("KeyInfo")]:
        names = ", ".join(_local(child) for child in parts)
        raise InvalidSignatureValue(
            f"ds:Signature must hold SignedInfo, SignatureValue and KeyInfo, not {names}"
        )
    signed_info, value, key_info = parts
    info = _children(signed_info)
    if (
        len(info) < 3
        or info[0].tag != _ds("CanonicalizationMethod")
        or info[1].tag != _ds("SignatureMethod")
        or any(child.tag != _ds("Reference") for child in info[2:])
    ):
        raise InvalidSignatureValue(
            "SignedInfo must hold CanonicalizationMethod, SignatureMethod and References"
        )
    c14n = _algorithm(info[0], "CanonicalizationMethod")
    if c14n != EXC_C14N:
        raise InvalidSignatureValue(
            f"canonicalization {c14n} is not allowed; only exclusive C14N without comments"
        )
    if len(info) - 2 > MAX_REFERENCES:
        raise InvalidSignatureValue(f"more than {MAX_REFERENCES} references")
    return SignatureParts(
        signed_info=signed_info,
        inclusive_prefixes=_prefix_list(info[0], "CanonicalizationMethod"),
        method=_signature_method(info[1]),
        references=tuple(_reference(child) for child in info[2:]),
        signature_value=b64decode_strict(value.text, "SignatureValue"),
        key_info=key_info,
    )
