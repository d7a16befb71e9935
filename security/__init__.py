"""obmin security: development PKI, signer certificates and WS-Security signatures.

The gateway and the adapters use only the names below. `verify_soap_signature` returns a
`VerifiedSoap` or raises one of the `SecurityError` subclasses; `sign_soap` produces what it
accepts under the ``strict`` policy.
"""

from security.certs import TrustStore, ValidatedSigner, cert_thumbprint, validate_signer
from security.errors import (
    CertValidation,
    InvalidSignatureValue,
    MissingSignature,
    PkiError,
    SecurityError,
    SigningError,
    StaleMessage,
)
from security.pki import (
    IssuedCert,
    KeyType,
    KeyUsageProfile,
    PkiLayout,
    SigningKey,
    init_pki,
    issue_member_cert,
    issue_subsystem_cert,
    load_certificate,
    load_private_key,
)
from security.replay import MemoryReplayCache, RedisReplayCache, ReplayCache, replay_key
from security.revocation import RevocationChecker, RevocationConfig
from security.wssec import SignaturePolicy, VerifiedSoap, verify_soap_signature
from security.wssign import sign_soap

__all__ = [
    "CertValidation",
    "InvalidSignatureValue",
    "IssuedCert",
    "KeyType",
    "KeyUsageProfile",
    "MemoryReplayCache",
    "MissingSignature",
    "PkiError",
    "PkiLayout",
    "RedisReplayCache",
    "ReplayCache",
    "RevocationChecker",
    "RevocationConfig",
    "SecurityError",
    "SignaturePolicy",
    "SigningError",
    "SigningKey",
    "StaleMessage",
    "TrustStore",
    "ValidatedSigner",
    "VerifiedSoap",
    "cert_thumbprint",
    "init_pki",
    "issue_member_cert",
    "issue_subsystem_cert",
    "load_certificate",
    "load_private_key",
    "replay_key",
    "sign_soap",
    "validate_signer",
    "verify_soap_signature",
]
