#!/usr/bin/env python3
"""Reference model: gradient-boosted trees on exactly the pipeline's train/eval split.

  .venv/bin/python bench/gbt_baseline.py [--output outputs]

Reads the train and eval splits that the pipeline's ExampleGen wrote (after `make run`), fits
scikit-learn's HistGradientBoostingClassifier on the same raw features the model uses, scores
the same eval rows with the newest pushed model (its serving signature, on the raw examples),
and prints accuracy and AUC side by side, overall and on each value of the slice features that
gate the blessing (features.GATED_SLICES): the model has to be judged where it has work to do,
not on the cash-or-card split that carries the overall figure. A slice whose label is constant
has no AUC and is reported as such.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from bench.common import replace_section, stamp  # noqa: E402
from modules import features as F  # noqa: E402
from serving.batch import example_value  # noqa: E402


def read_split(examples_dir: str, split: str) -> tuple[np.ndarray, np.ndarray, list[bytes], dict[str, np.ndarray]]:
    """(features, labels, the serialized examples, the gated slice features' values)."""
    files = sorted(glob.glob(os.path.join(examples_dir, f"Split-{split}", "*")))
    keys = F.raw_input_keys()
    rows, labels, records = [], [], []
    slices: dict[str, list] = {k: [] for k in F.GATED_SLICES}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        records.append(record.numpy())
        feature = tf.train.Example.FromString(records[-1]).features.feature
        for k in slices:
            slices[k].append(example_value(feature, k))
        fare, tips = example_value(feature, "fare") or 0.0, example_value(feature, "tips") or 0.0
        labels.append(int(fare > 0 and tips > F.BIG_TIP_FRACTION * fare))
        rows.append([example_value(feature, k) for k in keys])
    # Strings -> a stable numeric code (CRC32: the same in every process); missing -> NaN.
    x = np.array(
        [[np.nan if v is None else (zlib.crc32(v.encode()) if isinstance(v, str) else v) for v in r] for r in rows],
        dtype=np.float64,
    )
    return x, np.array(labels), records, {k: np.array(v, dtype=object) for k, v in slices.items()}


def model_scores(model_dir: str, records: list[bytes]) -> np.ndarray:
    """The pushed model's probabilities for serialized raw examples (its serving signature)."""
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    out = [serve(examples=tf.constant(records[i : i + 4096])) for i in range(0, len(records), 4096)]
    (key,) = out[0].keys()
    return np.concatenate([o[key].numpy().reshape(-1) for o in out])


def metrics(y: np.ndarray, p: np.ndarray) -> str:
    accuracy = f"{((p > 0.5) == y).mean():.4f}"
    if y.min() == y.max():
        return f"{accuracy} | label constant: {int(y.sum())} positives in {len(y)} rows"
    return f"{accuracy} | {roc_auc_score(y, p):.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join(ROOT, "outputs"), help="the pipeline's --output")
    parser.add_argument("--record", action="store_true", help="also write the table to bench/SLICES.md")
    args = parser.parse_args()
    dirs = sorted(glob.glob(os.path.join(args.output, "tfx", "example_gen", "examples", "*")), key=os.path.getmtime)
    if not dirs:
        print(f"error: no ExampleGen output under {args.output} (run `make run` first)", file=sys.stderr)
        return 2
    x_train, y_train, _, _ = read_split(dirs[-1], "train")
    x_eval, y_eval, records, slices = read_split(dirs[-1], "eval")
    trees = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
    trees.fit(x_train, y_train)
    scored = {"trees": trees.predict_proba(x_eval)[:, 1]}
    pushed = sorted(glob.glob(os.path.join(args.output, "serving", "*")))
    if pushed:
        scored[f"model (pushed {os.path.basename(pushed[-1])})"] = model_scores(pushed[-1], records)
    groups = [("overall", np.ones(len(y_eval), bool))]
    for feature, values in F.GATED_SLICES.items():
        groups += [(f"{feature} = {v} (gated)", slices[feature] == v) for v in values]
        others = sorted(
            {v for v in slices[feature] if v is not None and v not in values}, key=lambda v: -(slices[feature] == v).sum()
        )
        groups += [(f"{feature} = {v}", slices[feature] == v) for v in others[:3]]
    lines = [
        stamp("python bench/gbt_baseline.py --record")
        + f": the eval split of the newest run's ExampleGen ({len(y_eval)} rows), scored by scikit-learn's "
        "gradient-boosted trees trained on its train split and by the newest pushed model.",
        "",
        "| slice | rows | " + " | ".join(f"{name} accuracy | {name} AUC" for name in scored) + " |",
        "|---|---:|" + "---:|---:|" * len(scored),
    ]
    for name, mask in groups:
        cells = " | ".join(metrics(y_eval[mask], p[mask]) for p in scored.values())
        lines.append(f"| {name} | {mask.sum()} | {cells} |")
    print("\n".join(lines))
    if args.record:
        replace_section(os.path.join(ROOT, "bench", "SLICES.md"), "## The model against gradient-boosted trees, per slice", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
