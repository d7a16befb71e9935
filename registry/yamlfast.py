"""A fast path for reading registry YAML: yaml-rs (Rust) where it is sure to agree.

`registry.yamlfile` reads YAML through libyaml's event stream, which is exact (YAML 1.1 as
PyYAML resolves it, aliases and tags refused, every problem with its line) but spends about
two microseconds of Python per event: a 100,000-service registry is six million events. yaml-rs
builds the same plain values in Rust several times faster, but it is a YAML 1.2 parser that
expands aliases and resolves some plain scalars differently (``yes``, ``-.5``, ``1e3``, ``012``).

So the fast path is an accelerator, never a second opinion. `fast_values` returns None — and the
caller reads the file the exact way — unless all of these hold:

1. the text has nothing whose meaning could differ: no anchor, alias, tag, complex key,
   directive, document marker, merge key, tab, backslash or non-printable character, and every
   plain scalar that starts like a number is a plain decimal (``30``, ``0.5``), checked on
   the raw text less its comment-only lines (it may refuse harmless text, e.g. a
   ``*`` after a value's comment; it never lets one of those through);
2. yaml-rs parses it into one mapping without a duplicate key;
3. every key is text, every text value means text in YAML 1.1 too (``yes`` is a boolean
   there, so a file with ``name: yes`` is read the exact way), nesting is within bounds.

On top of that the loader uses fast values only for a registry that turns out valid: any
problem at all, and the whole directory is read again the exact way, so every error message
is the exact path's, with its lines.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
import yaml_rs

from registry.yamlfile import FIRST_CHARS, MAX_DEPTH, TEXT_TAGS, plain_scalar_tag

__all__ = ["fast_values"]

# The text is searched with "\n" in front, so that every token start follows a separator.
# A number both parsers read alike is a plain decimal: an integer without a leading zero, or
# one with a fraction. These find a scalar that starts like a number and is not one of those:
# 012, 0o12, 1e3, -.5, +1, 1:30, 10.0.0.1, a "10:" key. A scalar starts after a line break,
# "-", "[", "{" or "," (and spaces), after ": ", or right after a JSON-like key's colon. Each
# pattern starts with characters that are rare in registry files, so the search skips ahead.
_END = r"(?:[\s,\]}]|$)"
_UNSAFE = rf"(?:[-+.][0-9]|0(?!(?:\.[0-9]+)?{_END})|[1-9](?![0-9]*(?:\.[0-9]+)?{_END}))"
_UNSAFE_NUMBERS = (
    re.compile(rf"[-\[{{,\n] *{_UNSAFE}"),
    re.compile(rf": +{_UNSAFE}"),
)
_UNSAFE_AFTER_KEY = re.compile(rf"[\"']:{_UNSAFE}")
# Anchor (&), alias (*), tag (!) or complex key (?) at a token start, or (not ?) right after
# a JSON-like key's colon ("a":*x). Such characters are rare; each one found is looked at.
_PROPERTY_CHARS = "&*!?"
_TOKEN_BEFORE = frozenset(" \t\r\n[{,")
# Merge key, tab (indentation rules), backslash (escape rules), directive, document marker.
_UNSURE_TEXT = ("<<", "\t", "\\", "\n%", "\n---", "\n...")
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
# The same for ASCII text (most registry files), as bytes to delete: what is left is refused.
_PRINTABLE_ASCII = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x7F)])
# Lines that are only a comment are not looked at: what they hold means nothing to either
# parser (inside a block or quoted scalar such a line is text, where the constructs looked
# for mean nothing either). Comments after a value are looked at: telling them from a "#" inside
# a quoted scalar would take a parser.
_COMMENT_LINE = re.compile(r"^[ \t]*#.*$", flags=re.MULTILINE)


class _Unsure(Exception):
    """The fast result might differ from the exact one: read the file the exact way."""


# Texts known to mean text as YAML 1.1 plain scalars too (bounded; most keys and values).
_KNOWN_TEXT: set[str] = set()


def _means_text(value: str) -> bool:
    """Would ``value``, were it a plain scalar, be text in YAML 1.1 too (``yes`` is not)?"""
    if not value or value[0] not in FIRST_CHARS or value in _KNOWN_TEXT:
        return True  # "" is a quoted scalar: a plain empty one is null
    if plain_scalar_tag(value) not in TEXT_TAGS:
        return False
    if len(_KNOWN_TEXT) < 65536:
        _KNOWN_TEXT.add(value)
    return True


def _checked(value: Any, depth: int) -> Any:
    """``value`` with lists as tuples, or `_Unsure`.

    Runs over every key and value of a 100,000-service registry, so the common case — text
    that starts with no character a YAML 1.1 resolver knows, or text already seen — is tested
    inline, and `_means_text` is called only for the rest.
    """
    if depth >= MAX_DEPTH:
        raise _Unsure
    first, known, means_text = FIRST_CHARS, _KNOWN_TEXT, _means_text
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or (
                key and key[0] in first and key not in known and not means_text(key)
            ):
                raise _Unsure
            kind = type(item)
            if kind is str:
                if item and item[0] in first and item not in known and not means_text(item):
                    raise _Unsure
            elif kind is dict or kind is list:
                value[key] = _checked(item, depth + 1)
        return value
    items = []
    for item in value:
        kind = type(item)
        if kind is str:
            if item and item[0] in first and item not in known and not means_text(item):
                raise _Unsure
        elif kind is dict or kind is list:
            item = _checked(item, depth + 1)
        items.append(item)
    return tuple(items)


def _has_property(code: str) -> bool:
    """An anchor, alias, tag or complex key could start at some ``&*!?`` in ``code``."""
    for char in _PROPERTY_CHARS:
        at = code.find(char)
        while at != -1:
            before = code[at - 1]  # code starts with "\n": never before the start
            if before in _TOKEN_BEFORE or (char != "?" and before == ":" and code[at - 2] in "\"'"):
                return True
            at = code.find(char, at + 1)
    return False


def _has_non_printable(text: str) -> bool:
    """A character libyaml's reader refuses (it would report it with its line)."""
    if text.isascii():
        return bool(text.encode("ascii").translate(None, _PRINTABLE_ASCII))
    return _NON_PRINTABLE.search(text) is not None


def fast_values(text: str) -> dict[str, Any] | None:
    """The values of a registry file's text if the fast path is sure of them, else None."""
    if _has_non_printable(text):
        return None
    code = "\n" + (_COMMENT_LINE.sub("", text) if "#" in text else text)
    if any(unsure in code for unsure in _UNSURE_TEXT):
        return None
    if _has_property(code):
        return None
    if any(pattern.search(code) for pattern in _UNSAFE_NUMBERS):
        return None
    if ('":' in code or "':" in code) and _UNSAFE_AFTER_KEY.search(code):
        return None
    try:
        data: object = yaml_rs.loads(
            text, parse_datetime=False, duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.Error
        )
    except (yaml_rs.YAMLDecodeError, ValueError, TypeError, RecursionError):
        return None
    if data is None:  # empty, or only comments
        return {}
    if not isinstance(data, dict):
        return None
    try:
        checked: dict[str, Any] = _checked(data, 0)
    except (_Unsure, RecursionError):
        return None
    return checked
