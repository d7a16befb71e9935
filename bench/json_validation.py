"""Benchmark: the cost of validating JSON request bodies (SPEC 11) against plain parsing.

    obmin bench json-validation

Times `gateway.rest.json_body.check_json` and, as the baseline in the same run, the standard
library's `json.loads` of the same documents (the C scanner both use), for a small request
body (about 1 KB) and a large one (about 7 MB). Reports each as microseconds and as the ratio
against the baseline; numbers are machine-dependent, the ratio is the figure to compare.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from gateway.rest.json_body import JsonLimits, check_json


def _per_call(function: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(3):  # best of three runs: the machine is shared
        started = time.perf_counter()
        for _ in range(rounds):
            function()
        best = min(best, (time.perf_counter() - started) / rounds)
    return best


def main() -> None:
    small = json.dumps(
        {
            "rnokpp": "1234567890",
            "items": [{"id": i, "name": f"pet {i}", "v": i * 1.5} for i in range(30)],
        }
    ).encode()
    large = json.dumps(
        [{"id": i, "name": f"pet {i}", "v": i * 1.5, "tags": ["a", "b"]} for i in range(100_000)]
    ).encode()
    limits = JsonLimits(max_bytes=1 << 30)
    for name, document, rounds in (("small", small, 2000), ("large", large, 3)):
        baseline = _per_call(lambda d=document: json.loads(d), rounds)  # type: ignore[misc]
        checked = _per_call(
            lambda d=document: check_json(d, "application/json", limits),  # type: ignore[misc]
            rounds,
        )
        print(
            f"{name} ({len(document)} bytes): check_json {checked * 1e6:.0f} us, "
            f"json.loads {baseline * 1e6:.0f} us, ratio {checked / baseline:.2f}"
        )


if __name__ == "__main__":
    main()
