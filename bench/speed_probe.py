"""How fast this machine is right now: a fixed pure-Python loop, timed.

The machines here change speed by up to 2.5x between spells (the same code, the same data); a
benchmark's figures are comparable only side by side in one invocation. Run this before and
after a benchmark or a test-suite timing to record which spell it ran in:

    python3 bench/speed_probe.py

Seen on 2-core machines on 2026-12-02: 1.37-4.31 s in the morning, 0.85-0.96 s in the afternoon
(the fresh-clone suite 15 min 30 s against 6 min 31 s: docs/benchmarks.md).
"""

from __future__ import annotations

import time


def probe(n: int = 20_000_000) -> float:
    """Seconds for `n` iterations of a small integer loop (no imports, no I/O)."""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    assert total > 0
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"speed probe: {probe():.2f} s")
