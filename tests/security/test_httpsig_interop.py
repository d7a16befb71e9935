"""REST request signatures made by an implementation nobody here wrote (the
`http-message-signatures` package) with certificates from obmin's PKI: each of the four
algorithms verifies (SPEC 5.2), and each way of breaking a request is refused with its own code."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from security.digest import DigestChecker, content_digest_header
from security.errors import (
    InvalidContentDigest,
    InvalidSignatureInput,
    InvalidSignatureValue,
    MissingContentDigest,
    MissingCoveredComponent,
    MissingSignature,
    SecurityError,
    StaleMessage,
    UnknownKey,
    UnsupportedAlgorithm,
)
from security.httpsig import RequestSignaturePolicy, VerifiedHttpRequest, verify_request_signature
from security.httpsig_algs import http_keyid
from security.httpsig_base import HttpRequestView
from tests.security.conftest import NOW, Pki, Signer

URL = "https://gateway.example.gov.ua:8443/r1/SEVDEIR-TEST/GOV/87654321/REGISTRY/persons?id=7&x=%2F"
BODY = b'{"rnokpp": "1234567890"}'
CLIENT = "SEVDEIR-TEST/GOV/12345678/CLIENT"
MESSAGE_ID = "6f1c2d3e-0000-4000-8000-000000000001"
FULL = ("@method", "@target-uri", "x-road-client", "x-road-id")
POLICY = RequestSignaturePolicy()

ALGORITHMS = {
    "rsa-pss-sha512": ("member", algorithms.RSA_PSS_SHA512),
    "rsa-v1_5-sha256": ("member", algorithms.RSA_V1_5_SHA256),
    "ecdsa-p256-sha256": ("ec_member", algorithms.ECDSA_P256_SHA256),
    "ed25519": ("ed_member", algorithms.ED25519),
}


@dataclass
class Request:
    """The message interface http-message-signatures signs: method, url, headers."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class _Keys(HTTPSignatureKeyResolver):  # type: ignore[misc]
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def resolve_private_key(self, key_id: str) -> Any:
        return self.signer.key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.signer.cert.public_key()


def _request(method: str = "POST", url: str = URL) -> Request:
    return Request(method, url, {"X-Road-Client": CLIENT, "X-Road-Id": MESSAGE_ID})


def sign(
    request: Request,
    signer: Signer,
    algorithm: Any = algorithms.RSA_PSS_SHA512,
    *,
    components: Sequence[str] = FULL,
    body: bytes | None = BODY,
    created: datetime = NOW,
    **kwargs: Any,
) -> Request:
    """Sign in place with http-message-signatures; keyid is the certificate thumbprint."""
    HTTPMessageSigner(signature_algorithm=algorithm, key_resolver=_Keys(signer)).sign(
        request,
        key_id=http_keyid(signer.cert),
        created=created,
        covered_component_ids=components,
        body=body,
        **kwargs,
    )
    return request


def view_of(request: Request, *, has_body: bool | None = None) -> HttpRequestView:
    """The HttpRequestView the gateway would build for ``request``."""
    parts = urlsplit(request.url)
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return HttpRequestView(
        method=request.method,
        target_uri=request.url,
        authority=parts.netloc,
        path=parts.path,
        query=parts.query if "?" in request.url else None,
        headers=headers,
        has_body=has_body,
    )


def registered(*signers: Signer) -> Any:
    """A lookup over the certificates registered for the client."""
    table = {http_keyid(s.cert): s.cert for s in signers}
    return table.get


def verify(
    request: Request,
    signers: Sequence[Signer],
    *,
    policy: RequestSignaturePolicy = POLICY,
    now: datetime = NOW,
    has_body: bool | None = None,
) -> VerifiedHttpRequest:
    return verify_request_signature(
        view_of(request, has_body=has_body), policy, registered(*signers), now
    )


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_each_algorithm_from_http_message_signatures_verifies(pki: Pki, alg: str) -> None:
    name, algorithm = ALGORITHMS[alg]
    signer: Signer = getattr(pki, name)
    request = sign(_request(), signer, algorithm, nonce="n-1")
    verified = verify(request, [signer, pki.other_member])
    assert verified.algorithm == alg
    assert verified.keyid == http_keyid(signer.cert)
    assert verified.certificate == signer.cert
    assert verified.label == "pyhms"
    assert verified.nonce == "n-1"
    assert verified.created == NOW
    assert verified.signed_value("x-road-client") == CLIENT
    assert verified.signed_value("@method") == "POST"
    assert '"content-digest"' in verified.covered_components
    assert verified.content_digest is not None
    checker = DigestChecker(verified.content_digest)
    for start in range(0, len(BODY), 5):
        checker.update(BODY[start : start + 5])
    assert checker.finish()["sha-256"]


def test_rsa_without_alg_parameter_tries_both_rsa_schemes(pki: Pki) -> None:
    for algorithm, expected in (
        (algorithms.RSA_V1_5_SHA256, "rsa-v1_5-sha256"),
        (algorithms.RSA_PSS_SHA512, "rsa-pss-sha512"),
    ):
        request = sign(_request(), pki.member, algorithm, include_alg=False)
        assert verify(request, [pki.member]).algorithm == expected


def test_authority_path_query_instead_of_target_uri(pki: Pki) -> None:
    parts = ("@method", "@authority", "@path", "@query", "x-road-client", "x-road-id")
    request = sign(_request(), pki.ed_member, algorithms.ED25519, components=parts)
    verified = verify(request, [pki.ed_member])
    assert verified.signed_value("@authority") == "gateway.example.gov.ua:8443"
    assert verified.signed_value("@query") == "?id=7&x=%2F"


def test_get_without_body_needs_no_content_digest(pki: Pki) -> None:
    request = sign(_request("GET"), pki.ec_member, algorithms.ECDSA_P256_SHA256, body=None)
    verified = verify(request, [pki.ec_member], has_body=False)
    assert verified.content_digest is None


def test_uxp_dialect_policy(pki: Pki) -> None:
    request = Request("POST", URL, {"Uxp-Client": CLIENT, "Uxp-Service": "X/Y/Z/S/getPerson"})
    components = ("@method", "@target-uri", "uxp-client", "uxp-service")
    sign(request, pki.member, components=components)
    verified = verify(request, [pki.member], policy=RequestSignaturePolicy.uxp())
    assert verified.signed_value("uxp-service") == "X/Y/Z/S/getPerson"
    unsigned_service = sign(
        Request("POST", URL, {"Uxp-Client": CLIENT, "Uxp-Service": "X/Y/Z/S/getPerson"}),
        pki.member,
        components=("@method", "@target-uri", "uxp-client"),
    )
    with pytest.raises(MissingCoveredComponent, match="uxp-service"):
        verify(unsigned_service, [pki.member], policy=RequestSignaturePolicy.uxp())


# --- each refusal with its own code ---------------------------------------------------------


def _expect(exc: type[SecurityError], code: str, request: Request, pki: Pki, **kw: Any) -> None:
    with pytest.raises(exc) as info:
        verify(request, kw.pop("signers", [pki.member]), **kw)
    assert info.value.code == code


def test_changed_body_is_refused_by_the_digest(pki: Pki) -> None:
    verified = verify(sign(_request(), pki.member), [pki.member])
    assert verified.content_digest is not None
    checker = DigestChecker(verified.content_digest)
    checker.update(BODY.replace(b"1234", b"9999"))
    with pytest.raises(InvalidContentDigest) as info:
        checker.finish()
    assert info.value.code == "InvalidContentDigest"


def test_replaced_digest_header_breaks_the_signature(pki: Pki) -> None:
    request = sign(_request(), pki.member)
    request.headers["Content-Digest"] = content_digest_header(b"other body", "sha-256")
    _expect(InvalidSignatureValue, "InvalidSignatureValue", request, pki)


def test_changed_header_is_refused(pki: Pki) -> None:
    request = sign(_request(), pki.member)
    request.headers["X-Road-Client"] = "SEVDEIR-TEST/GOV/87654321/OTHER"
    _expect(InvalidSignatureValue, "InvalidSignatureValue", request, pki)


def test_changed_method_is_refused(pki: Pki) -> None:
    request = sign(_request(), pki.ec_member, algorithms.ECDSA_P256_SHA256)
    request.method = "PUT"
    _expect(InvalidSignatureValue, "InvalidSignatureValue", request, pki, signers=[pki.ec_member])


def test_changed_path_is_refused(pki: Pki) -> None:
    request = sign(_request(), pki.ed_member, algorithms.ED25519)
    request.url = URL.replace("/persons", "/accounts")
    _expect(InvalidSignatureValue, "InvalidSignatureValue", request, pki, signers=[pki.ed_member])


def test_expired_signature_is_stale(pki: Pki) -> None:
    request = sign(_request(), pki.member, expires=NOW + timedelta(seconds=30))
    verify(request, [pki.member], now=NOW + timedelta(seconds=29))
    _expect(StaleMessage, "StaleMessage", request, pki, now=NOW + timedelta(seconds=31))


def test_old_created_is_stale(pki: Pki) -> None:
    request = sign(_request(), pki.member, created=NOW - timedelta(seconds=301))
    _expect(StaleMessage, "StaleMessage", request, pki)
    verify(request, [pki.member], policy=dataclasses.replace(POLICY, max_clock_skew=timedelta(600)))


def test_created_in_the_future_is_stale(pki: Pki) -> None:
    request = sign(_request(), pki.member, created=NOW + timedelta(seconds=301))
    _expect(StaleMessage, "StaleMessage", request, pki)
    verify(request, [pki.member], now=NOW + timedelta(seconds=2))


def test_missing_client_header_component(pki: Pki) -> None:
    request = sign(_request(), pki.member, components=("@method", "@target-uri", "x-road-id"))
    with pytest.raises(MissingCoveredComponent, match="x-road-client") as info:
        verify(request, [pki.member])
    assert info.value.code == "MissingCoveredComponent"


def test_missing_message_id_component_when_the_header_is_sent(pki: Pki) -> None:
    request = sign(_request(), pki.member, components=("@method", "@target-uri", "x-road-client"))
    _expect(MissingCoveredComponent, "MissingCoveredComponent", request, pki)
    del request.headers["X-Road-Id"]  # not sent: not required (and not covered)
    verify(request, [pki.member])


def test_target_needs_all_three_parts(pki: Pki) -> None:
    parts = ("@method", "@authority", "@path", "x-road-client", "x-road-id")  # no @query
    request = sign(_request(), pki.member, components=parts)
    with pytest.raises(MissingCoveredComponent, match="@target-uri"):
        verify(request, [pki.member])


def test_body_without_content_digest_coverage(pki: Pki) -> None:
    request = sign(_request(), pki.member, body=None)
    request.headers["Content-Digest"] = content_digest_header(BODY)
    _expect(MissingCoveredComponent, "MissingCoveredComponent", request, pki, has_body=True)


def test_body_without_any_content_digest(pki: Pki) -> None:
    request = sign(_request(), pki.member, body=None)
    request.headers["Content-Length"] = str(len(BODY))
    _expect(MissingContentDigest, "MissingContentDigest", request, pki)


def test_unregistered_key(pki: Pki) -> None:
    request = sign(_request(), pki.untrusted)
    _expect(UnknownKey, "UnknownKey", request, pki, signers=[pki.member, pki.other_member])


def test_lookup_returning_another_certificate_is_unknown_key(pki: Pki) -> None:
    request = sign(_request(), pki.member)
    with pytest.raises(UnknownKey, match="another thumbprint"):
        verify_request_signature(view_of(request), POLICY, lambda _: pki.other_member.cert, NOW)


class _ClaimsEd25519(algorithms.RSA_PSS_SHA512):  # type: ignore[misc]
    """Signs with RSA-PSS but announces alg="ed25519"."""

    algorithm_id = "ed25519"


def test_alg_parameter_not_fitting_the_key(pki: Pki) -> None:
    request = sign(_request(), pki.member, _ClaimsEd25519)
    _expect(UnsupportedAlgorithm, "UnsupportedAlgorithm", request, pki)


def test_alg_parameter_outside_the_four(pki: Pki) -> None:
    request = sign(_request(), pki.member)
    request.headers["Signature-Input"] = request.headers["Signature-Input"].replace(
        'alg="rsa-pss-sha512"', 'alg="hmac-sha256"'
    )
    _expect(UnsupportedAlgorithm, "UnsupportedAlgorithm", request, pki)


def test_malformed_signature_input(pki: Pki) -> None:
    request = sign(_request(), pki.member)
    request.headers["Signature-Input"] = request.headers["Signature-Input"].replace("(", "[", 1)
    _expect(InvalidSignatureInput, "InvalidSignatureInput", request, pki)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda v: v.replace(";keyid=", ";x=1;keyid="), "unknown parameter"),
        (lambda v: v.replace("created=", "created=1.5;c="), "created must be int"),
        (lambda v: v.replace("created=", "created=?1;c="), "created must be int"),
        (lambda v: v.replace(";keyid=", ";tag=1;keyid="), "must be str"),
        (lambda v: v.replace('"@method"', '"@Method"'), "lowercase"),
        (lambda v: v.replace('"@method"', '"@method" "@method"'), "twice"),
        (lambda v: v.replace('"@method"', '"@method" "@signature-params"'), "@signature-params"),
        (lambda v: v.replace("pyhms=", "other="), "different labels"),
        (lambda v: v + ", pyhms=()", "repeated key"),
        (lambda v: v.replace('"@method"', '"@method" "@method";req'), "req"),
        (lambda v: v.replace('"x-road-id"', '"x-road-id" "x-absent"'), "x-absent"),
        (lambda v: v.replace('"x-road-id"', '"x-road-id" "x-road-id";sf'), "structured type"),
        (lambda v: v.replace('"x-road-id"', '"x-road-id" "x-road-id";tr'), "trailers"),
        (lambda v: v.replace('"x-road-id"', '"x-road-id" "x-road-id";bs;sf'), "bs excludes"),
        (lambda v: v.replace('"x-road-id"', '"x-road-id" "x-road-id";key="a"'), "dictionary"),
        (lambda v: v.replace('"x-road-id"', '"x-road-id" "x-road-id";sf=?0'), "true flag"),
        (lambda v: v.replace('"x-road-id"', '"x-road-id" "x-road-id";zz'), "unknown parameter"),
        (lambda v: v.replace('"@method"', '"@method" "@method";zz'), "no parameters"),
        (lambda v: v.replace('"@method"', '"@method" "@nonsense"'), "unknown derived"),
        (lambda v: v.replace('"@method"', '"@method" "@status"'), "@status"),
    ],
)
def test_refused_signature_inputs(pki: Pki, edit: Any, match: str) -> None:
    request = sign(_request(), pki.member)
    request.headers["Signature-Input"] = edit(request.headers["Signature-Input"])
    with pytest.raises(InvalidSignatureInput, match=match):
        verify(request, [pki.member])


def test_created_and_keyid_are_required(pki: Pki) -> None:
    request = sign(_request(), pki.member)
    value = request.headers["Signature-Input"]
    start = value.index(";created=")
    request.headers["Signature-Input"] = value[:start] + value[value.index(";", start + 1) :]
    with pytest.raises(InvalidSignatureInput, match="created"):
        verify(request, [pki.member])


def test_no_signature_headers(pki: Pki) -> None:
    _expect(MissingSignature, "MissingSignature", _request(), pki)


def test_signature_without_signature_input(pki: Pki) -> None:
    request = sign(_request(), pki.member)
    del request.headers["Signature-Input"]
    _expect(InvalidSignatureInput, "InvalidSignatureInput", request, pki)


def test_ecdsa_der_signature_is_refused(pki: Pki) -> None:
    # RFC 9421 3.3.4 wants raw r || s; a DER encoded value must not verify.
    request = sign(_request(), pki.ec_member, algorithms.ECDSA_P256_SHA256)
    raw = base64.b64decode(request.headers["Signature"].split(":")[1])
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    request.headers["Signature"] = "pyhms=:" + base64.b64encode(der).decode() + ":"
    _expect(InvalidSignatureValue, "InvalidSignatureValue", request, pki, signers=[pki.ec_member])


def test_label_free_and_the_policy_picks_the_signature(pki: Pki) -> None:
    # A second, narrower signature (say, a proxy's) does not make the request ambiguous.
    request = sign(_request(), pki.member, label="client")
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_Keys(pki.ed_member)
    ).sign(
        request,
        key_id=http_keyid(pki.ed_member.cert),
        created=NOW,
        label="proxy",
        covered_component_ids=("@method",),
        append_if_signature_exists=True,
        use_existing_digest=True,
    )
    verified = verify(request, [pki.member, pki.ed_member])
    assert verified.label == "client"
    with pytest.raises(MissingCoveredComponent):
        verify(request, [pki.ed_member], policy=dataclasses.replace(POLICY, label="proxy"))
    with pytest.raises(MissingSignature):
        verify(request, [pki.member], policy=dataclasses.replace(POLICY, label="absent"))


def test_two_signatures_meeting_the_policy_are_ambiguous(pki: Pki) -> None:
    request = sign(_request(), pki.member, label="one")
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_Keys(pki.ed_member)
    ).sign(
        request,
        key_id=http_keyid(pki.ed_member.cert),
        created=NOW,
        label="two",
        covered_component_ids=(*FULL, "content-digest"),
        append_if_signature_exists=True,
        use_existing_digest=True,
    )
    with pytest.raises(InvalidSignatureInput, match="ambiguous"):
        verify(request, [pki.member, pki.ed_member])
    one = verify(request, [pki.member], policy=dataclasses.replace(POLICY, label="one"))
    assert one.certificate == pki.member.cert


def test_signature_value_digest_is_base64_sha512(pki: Pki) -> None:
    request = sign(_request(), pki.ed_member, algorithms.ED25519)
    raw = base64.b64decode(request.headers["Signature"].split(":")[1])
    verified = verify(request, [pki.ed_member])
    assert (
        verified.signature_value_digest == base64.b64encode(hashlib.sha512(raw).digest()).decode()
    )


def test_keyid_is_base64url_sha256_of_der(pki: Pki) -> None:
    cert: x509.Certificate = pki.member.cert
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
    assert http_keyid(cert) == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert "=" not in http_keyid(cert) and len(http_keyid(cert)) == 43


@pytest.mark.parametrize(
    "digest_component", ['"content-digest";sf', '"content-digest";key="sha-256"']
)
def test_content_digest_covered_with_sf_or_key(pki: Pki, digest_component: str) -> None:
    components = (*FULL, '"x-road-id";bs', digest_component)
    request = sign(_request(), pki.member, components=components)
    verified = verify(request, [pki.member])
    assert verified.content_digest is not None
    assert verified.content_digest.algorithms == ("sha-256",)
    assert verified.signed_value('"x-road-id";bs') is not None
    checker = DigestChecker(verified.content_digest)
    checker.update(BODY)
    checker.finish()


def test_byte_wrapped_digest_does_not_count_but_a_plain_one_beside_it_does(pki: Pki) -> None:
    # http-message-signatures adds plain "content-digest" after our bs-wrapped one.
    request = sign(_request(), pki.member, components=(*FULL, '"content-digest";bs'))
    assert '"content-digest";bs "content-digest")' in request.headers["Signature-Input"]
    verified = verify(request, [pki.member])
    assert verified.content_digest is not None
    only_wrapped = _request()
    only_wrapped.headers["Content-Digest"] = content_digest_header(BODY)
    components = (*FULL, '"content-digest";bs')
    sign(only_wrapped, pki.member, body=None, components=components, use_existing_digest=True)
    with pytest.raises(MissingCoveredComponent, match="content-digest"):
        verify(only_wrapped, [pki.member], has_body=True)
