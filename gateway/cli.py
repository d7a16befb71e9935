"""The ``obmin`` command line.

Every failure ends with one message naming the file and key at fault and a non-zero exit;
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gateway.audit import AuditError
from gateway.errors import GatewayError
from gateway.settings import Settings, SettingsError, load_settings
from registry.errors import RegistryError
from security.errors import SecurityError
from security.pki_revoke import REVOCATION_REASONS

__all__ = ["main"]

DEFAULT_CONFIG = Path("config/example/gateway.yaml")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(message)s", stream=sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


async def _serve(settings: Settings, worker: int | None = None) -> None:
    """Run the gateway until SIGTERM (or SIGINT); ``worker`` is this process's index under
    `gateway.workers` (None: a gateway of one process)."""
    from gateway.admin import create_admin_app
    from gateway.admin_tls import admin_site
    from gateway.reload import reload_registry
    from gateway.server import client_server_options, create_client_app
    from gateway.state import GatewayState
    from gateway.tls import server_ssl_context

    supervised = worker is not None
    state = GatewayState(
        settings, primary=worker in (None, 0), supervisor=os.getppid() if supervised else None
    )
    client = web.AppRunner(
        create_client_app(settings, state), handle_signals=False, **client_server_options(settings)
    )
    admin = web.AppRunner(create_admin_app(state), handle_signals=False)
    await client.setup()
    await admin.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # A supervised worker leaves SIGINT ignored: the supervisor orders the stop.
    for signum in (signal.SIGTERM,) if supervised else (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: state.spawn(reload_registry(state, "signal"), "registry-reload")
    )
    try:
        host, port = settings.client.host, settings.client.port
        await web.TCPSite(client, host, port, reuse_port=supervised).start()
        if settings.client_tls is not None and state.env is not None:
            state.tls_context = server_ssl_context(
                settings.client_tls, state.env.registry, state.env.key_passphrase
            )
            tls = settings.client_tls
            site = web.TCPSite(
                client, tls.host, tls.port, ssl_context=state.tls_context, reuse_port=supervised
            )
            await site.start()
        admin_url = None
        if state.primary:  # one admin port: the primary worker's
            passphrase = settings.keys.passphrase(os.environ)
            await admin_site(
                admin, settings.admin.host, settings.admin.port, settings.admin_tls, passphrase
            ).start()
            scheme = "https" if settings.admin_tls else "http"
            admin_url = f"{scheme}://{settings.admin.host}:{settings.admin.port}/"
        structlog.get_logger("obmin").info(
            "gateway started",
            client_port=f"http://{settings.client.host}:{settings.client.port}/",
            admin_port=admin_url,
            **({"worker": worker} if supervised else {}),
        )
        await stop.wait()
    finally:
        # Stop accepting, let in-flight exchanges finish, then close the audit store.
        await admin.cleanup()
        await client.cleanup()


def _ensure_dev_pki(directory: Path, settings: Settings) -> None:
    """Create a development PKI in ``directory`` unless it has a CA already (first start).

    Its keys are encrypted like every obmin key: under the passphrase the settings name. A
    configured passphrase file that does not exist yet is created first with a random
    passphrase (mode 0600), as ``make pki`` does for ``make run``.
    """
    from security import PkiLayout, init_pki
    from security.pki_revoke import write_crl

    layout = PkiLayout(directory)
    if layout.ca_cert.exists():
        return
    secret_file = settings.keys.passphrase_file
    if secret_file is not None and not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    passphrase = settings.keys.passphrase(os.environ)
    if passphrase is None:
        raise SettingsError(
            "--dev-pki: the settings name no key passphrase (keys.passphrase_file or the"
            f" variable {settings.keys.passphrase_env}); the PKI's keys are encrypted at rest"
        )
    write_crl(init_pki(directory, passphrase=passphrase), passphrase=passphrase)
    print(f"obmin: no PKI in {directory}: created a development PKI (CA {layout.ca_cert})")


def _cmd_serve(args: argparse.Namespace) -> int:
    from gateway.workers import check_workers, supervise

    settings = load_settings(args.config)
    if args.worker_index is not None:  # started by the supervisor below
        _configure_logging(settings.log_level)
        asyncio.run(_serve(settings, worker=args.worker_index))
        return 0
    check_workers(settings, args.workers)
    if args.dev_pki is not None:
        _ensure_dev_pki(args.dev_pki, settings)
    _configure_logging(settings.log_level)
    if args.workers > 1:
        return supervise(args.config, args.workers)
    asyncio.run(_serve(settings))
    return 0


def _cmd_registry_check(args: argparse.Namespace) -> int:
    from registry import check_registry

    code, output = check_registry(args.directory)
    print(output)
    return code


_ENCRYPTION_HELP = (
    "no key passphrase: set OBMIN_PKI_PASSPHRASE or pass --passphrase-file FILE (private keys "
    "are encrypted at rest); --no-encryption writes clear keys, for throwaway development "
    "PKIs only"
)


def _passphrase(args: argparse.Namespace) -> bytes | None:
    """The passphrase for the keys a command writes or reads.

    Never from the command line: a file named with --passphrase-file, or OBMIN_PKI_PASSPHRASE.
    A command that writes a key refuses to write it in clear unless --no-encryption is given,
    and then says so on stderr.
    """
    from security.errors import PkiError
    from security.pki_keys import pki_passphrase

    value = pki_passphrase(os.environ, args.passphrase_file)
    clear = bool(getattr(args, "no_encryption", False))
    if value is not None:
        if clear:
            raise PkiError("--no-encryption contradicts the configured passphrase; drop one")
        return value
    if not args.writes_keys:
        return None  # reading a clear development CA key needs no passphrase
    if not clear:
        raise PkiError(_ENCRYPTION_HELP)
    print(
        "obmin: warning: --no-encryption: private keys are written UNENCRYPTED; "
        "never use them outside a throwaway development PKI",
        file=sys.stderr,
    )
    return None


def _cmd_pki_init(args: argparse.Namespace) -> int:
    from security import init_pki
    from security.pki_revoke import write_crl

    passphrase = _passphrase(args)
    layout = init_pki(args.dir, instance=args.instance, force=args.force, passphrase=passphrase)
    write_crl(layout, passphrase=passphrase)
    print(f"development PKI created in {args.dir}: CA {layout.ca_cert}")
    return 0


def _cmd_pki_issue(args: argparse.Namespace) -> int:
    from registry.identifiers import MemberId
    from security import issue_member_cert

    issued = issue_member_cert(
        args.dir,
        MemberId.parse(args.member),
        name=args.name,
        days=args.days,
        passphrase=_passphrase(args),
        ocsp_url=args.ocsp_url,
        crl_url=args.crl_url,
    )
    print(f"issued {issued.cert_path} (key {issued.key_path})")
    return 0


def _cmd_pki_subsystem(args: argparse.Namespace) -> int:
    from registry.identifiers import ClientId
    from security import issue_subsystem_cert

    issued = issue_subsystem_cert(
        args.dir,
        ClientId.parse(args.client),
        name=args.name,
        days=args.days,
        key_type=args.key_type,
        passphrase=_passphrase(args),
        ocsp_url=args.ocsp_url,
        crl_url=args.crl_url,
    )
    print(f"issued {issued.cert_path} (key {issued.key_path})")
    print(f"pin it for {args.client} in the registry: signing_certificates: [{issued.cert_path}]")
    return 0


def _cmd_pki_log_key(args: argparse.Namespace) -> int:
    from security import PkiLayout
    from security.pki_keys import new_key, write_key

    layout = PkiLayout(args.dir)
    if layout.log_key.exists():
        print(f"{layout.log_key} exists; left as it is")
        return 0
    write_key(layout.log_key, new_key("ed25519"), _passphrase(args))
    print(f"audit log key written to {layout.log_key}")
    return 0


def _cmd_pki_tls_client(args: argparse.Namespace) -> int:
    from registry.identifiers import ClientId
    from security.pki_certs import issue_tls_client_cert

    issued = issue_tls_client_cert(
        args.dir, ClientId.parse(args.client), days=args.days, passphrase=_passphrase(args)
    )
    print(f"issued {issued.cert_path} (key {issued.key_path})")
    return 0


def _cmd_pki_tls_server(args: argparse.Namespace) -> int:
    from security.pki_certs import issue_tls_server_cert

    issued = issue_tls_server_cert(
        args.dir,
        hosts=args.host or ("localhost", "127.0.0.1"),
        days=args.days,
        passphrase=_passphrase(args),
    )
    print(f"issued {issued.cert_path} (key {issued.key_path})")
    return 0


def _cmd_pki_ocsp(args: argparse.Namespace) -> int:
    from security.pki_certs import issue_ocsp_responder_cert

    issued = issue_ocsp_responder_cert(args.dir, days=args.days, passphrase=_passphrase(args))
    print(f"issued {issued.cert_path} (key {issued.key_path})")
    return 0


def _cmd_pki_revoke(args: argparse.Namespace) -> int:
    from security.pki_revoke import revocation_target, revoke

    revoked = revoke(
        args.dir, revocation_target(args.target), reason=args.reason, passphrase=_passphrase(args)
    )
    print(f"revoked serial {revoked.serial:x}; CRL and OCSP index updated in {args.dir}/ca")
    return 0


def _cmd_example_provider(args: argparse.Namespace) -> int:
    from adapters.example_provider import create_provider_app

    _configure_logging("info")
    web.run_app(create_provider_app(), host=args.host, port=args.port, print=None)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from adapters.demo import run_demo

    settings = load_settings(args.config)
    return asyncio.run(run_demo(settings, pki_dir=args.pki))


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit import verify_log_cli

    settings = load_settings(args.config)
    code, output = verify_log_cli(
        settings,
        vkey=args.vkey,
        workers=args.workers,
        passphrase=settings.keys.passphrase(os.environ),
        archives=args.archives,
        tsa_ca=args.tsa_ca,
    )
    print(output)
    return code


def _cmd_audit_verify_archive(args: argparse.Namespace) -> int:
    from gateway.audit import verify_archive_cli
    from security.pki_keys import pki_passphrase

    settings = load_settings(args.config) if args.config is not None else None
    passphrase = (
        settings.keys.passphrase(os.environ) if settings is not None else pki_passphrase(os.environ)
    )
    code, output = verify_archive_cli(
        args.files, vkey=args.vkey, settings=settings, passphrase=passphrase, tsa_ca=args.tsa_ca
    )
    print(output)
    return code


def _cmd_audit_archive(args: argparse.Namespace) -> int:
    from gateway.audit.retention import archive_cli

    settings = load_settings(args.config)
    code, output = asyncio.run(
        archive_cli(
            settings,
            older_than_days=args.older_than_days,
            passphrase=settings.keys.passphrase(os.environ),
        )
    )
    print(output)
    return code


def _cmd_audit_query(args: argparse.Namespace) -> int:
    from datetime import datetime

    from gateway.audit import InvalidAuditQuery, query_records_cli
    from gateway.audit.query import parse_status

    settings = load_settings(args.config)
    try:
        since = datetime.fromisoformat(args.since) if args.since else None
        until = datetime.fromisoformat(args.until) if args.until else None
    except ValueError as exc:
        raise InvalidAuditQuery(f"--since/--until: not an ISO 8601 time: {exc}") from exc
    print(
        asyncio.run(
            query_records_cli(
                settings.audit,
                request_id=args.request_id,
                message_id=args.message_id,
                client=args.client,
                service=args.service,
                user_id=args.user_id,
                subject_id=args.subject_id,
                status=parse_status(args.status) if args.status else None,
                direction=args.direction,
                since=since,
                until=until,
                limit=args.limit,
            )
        )
    )
    return 0


def _cmd_audit_export(args: argparse.Namespace) -> int:
    from gateway.audit.evidence_export import export_evidence_cli

    settings = load_settings(args.config)
    passphrase = settings.keys.passphrase(os.environ)  # keys.passphrase_file, or the variable
    print(asyncio.run(export_evidence_cli(settings, args.request_id, args.output, passphrase)))
    return 0


def _cmd_audit_verify_evidence(args: argparse.Namespace) -> int:
    from gateway.audit.evidence_export import verify_evidence_cli

    code, output = verify_evidence_cli(
        args.file, certificate=args.certificate, vkey=args.vkey, tsa_ca=args.tsa_ca
    )
    print(output, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _cmd_audit_new_body_key(args: argparse.Namespace) -> int:
    from gateway.audit.body_crypto import write_body_key

    write_body_key(args.file)
    print(
        f"body key written to {args.file} (mode 0600); configure it as"
        f" audit.body_keys.keys.<key id>: {args.file}"
    )
    return 0


BENCHMARKS = {
    "soap": "bench.soap_throughput",
    "rest-large-body": "bench.rest_large_body",
    "audit-append": "bench.audit_append",
    "audit-durability": "bench.audit_durability",
    "audit-verify": "bench.audit_verify",
    "audit-bodies": "bench.audit_bodies",
    "registry-load": "bench.registry_load",
    "json-validation": "bench.json_validation",
}


def _cmd_bench(args: argparse.Namespace) -> int:
    # The benchmarks live in the source tree (bench/), not in the installed package: they
    # start real processes and load generators, which an installed gateway never needs.
    if not Path("bench/__init__.py").is_file():
        print("obmin bench: run it from a source checkout (bench/ not found)", file=sys.stderr)
        return 1
    module = BENCHMARKS[args.name]
    return subprocess.call([sys.executable, "-m", module, *args.args])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obmin", description="inter-agency data exchange gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    serve.add_argument(
        "--dev-pki",
        type=Path,
        metavar="DIR",
        help="first start: create a development PKI in DIR unless it has one (the container)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes sharing the client ports (more than one needs Redis shared state)",
    )
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # gateway.workers
    serve.set_defaults(func=_cmd_serve)

    registry = sub.add_parser("registry", help="registry tools").add_subparsers(
        dest="registry_command", required=True
    )
    check = registry.add_parser("check", help="validate a registry directory")
    check.add_argument("directory", type=Path)
    check.set_defaults(func=_cmd_registry_check)

    pki = sub.add_parser("pki", help="development PKI").add_subparsers(
        dest="pki_command", required=True
    )

    def pki_command(
        name: str, help_text: str, func: Any, *, writes_keys: bool = True
    ) -> argparse.ArgumentParser:
        command = pki.add_parser(name, help=help_text)
        command.add_argument("--dir", type=Path, default=Path("var/pki"))
        command.add_argument(
            "--passphrase-file",
            type=Path,
            help="encrypt/decrypt keys with the first line of this file "
            "(or set OBMIN_PKI_PASSPHRASE)",
        )
        if writes_keys:
            command.add_argument(
                "--no-encryption",
                action="store_true",
                help="write private keys unencrypted (throwaway development PKIs only)",
            )
        command.set_defaults(func=func, writes_keys=writes_keys)
        return command

    init = pki_command("init", "create a development CA and gateway keys", _cmd_pki_init)
    init.add_argument("--instance", default="SEVDEIR-TEST")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    issue = pki_command("issue-member", "issue a member signing certificate", _cmd_pki_issue)
    issue.add_argument("member", help="INSTANCE/CLASS/MEMBERCODE")
    issue.add_argument("--name", required=True)
    issue.add_argument("--days", type=int, default=365)
    issue.add_argument("--ocsp-url")
    issue.add_argument("--crl-url")
    subsystem = pki_command(
        "issue-subsystem",
        "issue a subsystem signing certificate (to pin in the registry)",
        _cmd_pki_subsystem,
    )
    subsystem.add_argument("client", help="INSTANCE/CLASS/MEMBERCODE/SUBSYSTEM")
    subsystem.add_argument("--name", help="subject commonName (default: the identifier)")
    subsystem.add_argument("--days", type=int, default=365)
    subsystem.add_argument("--key-type", choices=("rsa", "ec", "ed25519"), default="rsa")
    subsystem.add_argument("--ocsp-url")
    subsystem.add_argument("--crl-url")
    pki_command("log-key", "create the audit log's Ed25519 key if it is missing", _cmd_pki_log_key)
    client_tls = pki_command(
        "issue-tls-client", "issue a subsystem's TLS client certificate", _cmd_pki_tls_client
    )
    client_tls.add_argument("client", help="INSTANCE/CLASS/MEMBERCODE/SUBSYSTEM")
    client_tls.add_argument("--days", type=int, default=365)
    server_tls = pki_command(
        "issue-tls-server", "issue the gateway's TLS server certificate", _cmd_pki_tls_server
    )
    server_tls.add_argument("--host", action="append", help="DNS name or IP (repeatable)")
    server_tls.add_argument("--days", type=int, default=825)
    ocsp = pki_command("issue-ocsp", "issue an OCSP responder certificate", _cmd_pki_ocsp)
    ocsp.add_argument("--days", type=int, default=365)
    revoke = pki_command(
        "revoke", "revoke a certificate (file or hex serial)", _cmd_pki_revoke, writes_keys=False
    )
    revoke.add_argument("target")
    revoke.add_argument("--reason", default="unspecified", choices=sorted(REVOCATION_REASONS))

    audit = sub.add_parser("audit", help="audit log tools").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser("verify", help="recompute the log's Merkle tree, check checkpoints")
    verify.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    verify.add_argument(
        "--vkey", help="the log's verifier key (name+id+key); default: keys.log_key"
    )
    verify.add_argument(
        "--archives", type=Path, help="directory of archive files to verify with the live log"
    )
    verify.add_argument("--workers", type=int, help="worker processes (default: one per CPU)")
    verify.add_argument(
        "--tsa-ca",
        type=Path,
        help="check timestamp tokens against this TSA CA (PEM); default: audit.tsa.ca_certificate",
    )
    verify.set_defaults(func=_cmd_audit_verify)
    verify_archive = audit.add_parser(
        "verify-archive", help="verify archive files alone, offline, with the log's public key"
    )
    verify_archive.add_argument("files", type=Path, nargs="+")
    verify_archive.add_argument("--vkey", help="the log's verifier key (name+id+key)")
    verify_archive.add_argument(
        "-c",
        "--config",
        type=Path,
        help="settings whose keys.log_key (and audit.tsa, audit.body_keys) to use",
    )
    verify_archive.add_argument(
        "--tsa-ca", type=Path, help="check timestamp tokens against this TSA CA (PEM)"
    )
    verify_archive.set_defaults(func=_cmd_audit_verify_archive)
    archive = audit.add_parser(
        "archive", help="move records past the retention age to archive files now"
    )
    archive.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    archive.add_argument(
        "--older-than-days", type=float, help="default: audit.retention_max_age_days"
    )
    archive.set_defaults(func=_cmd_audit_archive)
    query = audit.add_parser("query", help="list audit records")
    query.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    query.add_argument("--request-id")
    query.add_argument("--message-id")
    query.add_argument("--client")
    query.add_argument("--service")
    query.add_argument("--user-id")
    query.add_argument("--subject-id")
    query.add_argument("--status", help="HTTP status (digits) or fault code")
    query.add_argument("--direction", choices=("request", "response"))
    query.add_argument("--since", help="ISO 8601 time with zone")
    query.add_argument("--until", help="ISO 8601 time with zone")
    query.add_argument("--limit", type=int, default=20)
    query.set_defaults(func=_cmd_audit_query)
    export = audit.add_parser("export", help="write an exchange's evidence bundle (zip)")
    export.add_argument("request_id")
    export.add_argument("-o", "--output", type=Path, required=True)
    export.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    export.set_defaults(func=_cmd_audit_export)
    check_evidence = audit.add_parser("verify-evidence", help="verify an evidence bundle offline")
    check_evidence.add_argument("file", type=Path)
    check_evidence.add_argument("--certificate", type=Path, help="the gateway certificate (PEM)")
    check_evidence.add_argument("--vkey", help="the log's verifier key, if pinned instead")
    check_evidence.add_argument("--tsa-ca", type=Path, help="the TSA's CA certificate (PEM)")
    check_evidence.set_defaults(func=_cmd_audit_verify_evidence)
    body_key = audit.add_parser(
        "new-body-key", help="write a new random AES-256 key for encrypted bodies"
    )
    body_key.add_argument("file", type=Path)
    body_key.set_defaults(func=_cmd_audit_new_body_key)

    provider = sub.add_parser("example-provider", help="run the example provider service")
    provider.add_argument("--host", default="127.0.0.1")
    provider.add_argument("--port", type=int, default=8090)
    provider.set_defaults(func=_cmd_example_provider)

    bench = sub.add_parser("bench", help="run a benchmark from the source tree")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument(
        "args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (--services N)"
    )
    bench.set_defaults(func=_cmd_bench)

    demo = sub.add_parser("demo", help="send one signed request to a running gateway")
    demo.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    demo.add_argument("--pki", type=Path, default=Path("var/pki"))
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``obmin`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, GatewayError, RegistryError, SecurityError, AuditError) as exc:
        print(f"obmin: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
