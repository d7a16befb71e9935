"""A real time-stamping authority for tests: `openssl ts -reply` behind a small aiohttp app.

The TSA's certificates are issued here by obmin's development PKI code (a CA made per test
module), with the profile RFC 3161 2.3 asks for: extendedKeyUsage timeStamping alone,
critical. Misbehaviour (delays, wrong answers, replayed responses) is a switch on the app.
`resign` re-signs an openssl token with another certificate (same key), which is how the
tests make tokens that `openssl ts -reply` refuses to produce (a certificate without EKU).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from security import PkiLayout, init_pki, load_certificate, load_private_key
from security.pki import issue_certificate
from security.pki_build import sign_certificate

HAVE_OPENSSL = shutil.which("openssl") is not None
POLICY = "1.3.6.1.4.1.55555.1.1"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "obmin tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def tsa_extensions(
    *, eku: bool = True, critical: bool = True
) -> list[tuple[x509.ExtensionType, bool]]:
    """The RFC 3161 TSA profile (or, for negative tests, without EKU or with it non-critical)."""
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_usage(), True),
    ]
    if eku:
        extensions.append((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical))
    return extensions


@dataclass(frozen=True, slots=True)
class TsaIdentity:
    """A TSA's certificate and key files."""

    cert: Path
    key: Path

    @property
    def certificate(self) -> x509.Certificate:
        return load_certificate(self.cert)


@dataclass(frozen=True, slots=True)
class TsaPki:
    """The TSA CA, two TSA identities, and a CA nobody configured."""

    layout: PkiLayout
    rsa: TsaIdentity
    ec: TsaIdentity
    other_ca: PkiLayout
    stranger: TsaIdentity  # a proper TSA certificate from the other CA

    @property
    def ca_cert(self) -> Path:
        return self.layout.ca_cert


def make_tsa_pki(base: Path) -> TsaPki:
    """A fresh CA with an RSA and an EC TSA certificate, and a second, unconfigured CA."""
    layout = init_pki(base / "tsa-ca")
    other = init_pki(base / "other-ca")

    def issue(on: PkiLayout, name: str, key_type: str) -> TsaIdentity:
        issued = issue_certificate(
            on,
            subject=_name(name),
            extensions=tsa_extensions(),
            cert_path=on.root / name / "tsa.crt",
            key_path=on.root / name / "tsa.key",
            days=30,
            key_type=key_type,  # type: ignore[arg-type]
        )
        return TsaIdentity(issued.cert_path, issued.key_path)

    return TsaPki(
        layout=layout,
        rsa=issue(layout, "tsa-rsa", "rsa"),
        ec=issue(layout, "tsa-ec", "ec"),
        other_ca=other,
        stranger=issue(other, "tsa-stranger", "rsa"),
    )


def reissue_same_key(
    pki: TsaPki, identity: TsaIdentity, *, eku: bool, critical: bool = True
) -> x509.Certificate:
    """A certificate for the same key as ``identity`` from the same CA, with another profile."""
    ca_key = load_private_key(pki.layout.ca_key)
    ca_cert = load_certificate(pki.layout.ca_cert)
    now = datetime.now(UTC)
    return sign_certificate(
        ca_key,
        ca_cert,
        subject=_name("tsa-reissued"),
        public_key=load_private_key(identity.key).public_key(),
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=30),
        extensions=tsa_extensions(eku=eku, critical=critical),
    )


def openssl_config(directory: Path, identity: TsaIdentity, *, ess_alg: str, digests: str) -> Path:
    """An ``openssl ts`` configuration for one TSA (serial file beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    serial = directory / "serial"
    if not serial.exists():
        serial.write_text("01\n")
    config = directory / "tsa.cnf"
    config.write_text(
        "[ tsa ]\n"
        "default_tsa = tsa_config\n"
        "[ tsa_config ]\n"
        f"serial = {serial}\n"
        "crypto_device = builtin\n"
        f"signer_cert = {identity.cert}\n"
        f"signer_key = {identity.key}\n"
        "signer_digest = sha256\n"
        f"default_policy = {POLICY}\n"
        "other_policies = 1.3.6.1.4.1.55555.1.2\n"
        f"digests = {digests}\n"
        "accuracy = secs:1\n"
        "ordering = yes\n"
        "tsa_name = yes\n"
        "ess_cert_id_chain = no\n"
        f"ess_cert_id_alg = {ess_alg}\n"
    )
    return config


@dataclass
class TsaBehaviour:
    """How the test TSA answers: through openssl, or misbehaving on purpose."""

    delay: float = 0.0
    status: int = 200
    content_type: str = "application/timestamp-reply"
    replay: bool = False  # answer every request with the first response (wrong nonce)
    garbage: bytes | None = None
    gate: asyncio.Event | None = None  # while set up and not set, requests wait here
    trickle: bool = False  # send the answer in small pieces, each flushed (as a network does)
    requests: list[bytes] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)


def openssl_tsa_app(config: Path, behaviour: TsaBehaviour) -> web.Application:
    """An HTTP TSA: each POSTed TimeStampReq is answered by ``openssl ts -reply``."""
    lock = asyncio.Lock()  # openssl updates the serial file
    counter = itertools.count()

    async def reply(request: web.Request) -> web.StreamResponse:
        query = await request.read()
        behaviour.requests.append(query)
        if behaviour.gate is not None:
            await behaviour.gate.wait()
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.garbage is not None:
            body = behaviour.garbage
        elif behaviour.replay and behaviour.responses:
            body = behaviour.responses[0]
        else:
            async with lock:
                number = next(counter)
                query_file = config.parent / f"query-{number}.tsq"
                reply_file = config.parent / f"reply-{number}.tsr"
                query_file.write_bytes(query)
                process = await asyncio.create_subprocess_exec(
                    "openssl", "ts", "-reply", "-config", str(config),
                    "-queryfile", str(query_file), "-out", str(reply_file),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                output, _ = await process.communicate()
                if process.returncode != 0:
                    raise RuntimeError(f"openssl ts -reply failed: {output.decode()}")
                body = reply_file.read_bytes()
        behaviour.responses.append(body)
        if behaviour.trickle:
            streamed = web.StreamResponse(status=behaviour.status)
            streamed.content_type = behaviour.content_type
            streamed.content_length = len(body)
            await streamed.prepare(request)
            for start in range(0, len(body), 200):
                await streamed.write(body[start : start + 200])
                await asyncio.sleep(0.005)  # each piece reaches the client on its own
            await streamed.write_eof()
            return streamed
        return web.Response(body=body, status=behaviour.status, content_type=behaviour.content_type)

    app = web.Application()
    app.router.add_post("/", reply)
    return app


def openssl_verify(
    token: bytes, data: bytes, ca_cert: Path, work: Path
) -> subprocess.CompletedProcess[str]:
    """``openssl ts -verify -data ... -token_in`` against the TSA CA."""
    work.mkdir(parents=True, exist_ok=True)
    stamp = hashlib.sha256(token + data).hexdigest()[:12]
    token_file, data_file = work / f"{stamp}.tst", work / f"{stamp}.data"
    token_file.write_bytes(token)
    data_file.write_bytes(data)
    return subprocess.run(
        ["openssl", "ts", "-verify", "-token_in", "-in", str(token_file), "-data",
         str(data_file), "-CAfile", str(ca_cert)],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


def resign(token: bytes, key_file: Path, certificate: x509.Certificate) -> bytes:
    """``token`` re-signed with the key in ``key_file`` as ``certificate``: the ESS
    certificate id, the signer identifier and the certificate set are made to match."""
    key = load_private_key(key_file)
    der = certificate.public_bytes(Encoding.DER)
    info = cms.ContentInfo.load(token)
    signed = info["content"]
    signed["certificates"] = cms.CertificateSet(
        [cms.CertificateChoices({"certificate": _cert(der)})]
    )
    signer = signed["signer_infos"][0]
    signer["sid"] = cms.SignerIdentifier(
        {
            "issuer_and_serial_number": {
                "issuer": _cert(der)["tbs_certificate"]["issuer"],
                "serial_number": certificate.serial_number,
            }
        }
    )
    attrs = signer["signed_attrs"]
    for attr in attrs:
        if attr["type"].native == "signing_certificate_v2":
            entry = attr["values"][0]["certs"][0]
            entry["cert_hash"] = hashlib.sha256(der).digest()
            _set_serial(entry, certificate)
        elif attr["type"].native == "signing_certificate":
            entry = attr["values"][0]["certs"][0]
            entry["cert_hash"] = hashlib.sha1(der).digest()
            _set_serial(entry, certificate)
    signed_bytes = b"\x31" + attrs.dump(force=True)[1:]
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signed_bytes, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(signed_bytes, ec.ECDSA(hashes.SHA256()))
    else:
        raise TypeError("unsupported test key")
    signer["signature"] = signature
    return bytes(info.dump(force=True))


def _set_serial(entry: Any, certificate: x509.Certificate) -> None:
    if entry["issuer_serial"].native is not None:
        entry["issuer_serial"]["serial_number"] = certificate.serial_number


def _cert(der: bytes) -> Any:
    from asn1crypto import x509 as asn1_x509

    return asn1_x509.Certificate.load(der)


def openssl_timestamp(config: Path, data: bytes, ca_cert: Path) -> bytes:
    """A TimeStampToken over ``data`` from ``openssl ts -reply`` (no HTTP), verified."""
    from gateway.audit.tsa import build_request, verify_response
    from gateway.audit.tsa_verify import TsaTrust

    request = build_request(data)
    query, reply = config.parent / "direct.tsq", config.parent / "direct.tsr"
    query.write_bytes(request.der)
    subprocess.run(
        ["openssl", "ts", "-reply", "-config", str(config), "-queryfile", str(query),
         "-out", str(reply)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return verify_response(reply.read_bytes(), request, TsaTrust.from_file(ca_cert)).token
