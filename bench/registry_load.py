"""Benchmark: load a registry of 100,000 services and time the per-request lookups (SPEC 12, P5).

    .venv/bin/python bench/registry_load.py [--services 100000] [--providers 1000]

Generates a registry directory in a temporary directory (one CA, N providers with one
subsystem each, a client subsystem per provider, one access rule per service, half of them
through a group, a tenth of them REST with endpoint rules), loads it with
`registry.load_registry`, then times `find_client`, `find_service` and `is_allowed` on
random identifiers. Target: load in under 10 s; lookups independent of registry size.
"""

from __future__ import annotations

import argparse
import datetime
import random
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry import ClientId, ServiceId, load_registry

INSTANCE = "SEVDEIR-TEST"


def write_ca(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def provider(i: int) -> str:
    return f"{INSTANCE}/GOV/{i:08d}/REGISTRY"


def client(i: int) -> str:
    return f"{INSTANCE}/GOV/{i:08d}/CLIENT"


def generate(directory: Path, services: int, providers: int) -> None:
    write_ca(directory / "ca.crt")
    (directory / "00-instance.yaml").write_text(
        f"instance: {INSTANCE}\n"
        "trust_anchors:\n  - {name: bench, certificate: ca.crt}\n"
        "groups:\n  - code: EVEN\n    members:\n"
        + "".join(f"      - {client(i)}\n" for i in range(0, providers, 2)),
        encoding="utf-8",
    )
    members = ["members:\n"]
    for i in range(providers):
        members.append(
            f"  - id: {INSTANCE}/GOV/{i:08d}\n    name: Agency {i}\n    subsystems:\n"
            f"      - {{code: REGISTRY}}\n      - {{code: CLIENT, signature_policy: standard}}\n"
        )
    (directory / "10-members.yaml").write_text("".join(members), encoding="utf-8")
    lines = ["services:\n"]
    rules = ["access:\n"]
    for n in range(services):
        p = n % providers
        rest = n % 10 == 0
        lines.append(
            f"  - provider: {provider(p)}\n    code: service{n}\n    version: v1\n"
            f"    type: {'rest' if rest else 'soap'}\n"
            f"    url: http://127.0.0.1:8090/s/{n}\n    timeout: {{connect: 2, total: 10}}\n"
        )
        grant = (
            "    groups: [EVEN]\n" if n % 2 else f"    clients: [{client((p + 1) % providers)}]\n"
        )
        endpoints = "    endpoints:\n      - {method: GET, path: /items/*}\n" if rest else ""
        rules.append(f"  - provider: {provider(p)}\n    service: service{n}\n{grant}{endpoints}")
    (directory / "20-services.yaml").write_text("".join(lines), encoding="utf-8")
    (directory / "30-access.yaml").write_text("".join(rules), encoding="utf-8")


def per_call(label: str, func: object, args: list[tuple[object, ...]]) -> None:
    assert callable(func)
    start = time.perf_counter()
    for item in args:
        func(*item)
    elapsed = time.perf_counter() - start
    print(f"{label:<28} {elapsed / len(args) * 1e6:8.2f} us per call ({len(args)} calls)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=100_000)
    parser.add_argument("--providers", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="obmin-bench-registry-") as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        generate(directory, args.services, args.providers)
        size = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        print(f"generated {args.services} services in {time.perf_counter() - start:.1f} s")
        print(f"registry files: {size:.1f} MB")
        start = time.perf_counter()
        registry = load_registry(directory)
        load_time = time.perf_counter() - start
        counts = registry.counts
        print(
            f"load_registry: {load_time:.2f} s "
            f"({counts.services} services, {counts.access_rules} access rules, "
            f"{counts.subsystems} subsystems) -> target < 10 s: "
            f"{'PASS' if load_time < 10 else 'FAIL'}"
        )
        rng = random.Random(1)
        picks = [rng.randrange(args.services) for _ in range(100_000)]
        services = [ServiceId.parse(f"{provider(n % args.providers)}/service{n}/v1") for n in picks]
        clients = [ClientId.parse(client((n % args.providers + 1) % args.providers)) for n in picks]
        per_call("find_client", registry.find_client, [(c,) for c in clients])
        per_call("find_service", registry.find_service, [(s,) for s in services])
        per_call(
            "is_allowed (SOAP)",
            registry.is_allowed,
            [(c, s) for c, s, n in zip(clients, services, picks, strict=True) if n % 10],
        )
        per_call(
            "is_allowed (REST endpoint)",
            registry.is_allowed,
            [
                (c, s, "GET", "/items/42")
                for c, s, n in zip(clients, services, picks, strict=True)
                if n % 10 == 0
            ],
        )
        per_call("ServiceId.parse", ServiceId.parse, [(str(s),) for s in services])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
