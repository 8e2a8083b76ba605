#!/usr/bin/env python3
"""Reference model: gradient-boosted trees on exactly the pipeline's train/eval split.

  .venv/bin/python bench/gbt_baseline.py [--output outputs]

Reads the train and eval splits that the pipeline's ExampleGen wrote (after `make run`), fits
scikit-learn's HistGradientBoostingClassifier on the same raw features the model uses, and
prints eval accuracy and AUC: the figure the README compares the wide & deep model with.
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

from modules import features as F  # noqa: E402
from serving.batch import example_value  # noqa: E402


def read_split(examples_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = glob.glob(os.path.join(examples_dir, f"Split-{split}", "*"))
    keys = F.raw_input_keys()
    rows, labels = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        fare, tips = example_value(feature, "fare") or 0.0, example_value(feature, "tips") or 0.0
        labels.append(int(fare > 0 and tips > F.BIG_TIP_FRACTION * fare))
        rows.append([example_value(feature, k) for k in keys])
    # Strings -> a stable numeric code (CRC32: the same in every process); missing -> NaN.
    x = np.array(
        [[np.nan if v is None else (zlib.crc32(v.encode()) if isinstance(v, str) else v) for v in r] for r in rows],
        dtype=np.float64,
    )
    return x, np.array(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join(ROOT, "outputs"), help="the pipeline's --output")
    args = parser.parse_args()
    dirs = sorted(glob.glob(os.path.join(args.output, "tfx", "example_gen", "examples", "*")), key=os.path.getmtime)
    if not dirs:
        print(f"error: no ExampleGen output under {args.output} (run `make run` first)", file=sys.stderr)
        return 2
    x_train, y_train = read_split(dirs[-1], "train")
    x_eval, y_eval = read_split(dirs[-1], "eval")
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
    model.fit(x_train, y_train)
    p = model.predict_proba(x_eval)[:, 1]
    print(f"eval rows {len(y_eval)}: accuracy {((p > 0.5) == y_eval).mean():.4f}, AUC {roc_auc_score(y_eval, p):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
