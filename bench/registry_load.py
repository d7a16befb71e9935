"""Benchmark: load registries of 10,000 and 100,000 services and time the per-request lookups
(SPEC 12, P5: load under 10 s, lookups O(1)).

    .venv/bin/obmin bench registry-load [--services 10000 100000] [--providers N] [--lookups N]

For each size, generates a registry directory in a temporary directory (one CA, N/100
providers with one subsystem each, a client subsystem per provider, one access rule per
service, half of them through a group, a tenth of them REST with endpoint rules), loads it with
`registry.load_registry`, then times `find_client`, `find_service` and `is_allowed` on random
identifiers. The largest registry is also loaded with the exact YAML path alone
(``fast_yaml=False``), the baseline for the fast path's gain. Figures are reported as ratios
within this run: lookup cost at the largest size over the smallest (about 1: O(1)), load time
over registry size (about 1: linear), fast load over exact load.
"""

from __future__ import annotations

import argparse
import datetime
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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


def per_call(func: Callable[..., object], args: list[tuple[object, ...]]) -> float:
    """Microseconds per call of ``func`` over ``args`` (best of three passes)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for item in args:
            func(*item)
        best = min(best, time.perf_counter() - start)
    return best / len(args) * 1e6


@dataclass(frozen=True)
class Result:
    """One registry size: its load time and the cost of each lookup."""

    services: int
    load_seconds: float
    lookups_us: dict[str, float]


def measure(size: int, providers: int, lookups: int, *, exact: bool) -> tuple[Result, float]:
    """Generate, load and look up in a registry of ``size`` services; the exact-path load
    time too when ``exact`` (else 0)."""
    with tempfile.TemporaryDirectory(prefix="obmin-bench-registry-") as tmp:
        directory = Path(tmp)
        generate(directory, size, providers)
        megabytes = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        start = time.perf_counter()
        registry = load_registry(directory)
        load_time = time.perf_counter() - start
        counts = registry.counts
        print(
            f"{size:>7} services: load_registry {load_time:6.2f} s ({megabytes:.1f} MB, "
            f"{counts.access_rules} access rules, {counts.subsystems} subsystems)"
        )
        exact_time = 0.0
        if exact:
            start = time.perf_counter()
            load_registry(directory, fast_yaml=False)
            exact_time = time.perf_counter() - start
            print(f"{size:>7} services: load_registry, exact YAML path only {exact_time:6.2f} s")
        rng = random.Random(1)
        picks = [rng.randrange(size) for _ in range(lookups)]
        services = [ServiceId.parse(f"{provider(n % providers)}/service{n}/v1") for n in picks]
        clients = [ClientId.parse(client((n % providers + 1) % providers)) for n in picks]
        pairs = list(zip(clients, services, picks, strict=True))
        timings = {
            "find_client": per_call(registry.find_client, [(c,) for c in clients]),
            "find_service": per_call(registry.find_service, [(s,) for s in services]),
            "is_allowed (SOAP)": per_call(
                registry.is_allowed, [(c, s) for c, s, n in pairs if n % 10]
            ),
            "is_allowed (REST endpoint)": per_call(
                registry.is_allowed,
                [(c, s, "GET", "/items/42") for c, s, n in pairs if n % 10 == 0],
            ),
            "ServiceId.parse": per_call(ServiceId.parse, [(str(s),) for s in services]),
        }
        return Result(size, load_time, timings), exact_time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--providers", type=int, help="default: services / 100")
    parser.add_argument("--lookups", type=int, default=100_000)
    args = parser.parse_args()
    sizes = sorted(set(args.services))
    results: list[Result] = []
    exact = 0.0
    for size in sizes:
        providers = args.providers or max(2, size // 100)
        result, exact_time = measure(size, providers, args.lookups, exact=size == sizes[-1])
        results.append(result)
        exact = exact_time or exact
    small, large = results[0], results[-1]
    # ServiceId.parse never touches the registry: its ratio is what a larger working set (CPU
    # caches) and the machine's load do to any code; the lookups are also given over it.
    control = large.lookups_us["ServiceId.parse"] / small.lookups_us["ServiceId.parse"]
    print(
        f"\nlookup cost, us per call: {small.services} | {large.services} services | ratio"
        " | ratio over ServiceId.parse's"
    )
    for name, small_us in small.lookups_us.items():
        ratio = large.lookups_us[name] / small_us
        print(
            f"  {name:<28} {small_us:8.2f} | {large.lookups_us[name]:8.2f} | {ratio:5.2f}"
            f" | {ratio / control:5.2f}"
        )
    if large is not small:
        per_service = (large.load_seconds / large.services) / (small.load_seconds / small.services)
        print(f"load time per service, {large.services} over {small.services}: {per_service:.2f}")
    if exact:
        print(
            f"fast YAML path over exact path, {large.services} services: "
            f"{large.load_seconds / exact:.2f} ({large.load_seconds:.2f} s / {exact:.2f} s)"
        )
    if large.services >= 100_000:
        verdict = "PASS" if large.load_seconds < 10 else "FAIL"
        print(
            f"load of {large.services} services: {large.load_seconds:.2f} s "
            f"-> target < 10 s: {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
