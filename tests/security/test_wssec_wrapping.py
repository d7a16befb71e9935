"""The attack corpus: signature wrapping and disallowed forms, each refused with its reason.

Every case starts from a message that verifies, changes one thing as an attacker (or a lax
signer) would, re-signs SignedInfo where the change touched it, and expects
`InvalidSignatureValue` with a message naming the rule.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from security import InvalidSignatureValue, SignaturePolicy, sign_soap, verify_soap_signature
from security.xmldsig import DS, WSSE, WSU, WSU_ID, exc_c14n
from tests.security.conftest import (
    NOW,
    PROVIDER_NS,
    SKEW,
    SOAP_NS,
    XRD_NS,
    Pki,
    reparse,
    resign,
    xroad_envelope,
)

EVIL = "urn:example:evil"
EC14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


@dataclass(frozen=True, slots=True)
class Message:
    """A signed envelope under attack, with handles on its parts."""

    root: etree._Element
    pki: Pki

    def one(self, path: str) -> etree._Element:
        found = self.root.find(path)
        assert found is not None, path
        return found

    @property
    def header(self) -> etree._Element:
        return self.one(f"{{{SOAP_NS}}}Header")

    @property
    def body(self) -> etree._Element:
        return self.one(f"{{{SOAP_NS}}}Body")

    @property
    def security(self) -> etree._Element:
        return self.one(f"{{{SOAP_NS}}}Header/{{{WSSE}}}Security")

    @property
    def signature(self) -> etree._Element:
        return self.one(f".//{{{DS}}}Signature")

    @property
    def signed_info(self) -> etree._Element:
        return self.one(f".//{{{DS}}}SignedInfo")

    def reference_to(self, element: etree._Element) -> etree._Element:
        return self.one(f".//{{{DS}}}Reference[@URI='#{element.get(WSU_ID)}']")

    def wrapper(self) -> etree._Element:
        return etree.SubElement(self.header, f"{{{EVIL}}}Wrapper")

    def evil_body(self, **attrib: str) -> etree._Element:
        body = etree.Element(f"{{{SOAP_NS}}}Body", attrib)
        request = etree.SubElement(body, f"{{{PROVIDER_NS}}}getPerson")
        etree.SubElement(request, f"{{{PROVIDER_NS}}}rnokpp").text = "9999999999"
        return body

    def resign(self) -> None:
        resign(self.root, self.pki.member.key)


def _signed(pki: Pki, profile: SignaturePolicy = "strict") -> Message:
    envelope = sign_soap(
        xroad_envelope(), key=pki.member.key, certificate=pki.member.cert, now=NOW, profile=profile
    )
    return Message(reparse(envelope), pki)


def _verify(message: Message, policy: SignaturePolicy = "strict") -> None:
    verify_soap_signature(
        message.root, policy=policy, trust=message.pki.trust, now=NOW, max_clock_skew=SKEW
    )


# --- the attacks -------------------------------------------------------------------------------


def moved_body(m: Message) -> None:
    """The signed Body is moved into a header; a new, unsigned Body takes its place."""
    body = m.body
    m.wrapper().append(body)
    m.root.append(m.evil_body())


def hidden_body_new_body_with_id(m: Message) -> None:
    """The signed Body hides deep in a header; the exposed Body has an Id of its own."""
    body = m.body
    inner = etree.SubElement(m.wrapper(), f"{{{EVIL}}}Inner")
    inner.append(body)
    m.root.append(m.evil_body(**{WSU_ID: "body-evil"}))


def duplicated_wsu_id(m: Message) -> None:
    """A copy of the signed Body (same wsu:Id) in a header; the real Body is changed."""
    m.wrapper().append(copy.deepcopy(m.body))
    m.one(f".//{{{SOAP_NS}}}Body/{{{PROVIDER_NS}}}getPerson/{{{PROVIDER_NS}}}rnokpp").text = "9"


def duplicated_plain_id(m: Message) -> None:
    """Another element carries the Body's Id as a plain ``Id`` attribute."""
    etree.SubElement(m.header, f"{{{EVIL}}}Decoy", Id=str(m.body.get(WSU_ID)))


def second_signature_in_body(m: Message) -> None:
    """A second ds:Signature anywhere in the document (here inside the payload)."""
    m.one(f".//{{{PROVIDER_NS}}}getPerson").append(copy.deepcopy(m.signature))


def second_security_header(m: Message) -> None:
    """A second wsse:Security header (with its own copy of the signature)."""
    m.header.append(copy.deepcopy(m.security))


def second_body(m: Message) -> None:
    """Two Body elements as children of the Envelope."""
    m.root.append(m.evil_body())


def signature_outside_security(m: Message) -> None:
    """The one ds:Signature sits directly in the SOAP Header."""
    m.header.append(m.signature)


def reference_only_to_non_body(m: Message) -> None:
    """SignedInfo no longer references the Body at all (re-signed)."""
    m.signed_info.remove(m.reference_to(m.body))
    m.resign()


def body_referenced_twice(m: Message) -> None:
    """The same element is referenced twice (a CPU amplifier, and never needed)."""
    reference = m.reference_to(m.body)
    reference.addnext(copy.deepcopy(reference))
    m.resign()


def comment_splitting_changed_text(m: Message) -> None:
    """A comment splits the signed text, and the text itself is changed."""
    value = m.one(f".//{{{PROVIDER_NS}}}rnokpp")
    value.text = "12345"
    comment = etree.Comment("x")
    comment.tail = "67891"
    value.append(comment)


def whitespace_in_body_text(m: Message) -> None:
    """One trailing space in the signed text."""
    value = m.one(f".//{{{PROVIDER_NS}}}rnokpp")
    value.text = f"{value.text} "


def whitespace_between_body_elements(m: Message) -> None:
    """Indentation added inside the Body (a new text node)."""
    m.one(f".//{{{PROVIDER_NS}}}getPerson").text = "\n  "


def sha1_digest(m: Message) -> None:
    """The Body digest recomputed with SHA-1 and SignedInfo re-signed."""
    reference = m.reference_to(m.body)
    reference.find(f"{{{DS}}}DigestMethod").set(  # type: ignore[union-attr]
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1"
    )
    digest = hashlib.sha1(exc_c14n(m.body)).digest()
    reference.find(f"{{{DS}}}DigestValue").text = base64.b64encode(digest).decode()  # type: ignore[union-attr]
    m.resign()


def _replace_transform(m: Message, algorithm: str, text: str | None = None) -> None:
    transform = m.reference_to(m.body).find(f"{{{DS}}}Transforms/{{{DS}}}Transform")
    assert transform is not None
    transform.set("Algorithm", algorithm)
    if text is not None:
        etree.SubElement(transform, f"{{{DS}}}XPath").text = text
    m.resign()


def xpath_transform(m: Message) -> None:
    """An XPath transform selecting what the attacker likes."""
    _replace_transform(m, "http://www.w3.org/TR/1999/REC-xpath-19991116", "not(ancestor::x)")


def xslt_transform(m: Message) -> None:
    """An XSLT transform (code execution in some verifiers)."""
    _replace_transform(m, "http://www.w3.org/TR/1999/REC-xslt-19991116")


def enveloped_signature_transform(m: Message) -> None:
    """The enveloped-signature transform, never needed for WS-Security references."""
    _replace_transform(m, "http://www.w3.org/2000/09/xmldsig#enveloped-signature")


def external_uri_reference(m: Message) -> None:
    """A reference to a document elsewhere."""
    m.reference_to(m.body).set("URI", "http://evil.example/body.xml")
    m.resign()


def whole_document_reference(m: Message) -> None:
    """URI="" (the whole document)."""
    m.reference_to(m.body).set("URI", "")
    m.resign()


def xpointer_reference(m: Message) -> None:
    """An XPointer reference."""
    m.reference_to(m.body).set("URI", "#xpointer(/)")
    m.resign()


def dangling_reference(m: Message) -> None:
    """A reference to an Id that no element has."""
    m.reference_to(m.body).set("URI", "#nowhere")
    m.resign()


def inclusive_c14n(m: Message) -> None:
    """Inclusive canonicalisation of SignedInfo."""
    method = m.one(f".//{{{DS}}}CanonicalizationMethod")
    method.set("Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")


def exc_c14n_with_comments(m: Message) -> None:
    """Exclusive canonicalisation with comments (comments would become signed content)."""
    m.one(f".//{{{DS}}}CanonicalizationMethod").set("Algorithm", EC14N + "WithComments")


def rsa_sha1_signature(m: Message) -> None:
    """The RSA-SHA1 signature method."""
    m.one(f".//{{{DS}}}SignatureMethod").set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    )


def hmac_output_length(m: Message) -> None:
    """A truncated-HMAC style parameter on the signature method."""
    method = m.one(f".//{{{DS}}}SignatureMethod")
    etree.SubElement(method, f"{{{DS}}}HMACOutputLength").text = "8"
    m.resign()


def object_in_signature(m: Message) -> None:
    """A ds:Object carrying content inside the Signature."""
    etree.SubElement(m.signature, f"{{{DS}}}Object").text = "payload"


def moved_client_header(m: Message) -> None:
    """The signed client header moves into a wrapper; an unsigned one names another client."""
    client = m.one(f"{{{SOAP_NS}}}Header/{{{XRD_NS}}}client")
    forged = copy.deepcopy(client)
    del forged.attrib[WSU_ID]
    client.addprevious(forged)
    m.wrapper().append(client)


def unsigned_client_reference(m: Message) -> None:
    """SignedInfo drops the client header (re-signed); strict requires it."""
    m.signed_info.remove(m.reference_to(m.one(f"{{{SOAP_NS}}}Header/{{{XRD_NS}}}client")))
    m.resign()


def second_timestamp(m: Message) -> None:
    """An extra, unsigned Timestamp (with an Id of its own) next to the signed one."""
    extra = copy.deepcopy(m.one(f".//{{{WSU}}}Timestamp"))
    extra.set(WSU_ID, "ts-extra")
    m.security.insert(0, extra)


def replaced_timestamp(m: Message) -> None:
    """The signed Timestamp moves into a wrapper; a fresh unsigned one takes its place."""
    stamp = m.one(f".//{{{WSU}}}Timestamp")
    fresh = copy.deepcopy(stamp)
    fresh.set(WSU_ID, "ts-fresh")
    stamp.addprevious(fresh)
    m.wrapper().append(stamp)


def swapped_token(m: Message) -> None:
    """The BinarySecurityToken is swapped for another trusted member's certificate."""
    der = m.pki.other_member.cert.public_bytes(Encoding.DER)
    m.one(f".//{{{WSSE}}}BinarySecurityToken").text = base64.b64encode(der).decode()


def tampered_signature_value(m: Message) -> None:
    """One bit of the SignatureValue flipped."""
    element = m.one(f".//{{{DS}}}SignatureValue")
    raw = bytearray(base64.b64decode(str(element.text)))
    raw[10] ^= 0x01
    element.text = base64.b64encode(bytes(raw)).decode()


Attack = Callable[[Message], None]
CASES: list[tuple[Attack, SignaturePolicy, str]] = [
    (moved_body, "strict", "signed Body is not the Envelope's Body"),
    (moved_body, "standard", "signed Body is not the Envelope's Body"),
    (hidden_body_new_body_with_id, "standard", "signed Body is not the Envelope's Body"),
    (duplicated_wsu_id, "standard", "occurs more than once"),
    (duplicated_plain_id, "standard", "occurs more than once"),
    (second_signature_in_body, "standard", "more than one ds:Signature"),
    (second_security_header, "standard", "more than one wsse:Security"),
    (second_body, "standard", "exactly one Body"),
    (signature_outside_security, "standard", "not a child of the wsse:Security"),
    (reference_only_to_non_body, "standard", "does not cover the soap:Body"),
    (body_referenced_twice, "standard", "more than once"),
    (comment_splitting_changed_text, "standard", "digest of reference .* \\(Body\\)"),
    (whitespace_in_body_text, "standard", "digest of reference .* \\(Body\\)"),
    (whitespace_between_body_elements, "standard", "digest of reference .* \\(Body\\)"),
    (sha1_digest, "standard", "digest algorithm .*sha1 is not allowed"),
    (xpath_transform, "standard", "XPath/XSLT"),
    (xslt_transform, "standard", "XPath/XSLT"),
    (enveloped_signature_transform, "standard", "only exclusive C14N"),
    (external_uri_reference, "standard", "not a same-document #id"),
    (whole_document_reference, "standard", "whole document"),
    (xpointer_reference, "standard", "XPointer"),
    (dangling_reference, "standard", "points at no element"),
    (inclusive_c14n, "standard", "canonicalization .* is not allowed"),
    (exc_c14n_with_comments, "standard", "canonicalization .* is not allowed"),
    (rsa_sha1_signature, "standard", "signature algorithm .*rsa-sha1 is not allowed"),
    (hmac_output_length, "standard", "takes no parameters"),
    (object_in_signature, "standard", "must hold SignedInfo, SignatureValue and KeyInfo"),
    (moved_client_header, "strict", "requires a signed X-Road 'client'"),
    (unsigned_client_reference, "strict", "requires a signed X-Road 'client'"),
    (second_timestamp, "strict", "more than one wsu:Timestamp"),
    (replaced_timestamp, "strict", "Timestamp is present but not signed"),
    (swapped_token, "strict", "signature value does not match"),
    (tampered_signature_value, "strict", "signature value does not match"),
]


@pytest.mark.parametrize(
    ("attack", "policy", "message"),
    CASES,
    ids=[f"{attack.__name__}-{policy}" for attack, policy, _ in CASES],
)
def test_attack_is_refused(pki: Pki, attack: Attack, policy: SignaturePolicy, message: str) -> None:
    message_under_attack = _signed(pki, "strict")
    _verify(message_under_attack, policy)  # the untouched message verifies
    attack(message_under_attack)
    attacked = Message(reparse(message_under_attack.root), pki)  # as it would travel
    with pytest.raises(InvalidSignatureValue, match=message) as info:
        _verify(attacked, policy)
    assert info.value.code == "InvalidSignatureValue"


def test_moved_client_header_under_standard_is_not_reported_as_signed(pki: Pki) -> None:
    """Under ``standard`` the message passes, but the forged client is not a signed header."""
    message = _signed(pki)
    moved_client_header(message)
    verified = verify_soap_signature(
        message.root, policy="standard", trust=pki.trust, now=NOW, max_clock_skew=SKEW
    )
    assert "client" not in verified.signed_header_names
    assert {"service", "id"} <= verified.signed_header_names


def test_comment_only_change_verifies_and_reads_as_signed(pki: Pki) -> None:
    """Comments are not signed content (exclusive C14N without comments): a comment that
    splits a signed text verifies, and after verification the text reads whole again, so a
    reader of ``.text`` cannot be shown less than was signed."""
    message = _signed(pki)
    value = message.one(f".//{{{PROVIDER_NS}}}rnokpp")
    value.text = "12345"
    comment = etree.Comment(" split ")
    comment.tail = "67890"
    value.append(comment)
    message.one(f".//{{{XRD_NS}}}id").append(etree.Comment("also here"))
    root = reparse(message.root)
    verified = verify_soap_signature(
        root, policy="strict", trust=pki.trust, now=NOW, max_clock_skew=SKEW
    )
    text = verified.signed_body.find(f".//{{{PROVIDER_NS}}}rnokpp")
    assert text is not None and text.text == "1234567890" and len(text) == 0
    xroad_id = root.find(f".//{{{XRD_NS}}}id")
    assert xroad_id is not None and len(xroad_id) == 0
