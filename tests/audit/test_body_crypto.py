"""Bodies under policy ``encrypted``: AES-256-GCM envelopes, key rotation, record binding."""

from __future__ import annotations

import base64
import os
import pickle
import stat
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.audit.body_crypto import (
    BodyBinding,
    BodyBindingMismatch,
    BodyCryptoError,
    BodyKeyError,
    BodyKeyring,
    InvalidEnvelope,
    UnknownBodyKey,
    load_body_key,
    parse_envelope,
    write_body_key,
)
from gateway.cli import main
from gateway.settings import SettingsError, load_settings
from tests.audit.drafts import make_draft

BODY = b"<Envelope><Body><getPerson><code>UA-1234567890</code></getPerson></Body></Envelope>"


def _binding(body: bytes = BODY, direction: str = "request") -> BodyBinding:
    return BodyBinding.for_body(
        body, str(uuid.uuid4()), "response" if direction == "response" else "request"
    )


def _seal(keyring: BodyKeyring, body: bytes, binding: BodyBinding) -> bytes:
    """The envelope of ``body`` for the record ``binding`` names."""
    sealed = keyring.seal(body, binding.request_id, binding.direction)
    assert sealed.binding == binding
    return sealed.envelope


def _keyring(*ids: str, current: str | None = None) -> BodyKeyring:
    keys = {key_id: AESGCM.generate_key(bit_length=256) for key_id in ids}
    return BodyKeyring(keys, current or ids[-1])


def test_round_trip_and_the_envelope_format() -> None:
    keyring = _keyring("k1")
    binding = _binding()
    envelope = _seal(keyring, BODY, binding)
    assert BODY not in envelope
    parsed = parse_envelope(envelope)
    assert parsed.key_id == "k1" and parsed.binding == binding
    assert len(parsed.nonce) == 12 and len(parsed.ciphertext) == len(BODY) + 16
    assert keyring.open(envelope, binding) == BODY
    assert keyring.open(envelope) == BODY  # still checked against the envelope's digest
    assert _seal(keyring, BODY, binding) != envelope  # a fresh nonce each time
    empty = _binding(b"")
    assert keyring.open(_seal(keyring, b"", empty), empty) == b""


def test_a_body_is_sealed_under_the_digest_the_pipeline_already_has() -> None:
    """`BodyStorage` hashes a body as it arrives and hands that digest to ``seal``; a digest
    that is not the body's makes an envelope that never opens."""
    keyring = _keyring("k1")
    binding = _binding()
    sealed = keyring.seal(BODY, binding.request_id, binding.direction, digest=binding.digest)
    assert sealed.binding == binding
    assert keyring.open(sealed.envelope, binding) == BODY
    wrong = BodyBinding(binding.request_id, binding.direction, bytes(64))
    liar = keyring.seal(BODY, binding.request_id, binding.direction, digest=wrong.digest)
    with pytest.raises(InvalidEnvelope, match="does not match the envelope's digest"):
        keyring.open(liar.envelope, wrong)


def test_a_keyring_travels_to_worker_processes() -> None:
    """``obmin audit verify --workers N`` hands ``keyring.open`` to its worker processes."""
    keyring = _keyring("k1", "k2")
    binding = _binding()
    envelope = _seal(keyring, BODY, binding)
    copied = pickle.loads(pickle.dumps(keyring.open))
    assert copied(envelope) == BODY
    assert pickle.loads(pickle.dumps(keyring)).key_ids == ("k1", "k2")


def test_binding_of_a_record() -> None:
    draft = make_draft(body=BODY, policy="digest", direction="response")
    binding = BodyBinding.of(draft)
    assert binding == BodyBinding(draft.request_id, "response", binding.digest)
    assert binding.digest == BodyBinding.for_body(BODY, draft.request_id, "response").digest
    with pytest.raises(InvalidEnvelope, match="without a body digest"):
        BodyBinding.of(make_draft(policy="none"))
    sealed = _keyring("k1").seal(BODY, draft.request_id, "response")
    assert sealed.binding == binding
    assert sealed.body_digest == draft.body_digest  # hashed once, as the record stores it


def test_rotation_keeps_old_bodies_readable() -> None:
    k1, k2 = AESGCM.generate_key(bit_length=256), AESGCM.generate_key(bit_length=256)
    before = BodyKeyring({"k1": k1}, "k1")
    binding = _binding()
    old = _seal(before, BODY, binding)
    after = BodyKeyring({"k1": k1, "k2": k2}, "k2")
    new = _seal(after, BODY, binding)
    assert parse_envelope(new).key_id == "k2"
    assert after.open(old, binding) == BODY and after.open(new, binding) == BODY
    with pytest.raises(UnknownBodyKey, match="no body key 'k1'"):
        BodyKeyring({"k2": k2}, "k2").open(old, binding)  # the old key was dropped


def test_tampering_with_any_byte_is_refused() -> None:
    keyring = _keyring("k1")
    binding = _binding(b"short body")
    envelope = _seal(keyring, b"short body", binding)
    for position in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x01
        with pytest.raises(BodyCryptoError):
            keyring.open(bytes(tampered))
    with pytest.raises(InvalidEnvelope, match="it was altered"):
        keyring.open(envelope[:-1] + bytes([envelope[-1] ^ 1]), binding)
    with pytest.raises(InvalidEnvelope, match="truncated"):
        keyring.open(envelope[:60])
    with pytest.raises(InvalidEnvelope, match="not an obmin body envelope"):
        keyring.open(b"plain text body")


def test_an_envelope_cannot_move_to_another_record() -> None:
    keyring = _keyring("k1")
    mine, theirs = _binding(), _binding()
    envelope = _seal(keyring, BODY, mine)
    with pytest.raises(BodyBindingMismatch, match=mine.request_id):
        keyring.open(envelope, theirs)
    response = BodyBinding(mine.request_id, "response", mine.digest)
    with pytest.raises(BodyBindingMismatch):
        keyring.open(envelope, response)  # the request's body as the response's
    # Rewriting the header to name the other record breaks the GCM tag.
    forged = envelope.replace(mine.request_id.encode(), theirs.request_id.encode())
    with pytest.raises(InvalidEnvelope, match="altered"):
        keyring.open(forged, theirs)


def test_a_key_of_the_same_id_but_other_bytes_is_refused() -> None:
    envelope = _seal(_keyring("k1"), BODY, binding := _binding())
    with pytest.raises(InvalidEnvelope, match="under key 'k1'"):
        _keyring("k1").open(envelope, binding)


async def test_large_bodies_are_sealed_off_the_event_loop() -> None:
    keyring = _keyring("k1")
    body = os.urandom(1024 * 1024)
    binding = _binding(body)
    sealed = await keyring.seal_async(body, binding.request_id, "request")
    assert keyring.open(sealed.envelope, binding) == body
    small = await keyring.seal_async(BODY, str(uuid.uuid4()), "response")
    assert keyring.open(small.envelope, small.binding) == BODY


def test_keyring_construction_errors() -> None:
    with pytest.raises(BodyKeyError, match="not 32"):
        BodyKeyring({"k1": b"short"}, "k1")
    with pytest.raises(BodyKeyError, match="current body key 'k9'"):
        BodyKeyring({"k1": bytes(32)}, "k9")
    with pytest.raises(BodyKeyError, match="key id 'K 1'"):
        BodyKeyring({"K 1": bytes(32)}, "K 1")


def test_key_files_raw_and_base64_and_their_errors(tmp_path: Path) -> None:
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"\x00" * 31 + b"\n")  # 32 bytes that happen to end in a newline
    assert load_body_key(raw, "audit.body_keys.keys.a") == b"\x00" * 31 + b"\n"
    text = tmp_path / "text.key"
    text.write_text(base64.b64encode(b"\x01" * 32).decode() + "\n")
    assert load_body_key(text, "s") == b"\x01" * 32
    short = tmp_path / "short.key"
    short.write_text(base64.b64encode(b"\x01" * 16).decode())
    with pytest.raises(BodyKeyError, match=r"audit\.body_keys\.keys\.b: .*short\.key holds a 16"):
        load_body_key(short, "audit.body_keys.keys.b")
    junk = tmp_path / "junk.key"
    junk.write_text("this is not a key!")
    with pytest.raises(BodyKeyError, match="neither 32 raw bytes nor their base64"):
        load_body_key(junk, "audit.body_keys.keys.c")
    with pytest.raises(BodyKeyError, match=r"audit\.body_keys\.keys\.d: cannot read"):
        load_body_key(tmp_path / "missing.key", "audit.body_keys.keys.d")


def test_new_body_key_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "keys" / "k2026.key"
    assert main(["audit", "new-body-key", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(load_body_key(target, "x")) == 32
    assert "audit.body_keys.keys" in capsys.readouterr().out
    first = target.read_bytes()
    assert main(["audit", "new-body-key", str(target)]) == 1  # never overwrites a key
    assert "never overwritten" in capsys.readouterr().err
    assert target.read_bytes() == first
    with pytest.raises(BodyKeyError):
        write_body_key(target)


def test_settings_load_the_keyring_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    write_body_key(tmp_path / "keys" / "old.key")
    write_body_key(tmp_path / "keys" / "new.key")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "registry_dir: registry\n"
        "keys: {signing_certificate: a.crt, signing_key: a.key}\n"
        "audit:\n"
        "  body_keys:\n"
        "    current: k2026\n"
        "    keys: {k2025: keys/old.key, k2026: keys/new.key}\n"
    )
    settings = load_settings(config, environ={})
    assert settings.audit.body_keys is not None
    keyring = BodyKeyring.from_settings(settings.audit.body_keys)
    assert keyring.current == "k2026" and keyring.key_ids == ("k2025", "k2026")
    moved = load_settings(
        config, environ={"OBMIN_AUDIT__BODY_KEYS__KEYS__K2026": str(tmp_path / "nowhere.key")}
    )
    assert moved.audit.body_keys is not None
    with pytest.raises(BodyKeyError, match=r"audit\.body_keys\.keys\.k2026: cannot read"):
        BodyKeyring.from_settings(moved.audit.body_keys)
    with pytest.raises(SettingsError, match=r"audit\.body_keys.*current key 'k9'"):
        load_settings(config, environ={"OBMIN_AUDIT__BODY_KEYS__CURRENT": "k9"})


def test_settings_check_key_ids_as_the_envelope_format_does(tmp_path: Path) -> None:
    """One rule for a key id (`check_key_id`), in the settings as in `BodyKeyring`."""
    (tmp_path / "registry").mkdir()
    config = tmp_path / "gateway.yaml"

    def load(body_keys: str) -> None:
        config.write_text(
            "registry_dir: registry\n"
            "keys: {signing_certificate: a.crt, signing_key: a.key}\n"
            f"audit:\n  body_keys: {body_keys}\n"
        )
        load_settings(config, environ={})

    load("{current: k.2026_a-b, keys: {k.2026_a-b: k.key}}")
    with pytest.raises(SettingsError, match=r"audit\.body_keys.*body key id 'K 1' is not 1-64"):
        load("{current: K 1, keys: {K 1: k.key}}")
    with pytest.raises(SettingsError, match=r"body key id '-k' is not 1-64"):
        load("{current: k1, keys: {k1: a.key, -k: b.key}}")
    with pytest.raises(SettingsError, match=r"body key id '" + "k" * 65):
        load(f"{{current: k1, keys: {{k1: a.key, {'k' * 65}: b.key}}}}")
    with pytest.raises(SettingsError, match=r"current key 'K 1' is not among keys"):
        load("{current: K 1, keys: {k1: k.key}}")
