"""The CPU cost of body policy ``encrypted`` against ``digest`` (SPEC 8).

For each body size, the baseline is what policy ``digest`` already does per body (SHA-512);
``encrypted`` replaces it with `BodyKeyring.seal`: the same SHA-512 (the envelope is bound
to the digest) and AES-256-GCM. Both run in the same invocation on the same bodies, so the
ratio is what matters (0.5: encrypting halves the audit stage's body throughput).

    .venv/bin/python bench/audit_bodies.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.audit.bodies import body_digest
from gateway.audit.body_crypto import BodyKeyring

SIZES = (2 * 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024)


def _rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``work`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work()
        count += 1
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args()
    keyring = BodyKeyring({"k1": os.urandom(32)}, "k1")
    print(f"{'body':>10} {'digest MB/s':>12} {'encrypted MB/s':>15} {'ratio':>6}")
    for size in SIZES:
        body = os.urandom(size)
        rid = str(uuid.uuid4())
        digest = _rate(lambda body=body: body_digest(body), args.seconds)
        sealed = _rate(lambda body=body, rid=rid: keyring.seal(body, rid, "request"), args.seconds)
        megabytes = size / 1e6
        print(
            f"{size:>10} {digest * megabytes:>12.0f} {sealed * megabytes:>15.0f}"
            f" {sealed / digest:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
