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

import json
import math
from dataclasses import dataclass
from typing import NoReturn

from gateway.rest.protocol import RestError

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
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


class _Invalid(Exception):
    """Raised inside the parser's hooks; carries the sentence for the client."""


def _refuse(problem: str) -> NoReturn:
    raise RestError(f"the JSON request body is refused: {problem}", code="InvalidJson")


class _Checker:
    """The hooks of `json.loads`: each returns the depth of what it parsed, never the value."""

    def __init__(self, limits: JsonLimits) -> None:
        self.limits = limits

    def depth(self, value: object) -> int:
        if type(value) is int:  # a nested object, already reduced (numbers are 0)
            return value
        if type(value) is list:
            deepest = 1 + max((self.depth(item) for item in value), default=0)
            self._check_depth(deepest)
            return deepest
        return 0  # string, true, false, null

    def _check_depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise _Invalid(
                f"arrays and objects are nested deeper than {self.limits.max_depth} levels"
            )

    def object_pairs(self, pairs: list[tuple[str, object]]) -> int:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Invalid(f"an object has the key {_shown(key)} more than once")
            seen.add(key)
        deepest = 1 + max((self.depth(value) for _, value in pairs), default=0)
        self._check_depth(deepest)
        return deepest

    def integer(self, literal: str) -> int:
        self._check_digits(literal.lstrip("-"))
        return 0

    def real(self, literal: str) -> int:
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
        return 0

    def _check_digits(self, digits: str) -> None:
        if len(digits) > self.limits.max_number_digits:
            raise _Invalid(
                f"a number literal has {len(digits)} digits; at most "
                f"{self.limits.max_number_digits} are accepted"
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
        checker.depth(top)
    except _Invalid as exc:
        _refuse(str(exc))
    except RecursionError:
        _refuse(f"arrays and objects are nested deeper than {limits.max_depth} levels")
    except json.JSONDecodeError as exc:
        reason = exc.msg.removesuffix(" at")
        _refuse(f"it is not valid JSON: {reason} at line {exc.lineno}, column {exc.colno}")
