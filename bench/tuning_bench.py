#!/usr/bin/env python3
"""A tuned run against the defaults, side by side in one invocation, on the bundled data.

  .venv/bin/python bench/tuning_bench.py [--trials 8] [--steps 2000]

Runs the whole local pipeline from scratch twice: with the default hyperparameters, and with
`--tune TRIALS` (TFX's Tuner, modules/tuning.py). Records each trial (the Tuner's
tuner_results: eval AUC and the values), the Tuner's and the Trainer's wall time (from ML
Metadata) and the Evaluator's metrics on the eval split, in bench/TUNING.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import execution_seconds, write_page  # noqa: E402

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def run_once(workdir: str, steps: int, trials: int) -> dict:
    import tensorflow as tf

    from ops.queries import open_metadata
    from pipeline import pipeline as P
    from runners import local

    cfg = local.build_config(
        output_dir=workdir,
        data_root=os.path.join(ROOT, "data"),
        schema_path=os.path.join(ROOT, "schemas", "schema.pbtxt"),
        train_steps=steps,
        **({"tune_trials": trials} if trials else {}),
    )
    summary = local.run(cfg)
    md = open_metadata(local.store_uri(cfg), cfg.pipeline_name)
    run = md.latest_run()
    out = {
        "auc": summary["metrics"]["auc"],
        "accuracy": summary["metrics"]["binary_accuracy"],
        "trainer_seconds": execution_seconds(md, run, P.TRAINER),
    }
    if trials:
        out["tuner_seconds"] = execution_seconds(md, run, P.TUNER)
        path = os.path.join(run.output(P.TUNER, "tuner_results").uri, "tuner_results.json")
        out["trials"] = json.loads(tf.io.gfile.GFile(path).read())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "TUNING.md"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        default = run_once(os.path.join(workdir, "default"), args.steps, 0)
        print(json.dumps(default), flush=True)
        tuned = run_once(os.path.join(workdir, "tuned"), args.steps, args.trials)
        print(json.dumps({k: v for k, v in tuned.items() if k != "trials"}), flush=True)
    keys = ["learning_rate", "hidden_units", "embedding_dim", "dropout", "wide_l2", "deep_l2", "batch_size"]
    lines = [
        "# Tuning against the defaults",
        "",
        f"`.venv/bin/python bench/tuning_bench.py --trials {args.trials} --steps {args.steps}`, {dt.date.today()}, "
        f"{platform.machine()}, {os.cpu_count()} cores. The whole local pipeline from scratch on the bundled data, "
        "once with the default hyperparameters and once with `--tune`, in one invocation. Trials train like the "
        "Trainer (steps, early stopping, best weights); a trial's score is its best AUC on the eval split. Trial 0 is "
        "the defaults.",
        "",
        "| trial | eval AUC | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for t in sorted(tuned["trials"], key=lambda t: int(t["trial_id"])):
        values = " | ".join(f"{t[k]:.4g}" if isinstance(t[k], float) else str(t[k]) for k in keys)
        lines.append(f"| {t['trial_id']} | {t['score']:.4f} | {values} |")
    lines += [
        "",
        "| run | Tuner s | Trainer s | Evaluator AUC | Evaluator accuracy |",
        "|---|---|---|---|---|",
        f"| defaults | - | {default['trainer_seconds']} | {default['auc']:.4f} | {default['accuracy']:.4f} |",
        f"| tuned ({args.trials} trials) | {tuned['tuner_seconds']} | {tuned['trainer_seconds']} | {tuned['auc']:.4f} | "
        f"{tuned['accuracy']:.4f} |",
        "",
    ]
    write_page(args.output, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
