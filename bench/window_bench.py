#!/usr/bin/env python3
"""A daily run against its window: five spans arriving one a day, a window of three, with
tf.Transform's analyzer cache on (the default) and off, side by side in one invocation.

  .venv/bin/python bench/window_bench.py [--spans 5] [--window 3] [--rows 3000]

The spans are consecutive blocks of `--rows` rows of the bundled CSV (span N: rows (N-1)*rows
to N*rows). Each series has its own store and pipeline root; the two series are interleaved
run by run (span 1 with the cache, span 1 without, span 2 with, ...), each run in a fresh
process, so that drift in the machine hits both. Recorded per run: wall time of the process,
the pipeline alone, Transform, Trainer and Evaluator (from ML Metadata), whether Transform read
an analyzer cache, the spans trained on, whether a baseline was evaluated, and the eval AUC.
The figure of merit is the last run's pipeline time over the first run's, per series.
Results go to bench/WINDOW.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import execution_seconds, load_tfx, stamp, write_page  # noqa: E402

SCHEMA = os.path.join(ROOT, "schemas", "schema.pbtxt")
DATA = os.path.join(ROOT, "data", "taxi.csv")
SERIES = {"cache on": True, "cache off": False}


def child(spec: dict) -> dict:
    """One run of the pipeline on the newest span (in this fresh process)."""
    from ops.evaluation import sliced_metrics
    from ops.queries import open_metadata
    from pipeline import lineage
    from pipeline.resolution import CACHE_FROM
    from runners import local

    cfg = local.build_config(spec["out"], spec["data"], SCHEMA, train_window_spans=spec["window"], analyzer_cache=spec["cache"])
    load_tfx()  # imports before the clock
    start = time.time()
    summary = local.run(cfg)
    seconds = time.time() - start
    md = open_metadata(cfg.metadata_uri, cfg.pipeline_name)
    run = md.latest_run()
    graph = run.output("transform", "transform_graph")
    evaluation = run.output("evaluator", "evaluation")
    blessing = run.output("evaluator", "blessing")  # TFX records the baseline on it
    return {
        "pipeline": round(seconds, 1),
        **{c: execution_seconds(md, run, c) for c in ("transform", "trainer", "evaluator")},
        "cache_read": bool(graph.get(CACHE_FROM)),
        "window": len(json.loads(graph.get(lineage.WINDOW))),  # spans trained on
        "baseline": bool(blessing.get("baseline_model")),
        "pushed": bool(summary["pushed_model"]),
        "auc": round(sliced_metrics(evaluation.uri)["overall"]["auc"], 4),
    }


def run_child(spec: dict) -> dict:
    start = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"run failed ({spec}):\n{done.stderr[-3000:]}")
    return {"process": round(time.time() - start, 1), **json.loads(done.stdout.strip().splitlines()[-1])}


def write_span(data: str, span: int, rows: int) -> None:
    import pandas as pd

    frame = pd.read_csv(DATA, dtype=str, keep_default_na=False).iloc[(span - 1) * rows : span * rows]
    os.makedirs(os.path.join(data, f"span-{span}"))
    frame.to_csv(os.path.join(data, f"span-{span}", "taxi.csv"), index=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=5)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3000, help="rows per span (default: %(default)s)")
    parser.add_argument("--workdir", help="default: a temporary folder, removed at the end")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    work = args.workdir or tempfile.mkdtemp(prefix="window-bench-")
    results: dict[str, list[dict]] = {name: [] for name in SERIES}
    for span in range(1, args.spans + 1):
        for name, cache in SERIES.items():
            root = os.path.join(work, name.replace(" ", "-"))
            write_span(os.path.join(root, "data"), span, args.rows)
            spec = {"out": os.path.join(root, "out"), "data": os.path.join(root, "data"), "window": args.window, "cache": cache}
            results[name].append(run_child(spec))
            print(f"span {span}, {name}: {results[name][-1]}", flush=True)

    lines = [
        f"{stamp(f'python bench/window_bench.py --spans {args.spans} --window {args.window} --rows {args.rows}')}: one span of "
        f"{args.rows:,} rows a day, the newest {args.window} passed spans trained on, each run in a fresh process, "
        "the two series interleaved run by run.",
        "",
        "| series | span | spans trained on | analyzer cache read | baseline | process (s) | pipeline (s) | Transform (s) | "
        "Trainer (s) | Evaluator (s) | eval AUC |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        for span, r in enumerate(runs, 1):
            lines.append(
                f"| {name} | {span} | {r['window']} | {'yes' if r['cache_read'] else 'no'} | "
                f"{'yes' if r['baseline'] else 'no'} | {r['process']} | {r['pipeline']} | {r['transform']} | "
                f"{r['trainer']} | {r['evaluator']} | {r['auc']} |"
            )
    lines.append("")
    for name, runs in results.items():
        first, last = runs[0], runs[-1]
        lines.append(
            f"- {name}: run {args.spans} / run 1 = {last['pipeline'] / first['pipeline']:.2f}x of the pipeline "
            f"({last['pipeline']} s / {first['pipeline']} s), Transform {last['transform'] / first['transform']:.2f}x."
        )
    write_page(os.path.join(ROOT, "bench", "WINDOW.md"), ["# A daily run against its window", "", *lines, ""])
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
