"""Interop with implementations nobody here wrote: zeep's WS-Security signer and xmlsec.

zeep's ``BinarySignature`` (libxmlsec1 underneath) signs an X-Road envelope; obmin verifies it
under ``standard``. obmin's ``strict`` output is verified by xmlsec's own SignatureContext.
No network: zeep's signer is applied directly to an lxml envelope.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import xmlsec
from lxml import etree
from zeep.wsse.signature import BinarySignature, Signature

from security import InvalidSignatureValue, sign_soap, verify_soap_signature
from security.xmldsig import DS, WSSE
from tests.security.conftest import MEMBER, NOW, PROVIDER_NS, SKEW, SOAP_NS, Pki, Signer, reparse
from tests.security.conftest import xroad_envelope as make_envelope


def _zeep_signed(signer: Signer, plugin: type[Signature] = BinarySignature) -> etree._Element:
    wsse = plugin(
        str(signer.issued.key_path),
        str(signer.issued.cert_path),
        signature_method=xmlsec.Transform.RSA_SHA256,
        digest_method=xmlsec.Transform.SHA256,
    )
    envelope, _headers = wsse.apply(make_envelope(), {})
    return reparse(envelope)


def test_zeep_binary_signature_verifies_under_standard(pki: Pki) -> None:
    envelope = _zeep_signed(pki.member)
    security = envelope.find(f"{{{SOAP_NS}}}Header/{{{WSSE}}}Security")
    assert security is not None and security.find(f"{{{WSSE}}}BinarySecurityToken") is not None
    verified = verify_soap_signature(
        envelope, policy="standard", trust=pki.trust, now=NOW, max_clock_skew=SKEW
    )
    assert verified.signed_body is envelope.find(f"{{{SOAP_NS}}}Body")
    assert verified.signer.member_id == MEMBER
    assert verified.signed_header_names == frozenset()
    # zeep signs the Body only: strict refuses it for want of a Timestamp.
    with pytest.raises(InvalidSignatureValue, match="Timestamp"):
        verify_soap_signature(
            envelope, policy="strict", trust=pki.trust, now=NOW, max_clock_skew=SKEW
        )


def test_zeep_x509data_signature_verifies_under_standard(pki: Pki) -> None:
    """zeep's plain ``Signature`` puts ds:X509Data inside the SecurityTokenReference."""
    envelope = _zeep_signed(pki.member, Signature)
    verified = verify_soap_signature(
        envelope, policy="standard", trust=pki.trust, now=NOW, max_clock_skew=SKEW
    )
    assert verified.signer.member_id == MEMBER


def test_zeep_message_with_one_byte_changed_is_refused(pki: Pki) -> None:
    envelope = _zeep_signed(pki.member)
    value = envelope.find(f".//{{{PROVIDER_NS}}}rnokpp")
    assert value is not None and value.text == "1234567890"
    value.text = "1234567891"
    with pytest.raises(InvalidSignatureValue, match="digest of reference") as info:
        verify_soap_signature(
            envelope, policy="standard", trust=pki.trust, now=NOW, max_clock_skew=SKEW
        )
    assert info.value.code == "InvalidSignatureValue"


def _xmlsec_verify(envelope: etree._Element, signer: Signer) -> None:
    xmlsec.tree.add_ids(envelope, ["Id"])
    signature = envelope.find(f".//{{{DS}}}Signature")
    assert signature is not None
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_file(str(signer.issued.cert_path), xmlsec.KeyFormat.CERT_PEM)
    context.verify(signature)


@pytest.mark.parametrize("which", ["member", "ec_member"])
def test_obmin_strict_signature_verifies_in_xmlsec(pki: Pki, which: str) -> None:
    signer: Signer = getattr(pki, which)
    signed = sign_soap(
        make_envelope(), key=signer.key, certificate=signer.cert, now=datetime.now(UTC)
    )
    envelope = reparse(signed)
    references = envelope.findall(f".//{{{DS}}}Reference")
    assert len(references) == 7  # Body, Timestamp, client, service, id, userId, protocolVersion
    _xmlsec_verify(envelope, signer)
    # ... and xmlsec too refuses the same message once the Body changed.
    value = envelope.find(f".//{{{PROVIDER_NS}}}rnokpp")
    assert value is not None
    value.text = "0000000000"
    with pytest.raises(xmlsec.Error):
        _xmlsec_verify(envelope, signer)
