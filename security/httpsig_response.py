"""Signed REST responses (SPEC 5.3): the gateway signs, clients (the SDK, tests) verify.

The gateway signs with its own key an RFC 9421 response signature covering ``@status``,
``content-digest`` and the request-hash header (``x-road-request-hash``, or
``uxp-request-hash`` in the Trembita dialect), with ``created``, ``keyid`` (the gateway
certificate's thumbprint) and ``alg``; the gateway also covers the X-Road headers it sets
(request id, client, service, message id, error code) when they are present. The request hash
binds the answer to the request obmin received; the digest binds the body. A client verifies
with `verify_response_signature` and then checks the body with
``DigestChecker(verified.content_digest)``.

An answer to a request whose body obmin could not read whole (``MessageTooLarge``) has no
request hash: it is signed without one, and verified with
``ResponseSignaturePolicy(request_hash_header=None)``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from security.digest import ContentDigest
from security.errors import (
    InvalidSignatureInput,
    InvalidSignatureValue,
    InvalidStructuredField,
    SigningError,
)
from security.httpsig import KeyLookup, check_signature, select_signature, signed_content_digest
from security.httpsig_algs import (
    HttpSigAlgorithm,
    HttpSigPrivateKey,
    default_algorithm,
    http_keyid,
    sign_base,
)
from security.httpsig_base import (
    HttpResponseView,
    SignatureEntry,
    build_signature_base,
    parse_signatures,
)
from security.httpsig_sfser import serialize_dictionary
from security.httpsig_sfv import InnerList, Item

__all__ = [
    "ResponseSignaturePolicy",
    "VerifiedHttpResponse",
    "sign_response",
    "verify_response_signature",
]


def _lowered(headers: Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        lines = [value] if isinstance(value, str) else list(value)
        out.setdefault(name.lower(), []).extend(lines)
    return out


def sign_response(
    status: int,
    headers: Mapping[str, str | Sequence[str]],
    key: HttpSigPrivateKey,
    certificate: x509.Certificate,
    now: datetime,
    label: str = "obmin",
    *,
    request_hash_header: str | None = "x-road-request-hash",
    also_cover: Sequence[str] = (),
    algorithm: HttpSigAlgorithm | None = None,
) -> dict[str, str]:
    """The ``Signature-Input`` and ``Signature`` headers to add to a response.

    ``headers`` must already hold ``Content-Digest`` (see
    `security.digest.content_digest_header`) and the request-hash header (unless
    ``request_hash_header`` is None); names are matched case-insensitively. Each header of
    ``also_cover`` that is present is covered too. ``algorithm`` defaults to the key's (RSA:
    ``rsa-pss-sha512``). Raises `SigningError` when a covered header is missing or the key
    does not fit.
    """
    if now.tzinfo is None:
        raise SigningError("the signing time must be timezone-aware")
    lowered = _lowered(headers)
    required = ["content-digest"]
    if request_hash_header is not None:
        required.append(request_hash_header.lower())
    for name in required:
        if not lowered.get(name):
            raise SigningError(f"cannot sign a response without the {name} header")
    extra = [
        name.lower()
        for name in also_cover
        if lowered.get(name.lower()) and name.lower() not in required
    ]
    if key.public_key() != certificate.public_key():
        raise SigningError("the signing key does not belong to the certificate")
    chosen = algorithm if algorithm is not None else default_algorithm(key)
    signature_input = InnerList(
        (Item("@status"), *(Item(name) for name in required), *(Item(name) for name in extra)),
        (
            ("created", int(now.timestamp())),
            ("keyid", http_keyid(certificate)),
            ("alg", chosen),
        ),
    )
    try:
        base, _ = build_signature_base(signature_input, HttpResponseView(status, lowered))
        value = sign_base(chosen, key, base)
        return {
            "Signature-Input": serialize_dictionary({label: signature_input}),
            "Signature": serialize_dictionary({label: Item(value)}),
        }
    except (InvalidSignatureInput, InvalidStructuredField) as exc:
        raise SigningError(f"cannot sign this response: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ResponseSignaturePolicy:
    """What a gateway response signature must cover: ``@status``, the digest, the hash.

    ``request_hash_header=None`` accepts a signature without a request hash (the answer to a
    request obmin could not read whole); ``VerifiedHttpResponse.request_hash`` is then None.
    """

    request_hash_header: str | None = "x-road-request-hash"
    max_clock_skew: timedelta = timedelta(seconds=300)
    label: str | None = None


@dataclass(frozen=True, slots=True)
class VerifiedHttpResponse:
    """What a valid response signature proved; check the body against ``content_digest``."""

    keyid: str
    certificate: x509.Certificate
    label: str
    algorithm: HttpSigAlgorithm
    created: datetime
    status: int
    request_hash: str | None
    content_digest: ContentDigest
    covered_components: tuple[str, ...]
    signature_value_digest: str


def _response_gaps(entry: SignatureEntry, hash_header: str | None) -> list[str]:
    plain = entry.plain_names()
    needed = ["@status", "content-digest", *([] if hash_header is None else [hash_header])]
    return [name for name in needed if name not in plain]


def verify_response_signature(
    response: HttpResponseView,
    policy: ResponseSignaturePolicy,
    lookup: KeyLookup,
    now: datetime,
    *,
    expected_request_hash: str | None = None,
) -> VerifiedHttpResponse:
    """Verify a gateway's response signature; the same coded errors as for requests.

    ``expected_request_hash`` (what the client computed for its own request) must equal the
    signed request hash, else `InvalidSignatureValue`: the answer is to another request.
    """
    hash_header = policy.request_hash_header
    hash_header = None if hash_header is None else hash_header.lower()
    entries = parse_signatures(response.headers)
    entry = select_signature(
        entries, lambda candidate: _response_gaps(candidate, hash_header), policy.label
    )
    digest = signed_content_digest(entry, response)
    checked = check_signature(entry, response, lookup, now, policy.max_clock_skew)
    signed = dict(checked.covered_values)
    request_hash = None if hash_header is None else signed[f'"{hash_header}"']
    if expected_request_hash is not None and (
        request_hash is None
        or not hmac.compare_digest(request_hash.encode(), expected_request_hash.encode())
    ):
        raise InvalidSignatureValue("the response is signed for another request")
    if digest is None:  # pragma: no cover - the policy requires content-digest
        raise InvalidSignatureInput("the response signature covers no Content-Digest")
    return VerifiedHttpResponse(
        keyid=checked.keyid,
        certificate=checked.certificate,
        label=checked.label,
        algorithm=checked.algorithm,
        created=checked.created,
        status=response.status,
        request_hash=request_hash,
        content_digest=digest,
        covered_components=tuple(name for name, _ in checked.covered_values),
        signature_value_digest=checked.signature_value_digest,
    )
