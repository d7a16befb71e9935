"""Revocation in the development PKI: mark a certificate revoked and publish a new CRL.

`revoke` updates both revocation sources a relying party may use: the CA index (so that
``openssl ocsp -index ca/index.txt ...`` answers ``revoked``) and the CRL ``ca/crl.pem``
signed by the CA (so that a CRL check finds the serial). `write_crl` republishes the CRL
from the index, which is also how a CRL is refreshed before its nextUpdate.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from security.errors import PkiError
from security.pki import PkiLayout
from security.pki_index import IndexEntry, read_index, serial_hex, write_index
from security.pki_keys import load_certificate, load_private_key

__all__ = [
    "REVOCATION_REASONS",
    "RevocationReason",
    "RevokedCert",
    "revocation_target",
    "revoke",
    "write_crl",
]

RevocationReason = Literal[
    "unspecified",
    "keyCompromise",
    "CACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
]
"""The reasons `revoke` records, spelled as OpenSSL's index spells them."""

REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "CACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}
"""Each reason with its CRL reason code. (certificateHold is left out: revocation is final.)"""

# Pairs with optional colons (``openssl x509 -serial``) or any run of hex digits, odd lengths
# included (what ``obmin pki revoke`` itself prints).
_HEX_SERIAL = re.compile(r"(?:0x)?([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+|[0-9A-Fa-f]+)")


@dataclass(frozen=True, slots=True)
class RevokedCert:
    """What `revoke` did: which serial, when, why, and the CRL it wrote."""

    serial: int
    revoked_at: datetime
    reason: RevocationReason
    crl_path: Path


def _layout(layout_or_dir: PkiLayout | Path) -> PkiLayout:
    return layout_or_dir if isinstance(layout_or_dir, PkiLayout) else PkiLayout(layout_or_dir)


def _now(now: datetime | None) -> datetime:
    current = datetime.now(UTC) if now is None else now
    if current.tzinfo is None:
        raise PkiError("now must be timezone-aware")
    # The index keeps whole seconds; the CRL says the same instant.
    return current.astimezone(UTC).replace(microsecond=0)


def revocation_target(text: str) -> int | Path:
    """Read a command-line argument naming what to revoke: a certificate file or a serial.

    An existing file is a certificate; otherwise the text must be a serial number in hex
    (``0x`` prefix and ``:`` separators allowed, as ``openssl x509 -serial`` prints it).
    """
    path = Path(text)
    if path.is_file():
        return path
    match = _HEX_SERIAL.fullmatch(text.strip())
    if match is None:
        raise PkiError(f"{text!r} is neither a certificate file nor a hex serial number")
    return int(match.group(1).replace(":", ""), 16)


def _serial_of(layout: PkiLayout, target: int | Path) -> int:
    if isinstance(target, int):
        return target
    cert = load_certificate(target)
    ca = load_certificate(layout.ca_cert)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PkiError(f"{target} was not issued by the CA at {layout.ca_cert}") from exc
    return cert.serial_number


def revoke(
    layout_or_dir: PkiLayout | Path,
    target: int | Path,
    *,
    reason: RevocationReason = "unspecified",
    now: datetime | None = None,
    passphrase: bytes | None = None,
    crl_days: int = 7,
) -> RevokedCert:
    """Revoke the certificate ``target`` (a serial, or a certificate file) for ``reason``.

    The certificate must be in the CA index and not yet revoked. Updates ``ca/index.txt``
    and writes a new ``ca/crl.pem`` valid for ``crl_days``. ``passphrase`` unlocks the CA key.
    """
    if reason not in REVOCATION_REASONS:
        raise PkiError(f"unknown revocation reason {reason!r}")
    layout = _layout(layout_or_dir)
    current = _now(now)
    serial = _serial_of(layout, target)
    entries = read_index(layout.ca_index)
    positions = [i for i, entry in enumerate(entries) if entry.serial == serial]
    if not positions:
        raise PkiError(f"serial {serial_hex(serial)} is not in the CA index {layout.ca_index}")
    for i in positions:
        entry = entries[i]
        if entry.status == "R" and entry.revoked_at is not None:
            when = entry.revoked_at.isoformat()
            raise PkiError(f"serial {serial_hex(serial)} was already revoked on {when}")
        entries[i] = entry.revoked(current, None if reason == "unspecified" else reason)
    # The CRL is signed first: if the CA key cannot be read, nothing has changed.
    crl = _build_crl(layout, entries, current, crl_days, passphrase)
    write_index(layout.ca_index, entries)
    _publish(layout, crl)
    return RevokedCert(serial, current, reason, layout.ca_crl)


def write_crl(
    layout_or_dir: PkiLayout | Path,
    *,
    now: datetime | None = None,
    days: int = 7,
    passphrase: bytes | None = None,
) -> Path:
    """Publish a new CRL of every revoked certificate in the index; return its path.

    The CRL is valid for ``days`` (its nextUpdate); an empty one is fine and is what a
    fresh PKI publishes.
    """
    layout = _layout(layout_or_dir)
    crl = _build_crl(layout, read_index(layout.ca_index), _now(now), days, passphrase)
    _publish(layout, crl)
    return layout.ca_crl


def _next_crl_number(layout: PkiLayout) -> int:
    try:
        text = layout.ca_crl_number.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 1
    except OSError as exc:
        raise PkiError(f"cannot read {layout.ca_crl_number}: {exc.strerror}") from exc
    try:
        return int(text, 16) + 1
    except ValueError as exc:
        raise PkiError(f"{layout.ca_crl_number} does not hold a hex number") from exc


def _build_crl(
    layout: PkiLayout,
    entries: list[IndexEntry],
    now: datetime,
    days: int,
    passphrase: bytes | None,
) -> tuple[x509.CertificateRevocationList, int]:
    if days <= 0:
        raise PkiError("the CRL validity must be positive")
    ca_key = load_private_key(layout.ca_key, passphrase)
    ca_cert = load_certificate(layout.ca_cert)
    number = _next_crl_number(layout)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    for entry in entries:
        if entry.status != "R" or entry.revoked_at is None:
            continue
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        flag = REVOCATION_REASONS.get(entry.reason or "unspecified")
        # RFC 5280 5.3.1: the reason code is omitted rather than written as unspecified.
        if flag is not None and flag is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(ca_key, algorithm), number


def _publish(layout: PkiLayout, signed: tuple[x509.CertificateRevocationList, int]) -> None:
    crl, number = signed
    temporary = layout.ca_crl.with_name(layout.ca_crl.name + ".new")
    try:
        temporary.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        os.replace(temporary, layout.ca_crl)
        layout.ca_crl_number.write_text(serial_hex(number) + "\n", encoding="ascii")
    except OSError as exc:
        raise PkiError(f"cannot write the CRL {layout.ca_crl}: {exc.strerror}") from exc
