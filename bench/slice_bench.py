#!/usr/bin/env python3
"""Calibrates the gated slices' thresholds: the same model retrained with other seeds on the
same data, overall and on each gated slice (features.GATED_SLICES), against the thresholds in
force (pipeline.configs.EvalThresholds).

  .venv/bin/python bench/slice_bench.py [--seeds 42 7 1234]

Each seed is a full default run of the pipeline on the bundled data (15,002 rows) in a store of
its own, without a baseline. A retrain must not be refused: the spread of the slice's AUC
between seeds has to sit inside `slice_max_auc_regression`, and every seed above
`slice_min_auc`. Results go to bench/SLICES.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1234], help="training seeds (default: %(default)s)")
    args = parser.parse_args(argv)

    from bench.common import replace_section, stamp
    from modules import features as F
    from modules.hparams import HParams
    from ops.evaluation import sliced_metrics
    from ops.queries import open_metadata
    from pipeline.configs import EvalThresholds
    from runners import local

    thresholds = EvalThresholds()
    slices = [f"{k}={v}" for k, values in F.GATED_SLICES.items() for v in values]
    rows = []
    for seed in args.seeds:
        work = tempfile.mkdtemp(prefix=f"slices-{seed}-")
        data = os.path.join(work, "data")
        os.makedirs(data)
        shutil.copy(os.path.join(ROOT, "data", "taxi.csv"), data)
        cfg = local.build_config(
            os.path.join(work, "out"), data, os.path.join(ROOT, "schemas", "schema.pbtxt"), hparams=HParams(seed=seed)
        )
        summary = local.run(cfg)
        run = open_metadata(cfg.metadata_uri, cfg.pipeline_name).latest_run()
        metrics = sliced_metrics(run.output("evaluator", "evaluation").uri)
        rows.append((seed, metrics["overall"]["auc"], [metrics.get(s, {}).get("auc") for s in slices], summary["blessed"]))
        print(
            f"seed {seed}: overall AUC {rows[-1][1]:.4f}, " + ", ".join(f"{s} AUC {a:.4f}" for s, a in zip(slices, rows[-1][2])),
            flush=True,
        )
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"{stamp('python bench/slice_bench.py --seeds ' + ' '.join(map(str, args.seeds)))}: the default configuration on "
        "the bundled data, one full run per seed, each without a baseline.",
        "",
        "| seed | overall AUC | " + " | ".join(f"{s} AUC" for s in slices) + " | blessed |",
        "|---|---|" + "---|" * len(slices) + "---|",
    ]
    for seed, overall, sliced, blessed in rows:
        lines.append(
            f"| {seed} | {overall:.4f} | " + " | ".join(f"{a:.4f}" for a in sliced) + f" | {'yes' if blessed else 'no'} |"
        )
    for i, s in enumerate(slices):
        values = [r[2][i] for r in rows]
        spread = max(values) - min(values)
        passes = spread <= thresholds.slice_max_auc_regression and min(values) >= thresholds.slice_min_auc
        lines += [
            "",
            f"{s}: AUC from {min(values):.4f} to {max(values):.4f} (spread {spread:.4f}); thresholds: at least "
            f"{thresholds.slice_min_auc}, at most {thresholds.slice_max_auc_regression} below the baseline's. A retrain "
            f"of the same model {'passes' if passes else 'is REFUSED'}.",
        ]
    replace_section(os.path.join(ROOT, "bench", "SLICES.md"), "## Gated slices: calibration across seeds", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
