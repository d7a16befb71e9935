"""The development CA's certificate database, in the exact format of OpenSSL's ``ca`` index.

Every certificate the development CA issues is appended as a ``V`` (valid) line; `revoke`
(``security.pki_revoke``) turns it into an ``R`` line. Because the format is OpenSSL's own,
a real OCSP responder can answer for the CA without any code of ours::

    openssl ocsp -index ca/index.txt -CA ca/ca.crt -rsigner ocsp.crt -rkey ocsp.key -port N

One line per certificate, six tab-separated fields (``apps/lib/apps.c`` and ``apps/ca.c``)::

    V  <expiry>  <empty>                 <SERIAL HEX>  unknown  /CN=.../serialNumber=...
    R  <expiry>  <revoked at>[,<reason>] <SERIAL HEX>  unknown  <subject>

Times are ASN.1 UTCTime ``YYMMDDHHMMSSZ`` (GeneralizedTime from 2050 on); the serial is
upper-case hex with an even number of digits, as OpenSSL's ``BN_bn2hex`` writes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from security.errors import PkiError

__all__ = [
    "IndexEntry",
    "IndexStatus",
    "append_issued",
    "openssl_subject",
    "read_index",
    "serial_hex",
    "write_index",
]

IndexStatus = Literal["V", "R", "E"]
"""``V`` valid, ``R`` revoked, ``E`` expired (OpenSSL's ``ca -updatedb`` writes E)."""

# OpenSSL's short names, as X509_NAME_oneline prints them; anything else as a dotted OID.
_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COUNTRY_NAME: "C",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.STREET_ADDRESS: "street",
}


def serial_hex(serial: int) -> str:
    """``serial`` as OpenSSL writes it in the index: upper-case hex, even length."""
    if serial < 0:
        raise PkiError("a certificate serial number cannot be negative")
    digits = f"{serial:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def _escape(value: str) -> str:
    # X509_NAME_oneline writes every byte outside printable ASCII as \xHH.
    out = []
    for byte in value.encode("utf-8"):
        out.append(chr(byte) if 0x20 <= byte <= 0x7E else f"\\x{byte:02X}")
    return "".join(out)


def openssl_subject(name: x509.Name) -> str:
    """``name`` in OpenSSL's one-line form, ``/O=obmin/CN=...``."""
    parts = []
    for attribute in name:
        label = _SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        parts.append(f"/{label}={_escape(value)}")
    return "".join(parts) or "/"


def _asn1_time(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    if 1950 <= moment.year < 2050:
        return moment.strftime("%y%m%d%H%M%SZ")
    return moment.strftime("%Y%m%d%H%M%SZ")


def _parse_time(text: str) -> datetime:
    try:
        if len(text) == 13:
            parsed = datetime.strptime(text, "%y%m%d%H%M%SZ")
        else:
            parsed = datetime.strptime(text, "%Y%m%d%H%M%SZ")
    except ValueError as exc:
        raise PkiError(f"{text!r} is not an index time") from exc
    return parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One certificate in the CA index. ``reason`` is OpenSSL's reason name, if any."""

    status: IndexStatus
    expires: datetime
    revoked_at: datetime | None
    reason: str | None
    serial: int
    subject: str

    @classmethod
    def issued(cls, cert: x509.Certificate) -> IndexEntry:
        """The ``V`` entry for a newly issued certificate."""
        subject = openssl_subject(cert.subject)
        return cls("V", cert.not_valid_after_utc, None, None, cert.serial_number, subject)

    def revoked(self, at: datetime, reason: str | None) -> IndexEntry:
        """This entry, revoked at ``at`` for ``reason``."""
        return replace(self, status="R", revoked_at=at, reason=reason)

    def line(self) -> str:
        """The entry as one index line, without the newline."""
        revocation = ""
        if self.revoked_at is not None:
            revocation = _asn1_time(self.revoked_at)
            if self.reason is not None:
                revocation += f",{self.reason}"
        fields = (
            self.status,
            _asn1_time(self.expires),
            revocation,
            serial_hex(self.serial),
            "unknown",
            self.subject,
        )
        return "\t".join(fields)

    @classmethod
    def parse(cls, line: str) -> IndexEntry:
        """Read one index line; raise `PkiError` if it is not in OpenSSL's format."""
        fields = line.split("\t")
        if len(fields) != 6 or fields[0] not in ("V", "R", "E"):
            raise PkiError(f"not an OpenSSL index line: {line!r}")
        status, expires, revocation, serial, _filename, subject = fields
        revoked_at: datetime | None = None
        reason: str | None = None
        if revocation:
            when, _, why = revocation.partition(",")
            revoked_at, reason = _parse_time(when), (why or None)
        try:
            number = int(serial, 16)
        except ValueError as exc:
            raise PkiError(f"index serial {serial!r} is not hex") from exc
        state: IndexStatus = "V" if status == "V" else "R" if status == "R" else "E"
        return cls(state, _parse_time(expires), revoked_at, reason, number, subject)


def read_index(path: Path) -> list[IndexEntry]:
    """Every entry of the index at ``path``; an absent file is an empty index."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise PkiError(f"cannot read the CA index {path}: {exc.strerror}") from exc
    return [IndexEntry.parse(line) for line in text.splitlines() if line.strip()]


def _ensure_attr(path: Path) -> None:
    # `openssl ca` refuses a second certificate with the same subject unless told otherwise;
    # the development CA reissues member certificates under the same subject on purpose.
    attr = path.with_name(path.name + ".attr")
    if not attr.exists():
        attr.write_text("unique_subject = no\n", encoding="utf-8")


def append_issued(path: Path, cert: x509.Certificate) -> None:
    """Append ``cert`` to the index at ``path`` as a valid (``V``) entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(IndexEntry.issued(cert).line() + "\n")
        _ensure_attr(path)
    except OSError as exc:
        raise PkiError(f"cannot append to the CA index {path}: {exc.strerror}") from exc


def write_index(path: Path, entries: Sequence[IndexEntry]) -> None:
    """Replace the index at ``path`` atomically (a responder may be reading it)."""
    temporary = path.with_name(path.name + ".new")
    try:
        temporary.write_text("".join(entry.line() + "\n" for entry in entries), encoding="utf-8")
        os.replace(temporary, path)
        _ensure_attr(path)
    except OSError as exc:
        raise PkiError(f"cannot write the CA index {path}: {exc.strerror}") from exc
