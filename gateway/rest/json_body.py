"""Validation of JSON request bodies before they are forwarded (SPEC 11). Pure, no I/O.

A provider and the gateway must never read one body two ways, and a provider's parser must
not be the first to meet a hostile document. So a request whose ``Content-Type`` is JSON
(``application/json`` or ``application/*+json``) is refused with ``Client.InvalidJson`` unless
its body is:

- UTF-8 (RFC 8259 8.1), without a byte order mark, and one JSON text (RFC 8259 2) with no
  trailing data and no control characters inside strings;
- free of duplicate object keys (RFC 8259 4 leaves their meaning open: one parser takes the
  first, another the last);
- nested no deeper than ``max_depth`` arrays and objects;
- free of ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, but accepted by many parsers);
- free of number literals with more than ``max_number_digits`` digits, a decimal exponent
  beyond ±`MAX_EXPONENT`, or a value too large for an IEEE 754 double: such literals make
  arbitrary-precision decoders spend unbounded time and memory, and overflow the others.

The parse keeps nothing of the document: each object is reduced to its nesting depth as soon
as it is complete, so memory stays near the size of the text. The exchange refuses bodies above
``JsonLimits.max_bytes`` before reading them whole (``gateway.rest_exchange.check_json_body``).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import NoReturn

from gateway.rest.protocol import RestError
from gateway.soap.mime import parse_content_type  # one RFC 9110 Content-Type parser

__all__ = ["MAX_EXPONENT", "JsonLimits", "check_json", "is_json_media_type"]

MAX_EXPONENT = 400
"""Largest decimal exponent magnitude accepted in a number literal (doubles reach 1e308)."""


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Bounds on JSON request bodies (settings ``limits.max_json_*``)."""

    max_depth: int = 64
    max_number_digits: int = 100
    max_bytes: int = 8 * 1024 * 1024


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names JSON: ``application/json`` or ``application/*+json``."""
    parsed = parse_content_type(content_type)
    if parsed is None:
        return False
    kind, _, subtype = parsed.media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _charset(content_type: str) -> str | None:
    parsed = parse_content_type(content_type)
    charset = parsed.params.get("charset") if parsed is not None else None
    return charset.lower() if charset is not None else None


class _Invalid(Exception):
    """Raised inside the parser's hooks; carries the sentence for the client."""


def _refuse(problem: str) -> NoReturn:
    raise RestError(f"the JSON request body is refused: {problem}", code="InvalidJson")


class _Depth(int):
    """What an object parses to: its nesting depth (numbers parse to int/float, never this)."""

    __slots__ = ()


@functools.cache
def _depths(max_depth: int) -> tuple[_Depth, ...]:
    return tuple(_Depth(depth) for depth in range(max_depth + 1))


class _Checker:
    """The hooks of `json.loads`. Objects are reduced to their depth as soon as they are
    complete; numbers are checked as the literals they are written as (never converted)."""

    def __init__(self, limits: JsonLimits) -> None:
        self.max_depth = limits.max_depth
        self.max_digits = limits.max_number_digits
        self.depths = _depths(limits.max_depth)

    def list_depth(self, items: list[object]) -> int:
        deepest = 0
        for item in items:
            kind = type(item)
            if kind is _Depth:
                depth = int(item)  # type: ignore[call-overload]
            elif kind is list:
                depth = self.list_depth(item)  # type: ignore[arg-type]
            else:
                continue
            deepest = max(deepest, depth)
        return self._bounded(deepest + 1)

    def _bounded(self, depth: int) -> int:
        if depth > self.max_depth:
            raise _Invalid(f"arrays and objects are nested deeper than {self.max_depth} levels")
        return depth

    def object_pairs(self, pairs: list[tuple[str, object]]) -> _Depth:
        if len({key for key, _ in pairs}) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise _Invalid(f"an object has the key {_shown(key)} more than once")
                seen.add(key)
        deepest = 0
        for _, value in pairs:
            kind = type(value)
            if kind is _Depth:
                depth = int(value)  # type: ignore[call-overload]
            elif kind is list:
                depth = self.list_depth(value)  # type: ignore[arg-type]
            else:
                continue
            deepest = max(deepest, depth)
        return self.depths[self._bounded(deepest + 1)]

    def integer(self, literal: str) -> int:
        if len(literal) > self.max_digits:
            self._check_digits(literal.lstrip("-"))
        return 0

    def real(self, literal: str) -> float:
        if len(literal) <= self.max_digits and "e" not in literal and "E" not in literal:
            return 0.0  # plain decimals of few digits: nothing to overflow
        mantissa, _, exponent = literal.lower().partition("e")
        self._check_digits(mantissa.lstrip("-").replace(".", ""))
        if exponent:
            digits = exponent.lstrip("+-")
            if len(digits) > len(str(MAX_EXPONENT)) or int(digits) > MAX_EXPONENT:
                raise _Invalid(
                    f"a number has a decimal exponent beyond ±{MAX_EXPONENT} ({_shown(literal)})"
                )
        if math.isinf(float(literal)):
            raise _Invalid(f"the number {_shown(literal)} overflows a 64-bit float")
        return 0.0

    def _check_digits(self, digits: str) -> None:
        if len(digits) > self.max_digits:
            raise _Invalid(
                f"a number literal has {len(digits)} digits; at most {self.max_digits} are accepted"
            )

    @staticmethod
    def constant(name: str) -> int:
        raise _Invalid(f"{name} is not a JSON value (RFC 8259 6)")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def check_json(body: bytes, content_type: str, limits: JsonLimits) -> None:
    """Raise ``RestError(code="InvalidJson")`` naming what is wrong with a JSON body, or return.

    CPU-bound: the caller runs it in a worker thread for large bodies.
    """
    charset = _charset(content_type)
    if charset is not None and charset not in ("utf-8", "utf8"):
        _refuse(f"JSON must be UTF-8 (RFC 8259 8.1), the request declares charset={charset}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        _refuse(f"it is not valid UTF-8 (byte {exc.start})")
    if text.startswith("\ufeff"):
        _refuse("it starts with a byte order mark (RFC 8259 8.1)")
    checker = _Checker(limits)
    try:
        top = json.loads(
            text,
            object_pairs_hook=checker.object_pairs,
            parse_int=checker.integer,
            parse_float=checker.real,
            parse_constant=checker.constant,
        )
        if type(top) is list:
            checker.list_depth(top)
    except _Invalid as exc:
        _refuse(str(exc))
    except RecursionError:
        _refuse(f"arrays and objects are nested deeper than {limits.max_depth} levels")
    except json.JSONDecodeError as exc:
        reason = exc.msg.removesuffix(" at")
        _refuse(f"it is not valid JSON: {reason} at line {exc.lineno}, column {exc.colno}")
