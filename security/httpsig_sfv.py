"""Structured Field Values for HTTP (RFC 9651, which obsoletes RFC 8941): the values and parser.

``Signature-Input``, ``Signature`` (RFC 9421) and ``Content-Digest`` (RFC 9530) are structured
fields, and the RFC 9421 signature base is built from their *re-serialised* form, so the parser
and the serialiser must follow the RFC's algorithms to the letter. This module does exactly
that, pure and without I/O, and raises nothing but `InvalidStructuredField` on bad input.
The serialiser is `security.httpsig_sfser`.

Values: Integer -> ``int``, Decimal -> ``decimal.Decimal``, String -> ``str``, Token ->
`Token`, Byte Sequence -> ``bytes``, Boolean -> ``bool``, Date -> `Date`, Display String ->
`DisplayString`. Parameters and dictionaries keep their order (Python dicts); a repeated key
overwrites the earlier value in place, as the RFC says, unless ``unique_keys`` asks to refuse.
Whitespace around a whole value is handled exactly as RFC 9651 4.2 says (leading SP; trailing
SP, and for lists and dictionaries trailing HTAB too); HTTP trims field values anyway.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from decimal import Decimal

from security.errors import InvalidStructuredField

__all__ = [
    "KEY",
    "PLAIN_STRING",
    "TOKEN",
    "BareItem",
    "Date",
    "DisplayString",
    "InnerList",
    "Item",
    "Member",
    "Params",
    "Token",
    "parse_dictionary",
    "parse_item",
    "parse_list",
]


@dataclass(frozen=True, slots=True)
class Token:
    """A Token bare item (``application/json``, ``*``, ``foo:bar``)."""

    value: str


@dataclass(frozen=True, slots=True)
class Date:
    """A Date bare item: whole seconds since the Unix epoch (RFC 9651 section 3.3.7)."""

    seconds: int


@dataclass(frozen=True, slots=True)
class DisplayString:
    """A Display String bare item: Unicode text, percent-encoded on the wire."""

    value: str


BareItem = int | Decimal | str | Token | bytes | bool | Date | DisplayString
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    """A bare item with its parameters, in wire order."""

    value: BareItem
    params: Params = ()

    def param(self, key: str) -> BareItem | None:
        """The value of parameter ``key``, or None when absent."""
        for name, value in self.params:
            if name == key:
                return value
        return None


@dataclass(frozen=True, slots=True)
class InnerList:
    """A parenthesised list of items, with the list's own parameters."""

    items: tuple[Item, ...]
    params: Params = ()

    def param(self, key: str) -> BareItem | None:
        """The value of parameter ``key``, or None when absent."""
        for name, value in self.params:
            if name == key:
                return value
        return None


Member = Item | InnerList

KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?([0-9]*)(\.[0-9]*)?")
PLAIN_STRING = re.compile(r"[ !#-\[\]-~]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*")
_OWS = " \t"


class _Parser:
    """One pass over a field value; ``pos`` moves forward only."""

    __slots__ = ("pos", "text", "unique_keys")

    def __init__(self, text: str, *, unique_keys: bool) -> None:
        self.text = text
        self.pos = 0
        self.skip(" ")  # RFC 9651 4.2: leading SP is discarded
        self.unique_keys = unique_keys

    def fail(self, what: str) -> InvalidStructuredField:
        return InvalidStructuredField(f"{what} at offset {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in chars:
            pos += 1
        self.pos = pos

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def refuse_repeated(self, key: str, seen: dict[str, BareItem] | dict[str, Member]) -> None:
        if self.unique_keys and key in seen:
            raise self.fail(f"repeated key {key!r}")

    # --- top-level types (RFC 9651 section 4.2.1 and 4.2.2) ---------------------------------

    def list_members(self) -> list[Member]:
        members: list[Member] = []
        while not self.done():
            members.append(self.item_or_inner_list())
            if not self.next_member():
                break
        return members

    def dictionary(self) -> dict[str, Member]:
        members: dict[str, Member] = {}
        while not self.done():
            key = self.key()
            member: Member
            if self.peek() == "=":
                self.pos += 1
                member = self.item_or_inner_list()
            else:
                member = Item(True, self.parameters())
            self.refuse_repeated(key, members)
            members[key] = member
            if not self.next_member():
                break
        return members

    def next_member(self) -> bool:
        """After a member: False at the end, True after a comma that more must follow."""
        self.skip(_OWS)
        if self.done():
            return False
        if self.peek() != ",":
            raise self.fail("expected a comma between members")
        self.pos += 1
        self.skip(_OWS)
        if self.done():
            raise self.fail("trailing comma")
        return True

    def item_or_inner_list(self) -> Member:
        if self.peek() == "(":
            return self.inner_list()
        return self.item()

    def inner_list(self) -> InnerList:
        self.pos += 1  # "("
        items: list[Item] = []
        while not self.done():
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return InnerList(tuple(items), self.parameters())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise self.fail("inner list items must be separated by a space")
        raise self.fail("inner list is not closed")

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.parameters())

    def parameters(self) -> Params:
        if not self.text.startswith(";", self.pos):
            return ()  # the common case, without building a dict
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            self.refuse_repeated(key, params)
            params[key] = value
        return tuple(params.items())

    def key(self) -> str:
        match = KEY.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a key (lowercase letter or '*')")
        self.pos = match.end()
        return match.group()

    # --- bare items (RFC 9651 section 4.2.3) ------------------------------------------------

    def bare_item(self) -> BareItem:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if char == "@":
            self.pos += 1
            seconds = self.number()
            if not isinstance(seconds, int):
                raise self.fail("a date must be an integer")
            return Date(seconds)
        if char == "%":
            return self.display_string()
        if char == "-" or "0" <= char <= "9":
            return self.number()
        if char == "*" or ("A" <= char <= "Z") or ("a" <= char <= "z"):
            match = TOKEN.match(self.text, self.pos)
            assert match is not None  # the first character was checked just above
            self.pos = match.end()
            return Token(match.group())
        raise self.fail("expected an item")

    def number(self) -> int | Decimal:
        match = _NUMBER.match(self.text, self.pos)
        assert match is not None  # every part of the pattern is optional
        whole, fraction = match.group(1), match.group(2)
        if not whole:
            raise self.fail("expected a digit")
        self.pos = match.end()
        if fraction is None:
            if len(whole) > 15:
                raise self.fail("integer has more than 15 digits")
            return int(match.group())
        if len(whole) > 12:
            raise self.fail("decimal has more than 12 integer digits")
        if not 1 < len(fraction) <= 4:
            raise self.fail("decimal needs one to three fractional digits")
        return Decimal(match.group())

    def string(self) -> str:
        text = self.text
        self.pos += 1  # opening quote
        parts: list[str] = []
        while True:
            match = PLAIN_STRING.match(text, self.pos)
            assert match is not None  # may match empty
            parts.append(match.group())
            self.pos = match.end()
            char = self.peek()
            if char == '"':
                self.pos += 1
                return "".join(parts)
            if char == "\\":
                escaped = text[self.pos + 1 : self.pos + 2]
                if escaped not in ('"', "\\"):
                    raise self.fail('only \\" and \\\\ may be escaped in a string')
                parts.append(escaped)
                self.pos += 2
                continue
            raise self.fail("string is not closed or holds a forbidden character")

    def byte_sequence(self) -> bytes:
        end = self.text.find(":", self.pos + 1)
        if end < 0:
            raise self.fail("byte sequence is not closed")
        content = self.text[self.pos + 1 : end]
        unpadded = content.rstrip("=")
        padding = len(content) - len(unpadded)
        if (
            padding > 2
            or (padding and not unpadded)
            or not _BASE64.fullmatch(unpadded)
            or len(unpadded) % 4 == 1
        ):
            raise self.fail("byte sequence is not base64")
        self.pos = end + 1
        try:
            return binascii.a2b_base64(unpadded + "=" * (-len(unpadded) % 4))
        except binascii.Error as exc:  # not reachable after the checks above; belt and braces
            raise self.fail("byte sequence is not base64") from exc

    def boolean(self) -> bool:
        value = self.text[self.pos + 1 : self.pos + 2]
        if value not in ("0", "1"):
            raise self.fail("a boolean is ?0 or ?1")
        self.pos += 2
        return value == "1"

    def display_string(self) -> DisplayString:
        text = self.text
        if text[self.pos + 1 : self.pos + 2] != '"':
            raise self.fail('a display string starts with %"')
        self.pos += 2
        octets = bytearray()
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == "%":
                pair = text[self.pos : self.pos + 2]
                if len(pair) != 2 or any(c not in "0123456789abcdef" for c in pair):
                    raise self.fail("bad percent-encoding in a display string")
                octets.append(int(pair, 16))
                self.pos += 2
            elif char == '"':
                try:
                    return DisplayString(octets.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise self.fail("display string is not UTF-8") from exc
            elif " " <= char <= "~":
                octets.append(ord(char))
            else:
                raise self.fail("forbidden character in a display string")
        raise self.fail("display string is not closed")

    def end(self) -> None:
        self.skip(" ")
        if not self.done():
            raise self.fail("unexpected characters after the value")


def parse_dictionary(text: str, *, unique_keys: bool = False) -> dict[str, Member]:
    """Parse a Dictionary field value; ``unique_keys`` refuses a repeated key."""
    parser = _Parser(text, unique_keys=unique_keys)
    result = parser.dictionary()
    parser.end()
    return result


def parse_list(text: str, *, unique_keys: bool = False) -> list[Member]:
    """Parse a List field value; ``unique_keys`` refuses a repeated parameter key."""
    parser = _Parser(text, unique_keys=unique_keys)
    result = parser.list_members()
    parser.end()
    return result


def parse_item(text: str, *, unique_keys: bool = False) -> Item:
    """Parse an Item field value; ``unique_keys`` refuses a repeated parameter key."""
    parser = _Parser(text, unique_keys=unique_keys)
    if parser.done():
        raise parser.fail("empty item")
    result = parser.item()
    parser.end()
    return result
