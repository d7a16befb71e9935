"""REST endpoint rules: path globs in access rights, and the request paths matched against them.

A glob is an absolute path whose segments are literals, ``*`` (exactly one segment), ``**``
(any number of segments, also none) or literals with ``*`` inside (``*.json``: any characters
within one segment). Request paths are normalised before matching (RFC 3986 6.2.2): escapes of
unreserved characters are decoded, other escapes upper-cased, empty and ``.`` segments dropped
and ``..`` resolved. A path whose ``..`` would climb above the root is refused, never clamped,
so ``/public/%2e%2e/admin`` is matched as ``/admin`` and ``/../x`` matches nothing. ``%2F``
stays an escaped slash inside one segment. A trailing slash does not change what matches.

The gateway should forward the normalised path it authorised, so that the provider sees the
path the access decision was made on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import RegistryError

__all__ = ["EndpointRule", "check_endpoint_glob", "compile_endpoint", "normalise_path"]

_ESCAPE = re.compile(r"%(?P<hex>[0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters a path (request or glob) may never contain: controls, space, backslash (some
# servers read it as a slash), and the query and fragment delimiters.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\?#]")


def _decode_unreserved(path: str) -> str | None:
    """Decode escapes of unreserved characters, upper-case the others; None if malformed."""
    if "%" not in path:
        return path
    if path.count("%") != len(_ESCAPE.findall(path)):
        return None

    def replace(match: re.Match[str]) -> str:
        char = chr(int(match["hex"], 16))
        return char if char in _UNRESERVED else "%" + match["hex"].upper()

    return _ESCAPE.sub(replace, path)


def normalise_path(path: str) -> str | None:
    """Normalise a REST request path (no query) for matching; None when it is not acceptable.

    ``""`` is the root ``/``. A path that does not start with ``/``, holds forbidden or
    malformed characters, or climbs above the root with ``..`` gives None.
    """
    if path == "":
        return "/"
    if not path.startswith("/") or _FORBIDDEN.search(path):
        return None
    decoded = _decode_unreserved(path)
    if decoded is None:
        return None
    stack: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(segment)
    trailing = "/" if stack and decoded.endswith(("/", "/.", "/..")) else ""
    return "/" + "/".join(stack) + trailing


def check_endpoint_glob(glob: str) -> str | None:
    """Return why ``glob`` is not a valid endpoint path glob, or None when it is."""
    if not glob.startswith("/"):
        return f"expected an absolute path glob starting with '/', got {glob!r}"
    if _FORBIDDEN.search(glob):
        return f"path glob {glob!r} contains a space, control character, '\\', '?' or '#'"
    decoded = _decode_unreserved(glob)
    if decoded is None:
        return f"path glob {glob!r} contains a malformed percent-escape"
    segments = decoded[1:].removesuffix("/").split("/") if decoded != "/" else []
    for segment in segments:
        if segment == "":
            return f"path glob {glob!r} contains an empty segment ('//')"
        if segment in (".", ".."):
            return f"path glob {glob!r} contains a '{segment}' segment; write the path out"
        if "**" in segment and segment != "**":
            return f"path glob {glob!r}: '**' must be a whole path segment"
    return None


@dataclass(frozen=True, slots=True)
class EndpointRule:
    """A compiled endpoint: an HTTP method (or ``*``) and a path glob."""

    method: str
    glob: str
    pattern: re.Pattern[str]

    def matches(self, method: str, normalised_path: str) -> bool:
        """True if the rule covers ``method`` on ``normalised_path`` (see `normalise_path`)."""
        if self.method != "*" and self.method != method.upper():
            return False
        target = normalised_path.rstrip("/")
        return self.pattern.fullmatch(target) is not None


def compile_endpoint(method: str, glob: str) -> EndpointRule:
    """Compile a glob that `check_endpoint_glob` accepted into an `EndpointRule`."""
    decoded = _decode_unreserved(glob)
    if decoded is None or check_endpoint_glob(glob) is not None:
        # Only globs that passed validation get here; anything else is a bug in the caller.
        raise RegistryError(f"invalid endpoint path glob {glob!r}")
    regex: list[str] = []
    for segment in decoded.strip("/").split("/") if decoded.strip("/") else []:
        if segment == "**":
            regex.append("(?:/[^/]+)*")
        elif segment == "*":
            regex.append("/[^/]+")
        else:
            regex.append("/" + "[^/]*".join(re.escape(piece) for piece in segment.split("*")))
    return EndpointRule(method=method.upper(), glob=glob, pattern=re.compile("".join(regex)))
