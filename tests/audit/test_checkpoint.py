"""Checkpoints as C2SP signed notes: reference vectors, a real Go checksum-database
checkpoint, round trips, and every way a note can be wrong."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.checkpoint import VerifierKey, key_id, sign_checkpoint, verify_checkpoint
from gateway.audit.errors import InvalidCheckpoint

# golang.org/x/mod/sumdb/note's documented example key and note (used as data only).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIGNATURE = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
# A checkpoint published by the Go checksum database, and its published verifier key.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n"
    "15368405\n"
    "/g9am3I6YWNKaZX/jkne1fqd9zEyjss+JXyPXG0WfkY=\n"
    "\n"
    "\u2014 sum.golang.org Az3grqJGUaSGukG9p8nI2vKgiFn7qGHxn0W+mrwyI6Gz3F0t1J3LzmWk/p96Ybf295Ejw"
    "dSwlzgijq5WA9d1Ded7owM=\n"
)

ORIGIN = "obmin.test/gateway"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"obmin test log key").digest())
ROOT = hashlib.sha256(b"root").digest()


def test_go_reference_key_id_vkey_and_signature() -> None:
    key = Ed25519PrivateKey.from_private_bytes(GO_SKEY_SEED)
    verifier = VerifierKey("PeterNeumann", key.public_key())
    assert verifier.to_vkey() == GO_VKEY
    assert key_id("PeterNeumann", key.public_key()).hex() == "c74f20a3"
    assert VerifierKey.parse(GO_VKEY).to_vkey() == GO_VKEY
    # Ed25519 is deterministic: our note signature must be the published one, byte for byte.
    blob = key_id("PeterNeumann", key.public_key()) + key.sign(GO_TEXT.encode())
    assert base64.b64encode(blob).decode() == GO_SIGNATURE


def test_a_real_go_checksum_database_checkpoint_verifies() -> None:
    checkpoint = verify_checkpoint(
        SUMDB_NOTE, VerifierKey.parse(SUMDB_VKEY), origin="go.sum database tree"
    )
    assert checkpoint.size == 15368405
    assert base64.b64encode(checkpoint.root).decode() == (
        "/g9am3I6YWNKaZX/jkne1fqd9zEyjss+JXyPXG0WfkY="
    )
    with pytest.raises(InvalidCheckpoint, match="does not verify"):
        verify_checkpoint(
            SUMDB_NOTE.replace("15368405", "15368406"),
            VerifierKey.parse(SUMDB_VKEY),
            origin="go.sum database tree",
        )


@pytest.mark.parametrize(
    "vkey",
    [
        GO_VKEY[:-1],
        GO_VKEY.replace("c74f20a3", "c74f20a4"),  # key ID does not match
        GO_VKEY.replace("+c74f20a3+", "+C74F20A3+"),
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown alg
        "",
    ],
)
def test_mangled_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        VerifierKey.parse(vkey)


def test_sign_and_verify_round_trip() -> None:
    checkpoint = sign_checkpoint(ORIGIN, 1234, ROOT, KEY, ORIGIN)
    lines = checkpoint.note.split("\n")
    assert lines[:4] == [ORIGIN, "1234", base64.b64encode(ROOT).decode(), ""]
    assert lines[4].startswith("\u2014 " + ORIGIN + " ")
    assert checkpoint.note.endswith("\n") and len(lines) == 6
    assert checkpoint.body == "\n".join(lines[:3]) + "\n"
    verified = verify_checkpoint(checkpoint.note, KEY.public_key(), ORIGIN, origin=ORIGIN)
    assert verified == checkpoint
    # The vkey an auditor configures works the same.
    vkey = VerifierKey(ORIGIN, KEY.public_key()).to_vkey()
    assert verify_checkpoint(checkpoint.note, VerifierKey.parse(vkey), origin=ORIGIN) == checkpoint


def test_wrong_origin_key_or_name_is_refused() -> None:
    note = sign_checkpoint(ORIGIN, 5, ROOT, KEY, ORIGIN).note
    with pytest.raises(InvalidCheckpoint, match=r"not 'other\.log'"):
        verify_checkpoint(note, KEY.public_key(), ORIGIN, origin="other.log")
    other = Ed25519PrivateKey.generate()
    with pytest.raises(InvalidCheckpoint, match="not signed by"):
        verify_checkpoint(note, other.public_key(), ORIGIN, origin=ORIGIN)
    with pytest.raises(InvalidCheckpoint, match="not signed by"):
        verify_checkpoint(note, KEY.public_key(), "another-name", origin=ORIGIN)


def test_a_cosignature_by_another_key_is_ignored_but_a_bad_own_one_is_not() -> None:
    ours = sign_checkpoint(ORIGIN, 9, ROOT, KEY, ORIGIN)
    witness = sign_checkpoint(ORIGIN, 9, ROOT, Ed25519PrivateKey.generate(), "witness.example")
    witness_line = witness.note.split("\n\n")[1]
    cosigned = ours.note + witness_line
    assert verify_checkpoint(cosigned, KEY.public_key(), ORIGIN, origin=ORIGIN).size == 9
    # Only a witness signature: not ours.
    with pytest.raises(InvalidCheckpoint, match="not signed by"):
        verify_checkpoint(witness.note, KEY.public_key(), ORIGIN, origin=ORIGIN)
    # A second line claiming our key that does not verify poisons the note.
    blob = bytearray(base64.b64decode(ours.note.split(" ")[-1]))
    blob[-1] ^= 1
    forged = f"\u2014 {ORIGIN} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(InvalidCheckpoint, match="does not verify"):
        verify_checkpoint(ours.note + forged, KEY.public_key(), ORIGIN, origin=ORIGIN)


def _note(body: str) -> str:
    """``body`` signed by the test key, whatever it says (to test the body parser)."""
    blob = key_id(ORIGIN, KEY.public_key()) + KEY.sign(body.encode())
    return f"{body}\n\u2014 {ORIGIN} {base64.b64encode(blob).decode()}\n"


ROOT64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_note(f"{ORIGIN}\n01\n{ROOT64}\n"), "not a tree size"),
        (_note(f"{ORIGIN}\n-1\n{ROOT64}\n"), "not a tree size"),
        (_note(f"{ORIGIN}\n99999999999999999999\n{ROOT64}\n"), "not a tree size"),
        (_note(f"{ORIGIN}\n5\n{ROOT64[:-4]}\n"), "32 bytes"),
        (_note(f"{ORIGIN}\n5\n!!!!\n"), "not base64"),
        (_note(f"{ORIGIN}\n5\n"), "origin, a size and a root"),
        (_note(f"{ORIGIN}\n5\n{ROOT64}\n\textension\n"), "control characters"),
        (f"{ORIGIN}\n5\n{ROOT64}\n", "no signature block"),
        (_note(f"{ORIGIN}\n5\n{ROOT64}\n")[:-1], "no signature block"),
        (f"{ORIGIN}\n5\n{ROOT64}\n\n- {ORIGIN} AAAA\n", "malformed signature line"),
        (f"{ORIGIN}\n5\n{ROOT64}\n\n\u2014 {ORIGIN} AAA=\n", "too short"),
        (f"{ORIGIN}\n5\n{ROOT64}\n\n\u2014 {ORIGIN} %%%%\n", "not base64"),
        (f"{ORIGIN}\n5\n{ROOT64}\n\n" + "\u2014 x AAAAAAAA\n" * 101, "1 to 100 signatures"),
        ("x" * 70_000 + "\n\n", "longer than"),
    ],
)
def test_malformed_notes_are_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidCheckpoint, match=reason) as info:
        verify_checkpoint(text, KEY.public_key(), ORIGIN, origin=ORIGIN)
    assert info.value.code == "InvalidCheckpoint"


def test_extension_lines_are_signed_and_allowed() -> None:
    note = _note(f"{ORIGIN}\n5\n{ROOT64}\nextension line\n")
    assert verify_checkpoint(note, KEY.public_key(), ORIGIN, origin=ORIGIN).size == 5


@pytest.mark.parametrize(
    ("origin", "key_name"),
    [("", "name"), ("two\nlines", "name"), (ORIGIN, "with space"), (ORIGIN, "a+b"), (ORIGIN, "")],
)
def test_unsignable_origins_and_names_are_refused(origin: str, key_name: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        sign_checkpoint(origin, 1, ROOT, KEY, key_name)


@settings(max_examples=100, deadline=None)
@given(
    origin=st.text(
        st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="\n"), min_size=1
    ),
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_any_checkpoint_round_trips(origin: str, size: int, root: bytes) -> None:
    checkpoint = sign_checkpoint(origin, size, root, KEY, "log")
    verified = verify_checkpoint(checkpoint.note, KEY.public_key(), "log", origin=origin)
    assert (verified.origin, verified.size, verified.root) == (origin, size, root)
