"""Stage 2 of a REST exchange for clients with ``auth: signature`` (SPEC 5.2).

Glue between the pure RFC 9421 verifier and what the gateway knows: the request as received,
the client's registered certificates, the trust anchors and the body digests computed while
the body was spooled.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509

from gateway.context import ExchangeEnv
from gateway.rest.protocol import RestRequestHead
from registry import ClientEntry
from security import ValidatedSigner, validate_signer
from security.digest import ContentDigest
from security.errors import InvalidContentDigest, MissingContentDigest
from security.httpsig import RequestSignaturePolicy, verify_request_signature
from security.httpsig_algs import http_keyid
from security.httpsig_base import HttpRequestView

if TYPE_CHECKING:
    from gateway.rest_exchange import RestIncoming

__all__ = ["VerifiedRest", "verify_http_signature"]


def _check_body(stated: ContentDigest | None, incoming: RestIncoming) -> None:
    """The signed Content-Digest must match the body received, before anything is forwarded."""
    body = incoming.body
    if body.size == 0:
        return
    if stated is None:
        raise MissingContentDigest("a request with a body must sign its Content-Digest")
    computed = {"sha-256": body.sha256(), "sha-512": body.sha512()}
    matched = False
    for algorithm, value in stated.digests:
        if not hmac.compare_digest(value, computed[algorithm]):
            raise InvalidContentDigest(f"the body does not match its {algorithm} Content-Digest")
        matched = True
    if not matched:
        raise InvalidContentDigest("the Content-Digest names no sha-256 or sha-512 digest")


@dataclass(frozen=True, slots=True)
class VerifiedRest:
    """What stage 2 learnt from a REST request's signature."""

    signer: ValidatedSigner
    signature_value_digest: str
    signature_base_digest: str  # what was signed, by which key: the replay name (SPEC 5.5)
    created: datetime
    nonce: str | None


def verify_http_signature(
    env: ExchangeEnv, incoming: RestIncoming, head: RestRequestHead, entry: ClientEntry
) -> VerifiedRest:
    """Verify the request's signature and the body's digest; return the validated signer.

    The ``keyid`` must name a certificate registered (pinned) for this client, and that
    certificate must still chain to a trust anchor and be valid now.
    """
    by_keyid: dict[str, x509.Certificate] = {
        http_keyid(cert): cert for cert in entry.signing_certificates
    }
    path, sep, query = incoming.target.partition("?")
    view = HttpRequestView(
        method=incoming.method,
        target_uri=f"{incoming.scheme}://{incoming.authority}{incoming.target}",
        authority=incoming.authority,
        path=path,
        query=query if sep else None,
        headers=incoming.header_map(),
        has_body=incoming.body.size > 0,
    )
    skew = env.max_clock_skew
    policy = (
        RequestSignaturePolicy(max_clock_skew=skew)
        if head.dialect == "xroad"
        else RequestSignaturePolicy.uxp(max_clock_skew=skew)
    )
    verified = verify_request_signature(view, policy, by_keyid.get, incoming.received_at)
    signer = validate_signer(verified.certificate, [], env.trust, incoming.received_at)
    _check_body(verified.content_digest, incoming)
    return VerifiedRest(
        signer,
        verified.signature_value_digest,
        verified.signature_base_digest,
        verified.created,
        verified.nonce,
    )
