"""Verification of RFC 9421 HTTP Message Signatures on REST requests (SPEC 5.2, 5.5).

`verify_request_signature` takes the request as a frozen `HttpRequestView`, a frozen
`RequestSignaturePolicy`, a ``lookup(keyid)`` callback and ``now``, and returns a
`VerifiedHttpRequest` built from what was actually signed, or raises one coded
`SecurityError`. The steps, cheapest first (RFC 9421 3.2):

1. parse ``Signature-Input`` and ``Signature`` (label free);
2. choose the one signature that meets the policy (covered components); none or several is
   a refusal, never a guess;
3. check the signature parameters: ``created`` and ``keyid`` required, ``created`` within
   ``max_clock_skew`` of ``now``, ``expires`` not passed;
4. parse the signed ``Content-Digest`` (the caller checks the body against it with a
   `security.digest.DigestChecker` before forwarding anything);
5. resolve ``keyid`` (base64url SHA-256 of the signer's DER certificate) to a registered
   certificate; its key type and the ``alg`` parameter must agree;
6. rebuild the signature base and verify the signature value.

Replay (SPEC 5.5) is the caller's: the result carries ``nonce``, ``created`` and
``signature_base_digest``, a digest of what was signed (the signature base, which includes
``keyid``). Replay keys must use that digest, never the signature bytes: an ECDSA signature
``(r, s)`` has a twin ``(r, n - s)`` that verifies too, so the bytes are malleable, the signed
content is not. Validating the certificate itself (chain, validity, revocation; SPEC 5.4) is
the caller's too, with `security.certs.validate_signer`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509

from security.digest import ContentDigest, parse_content_digest
from security.errors import (
    InvalidSignatureInput,
    InvalidSignatureValue,
    MissingContentDigest,
    MissingCoveredComponent,
    MissingSignature,
    StaleMessage,
    UnknownKey,
)
from security.httpsig_algs import (
    HttpSigAlgorithm,
    algorithms_for,
    http_keyid,
    public_key_of,
    signature_value_digest,
    verify_base,
)
from security.httpsig_base import (
    HttpMessageView,
    HttpRequestView,
    SignatureEntry,
    build_signature_base,
    field_lines,
    parse_signatures,
)
from security.httpsig_sfv import Item

__all__ = [
    "UXP_SIGNED_IF_PRESENT",
    "XROAD_SIGNED_IF_PRESENT",
    "KeyLookup",
    "RequestSignaturePolicy",
    "SignatureCheck",
    "VerifiedHttpRequest",
    "check_signature",
    "select_signature",
    "signature_base_digest",
    "signed_content_digest",
    "verify_request_signature",
]

KeyLookup = Callable[[str], x509.Certificate | None]
"""``keyid`` -> the registered certificate with that thumbprint, or None."""

_TARGET_PARTS = frozenset({"@authority", "@path", "@query"})

# Every request header the gateway interprets or writes into the audit log must be signed when
# it is present (SPEC 5.2, 8): otherwise whoever relays a signed request could change who the
# request is for, why it was made or which message id it claims, and the audit log would
# record the forgery under the client's signature. The parser (gateway/rest/protocol.py)
# reads no other X-Road/UXP request header.
XROAD_SIGNED_IF_PRESENT: tuple[str, ...] = (
    "x-road-userid",
    "x-road-issue",
    "x-road-represented-party",
    "x-road-security-server",
    "uxp-purpose-ids",
    "uxp-subject-id",
    "uxp-consent-ref",
)
"""X-Road r1: headers covered whenever present, besides ``x-road-client`` and ``x-road-id``."""

UXP_SIGNED_IF_PRESENT: tuple[str, ...] = (
    "uxp-service",
    "uxp-id",  # the message id when Uxp-Queryid is absent
    "uxp-userid",
    "uxp-issue",
    "uxp-represented-party",
    "uxp-security-server",
    "uxp-purpose-ids",
    "uxp-subject-id",
    "uxp-consent-ref",
)
"""Trembita/UXP: headers covered whenever present, besides ``uxp-client`` and ``uxp-queryid``."""


@dataclass(frozen=True, slots=True)
class RequestSignaturePolicy:
    """What a REST request's signature must cover (SPEC 5.2).

    Always ``@method`` and ``@target-uri`` (or ``@authority`` + ``@path`` + ``@query``) and
    ``client_header``; ``content-digest`` when the request has a body; ``message_id_header``
    and each of ``required_if_present`` when the request carries them (by default every other
    X-Road header the gateway reads, `XROAD_SIGNED_IF_PRESENT`). ``label`` restricts the
    choice to one label (None: any label).
    """

    client_header: str = "x-road-client"
    message_id_header: str | None = "x-road-id"
    required_if_present: tuple[str, ...] = XROAD_SIGNED_IF_PRESENT
    max_clock_skew: timedelta = timedelta(seconds=300)
    label: str | None = None

    @classmethod
    def uxp(cls, max_clock_skew: timedelta = timedelta(seconds=300)) -> RequestSignaturePolicy:
        """The Trembita/UXP dialect: ``uxp-client``, ``uxp-queryid`` and `UXP_SIGNED_IF_PRESENT`."""
        return cls(
            client_header="uxp-client",
            message_id_header="uxp-queryid",
            required_if_present=UXP_SIGNED_IF_PRESENT,
            max_clock_skew=max_clock_skew,
        )


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """A signature whose parameters, key and value were verified (request or response)."""

    label: str
    keyid: str
    certificate: x509.Certificate
    algorithm: HttpSigAlgorithm
    created: datetime
    expires: datetime | None
    nonce: str | None
    tag: str | None
    covered_values: tuple[tuple[str, str], ...]
    signature_value_digest: str
    signature_base_digest: str


@dataclass(frozen=True, slots=True)
class VerifiedHttpRequest:
    """What a valid request signature proved. Read signed values only from here.

    ``covered_components`` are the serialised component identifiers in signed order
    (``"@method"``, ``"x-road-client"``); ``covered_values`` pairs them with the values
    that were signed. ``content_digest`` is the signed ``Content-Digest`` (None when not
    covered): feed the body to ``DigestChecker(content_digest)`` before forwarding.
    ``signature_value_digest`` is the base64 SHA-512 of the signature value (audit log);
    ``signature_base_digest`` the base64 SHA-256 of ``keyid`` and the signature base, the
    non-malleable name of what was signed (replay keys).
    """

    keyid: str
    certificate: x509.Certificate
    covered_components: tuple[str, ...]
    created: datetime
    nonce: str | None
    label: str
    signature_value_digest: str
    algorithm: HttpSigAlgorithm
    expires: datetime | None
    tag: str | None
    covered_values: tuple[tuple[str, str], ...]
    content_digest: ContentDigest | None
    signature_base_digest: str

    def signed_value(self, identifier: str) -> str | None:
        """The signed value of a covered component (``"x-road-client"``), or None."""
        for name, value in self.covered_values:
            if name == f'"{identifier}"' or name == identifier:
                return value
        return None


def _digest_component(entry: SignatureEntry) -> Item | None:
    """The covered form of Content-Digest that vouches for the body: whole field first."""
    usable = [
        item
        for item in entry.covered
        if item.value == "content-digest" and {name for name, _ in item.params} <= {"key", "sf"}
    ]
    usable.sort(key=lambda item: item.param("key") is not None)
    return usable[0] if usable else None


def _policy_gaps(
    entry: SignatureEntry, request: HttpRequestView, policy: RequestSignaturePolicy
) -> list[str]:
    plain = entry.plain_names()
    gaps = [] if "@method" in plain else ["@method"]
    if "@target-uri" not in plain and not plain >= _TARGET_PARTS:
        gaps.append("@target-uri (or @authority, @path and @query)")
    if policy.client_header.lower() not in plain:
        gaps.append(policy.client_header.lower())
    if request.body_present() and _digest_component(entry) is None:
        gaps.append("content-digest")
    optional = (policy.message_id_header, *policy.required_if_present)
    for header in optional:
        name = None if header is None else header.lower()
        if name is not None and field_lines(request.headers, name) and name not in plain:
            gaps.append(name)
    return gaps


def select_signature(
    entries: dict[str, SignatureEntry],
    gaps_of: Callable[[SignatureEntry], list[str]],
    label: str | None,
) -> SignatureEntry:
    """The one signature that meets the policy (no gaps); refuse none or several."""
    if label is not None:
        if label not in entries:
            raise MissingSignature(f"the message carries no signature labelled {label!r}")
        entries = {label: entries[label]}
    gaps = {name: gaps_of(entry) for name, entry in entries.items()}
    meeting = [entries[name] for name, missing in gaps.items() if not missing]
    if len(meeting) == 1:
        return meeting[0]
    if meeting:
        labels = ", ".join(entry.label for entry in meeting)
        raise InvalidSignatureInput(f"ambiguous: signatures {labels} all meet the policy")
    if len(gaps) == 1:
        name, missing = next(iter(gaps.items()))
        raise MissingCoveredComponent(f"signature {name!r} does not cover {', '.join(missing)}")
    raise MissingCoveredComponent(
        f"none of the {len(gaps)} signatures covers what the policy requires"
    )


def _utc(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC) if seconds > 0 else datetime.min.replace(tzinfo=UTC)


def signature_base_digest(keyid: str, base: bytes) -> str:
    """Base64 SHA-256 of ``keyid`` and a signature base: what was signed, by which key."""
    digest = hashlib.sha256(b"obmin/rfc9421-base/v1\x00")
    raw = keyid.encode("utf-8")
    digest.update(len(raw).to_bytes(8, "big"))
    digest.update(raw)
    digest.update(base)
    return base64.b64encode(digest.digest()).decode("ascii")


def check_signature(
    entry: SignatureEntry,
    message: HttpMessageView,
    lookup: KeyLookup,
    now: datetime,
    max_clock_skew: timedelta,
) -> SignatureCheck:
    """Steps 3, 5 and 6 for a chosen signature: parameters, freshness, key, value."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    created, keyid = entry.int_param("created"), entry.str_param("keyid")
    if created is None:
        raise InvalidSignatureInput(f"signature {entry.label!r} has no created parameter")
    if keyid is None:
        raise InvalidSignatureInput(f"signature {entry.label!r} has no keyid parameter")
    at, skew = now.timestamp(), max_clock_skew.total_seconds()
    if created < at - skew:
        raise StaleMessage(f"the signature was created {at - created:.0f} s ago")
    if created > at + skew:
        raise StaleMessage(f"the signature is created {created - at:.0f} s in the future")
    expires = entry.int_param("expires")
    if expires is not None:
        if expires < created:
            raise InvalidSignatureInput(f"signature {entry.label!r} expires before it is created")
        if at > expires:
            raise StaleMessage("the signature has expired")
    certificate = lookup(keyid)
    if certificate is None:
        raise UnknownKey(f"keyid {keyid!r} names no registered certificate")
    if http_keyid(certificate) != keyid:
        raise UnknownKey(f"the certificate found for keyid {keyid!r} has another thumbprint")
    key = public_key_of(certificate)
    candidates = algorithms_for(key, entry.str_param("alg"))
    base, covered = build_signature_base(entry.signature_input, message)
    for algorithm in candidates:
        if verify_base(algorithm, key, entry.value, base):
            return SignatureCheck(
                label=entry.label,
                keyid=keyid,
                certificate=certificate,
                algorithm=algorithm,
                created=_utc(created),
                expires=None if expires is None else _utc(expires),
                nonce=entry.str_param("nonce"),
                tag=entry.str_param("tag"),
                covered_values=covered,
                signature_value_digest=signature_value_digest(entry.value),
                signature_base_digest=signature_base_digest(keyid, base),
            )
    raise InvalidSignatureValue(f"signature {entry.label!r} does not verify")


def signed_content_digest(entry: SignatureEntry, message: HttpMessageView) -> ContentDigest | None:
    """The ``Content-Digest`` the signature vouches for (a ``key`` selects one member)."""
    item = _digest_component(entry)
    if item is None:
        return None
    lines = field_lines(message.headers, "content-digest")
    if not lines:
        raise InvalidSignatureInput("the signature covers an absent Content-Digest")
    key = item.param("key")
    return parse_content_digest(lines, key=key if isinstance(key, str) else None)


def verify_request_signature(
    request: HttpRequestView,
    policy: RequestSignaturePolicy,
    lookup: KeyLookup,
    now: datetime,
) -> VerifiedHttpRequest:
    """Verify a REST request's RFC 9421 signature under ``policy`` (see the module doc).

    Raises `MissingSignature`, `InvalidSignatureInput`, `MissingCoveredComponent`,
    `MissingContentDigest`, `InvalidContentDigest`, `StaleMessage`, `UnknownKey`,
    `UnsupportedAlgorithm` or `InvalidSignatureValue`.
    """
    # 1. Both headers, parsed; each labelled signature well formed.
    entries = parse_signatures(request.headers)
    # 2. A body needs a Content-Digest at all; then the one signature meeting the policy.
    if request.body_present() and not field_lines(request.headers, "content-digest"):
        raise MissingContentDigest("the request has a body but no Content-Digest header")
    entry = select_signature(
        entries, lambda candidate: _policy_gaps(candidate, request, policy), policy.label
    )
    # 4. The signed Content-Digest must be usable before any key work is spent.
    digest = signed_content_digest(entry, request)
    # 3, 5, 6. Parameters and freshness, key, signature value.
    checked = check_signature(entry, request, lookup, now, policy.max_clock_skew)
    return VerifiedHttpRequest(
        keyid=checked.keyid,
        certificate=checked.certificate,
        covered_components=tuple(name for name, _ in checked.covered_values),
        created=checked.created,
        nonce=checked.nonce,
        label=checked.label,
        signature_value_digest=checked.signature_value_digest,
        algorithm=checked.algorithm,
        expires=checked.expires,
        tag=checked.tag,
        covered_values=checked.covered_values,
        content_digest=digest,
        signature_base_digest=checked.signature_base_digest,
    )
