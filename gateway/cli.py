"""The ``obmin`` command line.

Every failure ends with one message naming the file and key at fault and a non-zero exit;
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path

import structlog
from aiohttp import web

from gateway.audit import AuditError
from gateway.errors import GatewayError
from gateway.settings import Settings, SettingsError, load_settings
from registry.errors import RegistryError
from security.errors import SecurityError

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


async def _serve(settings: Settings) -> None:
    from gateway.admin import create_admin_app
    from gateway.reload import reload_registry
    from gateway.server import create_client_app
    from gateway.state import GatewayState

    state = GatewayState(settings)
    client = web.AppRunner(create_client_app(settings, state), handle_signals=False)
    admin = web.AppRunner(create_admin_app(state), handle_signals=False)
    await client.setup()
    await admin.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: state.spawn(reload_registry(state, "signal"), "registry-reload")
    )
    try:
        await web.TCPSite(client, settings.client.host, settings.client.port).start()
        await web.TCPSite(admin, settings.admin.host, settings.admin.port).start()
        structlog.get_logger("obmin").info(
            "gateway started",
            client_port=f"http://{settings.client.host}:{settings.client.port}/",
            admin_port=f"http://{settings.admin.host}:{settings.admin.port}/",
        )
        await stop.wait()
    finally:
        # Stop accepting, let in-flight exchanges finish, then close the audit store.
        await admin.cleanup()
        await client.cleanup()


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    _configure_logging(settings.log_level)
    asyncio.run(_serve(settings))
    return 0


def _cmd_registry_check(args: argparse.Namespace) -> int:
    from registry import check_registry

    code, output = check_registry(args.directory)
    print(output)
    return code


def _cmd_pki_init(args: argparse.Namespace) -> int:
    from security import init_pki

    layout = init_pki(args.dir, instance=args.instance, force=args.force)
    print(f"development PKI created in {args.dir}: CA {layout.ca_cert}")
    return 0


def _cmd_pki_issue(args: argparse.Namespace) -> int:
    from registry.identifiers import MemberId
    from security import issue_member_cert

    issued = issue_member_cert(
        args.dir, MemberId.parse(args.member), name=args.name, days=args.days
    )
    print(f"issued {issued.cert_path} (key {issued.key_path})")
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


def _cmd_audit_query(args: argparse.Namespace) -> int:
    from gateway.audit import query_records_cli

    settings = load_settings(args.config)
    print(
        asyncio.run(
            query_records_cli(
                settings.audit,
                request_id=args.request_id,
                message_id=args.message_id,
                client=args.client,
                limit=args.limit,
            )
        )
    )
    return 0


BENCHMARKS = {
    "soap": "bench.soap_throughput",
    "rest-large-body": "bench.rest_large_body",
    "audit-append": "bench.audit_append",
    "registry-load": "bench.registry_load",
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
    init = pki.add_parser("init", help="create a development CA and gateway certificate")
    init.add_argument("--dir", type=Path, default=Path("var/pki"))
    init.add_argument("--instance", default="SEVDEIR-TEST")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=_cmd_pki_init)
    issue = pki.add_parser("issue-member", help="issue a member signing certificate")
    issue.add_argument("member", help="INSTANCE/CLASS/MEMBERCODE")
    issue.add_argument("--name", required=True)
    issue.add_argument("--dir", type=Path, default=Path("var/pki"))
    issue.add_argument("--days", type=int, default=365)
    issue.set_defaults(func=_cmd_pki_issue)

    audit = sub.add_parser("audit", help="audit log tools").add_subparsers(
        dest="audit_command", required=True
    )
    query = audit.add_parser("query", help="list audit records")
    query.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    query.add_argument("--request-id")
    query.add_argument("--message-id")
    query.add_argument("--client")
    query.add_argument("--limit", type=int, default=20)
    query.set_defaults(func=_cmd_audit_query)

    provider = sub.add_parser("example-provider", help="run the example provider service")
    provider.add_argument("--host", default="127.0.0.1")
    provider.add_argument("--port", type=int, default=8090)
    provider.set_defaults(func=_cmd_example_provider)

    bench = sub.add_parser("bench", help="run a benchmark from the source tree")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("args", nargs="*", help="arguments passed to the benchmark")
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
