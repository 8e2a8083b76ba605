#!/usr/bin/env python3
"""How long the CLI's query commands take, start-up included, on a finished store.

  .venv/bin/python bench/cli_bench.py [--metadata outputs/metadata.sqlite] [--repeat 5]

Each command runs `--repeat` times in a fresh process (as a user types it); the median and the
slowest go to bench/CLI.md. Run `make run` first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argv: list[str], repeat: int) -> tuple[float, float, int]:
    seconds, code = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        code = subprocess.run([sys.executable, os.path.join(ROOT, "runner.py"), *argv], capture_output=True).returncode
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), max(seconds), code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metadata", default=os.path.join(ROOT, "outputs", "metadata.sqlite"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "CLI.md"))
    args = parser.parse_args(argv)
    if not os.path.exists(args.metadata):
        print(f"error: no store at {args.metadata} (run `make run` first)", file=sys.stderr)
        return 2
    store = ["--metadata", args.metadata]
    version = sorted(os.listdir(os.path.join(os.path.dirname(args.metadata), "serving")))[-1]
    commands = {
        "runs": ["runs", *store],
        "artifacts": ["artifacts", *store],
        "lineage <served version>": ["lineage", version, *store],
        "compare <served version> <served version>": ["compare", version, version, *store],
        "a one-line error (no such store)": ["runs", "--metadata", "/nonexistent.sqlite"],
        "--help": ["--help"],
    }
    # rollback writes (a record, and the serving folder when it rolls back): on a copy.
    scratch = tempfile.mkdtemp(prefix="cli-bench-")
    shutil.copy(args.metadata, os.path.join(scratch, "metadata.sqlite"))
    shutil.copytree(os.path.join(os.path.dirname(args.metadata), "serving"), os.path.join(scratch, "serving"))
    pushed = len(os.listdir(os.path.join(scratch, "serving")))
    name = "rollback (one version: nothing to roll back to)" if pushed == 1 else f"rollback ({pushed} versions)"
    commands[name] = [
        "rollback",
        "--metadata",
        os.path.join(scratch, "metadata.sqlite"),
        "--model-dir",
        os.path.join(scratch, "serving"),
    ]
    rows = []
    for name, command in commands.items():
        median, slowest, code = timed(command, args.repeat)
        rows.append(f"| `{name}` | {median:.2f} | {slowest:.2f} | {code} |")
        print(rows[-1], flush=True)
    with open(args.output, "w") as f:
        f.write(
            "\n".join(
                [
                    "# CLI start-up and query times",
                    "",
                    f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.machine()}, {os.cpu_count()} cores, "
                    f"`python bench/cli_bench.py --repeat {args.repeat}` on the store of a default `make run`. "
                    "Each command in a fresh process; seconds of wall time.",
                    "",
                    "| command | median s | slowest s | exit |",
                    "|---|---|---|---|",
                    *rows,
                    "",
                ]
            )
        )
    shutil.rmtree(scratch)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
