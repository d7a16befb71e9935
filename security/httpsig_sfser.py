"""Serialisation of Structured Field Values (RFC 9651 section 4.1), the canonical form.

RFC 9421 signs re-serialised structured fields (component identifiers, ``@signature-params``,
``;sf`` and ``;key`` values), so this is the exact algorithm of the RFC, including the rounding
of decimals. Raises `InvalidStructuredField` for a value that has no serialisation.
"""

from __future__ import annotations

import binascii
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from security.errors import InvalidStructuredField
from security.httpsig_sfv import (
    KEY,
    PLAIN_STRING,
    TOKEN,
    BareItem,
    Date,
    DisplayString,
    Item,
    Member,
    Params,
    Token,
)

__all__ = [
    "serialize_bare_item",
    "serialize_dictionary",
    "serialize_item",
    "serialize_list",
    "serialize_member",
    "serialize_params",
]

_MAX_INTEGER = 999_999_999_999_999
_DECIMAL_QUANTUM = Decimal("0.001")


def serialize_bare_item(value: BareItem) -> str:
    """The canonical text of one bare item; `InvalidStructuredField` if it has none."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if not -_MAX_INTEGER <= value <= _MAX_INTEGER:
            raise InvalidStructuredField("integer out of range")
        return str(value)
    if isinstance(value, str):
        if not PLAIN_STRING.fullmatch(value.replace('"', "").replace("\\", "")):
            raise InvalidStructuredField("string holds a character outside printable ASCII")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + binascii.b2a_base64(value, newline=False).decode("ascii") + ":"
    if isinstance(value, Token):
        if not TOKEN.fullmatch(value.value):
            raise InvalidStructuredField(f"{value.value!r} is not a token")
        return value.value
    if isinstance(value, Decimal):
        return _serialize_decimal(value)
    if isinstance(value, Date):
        return "@" + serialize_bare_item(value.seconds)
    return _serialize_display_string(value)


def _serialize_decimal(value: Decimal) -> str:
    try:
        rounded = value.quantize(_DECIMAL_QUANTUM, rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:
        raise InvalidStructuredField("decimal cannot be serialised") from exc
    if not rounded.is_finite() or abs(rounded) >= Decimal(10) ** 12:
        raise InvalidStructuredField("decimal out of range")
    sign, digits, _ = rounded.as_tuple()
    text = "".join(map(str, digits)).rjust(4, "0")
    whole, fraction = text[:-3], text[-3:].rstrip("0") or "0"
    return ("-" if sign and rounded != 0 else "") + str(int(whole)) + "." + fraction


def _serialize_display_string(value: DisplayString) -> str:
    try:
        octets = value.value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidStructuredField("display string is not valid Unicode text") from exc
    out = ['%"']
    for octet in octets:
        if octet in (0x22, 0x25) or not 0x20 <= octet <= 0x7E:
            out.append(f"%{octet:02x}")
        else:
            out.append(chr(octet))
    out.append('"')
    return "".join(out)


def _serialize_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise InvalidStructuredField(f"{key!r} is not a valid key")
    return key


def serialize_params(params: Params) -> str:
    """``;key=value`` for each parameter (``;key`` alone for true)."""
    out = []
    for key, value in params:
        out.append(";" + _serialize_key(key))
        if value is not True:
            out.append("=" + serialize_bare_item(value))
    return "".join(out)


def serialize_item(item: Item) -> str:
    """The canonical text of an item with its parameters."""
    return serialize_bare_item(item.value) + serialize_params(item.params)


def serialize_member(member: Member) -> str:
    """The canonical text of a list or dictionary member (item or inner list)."""
    if isinstance(member, Item):
        return serialize_item(member)
    inner = " ".join(serialize_item(item) for item in member.items)
    return "(" + inner + ")" + serialize_params(member.params)


def serialize_list(members: list[Member]) -> str:
    """The canonical text of a List."""
    return ", ".join(serialize_member(member) for member in members)


def serialize_dictionary(members: dict[str, Member]) -> str:
    """The canonical text of a Dictionary (``key`` alone for a true item)."""
    out = []
    for key, member in members.items():
        if isinstance(member, Item) and member.value is True:
            out.append(_serialize_key(key) + serialize_params(member.params))
        else:
            out.append(_serialize_key(key) + "=" + serialize_member(member))
    return ", ".join(out)
