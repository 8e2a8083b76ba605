"""How fast this machine is right now: a fixed pure-Python loop, timed.

The machines here change speed by a third within an hour (the same code, the same data); a
benchmark's figures are comparable only side by side in one invocation. Run this before and
after a benchmark or a test-suite timing to record which spell it ran in:

    python3 bench/speed_probe.py        # ~3 s; 2.6-3.0 s on a fast spell, 3.5-3.7 s on a slow one (2026-12-02)
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
