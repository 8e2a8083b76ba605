#!/usr/bin/env python3
"""Batch prediction speed: this checkout's `serving/batch.py` (in this process, the default,
and as a Beam pipeline on the in-memory DirectRunner) against the code before the
one-validator change, side by side in one run, on the same model and the same input.

  .venv/bin/python bench/batch_bench.py --model outputs/serving/<version> [--copies 10] [--before 53d4188]

The input is the bundled CSV repeated `--copies` times (10: 150,020 rows). "Before" is
serving/batch.py and serving/model_store.py as they were at `--before` (git show), loaded as a
package of their own beside this checkout's modules/; it ran on the in-memory DirectRunner.
This checkout runs `predict()` both ways: in this process (the default of `runner.py
predict`) and with the DirectRunner's arguments; the time is predict()'s own,
from reading the files to the written outputs (the model's load included), not the Python
start. Results are printed and appended to bench/SERVING.md.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import replace_section, stamp  # noqa: E402

DATA = os.path.join(ROOT, "data", "taxi.csv")
BEFORE = "53d4188"  # main before this change


def old_batch(commit: str) -> types.ModuleType:
    """serving/batch.py (and the model_store it imports) as they were at `commit`."""
    folder = tempfile.mkdtemp(prefix="old-serving-")
    package = os.path.join(folder, "old_serving")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in ("batch", "model_store"):
        source = subprocess.run(
            ["git", "-C", ROOT, "show", f"{commit}:serving/{name}.py"], capture_output=True, text=True, check=True
        ).stdout
        with open(os.path.join(package, f"{name}.py"), "w") as f:
            f.write(source.replace("from serving.", "from old_serving."))
    sys.path.insert(0, folder)
    import old_serving.batch

    return old_serving.batch


def rows_in(path: str) -> int:
    with open(path) as f:
        return sum(1 for _ in f) - 1


def make_input(copies: int, folder: str) -> str:
    with open(DATA) as f:
        header, *body = f.read().splitlines()
    path = os.path.join(folder, "input.csv")
    with open(path, "w") as f:
        f.write("\n".join([header, *(body * copies)]) + "\n")
    return path


def timed(module, model: str, path: str, out: str, **kwargs) -> tuple[float, int, int]:
    start = time.perf_counter()
    module.predict(model, path, out, **kwargs)
    seconds = time.perf_counter() - start
    scored = sum(max(rows_in(f), 0) for f in glob.glob(os.path.join(out, "predictions*.csv")))
    dead = sum(1 for f in glob.glob(os.path.join(out, "dead_letter*.jsonl")) for _ in open(f))
    return seconds, scored, dead


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a pushed SavedModel folder (outputs/serving/<version>)")
    parser.add_argument("--copies", type=int, default=10, help="the bundled CSV this many times (default: %(default)s)")
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with (default: %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to bench/SERVING.md")
    args = parser.parse_args(argv)

    from serving import batch as new

    old = old_batch(args.before)
    work = tempfile.mkdtemp(prefix="batch-bench-")
    path = make_input(args.copies, work)
    total = rows_in(path)
    results = {}
    sides = (
        ("before", old, {}),
        ("after, Beam DirectRunner", new, {"beam_args": new.DEFAULT_BEAM_ARGS}),
        ("after, in process (default)", new, {}),
    )
    for n, (label, module, kwargs) in enumerate(sides):
        seconds, scored, dead = timed(module, args.model, path, os.path.join(work, str(n)), **kwargs)
        results[label] = (seconds, scored, dead)
        print(f"{label}: {total:,} rows in {seconds:.1f} s = {total / seconds:,.0f} rows/s (scored {scored:,}, dead {dead:,})")
    if not args.no_write:
        command = f"python bench/batch_bench.py --model <a pushed model> --copies {args.copies} --before {args.before}"
        replace_section(
            os.path.join(ROOT, "bench", "SERVING.md"),
            "## Batch prediction, before and after the one validator",
            [
                "",
                f"{stamp(command)}: `predict()` on {total:,} rows (the bundled CSV x{args.copies}), side by "
                "side in one process: the code before the change (on the in-memory DirectRunner), and this "
                "code both as a Beam pipeline (the same DirectRunner) and in this process (`runner.py "
                "predict`'s default; the model scores a chunk on a second thread while the next is parsed).",
                "",
                "| code | seconds | rows/s | scored | dead letters |",
                "|---|---|---|---|---|",
                *(
                    f"| {label.replace('before', f'before ({args.before})')} | {r[0]:.1f} | {total / r[0]:,.0f} | "
                    f"{r[1]:,} | {r[2]:,} |"
                    for label, r in results.items()
                ),
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
