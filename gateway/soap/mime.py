"""Content types and multipart (SwA, MTOM) framing of SOAP messages. Pure, no I/O.

Hand-written rather than on the stdlib ``email`` package: obmin needs the exact bytes of the
SOAP part as received (``requestHash`` is computed over them) and passes the multipart body
through unchanged, while ``email`` re-encodes parts and reports framing errors only as soft
"defects". The splitter below accepts both CRLF and bare LF line ends, as X-Road does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.errors import GatewayError

__all__ = [
    "ContentType",
    "MimePart",
    "ProtocolError",
    "SoapPayload",
    "parse_content_type",
    "split_soap_payload",
]

SOAP_CONTENT_TYPES = frozenset({"text/xml", "application/xop+xml"})


class ProtocolError(GatewayError):
    """A message breaks the SOAP or X-Road protocol; ``code`` names the rule broken."""


@dataclass(frozen=True, slots=True)
class ContentType:
    """A parsed ``Content-Type`` header: lower-case media type and parameters."""

    media_type: str
    params: dict[str, str]

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter, lower case, if any."""
        value = self.params.get("charset")
        return value.lower() if value else None


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # noqa: S105 - an RFC 9110 token pattern, not a secret
_MEDIA = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*")
_PARAM = re.compile(rf'\s*;\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*')


def parse_content_type(value: str | None) -> ContentType | None:
    """Parse a Content-Type header; ``None`` when it is absent or not a media type."""
    if not value:
        return None
    match = _MEDIA.match(value)
    if match is None:
        return None
    params: dict[str, str] = {}
    pos = match.end()
    while pos < len(value):
        pmatch = _PARAM.match(value, pos)
        if pmatch is None:
            if value[pos:].strip(" ;\t") == "":
                break
            return None
        raw = pmatch.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[pmatch.group(1).lower()] = raw
        pos = pmatch.end()
    return ContentType(f"{match.group(1)}/{match.group(2)}".lower(), params)


@dataclass(frozen=True, slots=True)
class MimePart:
    """One part of a multipart body: its headers (lower-case names) and exact content bytes."""

    headers: dict[str, str]
    content: bytes


@dataclass(frozen=True, slots=True)
class SoapPayload:
    """The SOAP envelope bytes of a message and how it was framed."""

    soap: bytes
    soap_content_type: ContentType
    multipart: bool
    attachments: tuple[MimePart, ...] = ()
    soap_part_headers: dict[str, str] = field(default_factory=dict)


def _split_parts(body: bytes, boundary: str) -> list[MimePart]:
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode("ascii")) + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    )
    parts: list[MimePart] = []
    matches = list(delimiter.finditer(body))
    if not matches:
        raise ProtocolError(
            "multipart body has no part with the declared boundary", code="MissingSoap"
        )
    closed = False
    for current, following in zip(matches, [*matches[1:], None], strict=True):
        if current.group(1):  # closing delimiter
            closed = True
            break
        end = following.start() if following is not None else len(body)
        if following is None and not body[current.end() :].strip():
            # A last delimiter without its "--" and nothing after it: tolerated, as MIME
            # parsers (and X-Road) do; nothing is lost.
            closed = True
            break
        parts.append(_parse_part(body[current.end() : end]))
    if not closed:
        raise ProtocolError(
            "multipart body is not terminated by its closing boundary", code="InvalidMessage"
        )
    return parts


def _parse_part(raw: bytes) -> MimePart:
    head_end = re.search(rb"\r?\n\r?\n", raw)
    if raw.startswith((b"\r\n", b"\n")):
        head, content = b"", raw[2 if raw.startswith(b"\r\n") else 1 :]
    elif head_end is None:
        head, content = raw, b""
    else:
        head, content = raw[: head_end.start()], raw[head_end.end() :]
    headers: dict[str, str] = {}
    for line in re.split(rb"\r?\n", head):
        if not line.strip():
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(
                "a multipart part has a malformed header line", code="InvalidContentType"
            )
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return MimePart(headers=headers, content=content)


def split_soap_payload(
    content_type: str | None, body: bytes, *, max_attachments: int = 32
) -> SoapPayload:
    """Find the SOAP envelope in a request or response body.

    ``text/xml`` bodies are the envelope; ``multipart/related`` bodies carry it as their first
    part (``text/xml`` for SwA, ``application/xop+xml`` for MTOM) and attachments after it.
    Every part must declare its Content-Type.
    """
    ctype = parse_content_type(content_type)
    if ctype is None:
        raise ProtocolError(
            f"Content-Type {content_type!r} is not a media type", code="InvalidContentType"
        )
    if ctype.media_type == "text/xml":
        return SoapPayload(soap=body, soap_content_type=ctype, multipart=False)
    if ctype.media_type != "multipart/related":
        raise ProtocolError(
            f"Content-Type {ctype.media_type} is not text/xml or multipart/related",
            code="InvalidContentType",
        )
    boundary = ctype.params.get("boundary")
    if not boundary:
        raise ProtocolError("multipart Content-Type has no boundary", code="InvalidContentType")
    if not body.strip():
        raise ProtocolError("multipart message has no SOAP part", code="MissingSoap")
    parts = _split_parts(body, boundary)
    if len(parts) > max_attachments + 1:
        raise ProtocolError(
            f"the message has {len(parts) - 1} attachments; at most {max_attachments} are accepted",
            code="MessageTooLarge",
        )
    if not parts:
        raise ProtocolError("multipart message has no SOAP part", code="MissingSoap")
    for part in parts:
        if parse_content_type(part.headers.get("content-type")) is None:
            raise ProtocolError(
                "a multipart part has no valid Content-Type", code="InvalidContentType"
            )
    first = parts[0]
    first_type = parse_content_type(first.headers["content-type"])
    assert first_type is not None  # checked in the loop above
    if first_type.media_type not in SOAP_CONTENT_TYPES:
        raise ProtocolError(
            f"the first multipart part is {first_type.media_type}, not SOAP",
            code="InvalidContentType",
        )
    return SoapPayload(
        soap=first.content,
        soap_content_type=first_type,
        multipart=True,
        attachments=tuple(parts[1:]),
        soap_part_headers=first.headers,
    )
