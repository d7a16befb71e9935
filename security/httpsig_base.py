"""RFC 9421 building blocks: message views, the two signature headers, the signature base.

Everything here follows RFC 9421 section 2 to the letter, because a signature verifies only if
both sides build the same bytes: component identifiers and ``@signature-params`` are
re-serialised structured fields (section 2.3 and 3.2 step 7), field values are combined with
``", "`` (2.1), and derived components are computed from the request the gateway received
(2.2). Parameters on components: ``key``, ``sf`` (for fields of known type) and ``bs`` on
header fields are supported; ``req`` (request components in a response), ``tr`` (trailers) and
``@query-param`` are refused with `InvalidSignatureInput` rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from security.errors import InvalidSignatureInput, InvalidStructuredField, MissingSignature
from security.httpsig_sfser import (
    serialize_dictionary,
    serialize_item,
    serialize_list,
    serialize_member,
)
from security.httpsig_sfv import InnerList, Item, Member, parse_dictionary, parse_item, parse_list

__all__ = [
    "SIGNATURE_PARAMETERS",
    "HttpMessageView",
    "HttpRequestView",
    "HttpResponseView",
    "SignatureEntry",
    "build_signature_base",
    "component_value",
    "field_lines",
    "parse_signatures",
]

Headers = Mapping[str, Sequence[str]]
"""Lowercased field name -> the field lines of that name, in message order."""

SIGNATURE_PARAMETERS: dict[str, type] = {
    "created": int,
    "expires": int,
    "keyid": str,
    "nonce": str,
    "alg": str,
    "tag": str,
}
"""The RFC 9421 registry of signature parameters and their types; others are refused."""

# RFC 9421 2.1.1: ``sf`` needs the field's structured type; these are the ones obmin knows.
_STRUCTURED_TYPES = {
    "content-digest": "dictionary",
    "repr-digest": "dictionary",
    "want-content-digest": "dictionary",
    "want-repr-digest": "dictionary",
    "signature-input": "dictionary",
    "signature": "dictionary",
    "accept-signature": "dictionary",
    "priority": "dictionary",
    "cache-status": "list",
    "proxy-status": "list",
}
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
_DERIVED_VALUE = re.compile(r"[\x20-\x7e]*")
_OBS_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def field_lines(headers: Headers, name: str) -> list[str]:
    """The field lines of ``name`` (lowercase); tolerates a single string for one line."""
    lines = headers.get(name)
    if lines is None:
        return []
    return [lines] if isinstance(lines, str) else list(lines)


@dataclass(frozen=True, slots=True)
class HttpRequestView:
    """A received request, as the signature base needs it.

    ``target_uri`` is absolute, as the gateway reconstructs it (scheme, ``Host``, raw path and
    query); ``authority`` is the ``Host`` value; ``path`` and ``query`` are raw (still
    percent-encoded), ``query`` without the ``?`` and None when the target has no ``?``.
    ``headers`` maps lowercased names to field lines. ``has_body``: whether the request
    carries content; None derives it from ``content-length``/``transfer-encoding``.
    """

    method: str
    target_uri: str
    authority: str
    path: str
    query: str | None
    headers: Headers
    has_body: bool | None = None

    @property
    def scheme(self) -> str:
        """The lowercased scheme of ``target_uri``."""
        scheme, sep, _ = self.target_uri.partition("://")
        if not sep:
            raise InvalidSignatureInput("the request's target URI is not absolute")
        return scheme.lower()

    def body_present(self) -> bool:
        """Whether the request carries content (explicitly, or by its framing headers)."""
        if self.has_body is not None:
            return self.has_body
        if field_lines(self.headers, "transfer-encoding"):
            return True
        lengths = field_lines(self.headers, "content-length")
        return any(line.strip() not in ("", "0") for line in lengths)


@dataclass(frozen=True, slots=True)
class HttpResponseView:
    """A response: its status code and lowercased header field lines."""

    status: int
    headers: Headers


HttpMessageView = HttpRequestView | HttpResponseView


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """One labelled signature: its covered components, parameters and value, as parsed."""

    label: str
    signature_input: InnerList
    value: bytes

    @property
    def covered(self) -> tuple[Item, ...]:
        """The covered component identifiers, in signed order."""
        return self.signature_input.items

    def int_param(self, name: str) -> int | None:
        """An Integer signature parameter (``created``, ``expires``), or None."""
        value = self.signature_input.param(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def str_param(self, name: str) -> str | None:
        """A String signature parameter (``keyid``, ``alg``, ``nonce``, ``tag``), or None."""
        value = self.signature_input.param(name)
        return value if isinstance(value, str) else None

    def plain_names(self) -> frozenset[str]:
        """Names of the components covered without parameters."""
        return frozenset(str(item.value) for item in self.covered if not item.params)


def _parse_header(headers: Headers, name: str) -> dict[str, Member]:
    try:
        return parse_dictionary(", ".join(field_lines(headers, name)), unique_keys=True)
    except InvalidStructuredField as exc:
        raise InvalidSignatureInput(f"header {name} is malformed: {exc}") from exc


def _check_entry(label: str, member: Member) -> InnerList:
    if not isinstance(member, InnerList):
        raise InvalidSignatureInput(f"Signature-Input {label} is not an inner list")
    seen: set[tuple[str, frozenset[object]]] = set()
    for item in member.items:
        name = item.value
        if not isinstance(name, str) or not name or name != name.lower():
            raise InvalidSignatureInput(f"signature {label}: components must be lowercase strings")
        if name == "@signature-params":
            raise InvalidSignatureInput(f"signature {label} lists @signature-params")
        # RFC 9421 2: identity ignores the order of parameters.
        identity = (name, frozenset(item.params))
        if identity in seen:
            raise InvalidSignatureInput(f"signature {label} covers {name} twice")
        seen.add(identity)
    for name, value in member.params:
        expected = SIGNATURE_PARAMETERS.get(name)
        if expected is None:
            raise InvalidSignatureInput(f"signature {label}: unknown parameter {name!r}")
        if type(value) is not expected:
            raise InvalidSignatureInput(
                f"signature {label}: parameter {name} must be {expected.__name__}"
            )
    return member


def parse_signatures(headers: Headers) -> dict[str, SignatureEntry]:
    """Parse ``Signature-Input`` and ``Signature`` into entries by label.

    `MissingSignature` when neither header is there; `InvalidSignatureInput` for malformed
    headers, repeated labels or parameters, labels present in only one header, a value that
    is not a byte sequence, or a component list that RFC 9421 forbids.
    """
    if not field_lines(headers, "signature-input") and not field_lines(headers, "signature"):
        raise MissingSignature("the message carries no Signature-Input and Signature headers")
    inputs = _parse_header(headers, "signature-input")
    values = _parse_header(headers, "signature")
    if not inputs and not values:
        raise MissingSignature("the Signature-Input and Signature headers are empty")
    if inputs.keys() != values.keys():
        raise InvalidSignatureInput("Signature-Input and Signature name different labels")
    entries: dict[str, SignatureEntry] = {}
    for label, member in inputs.items():
        signature_input = _check_entry(label, member)
        value = values[label]
        if not isinstance(value, Item) or not isinstance(value.value, bytes) or not value.value:
            raise InvalidSignatureInput(f"Signature {label} is not a non-empty byte sequence")
        entries[label] = SignatureEntry(label, signature_input, value.value)
    return entries


# --- component values (RFC 9421 2.1 and 2.2) ----------------------------------------------


def _flag(params: dict[str, object], name: str) -> bool:
    value = params.pop(name, None)
    if value is None:
        return False
    if value is not True:
        raise InvalidSignatureInput(f"component parameter {name} must be a true flag")
    return True


def _field_lines(message: HttpMessageView, name: str) -> list[str]:
    lines = field_lines(message.headers, name)
    if not lines:
        raise InvalidSignatureInput(f"covered header {name} is not in the message")
    out = []
    for line in lines:
        value = line.strip(" \t")
        if "\n" in value:
            value = _OBS_FOLD.sub(" ", value)
        out.append(value)
    return out


def _structured(name: str, text: str, kind: str) -> str:
    try:
        if kind == "dictionary":
            return serialize_dictionary(parse_dictionary(text))
        if kind == "list":
            return serialize_list(parse_list(text))
        return serialize_item(parse_item(text))
    except InvalidStructuredField as exc:
        raise InvalidSignatureInput(f"covered header {name} is not a valid {kind}") from exc


def _field_value(name: str, params: dict[str, object], message: HttpMessageView) -> str:
    lines = _field_lines(message, name)
    key = params.pop("key", None)
    sf = _flag(params, "sf")
    bs = _flag(params, "bs")
    if _flag(params, "tr"):
        raise InvalidSignatureInput(f"covered header {name}: trailers are not supported")
    if params:
        raise InvalidSignatureInput(f"covered header {name}: unknown parameter {sorted(params)}")
    if bs:
        if sf or key is not None:
            raise InvalidSignatureInput(f"covered header {name}: bs excludes sf and key")
        wrapped = [Item(line.encode("utf-8", errors="surrogateescape")) for line in lines]
        return serialize_list(list(wrapped))
    combined = ", ".join(lines)
    if key is not None:
        if not isinstance(key, str):
            raise InvalidSignatureInput(f"covered header {name}: key must be a string")
        try:
            members = parse_dictionary(combined)
        except InvalidStructuredField as exc:
            raise InvalidSignatureInput(f"covered header {name} is not a dictionary") from exc
        if key not in members:
            raise InvalidSignatureInput(f"covered header {name} has no member {key!r}")
        return serialize_member(members[key])
    if sf:
        kind = _STRUCTURED_TYPES.get(name)
        if kind is None:
            raise InvalidSignatureInput(f"covered header {name}: its structured type is unknown")
        return _structured(name, combined, kind)
    return combined


def _authority(request: HttpRequestView) -> str:
    # RFC 9421 2.2.3 via RFC 9110 4.2.3: lowercase host, no default port.
    authority = request.authority.lower()
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, rest = authority[:end], authority[end:]
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
        rest = ":" + port
    else:
        return authority
    if rest.startswith(":"):
        port = rest[1:]
        if port == "" or port.lstrip("0") == _DEFAULT_PORTS.get(request.scheme):
            return host
    return authority


def _derived_value(name: str, params: dict[str, object], message: HttpMessageView) -> str:
    if name == "@query-param":
        raise InvalidSignatureInput("@query-param is not supported; sign @query instead")
    if params:
        raise InvalidSignatureInput(f"component {name} takes no parameters here")
    if isinstance(message, HttpResponseView):
        if name != "@status":
            raise InvalidSignatureInput(f"component {name} has no value in a response")
        return f"{message.status:03d}"
    if name == "@method":
        return message.method
    if name == "@target-uri":
        return message.target_uri
    if name == "@authority":
        return _authority(message)
    if name == "@scheme":
        return message.scheme
    if name == "@path":
        return message.path or "/"
    if name == "@query":
        return "?" + (message.query or "")
    if name == "@request-target":
        query = "" if message.query is None else "?" + message.query
        return (message.path or "/") + query
    if name == "@status":
        raise InvalidSignatureInput("@status has no value in a request")
    raise InvalidSignatureInput(f"unknown derived component {name}")


def component_value(item: Item, message: HttpMessageView) -> str:
    """The canonical value of one covered component in ``message`` (RFC 9421 2.1, 2.2)."""
    name = str(item.value)
    params: dict[str, object] = dict(item.params)
    if "req" in params:
        raise InvalidSignatureInput(f"component {name}: the req parameter is not supported")
    if name.startswith("@"):
        value = _derived_value(name, params, message)
        if not _DERIVED_VALUE.fullmatch(value):
            raise InvalidSignatureInput(f"component {name} is not printable ASCII")
        return value
    value = _field_value(name, params, message)
    if not _FIELD_VALUE.fullmatch(value):
        raise InvalidSignatureInput(f"covered header {name} is not printable ASCII")
    return value


def build_signature_base(
    signature_input: InnerList, message: HttpMessageView
) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The signature base (RFC 9421 2.5) and the (identifier, value) pairs it covers."""
    lines: list[str] = []
    covered: list[tuple[str, str]] = []
    try:
        for item in signature_input.items:
            identifier = serialize_item(item)
            value = component_value(item, message)
            lines.append(f"{identifier}: {value}")
            covered.append((identifier, value))
        lines.append('"@signature-params": ' + serialize_member(signature_input))
    except InvalidStructuredField as exc:
        raise InvalidSignatureInput(f"the signature input cannot be serialised: {exc}") from exc
    return "\n".join(lines).encode("ascii"), tuple(covered)
