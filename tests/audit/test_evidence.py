"""Evidence bundles: exported from a real store, verified offline, and refused when altered."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    Checkpoint,
    Checkpointer,
    SqliteAuditStore,
    VerifierKey,
    sign_checkpoint,
)
from gateway.audit.body_crypto import BodyKeyring
from gateway.audit.evidence import (
    EvidenceError,
    EvidenceItem,
    InvalidEvidence,
    build_evidence,
    canonical_zip,
)
from gateway.audit.evidence_export import (
    EvidenceNotFound,
    EvidenceNotReady,
    EvidenceSigner,
    collect_evidence,
)
from gateway.audit.evidence_verify import verify_evidence
from gateway.audit.merkle import root_hash
from gateway.audit.records import leaf_hash, member_of
from gateway.audit.tsa_verify import TsaTrust
from gateway.cli import main
from registry.identifiers import MemberId
from security import IssuedCert, issue_member_cert, load_certificate, load_private_key
from security.pki_keys import write_key
from tests.audit.drafts import CLIENT, exchange, make_draft
from tests.audit.tsa_support import HAVE_OPENSSL, make_tsa_pki, openssl_config, openssl_timestamp

ORIGIN = "obmin.test/gw"
SIGNATURE = b"\x5a" * 256  # the raw signature value of the request (its digest is recorded)


@dataclass
class Exported:
    store: SqliteAuditStore
    request_id: str
    signer: EvidenceSigner
    member: IssuedCert
    log_key: Ed25519PrivateKey

    @property
    def certificate(self) -> x509.Certificate:
        return self.signer.certificate

    async def bundle(self, **options: object) -> bytes:
        return await collect_evidence(
            self.store,
            self.request_id,
            self.signer,
            signer_certificate={_thumbprint(self.member.certificate): self.member.certificate}.get,
            **options,  # type: ignore[arg-type]
        )


def _thumbprint(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def member_signer(tmp_path_factory: pytest.TempPathFactory, dev_pki: Path) -> IssuedCert:
    return issue_member_cert(
        dev_pki,
        MemberId("SEVDEIR-TEST", "GOV", "12345678"),
        name="Ministry",
        out_dir=tmp_path_factory.mktemp("member"),
    )


@pytest.fixture
async def exported(
    store: SqliteAuditStore,
    log_key: Ed25519PrivateKey,
    dev_pki: Path,
    member_signer: IssuedCert,
) -> AsyncIterator[Exported]:
    """A log of several exchanges, checkpointed; the second exchange is the one exported."""
    await store.append(exchange("m-0"))
    request_id = str(uuid.uuid4())
    body = b"<Envelope><Body><getPerson>UA-1234567890</getPerson></Body></Envelope>"
    digest = base64.b64encode(hashlib.sha512(SIGNATURE).digest()).decode()
    await store.append(
        [
            make_draft(
                request_id=request_id,
                body=body,
                policy="plain",
                signature_value_digest=digest,
                signer_thumbprint=_thumbprint(member_signer.certificate),
            ),
            make_draft(direction="response", request_id=request_id, body=b"<ok/>"),
        ]
    )
    await store.append(exchange("m-2"))
    checkpointer = Checkpointer(store, log_key, origin=ORIGIN)
    await checkpointer.start()
    await checkpointer.stop()
    signer = EvidenceSigner(
        key=load_private_key(dev_pki / "gateway" / "sign.key"),
        certificate=load_certificate(dev_pki / "gateway" / "sign.crt"),
        log_key=VerifierKey(ORIGIN, log_key.public_key()),
    )
    yield Exported(store, request_id, signer, member_signer, log_key)


async def test_a_bundle_verifies_offline(exported: Exported) -> None:
    bundle = await exported.bundle()
    report = verify_evidence(bundle, gateway_certificate=exported.certificate)
    assert report.request_id == exported.request_id
    assert report.origin == ORIGIN and report.tree_size == 6
    assert [(r.seq, r.direction) for r in report.records] == [(2, "request"), (3, "response")]
    request, response = report.records
    assert request.body == "plain" and response.body == "none"
    assert request.signer_certificate == exported.member.certificate
    assert report.gateway_trusted and report.timestamp is None and not report.timestamp_present
    assert "evidence for request" in report.summary()
    # The verifier recomputes everything: the leaves and the root are the log's.
    leaves = [leaf_hash(r) for r in await exported.store.query(limit=10)]
    assert report.root_hash == root_hash(leaves)
    assert request.leaf_hash == leaves[2]
    # A pinned log key instead of the certificate.
    pinned = verify_evidence(bundle, vkey=exported.signer.log_key)
    assert not pinned.gateway_trusted
    # The signature value, given, is checked against the record's digest.
    names = zipfile.ZipFile(io.BytesIO(bundle)).namelist()
    assert names[:4] == ["manifest.json", "manifest.sig", "gateway.crt", "log.vkey"]
    assert "bodies/2.bin" in names and "signatures/2.sig" not in names


def _flip(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x01
    return bytes(changed)


def _member_spans(bundle: bytes) -> dict[str, tuple[int, int]]:
    """Where each member's bytes lie in the file (stored, so they are there verbatim)."""
    spans = {}
    for info in zipfile.ZipFile(io.BytesIO(bundle)).infolist():
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        spans[info.filename] = (start, start + info.file_size)
    return spans


async def test_changing_any_byte_of_the_bundle_fails(exported: Exported) -> None:
    bundle = await exported.bundle()
    certificate = exported.certificate
    spans = _member_spans(bundle)
    inside: set[int] = set()
    for name, (start, end) in spans.items():
        inside.update(range(start, end))
        for position in range(start, end):  # every byte of every member
            with pytest.raises(InvalidEvidence) as caught:
                verify_evidence(_flip(bundle, position), gateway_certificate=certificate)
            assert caught.value.member == name, (name, position, str(caught.value))
    # Every byte that is not member data: local headers, central directory, end record.
    container = [p for p in range(len(bundle)) if p not in inside]
    assert len(container) > 300
    for position in container:
        with pytest.raises(InvalidEvidence):
            verify_evidence(_flip(bundle, position), gateway_certificate=certificate)
    with pytest.raises(InvalidEvidence, match="canonical"):
        verify_evidence(bundle + b"\x00", gateway_certificate=certificate)
    with pytest.raises(InvalidEvidence, match="not a zip"):
        verify_evidence(bundle[: len(bundle) // 2], gateway_certificate=certificate)


def _members(bundle: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    return {name: archive.read(name) for name in archive.namelist()}


async def test_a_changed_member_in_a_rebuilt_zip_is_named(exported: Exported) -> None:
    """An attacker who rewrites the zip properly (valid CRCs) is caught by the manifest."""
    bundle = await exported.bundle()
    for name, data in _members(bundle).items():
        members = _members(bundle)
        members[name] = _flip(data, len(data) // 2)
        with pytest.raises(InvalidEvidence) as caught:
            verify_evidence(canonical_zip(members), gateway_certificate=exported.certificate)
        expected = "manifest.sig" if name == "manifest.json" else name
        assert caught.value.member == expected, (name, str(caught.value))
    extra = _members(bundle)
    extra["signatures/2.sig"] = SIGNATURE
    with pytest.raises(InvalidEvidence, match="file list does not match"):
        verify_evidence(canonical_zip(extra), gateway_certificate=exported.certificate)
    compressed = io.BytesIO()
    with zipfile.ZipFile(compressed, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name, data in _members(bundle).items():
            out.writestr(name, data)
    with pytest.raises(InvalidEvidence, match="compressed"):
        verify_evidence(compressed.getvalue(), gateway_certificate=exported.certificate)


async def _items(exported: Exported, size: int) -> list[EvidenceItem]:
    records = await exported.store.by_request_id(exported.request_id)
    items = []
    for record in records:
        proof = await exported.store.inclusion_proof(record.seq, size)
        body = record.body
        items.append(
            EvidenceItem(
                record=record,
                proof=proof,
                body=body,
                body_form=None if body is None else "plain",
                signature=SIGNATURE if record.direction == "request" else None,
            )
        )
    return items


def _build(exported: Exported, items: list[EvidenceItem], checkpoint: Checkpoint,
           **options: Any) -> bytes:  # fmt: skip
    """A bundle of ``items`` signed by the exported gateway (``options`` override)."""
    arguments: dict[str, Any] = {
        "request_id": exported.request_id,
        "items": items,
        "checkpoint": checkpoint,
        "log_key": exported.signer.log_key,
        "gateway_certificate": exported.certificate,
        "signing_key": exported.signer.key,
    }
    return build_evidence(**{**arguments, **options})


async def _checkpoint(exported: Exported) -> Checkpoint:
    stored = await exported.store.latest_checkpoint()
    assert stored is not None
    return stored.checkpoint


async def test_a_record_the_proof_does_not_include_fails(exported: Exported) -> None:
    checkpoint = await _checkpoint(exported)
    items = await _items(exported, 6)
    signature_checked = _build(exported, items, checkpoint)
    report = verify_evidence(signature_checked, gateway_certificate=exported.certificate)
    assert report.records[0].signature_checked
    # The request record with the response's proof: signed by the gateway, and still refused.
    swapped = [
        EvidenceItem(record=items[0].record, proof=items[1].proof),
        items[1],
    ]
    bundle = _build(exported, swapped, checkpoint)
    with pytest.raises(InvalidEvidence, match="record 2 is not included") as caught:
        verify_evidence(bundle, gateway_certificate=exported.certificate)
    assert caught.value.member == "proofs/2.json"
    # A record that was never logged, with a well-formed proof.
    outsider = make_draft(request_id=exported.request_id, direction="request").to_record(2)
    bundle = _build(exported, [EvidenceItem(record=outsider, proof=items[0].proof)], checkpoint)
    with pytest.raises(InvalidEvidence, match="not included"):
        verify_evidence(bundle, gateway_certificate=exported.certificate)


async def test_a_wrong_certificate_or_log_key_fails(
    exported: Exported, member_signer: IssuedCert
) -> None:
    bundle = await exported.bundle()
    with pytest.raises(InvalidEvidence, match="not by the certificate given"):
        verify_evidence(bundle, gateway_certificate=member_signer.certificate)
    other = VerifierKey(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(InvalidEvidence, match="not the pinned one"):
        verify_evidence(bundle, vkey=other)
    with pytest.raises(InvalidEvidence, match="needs the gateway certificate or the log vkey"):
        verify_evidence(bundle)
    # A bundle signed with another key than its certificate's is refused at export.
    with pytest.raises(EvidenceError, match="not the gateway certificate's key"):
        _build(
            exported,
            await _items(exported, 6),
            await _checkpoint(exported),
            gateway_certificate=member_signer.certificate,
        )


async def test_a_checkpoint_by_another_log_key_fails(exported: Exported) -> None:
    records = await exported.store.query(limit=10)
    forged = sign_checkpoint(
        ORIGIN, 6, root_hash(leaf_hash(r) for r in records), Ed25519PrivateKey.generate(), ORIGIN
    )
    bundle = _build(exported, await _items(exported, 6), forged)
    with pytest.raises(InvalidEvidence, match="not signed by") as caught:
        verify_evidence(bundle, gateway_certificate=exported.certificate)
    assert caught.value.member == "checkpoint.note"


async def test_encrypted_bodies_in_a_bundle(exported: Exported) -> None:
    checkpoint = await _checkpoint(exported)
    items = await _items(exported, 6)
    request = items[0].record
    assert request.body is not None
    keyring = BodyKeyring({"k1": bytes(range(32))}, "k1")
    envelope = keyring.seal(request.body, request.request_id, request.direction).envelope
    sealed = [EvidenceItem(record=request, proof=items[0].proof, body=envelope,
                           body_form="envelope"), items[1]]  # fmt: skip

    def bundle_of(entries: list[EvidenceItem]) -> bytes:
        return _build(exported, entries, checkpoint)

    bundle = bundle_of(sealed)
    report = verify_evidence(bundle, gateway_certificate=exported.certificate)
    assert report.records[0].body == "encrypted-not-opened"
    opened = verify_evidence(bundle, gateway_certificate=exported.certificate,
                             open_body=keyring.open)  # fmt: skip
    assert opened.records[0].body == "decrypted"
    moved = keyring.seal(request.body, str(uuid.uuid4()), "request").envelope
    sealed[0] = EvidenceItem(record=request, proof=items[0].proof, body=moved,
                             body_form="envelope")  # fmt: skip
    with pytest.raises(InvalidEvidence, match="belongs to another record"):
        verify_evidence(bundle_of(sealed), gateway_certificate=exported.certificate)
    wrong = BodyKeyring({"k1": bytes(32)}, "k1")
    with pytest.raises(InvalidEvidence, match="altered"):
        verify_evidence(bundle, gateway_certificate=exported.certificate, open_body=wrong.open)
    # A plaintext body that is not the recorded one.
    liar = [EvidenceItem(record=request, proof=items[0].proof, body=b"<other/>",
                         body_form="plain"), items[1]]  # fmt: skip
    with pytest.raises(InvalidEvidence, match="does not match the record's size and SHA-512"):
        verify_evidence(bundle_of(liar), gateway_certificate=exported.certificate)


async def test_export_refuses_unknown_and_uncheckpointed_exchanges(
    exported: Exported,
) -> None:
    with pytest.raises(EvidenceNotFound):
        await collect_evidence(exported.store, str(uuid.uuid4()), exported.signer)
    with pytest.raises(EvidenceNotFound):  # out of the auditor's scope: does not exist
        await exported.bundle(members=("SEVDEIR-TEST/GOV/99999999",))
    assert await exported.bundle(members=("SEVDEIR-TEST/GOV/99999999", member_of(CLIENT)))
    late = exchange("m-late")
    await exported.store.append(late)
    with pytest.raises(EvidenceNotReady, match="not yet covered by a signed checkpoint"):
        await collect_evidence(exported.store, late[0].request_id, exported.signer)


@pytest.mark.skipif(not HAVE_OPENSSL, reason="the TSA in this test is `openssl ts -reply`")
async def test_a_timestamped_checkpoint_in_a_bundle(exported: Exported, tmp_path: Path) -> None:
    tsa = make_tsa_pki(tmp_path / "tsa")
    config = openssl_config(tmp_path / "tsa-run", tsa.rsa, ess_alg="sha256", digests="sha256")
    checkpoint = await _checkpoint(exported)
    note = checkpoint.note.encode()
    token = openssl_timestamp(config, note, tsa.ca_cert)

    def bundle_with(stamp: bytes) -> bytes:
        return _build(exported, items, checkpoint, timestamp_token=stamp)

    items = await _items(exported, 6)
    bundle = bundle_with(token)
    trust = TsaTrust.from_file(tsa.ca_cert)
    report = verify_evidence(bundle, gateway_certificate=exported.certificate, tsa_trust=trust)
    assert report.timestamp is not None and report.timestamp_present
    assert "timestamped at" in report.summary()
    unchecked = verify_evidence(bundle, gateway_certificate=exported.certificate)
    assert unchecked.timestamp is None and unchecked.timestamp_present
    assert "not checked" in unchecked.summary()
    stranger = TsaTrust.from_file(tsa.other_ca.ca_cert)
    with pytest.raises(InvalidEvidence, match="untrusted") as caught:
        verify_evidence(bundle, gateway_certificate=exported.certificate, tsa_trust=stranger)
    assert caught.value.member == "checkpoint.tsr"
    other = bundle_with(openssl_timestamp(config, note + b"!", tsa.ca_cert))
    with pytest.raises(InvalidEvidence, match="imprint"):
        verify_evidence(other, gateway_certificate=exported.certificate, tsa_trust=trust)


@pytest.mark.skipif(not HAVE_OPENSSL, reason="the TSA in this test is `openssl ts -reply`")
async def test_the_bundle_takes_the_newest_timestamped_checkpoint_covering_the_exchange(
    exported: Exported, tmp_path: Path
) -> None:
    """A newer checkpoint still waiting for its token does not displace a timestamped one;
    once it has its token, it is the one the bundle proves against."""
    tsa = make_tsa_pki(tmp_path / "tsa")
    config = openssl_config(tmp_path / "tsa-run", tsa.rsa, ess_alg="sha256", digests="sha256")
    trust = TsaTrust.from_file(tsa.ca_cert)
    six = await _checkpoint(exported)
    token_six = openssl_timestamp(config, six.note.encode(), tsa.ca_cert)
    await exported.store.set_checkpoint_timestamp(6, token_six)
    await exported.store.append(exchange("m-3"))
    checkpointer = Checkpointer(exported.store, exported.log_key, origin=ORIGIN)
    await checkpointer.start()
    eight = await checkpointer.stop()
    assert eight is not None and eight.size == 8
    stored = await exported.store.latest_checkpoint()
    assert stored is not None and stored.checkpoint.size == 8 and stored.timestamp_token is None

    bundle = await exported.bundle()
    report = verify_evidence(bundle, gateway_certificate=exported.certificate, tsa_trust=trust)
    assert report.tree_size == 6 and report.timestamp is not None
    assert _members(bundle)["checkpoint.tsr"] == token_six

    token_eight = openssl_timestamp(config, eight.note.encode(), tsa.ca_cert)
    await exported.store.set_checkpoint_timestamp(8, token_eight)
    bundle = await exported.bundle()
    report = verify_evidence(bundle, gateway_certificate=exported.certificate, tsa_trust=trust)
    assert report.tree_size == 8 and _members(bundle)["checkpoint.tsr"] == token_eight


async def _log_for_cli(db_path: Path, log_key: Ed25519PrivateKey) -> str:
    store = SqliteAuditStore(db_path)
    await store.open()
    try:
        drafts = exchange("m-cli", body=b"<cli/>", policy="plain")
        await store.append(drafts)
        checkpointer = Checkpointer(store, log_key, origin=ORIGIN)
        await checkpointer.start()
        await checkpointer.stop()
        return drafts[0].request_id
    finally:
        await store.close()


def test_export_and_verify_evidence_commands(
    tmp_path: Path, dev_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_key = Ed25519PrivateKey.generate()
    write_key(tmp_path / "log.key", log_key)
    db = tmp_path / "audit.db"
    request_id = asyncio.run(_log_for_cli(db, log_key))
    (tmp_path / "registry").mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"registry_dir: registry\n"
        f"keys: {{signing_certificate: {dev_pki}/gateway/sign.crt,"
        f" signing_key: {dev_pki}/gateway/sign.key, log_key: log.key}}\n"
        f"audit: {{path: audit.db, origin: {ORIGIN}}}\n"
    )
    out = tmp_path / "evidence.zip"
    assert main(["audit", "export", request_id, "-o", str(out), "-c", str(config)]) == 0
    assert "written to" in capsys.readouterr().out
    certificate = str(dev_pki / "gateway" / "sign.crt")
    assert main(["audit", "verify-evidence", str(out), "--certificate", certificate]) == 0
    assert f"evidence for request {request_id}: OK" in capsys.readouterr().out
    vkey = VerifierKey(ORIGIN, log_key.public_key()).to_vkey()
    assert main(["audit", "verify-evidence", str(out), "--vkey", vkey]) == 0
    capsys.readouterr()
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(bytes(data))
    assert main(["audit", "verify-evidence", str(tampered), "--certificate", certificate]) == 1
    assert "evidence does NOT verify" in capsys.readouterr().err
    assert main(["audit", "verify-evidence", str(out)]) == 1
    assert "needs --certificate" in capsys.readouterr().err
    missing = str(tmp_path / "nope.zip")
    assert main(["audit", "verify-evidence", missing, "--certificate", certificate]) == 1
    assert "cannot read the evidence bundle" in capsys.readouterr().err
    unknown = str(uuid.uuid4())
    assert main(["audit", "export", unknown, "-o", str(out), "-c", str(config)]) == 1
    assert f"no audit record of request {unknown}" in capsys.readouterr().err
