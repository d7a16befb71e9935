"""The gateway's error taxonomy and the one table that turns any error into a fault.

Every error obmin raises carries a bare, stable ``code`` (``InvalidSignatureValue``). Which
side is at fault — the client's message (``Client.``), obmin itself on the way in or out
(``Server.ClientProxy.``) or the provider side (``Server.ServerProxy.``) — and the HTTP status
used for REST come from `_SIDES` below, in one place. Peers see the code, a plain sentence and
the request id; details go to the log only.

    Exception
     ├── GatewayError            (gateway/)   e.g. InvalidSoap, ServiceFailed.Timeout
     ├── registry.RegistryError  (registry/)  e.g. InvalidClientIdentifier
     ├── security.SecurityError  (security/)  e.g. InvalidSignatureValue, CertValidation
     └── audit.AuditError        (gateway/audit/) LoggingFailed
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Literal

__all__ = [
    "Fault",
    "GatewayError",
    "Side",
    "fault_for",
    "modern_code",
]

FaultCodeStyle = Literal["legacy", "modern"]


class Side(Enum):
    """Who is at fault: decides the fault code prefix and the REST status."""

    CLIENT = "Client"
    CLIENT_PROXY = "Server.ClientProxy"
    SERVER_PROXY = "Server.ServerProxy"


class GatewayError(Exception):
    """Root of the errors raised by the gateway package itself."""

    code: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            # Per-instance code for the ServiceFailed.* family, decided where it is raised.
            self.code = code  # type: ignore[misc]


# code -> (side, HTTP status for REST). Codes not listed are Client faults with 400,
# except InternalError, which is ours. SPEC 3.2 and X-Road PR-REST 4.6: 400 for the client's
# faults (429 for RateLimited, SPEC 7), 5xx for everything on the gateways' side; X-Road
# answers 500 to all of those, obmin says 502/503/504 where that tells the client more.
_SIDES: dict[str, tuple[Side, int]] = {
    "InternalError": (Side.CLIENT_PROXY, 500),
    "UnknownMember": (Side.CLIENT_PROXY, 500),
    "LoggingFailed": (Side.CLIENT_PROXY, 503),
    "OutdatedRegistry": (Side.CLIENT_PROXY, 503),
    "CannotCreateSignature": (Side.CLIENT_PROXY, 500),
    "SslAuthenticationFailed": (Side.CLIENT_PROXY, 500),
    "ReplayCacheFull": (Side.CLIENT_PROXY, 503),
    "ReplayCacheUnavailable": (Side.CLIENT_PROXY, 503),
    "RateLimiterUnavailable": (Side.CLIENT_PROXY, 503),
    "UnknownService": (Side.SERVER_PROXY, 500),
    "AccessDenied": (Side.SERVER_PROXY, 500),
    "ServiceDisabled": (Side.SERVER_PROXY, 503),
    "ServiceType": (Side.SERVER_PROXY, 500),
    "ServiceFailed.NetworkError": (Side.SERVER_PROXY, 502),
    "ServiceFailed.Timeout": (Side.SERVER_PROXY, 504),
    "ServiceFailed.SslAuthenticationFailed": (Side.SERVER_PROXY, 502),
    "ServiceFailed.HttpError": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidSoap": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidXml": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidMessage": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidContentType": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InconsistentHeaders": (Side.SERVER_PROXY, 502),
    "ServiceFailed.MissingBody": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidBody": (Side.SERVER_PROXY, 502),
    "ServiceFailed.MissingHeader": (Side.SERVER_PROXY, 502),
    "ServiceFailed.MissingHeaderField": (Side.SERVER_PROXY, 502),
    "ServiceFailed.DuplicateHeaderField": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidProtocolVersion": (Side.SERVER_PROXY, 502),
    "ServiceFailed.MessageTooLarge": (Side.SERVER_PROXY, 502),
    "ServiceFailed.MissingSoap": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidClientIdentifier": (Side.SERVER_PROXY, 502),
    "ServiceFailed.InvalidServiceIdentifier": (Side.SERVER_PROXY, 502),
    "RateLimited": (Side.CLIENT, 429),
}

_PUBLIC_MESSAGES: dict[str, str] = {
    "InternalError": "The gateway could not process the message because of an internal error.",
    "LoggingFailed": "The exchange could not be written to the audit log; it was not processed.",
    "CannotCreateSignature": "The gateway could not sign the response.",
    "OutdatedRegistry": "The gateway's registry is outdated; the exchange was not processed.",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """What a peer is told about an error: code, sentence, HTTP status."""

    side: Side
    code: str
    message: str
    http_status: int

    def full_code(self, style: FaultCodeStyle = "legacy") -> str:
        """The dotted fault code, in X-Road <= 7.7 spelling or the 7.8 one."""
        legacy = f"{self.side.value}.{self.code}"
        return legacy if style == "legacy" else modern_code(legacy)


def fault_for(exc: BaseException) -> Fault:
    """Map any exception to the fault a peer sees.

    Errors of our packages carry a ``code``; anything else is a bug and is reported as
    ``Server.ClientProxy.InternalError`` without details.
    """
    code = getattr(exc, "code", None)
    if not isinstance(code, str):
        code = "InternalError"
    side, status = _SIDES.get(code, (Side.CLIENT, 400))
    message = _PUBLIC_MESSAGES.get(code) or (str(exc) if code != "InternalError" else "")
    if not message:
        message = _PUBLIC_MESSAGES["InternalError"]
    return Fault(side=side, code=code, message=message, http_status=status)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PREFIXES = {"Client": "client", "Server": "server", "ClientProxy": "clientproxy",
             "ServerProxy": "serverproxy"}  # fmt: skip


def modern_code(legacy: str) -> str:
    """``Server.ServerProxy.ServiceFailed.NetworkError`` -> the X-Road 7.8 spelling.

    7.8 keeps the prefixes as single lower-case words (``serverproxy``) and turns the code
    parts into snake case (``service_failed.network_error``).
    """
    parts = legacy.split(".")
    return ".".join(_PREFIXES.get(p) or _CAMEL.sub("_", p).lower() for p in parts)
