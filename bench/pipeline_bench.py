#!/usr/bin/env python3
"""Pipeline benchmark: this project against TFX's own Chicago taxi example, side by side.

  .venv/bin/python bench/pipeline_bench.py                 # peer + ours at 1x, reruns, scale series
  .venv/bin/python bench/pipeline_bench.py --sizes 1 10    # a shorter scale series
  .venv/bin/python bench/pipeline_bench.py --smoke         # smallest run, no peer (the test suite's)

Each pipeline runs in its own fresh process, pipeline root and SQLite metadata store, with
LocalDagRunner. Recorded per run: wall time of the process (interpreter start-up included)
and of the pipeline alone, time per component (from the executions' records in ML Metadata),
peak memory (sum of the resident set of the process tree, sampled every 0.1 s), and the pushed
model's accuracy and AUC on the same rows: the rows that are in *both* pipelines' eval splits,
so neither model trained on them.

The peer is `tfx/examples/chicago_taxi_pipeline/taxi_pipeline_native_keras.py` from the
installed tfx package, unmodified: its `_create_pipeline` with its own Beam arguments
(DirectRunner multi_processing), its module file, run by LocalDagRunner with
TF_USE_LEGACY_KERAS=1.

Reruns (ours): the same pipeline unchanged (every component should be a cache hit), and with
only the learning rate changed (only the Trainer and what follows should run).

Scale series (ours): the real rows repeated k times; copy i has trip_start_timestamp shifted
back by i * shift, so copies are distinct rows and hash to their own splits. Back, not ahead:
the data gate refuses events more than a day after the run (TIME_IN_FUTURE), and the data
ends in 2016. The shift is 10^8 s, or less (a multiple of the data's 900 s resolution) where
k copies would otherwise run past the start of the schema's int_domain for the timestamp
(1970), which the gate also refuses. Run with the Beam DirectRunner in_memory (the project's
default) and multi_processing.

Results go to bench/RESULTS.md (tables, date, machine, command) and bench/RESULTS.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import load_tfx  # noqa: E402  (after the path)
from pipeline.configs import BEAM_MODES  # noqa: E402

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = os.path.join(ROOT, "data", "taxi.csv")
SCHEMA = os.path.join(ROOT, "schemas", "schema.pbtxt")
TIMESTAMP_SHIFT = 10**8
TIMESTAMP_RESOLUTION = 900
MODES = BEAM_MODES  # the DirectRunner modes, as the pipeline configures them


# --- In the child process: one pipeline run ----------------------------------------------------


def component_times(metadata_uri: str, pipeline_name: str) -> dict[str, dict]:
    """Seconds per component of the latest run, from ML Metadata's execution records."""
    from ops.queries import open_metadata

    md = open_metadata(metadata_uri, pipeline_name)
    run = md.latest_run()
    out = {}
    for name, c in run.components.items():
        e = md.graph.executions[str(c.execution_id)]
        out[name] = {"seconds": round((e.updated_ms - e.created_ms) / 1000, 2), "state": c.state}
    return out


def child_ours(args) -> dict:
    from modules.hparams import HParams
    from runners import local

    overrides = {"beam_pipeline_args": MODES[args.mode]}
    if args.train_steps:
        overrides["train_steps"] = args.train_steps
    if args.learning_rate:
        overrides["hparams"] = HParams(learning_rate=args.learning_rate)
    cfg = local.build_config(args.root, args.data, SCHEMA, **overrides)
    load_tfx()  # imports before the clock
    start = time.time()
    summary = local.run(cfg)
    return {
        "pipeline_seconds": round(time.time() - start, 1),
        "components": component_times(cfg.metadata_uri, cfg.pipeline_name),
        "pushed": summary["pushed_model"],
        "examples": _examples_uri(cfg.metadata_uri, cfg.pipeline_name),
        "baseline": _baseline_figures(cfg.metadata_uri, cfg.pipeline_name),
    }


def _baseline_figures(metadata_uri: str, pipeline_name: str) -> str:
    """How the latest run's Evaluator had its baseline's figures: "none" (no baseline),
    "evaluated" (TFMA evaluated both models) or "recorded" (read from the baseline's own
    evaluation on the same data: pipeline/recorded_baseline.py)."""
    from ops.queries import open_metadata, prop
    from pipeline import lineage

    run = open_metadata(metadata_uri, pipeline_name).latest_run()
    blessing, evaluation = run.output("evaluator", "blessing"), run.output("evaluator", "evaluation")
    if blessing is None or evaluation is None or not prop(blessing, lineage.BASELINE_URI):
        return "none"
    return "recorded" if prop(evaluation, lineage.BASELINE_EVALUATION) else "evaluated"


def child_peer(args) -> dict:
    from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as peer
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    pipeline = peer._create_pipeline(  # noqa: SLF001 - the example's own factory, unmodified
        pipeline_name="chicago_taxi_native_keras",
        pipeline_root=os.path.join(args.root, "tfx"),
        data_root=args.data,
        module_file=os.path.join(os.path.dirname(peer.__file__), "taxi_utils_native_keras.py"),
        serving_model_dir=os.path.join(args.root, "serving"),
        metadata_path=os.path.join(args.root, "metadata.sqlite"),
        beam_pipeline_args=peer._beam_pipeline_args,  # noqa: SLF001
    )
    start = time.time()
    LocalDagRunner().run(pipeline)
    uri = os.path.join(args.root, "metadata.sqlite")
    versions = sorted(glob.glob(os.path.join(args.root, "serving", "*")))
    return {
        "pipeline_seconds": round(time.time() - start, 1),
        "components": component_times(uri, "chicago_taxi_native_keras"),
        "pushed": versions[-1] if versions else None,
        "examples": _examples_uri(uri, "chicago_taxi_native_keras"),
    }


def _examples_uri(metadata_uri: str, pipeline_name: str) -> str:
    from ops.queries import open_metadata

    run = open_metadata(metadata_uri, pipeline_name).latest_run()
    return run.output("CsvExampleGen" if pipeline_name.startswith("chicago") else "example_gen", "examples").uri


# --- In the parent: processes, memory, quality -------------------------------------------------


def run_child(kind: str, root: str, data: str, mode: str = "in_memory", **extra) -> dict:
    """Runs one pipeline in a fresh process; returns its report plus wall time and peak memory."""
    import psutil

    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--root", root, "--data", data, "--mode", mode]
    for key, value in extra.items():
        if value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    os.makedirs(root, exist_ok=True)
    log = open(os.path.join(root, "bench.log"), "w")
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    peak = [0]

    def sample() -> None:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.time() - start
    sampler.join()
    log.close()
    if proc.returncode:
        tail = open(os.path.join(root, "bench.log")).read()[-3000:]
        raise RuntimeError(f"{kind} run failed (exit {proc.returncode}); log {root}/bench.log:\n{tail}")
    report = json.loads(out.strip().splitlines()[-1])
    report.update(wall_seconds=round(wall, 1), peak_rss_mb=round(peak[0] / 2**20))
    return report


def _eval_rows(examples_uri: str) -> dict[bytes, bytes]:
    """The eval split's rows keyed by their feature values (order-independent)."""
    import tensorflow as tf

    rows = {}
    for record in tf.data.TFRecordDataset(glob.glob(os.path.join(examples_uri, "Split-eval", "*.gz")), compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        key = repr(sorted((k, str(v).strip()) for k, v in example.features.feature.items())).encode()
        rows[key] = record.numpy()
    return rows


def quality(runs: dict[str, dict]) -> dict[str, dict]:
    """Accuracy and AUC of each pushed model on the rows in every pipeline's eval split."""
    import numpy as np
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    splits = [_eval_rows(r["examples"]) for r in runs.values()]
    common = sorted(set.intersection(*(set(s) for s in splits)))
    serialized = [splits[0][k] for k in common]
    labels = []
    for record in serialized:
        f = tf.train.Example.FromString(record).features.feature
        fare = f["fare"].float_list.value[0] if f["fare"].float_list.value else 0.0
        tips = f["tips"].float_list.value[0] if f["tips"].float_list.value else 0.0
        labels.append(int(fare > 0 and tips > 0.2 * fare))
    labels = np.array(labels)
    out = {}
    for name, run in runs.items():
        model = tf.saved_model.load(run["pushed"])
        fn = model.signatures["serving_default"]
        scores = []
        for start in range(0, len(serialized), 1000):
            result = fn(examples=tf.constant(serialized[start : start + 1000]))
            scores.append(next(iter(result.values())).numpy().reshape(-1))
        scores = np.concatenate(scores)
        out[name] = {
            "rows": len(common),
            "accuracy": round(float(((scores > 0.5) == labels).mean()), 4),
            "auc": round(float(roc_auc_score(labels, scores)), 4),
        }
    return out


def timestamp_shift(factor: int, data_min: int) -> int:
    """The shift back between copies: 10^8 s, or less so the last copy stays in the schema's
    domain."""
    if factor <= 1:
        return 0
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    with open(SCHEMA) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    domain_min = next(f.int_domain.min for f in schema.feature if f.name == "trip_start_timestamp")
    room = (data_min - domain_min) // (factor - 1)
    return min(TIMESTAMP_SHIFT, room // TIMESTAMP_RESOLUTION * TIMESTAMP_RESOLUTION)


SMOKE_ROWS = 3000


def smoke_data(work: str) -> tuple[str, int]:
    """The first SMOKE_ROWS rows: enough for every component to do real work, quickly."""
    folder = os.path.join(work, "data-smoke")
    os.makedirs(folder, exist_ok=True)
    with open(DATA) as f, open(os.path.join(folder, "taxi.csv"), "w") as out:
        for i, line in enumerate(f):
            if i > SMOKE_ROWS:
                break
            out.write(line)
    return folder, 0


def scaled_data(work: str, factor: int) -> tuple[str, int]:
    """`factor` copies of the real rows, each copy's timestamps shifted back; the folder and the
    shift."""
    folder = os.path.join(work, f"data-{factor}x")
    os.makedirs(folder, exist_ok=True)
    if factor == 1:
        shutil.copy(DATA, os.path.join(folder, "taxi.csv"))
        return folder, 0
    with open(DATA) as f:
        header, *lines = f.read().splitlines()
    column = header.split(",").index("trip_start_timestamp")
    rows = [line.split(",") for line in lines]  # the file has no quoted commas
    shift = timestamp_shift(factor, min(int(cells[column]) for cells in rows))
    with open(os.path.join(folder, "taxi.csv"), "w") as out:
        out.write(header + "\n")
        for copy in range(factor):
            for cells in rows:
                out.write(",".join([*cells[:column], str(int(cells[column]) - copy * shift), *cells[column + 1 :]]) + "\n")
    return folder, shift


# --- The report --------------------------------------------------------------------------------

# The peer's component ids (class names) and ours, so its rows line up with ours.
PEER_IDS = {
    "CsvExampleGen": "example_gen",
    "StatisticsGen": "statistics_gen",
    "SchemaGen": "schema_gen",
    "ExampleValidator": "example_validator",
    "Transform": "transform",
    "Trainer": "trainer",
    "Evaluator": "evaluator",
    "Pusher": "pusher",
}


def _components_table(columns: dict[str, dict]) -> list[str]:
    columns = {
        name: {**r, "components": {PEER_IDS.get(k, k): v for k, v in r["components"].items()}} for name, r in columns.items()
    }
    names = []
    for report in columns.values():
        names += [n for n in report["components"] if n not in names]
    lines = ["| component | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for n in names:
        cells = []
        for report in columns.values():
            c = report["components"].get(n)
            cells.append(f"{c['seconds']:.1f}" + ("" if c["state"] == "ran" else f" ({c['state']})") if c else "")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def write_results(results: dict, path: str, command: str) -> None:
    lines = [
        "# Pipeline benchmark",
        "",
        f"Run {results['date']} on {results['machine']}, with `{command}`.",
        "Each pipeline in a fresh process, pipeline root and SQLite store (LocalDagRunner).",
        "",
    ]
    side = results.get("side_by_side")
    if side:
        ours, peer = side["ours"], side["peer"]
        q = side["quality"]
        lines += [
            "## This project vs TFX's taxi example (15,002 rows)",
            "",
            f"**Ours / peer wall time: {ours['wall_seconds'] / peer['wall_seconds']:.2f}x** "
            f"({ours['wall_seconds']} s vs {peer['wall_seconds']} s).",
            "",
            "| | ours | peer |",
            "|---|---:|---:|",
            f"| wall time, process (s) | {ours['wall_seconds']} | {peer['wall_seconds']} |",
            f"| wall time, pipeline only (s) | {ours['pipeline_seconds']} | {peer['pipeline_seconds']} |",
            f"| peak memory, process tree (MB) | {ours['peak_rss_mb']} | {peer['peak_rss_mb']} |",
            f"| accuracy, common eval rows | {q['ours']['accuracy']} | {q['peer']['accuracy']} |",
            f"| AUC, common eval rows | {q['ours']['auc']} | {q['peer']['auc']} |",
            "",
            f"Quality is measured on the {q['ours']['rows']:,} rows that are in both pipelines' eval splits.",
            "",
            "Time per component (s):",
            "",
            *_components_table({"ours": ours, "peer": peer}),
            "",
        ]
    reruns = results.get("reruns")
    if reruns:
        full = reruns["full"]
        lines += [
            "## Re-runs (ours)",
            "",
            "| run | wall, process (s) | pipeline only (s) | share of the full run (pipeline) | baseline's figures |",
            "|---|---:|---:|---:|---|",
        ]
        for name in ("full", "unchanged", "hparams changed"):
            r = reruns[name]
            lines.append(
                f"| {name} | {r['wall_seconds']} | {r['pipeline_seconds']} "
                f"| {r['pipeline_seconds'] / full['pipeline_seconds']:.0%} | {r.get('baseline', '-')} |"
            )
        lines += [
            "",
            "Baseline's figures: none (no baseline), evaluated (TFMA evaluated both models), recorded (read",
            "from the baseline's own evaluation of the same eval data: pipeline/recorded_baseline.py).",
        ]
        lines += ["", "Time per component (s; cached components say so):", "", *_components_table(reruns), ""]
    scale = results.get("scale")
    if scale:
        lines += [
            "## Scale series (ours)",
            "",
            "The real rows repeated k times; copy i's trip_start_timestamp is shifted by i x the shift in",
            "the table (10^8 s, or less where the copies would pass the schema's domain for it): ahead",
            "in runs before 2026-12-01, back since (the data gate refuses events after the run).",
            *(f"Added by `{c}`." for c in results.get("scale_commands", []) if c != results.get("command")),
            *([results["scale_note"]] if results.get("scale_note") else []),  # written by hand
            "",
            "| size | rows | timestamp shift (s) | Beam mode | wall, process (s) | pipeline (s) | peak memory (MB) |",
            "|---|---:|---:|---|---:|---:|---:|",
        ]
        for r in scale.values():
            shift = r.get("timestamp_shift", TIMESTAMP_SHIFT if r["factor"] > 1 else 0)  # runs recorded before the field
            lines.append(
                f"| {r['factor']}x | {r['rows']:,} | {shift:,} | {r['mode']} | {r['wall_seconds']} "
                f"| {r['pipeline_seconds']} | {r['peak_rss_mb']} |"
            )
        lines += ["", "Time per component (s):", "", *_components_table(scale), ""]
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS-notes.md")
    if os.path.exists(notes) and not results.get("smoke"):
        with open(notes) as f:
            lines += ["", f.read()]  # the analysis of these numbers, written by hand
    with open(path, "w") as f:
        f.write("\n".join(lines))


# What both pipelines import (the same virtualenv): loaded once, untimed, before the first timed
# run, so that neither pays for reading ~3 GB of packages from a cold disk cache by going first
# (2026-12-02 10:09: ours' full run, first, spent 38 s before its first component against 6 s
# in the scale series' run of the same invocation: 0.68x instead of 0.43x).
WARM_UP = "import apache_beam, tensorflow, tensorflow_data_validation, tensorflow_model_analysis, tensorflow_transform, tfx"


def warm_up() -> float:
    """Imports what both pipelines import, in a child process; returns its seconds."""
    start = time.time()
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    subprocess.run([sys.executable, "-c", WARM_UP], check=True, capture_output=True, env=env)
    return time.time() - start


def reruns_and_peer(work: str, data: str, steps: int | None, with_peer: bool) -> dict:
    """Ours: a full run, an unchanged re-run, a re-run with another learning rate; then the peer."""
    if with_peer:
        print(f"warming the disk cache: {warm_up():.1f} s (untimed)", flush=True)
    print(f"ours, full run on {data} ...", flush=True)
    ours = run_child("ours", os.path.join(work, "ours"), data, train_steps=steps)
    print("ours, unchanged re-run ...", flush=True)
    unchanged = run_child("ours", os.path.join(work, "ours"), data, train_steps=steps)
    print("ours, re-run with another learning rate ...", flush=True)
    changed = run_child("ours", os.path.join(work, "ours"), data, train_steps=steps, learning_rate=0.003)
    out = {"reruns": {"full": ours, "unchanged": unchanged, "hparams changed": changed}}
    if with_peer:
        print("peer (TFX taxi_pipeline_native_keras), full run ...", flush=True)
        peer = run_child("peer", os.path.join(work, "peer"), data)
        out["side_by_side"] = {"ours": ours, "peer": peer, "quality": quality({"ours": ours, "peer": peer})}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], help="scale factors (default: 1 10 100)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="Beam modes in the scale series")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--smoke", action="store_true", help="the first 3,000 rows only, no peer, no scale series, short training (the tests')"
    )
    parser.add_argument("--train-steps", type=int, help="ours: training steps (default: the config's)")
    parser.add_argument("--workdir", help="keep the runs here (default: a temporary folder, removed)")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    parser.add_argument("--render", help="only write --output from this results JSON")
    parser.add_argument(
        "--add-scale-to",
        metavar="RESULTS_JSON",
        help="run only the scale series and add its rows to this results file (then re-render)",
    )
    # Child-process mode.
    parser.add_argument("--child", choices=["ours", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="in_memory", help=argparse.SUPPRESS)
    parser.add_argument("--learning-rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import logging

        logging.disable(logging.WARNING)
        report = child_ours(args) if args.child == "ours" else child_peer(args)
        print(json.dumps(report))
        if args.child == "ours":  # ends as `runner.py run` does (runners/process.py)
            from runners import process

            process.exit(0)
        return

    if args.render:
        with open(args.render) as f:
            results = json.load(f)
        write_results(results, args.output, results.get("command", "python bench/pipeline_bench.py"))
        return
    work = args.workdir or tempfile.mkdtemp(prefix="pipeline-bench-")
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}",
    }
    steps = 100 if args.smoke and not args.train_steps else args.train_steps
    results["smoke"] = args.smoke
    data, _ = smoke_data(work) if args.smoke else scaled_data(work, 1)
    if args.add_scale_to:
        with open(args.add_scale_to) as f:
            results = json.load(f)
        args.output = os.path.splitext(args.add_scale_to)[0] + ".md"
    try:
        if not args.add_scale_to:
            results.update(reruns_and_peer(work, data, steps, with_peer=not (args.skip_peer or args.smoke)))
        if not args.smoke:
            scale = results.get("scale", {}) if args.add_scale_to else {}
            for factor in args.sizes:
                folder, shift = scaled_data(work, factor)
                for mode in args.modes:
                    print(f"ours at {factor}x, {mode} ...", flush=True)
                    r = run_child("ours", os.path.join(work, f"scale-{factor}x-{mode}"), folder, mode=mode, train_steps=steps)
                    r.update(factor=factor, mode=mode, rows=15002 * factor, timestamp_shift=shift)
                    scale[f"{factor}x {mode}"] = r
            results["scale"] = scale
            results.setdefault("scale_commands", []).append(" ".join(["python bench/pipeline_bench.py", *sys.argv[1:]]))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if not args.add_scale_to:
        results["command"] = " ".join(["python bench/pipeline_bench.py", *sys.argv[1:]])
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(results, f, indent=2)
    write_results(results, args.output, results["command"])
    print(open(args.output).read())


if __name__ == "__main__":
    main()
