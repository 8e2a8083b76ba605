#!/usr/bin/env python3
"""Measures natural drift between blocks of a CSV, to choose the schema's drift/skew thresholds.

Prints, per feature with a comparator in the schema, the measure between consecutive blocks of
`--rows` rows (and the schema's threshold), so a threshold can sit above what normal data does.

  .venv/bin/python scripts/calibrate_drift.py [--data data/taxi.csv] [--rows 3000]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/taxi.csv")
    parser.add_argument("--schema", default="schemas/schema.pbtxt")
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()

    import pandas as pd
    import tensorflow_data_validation as tfdv

    from pipeline import validation as V

    schema = V.load_schema(args.schema)
    data = pd.read_csv(args.data)
    blocks = [data.iloc[i:i + args.rows] for i in range(0, len(data) - args.rows + 1, args.rows)]
    stats = [tfdv.generate_statistics_from_dataframe(b) for b in blocks]
    table: dict[str, list[str]] = {}
    thresholds: dict[str, float] = {}
    for i in range(len(stats) - 1):
        for c in V.compare(stats[i + 1], stats[i], schema)[1]:
            table.setdefault(c.feature, []).append(f"{c.value:.4f}")
            thresholds[c.feature] = c.threshold
    print(f"{'feature':<20} {'threshold':>9}  block i -> i+1 ({args.rows} rows each)")
    for feature, values in sorted(table.items()):
        print(f"{feature:<20} {thresholds[feature]:>9}  " + "  ".join(values))


if __name__ == "__main__":
    main()
