#!/usr/bin/env python3
"""Measures the natural variation between blocks of a CSV, to set the data gate's limits.

Per measure the gate applies, the largest value between consecutive blocks of the data (what
normal data does from one span to the next), next to the limit in force: the schema's
drift comparators (TFDV's L-infinity and Jensen-Shannon), the decile shift of each numeric
feature, the scale factor of each positive amount, every feature's share of rows with a
value, the gap between the blocks' median event times, and the label's positive rate
(`schemas/limits.json`). It also shows what the scale factor and the decile shift measure on a
block whose amounts were multiplied by 1.5, 2 and 10 (a price rise, a change of unit). Label rates are measured on
blocks of a third of `--rows`, the size of a span's eval split, where they vary most.
`--write` records the measurements in limits.json's "calibration" entry; the test suite
checks every limit sits above them. Exits 1 when a limit does not.

  .venv/bin/python scripts/calibrate_drift.py [--data data/taxi.csv] [--rows 3000] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def measure(data_path: str, schema_path: str, rows: int) -> dict:
    """{"comparators": {feature: max}, "decile_shift": {feature: max}, "label_rate": {...}}."""
    import pandas as pd
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    from modules import features as F
    from pipeline import data_checks as D
    from pipeline import validation as V

    schema = V.load_schema(schema_path)
    data = pd.read_csv(data_path)
    blocks = [data.iloc[i : i + rows] for i in range(0, len(data) - rows + 1, rows)]
    stats = [tfdv.generate_statistics_from_dataframe(b) for b in blocks]
    comparators: dict[str, float] = {}
    shifts: dict[str, float] = {}
    scales: dict[str, float] = {}
    presence: dict[str, float] = {}
    gaps: list[float] = []
    for before, after in zip(stats, stats[1:]):
        for c in V.compare(after, before, schema)[1]:
            comparators[c.feature] = max(comparators.get(c.feature, 0.0), c.value)
        for feature in F.NUMERIC_FEATURES:
            value = D.quantile_shift(after, before, feature)
            if value is not None:
                shifts[feature] = max(shifts.get(feature, 0.0), round(value, 4))
        for feature in F.LOG_SCALED_FEATURES:
            value = D.scale_shift(after, before, feature)
            if value is not None:
                scales[feature] = max(scales.get(feature, 1.0), round(value, 4))
        for f in schema.feature:
            now, then = D.presence(after, f.name), D.presence(before, f.name)
            if now is not None and then is not None:
                presence[f.name] = max(presence.get(f.name, 0.0), round(abs(now - then), 4))
        (_, median_after, _), (_, median_before, _) = (
            D._time_range(after, F.EVENT_TIME_KEY),
            D._time_range(before, F.EVENT_TIME_KEY),
        )
        gaps.append(abs(median_after - median_before) / 86400)
    # What the measures see when every amount of a block is multiplied (a price rise, a unit),
    # against the block before: the least and the most over the pairs of blocks.
    rescaled: dict[str, dict[str, list[float]]] = {}
    for factor in (1.5, 2.0, 10.0):
        seen: dict[str, list[float]] = {}
        for before, block in zip(stats, blocks[1:]):
            after = tfdv.generate_statistics_from_dataframe(block.assign(**{k: block[k] * factor for k in F.LOG_SCALED_FEATURES}))
            for k in F.LOG_SCALED_FEATURES:
                for m, fn in (("scale factor", D.scale_shift), ("decile shift", D.quantile_shift)):
                    seen.setdefault(f"{k} {m}", []).append(fn(after, before, k))
        rescaled[f"x{factor:g}"] = {k: [round(min(v), 3), round(max(v), 3)] for k, v in seen.items()}
    third = rows // 3
    rates = []
    for i in range(0, len(data) - third + 1, third):
        block = data.iloc[i : i + third]
        raw = {k: tf.constant(block[k].fillna(0).to_numpy(), tf.float32) for k in F.LABEL_INPUT_KEYS}
        rates.append(float(tf.reduce_mean(tf.cast(F.make_label(raw), tf.float32))))
    changes = [abs(b - a) for a, b in zip(rates, rates[1:])]
    return {
        "comparators": {k: round(v, 4) for k, v in sorted(comparators.items())},
        "decile_shift": dict(sorted(shifts.items())),
        "scale_factor": dict(sorted(scales.items())),
        "presence_change": dict(sorted(presence.items())),
        "event_time_gap_days": round(max(gaps), 2),
        "label_rate": {"min": round(min(rates), 4), "max": round(max(rates), 4), "max_change": round(max(changes), 4)},
        "rescaled_block": rescaled,
    }


def violations(measured: dict, limits: dict, comparator_limits: dict[str, float]) -> list[str]:
    """Limits that do not sit above the measured natural variation."""
    bad = [
        f"{f}: comparator {comparator_limits[f]} <= {v}"
        for f, v in measured["comparators"].items()
        if f in comparator_limits and comparator_limits[f] <= v
    ]
    bad += [
        f"{f}: decile shift {limits['quantile_shift'][f]} <= {v}"
        for f, v in measured["decile_shift"].items()
        if f in limits["quantile_shift"] and limits["quantile_shift"][f] <= v
    ]
    bad += [
        f"{f}: scale factor {limits['scale_shift'][f]} <= {v}"
        for f, v in measured["scale_factor"].items()
        if f in limits["scale_shift"] and limits["scale_shift"][f] <= v
    ]
    bad += [
        f"{f}: presence change {limits['max_presence_change']} <= {v}"
        for f, v in measured["presence_change"].items()
        if limits["max_presence_change"] <= v
    ]
    if limits["event_time"]["max_gap_days"] <= measured["event_time_gap_days"]:
        bad.append(f"event time gap {limits['event_time']['max_gap_days']} <= {measured['event_time_gap_days']} days")
    label, rate = limits["label"], measured["label_rate"]
    if not label["rate_min"] < rate["min"] or not rate["max"] < label["rate_max"]:
        bad.append(f"label rate range [{label['rate_min']}, {label['rate_max']}] vs measured [{rate['min']}, {rate['max']}]")
    if label["max_rate_change"] <= rate["max_change"]:
        bad.append(f"label rate change {label['max_rate_change']} <= {rate['max_change']}")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "taxi.csv"))
    parser.add_argument("--schema", default=os.path.join(ROOT, "schemas", "schema.pbtxt"))
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--write", action="store_true", help="record the measurements in limits.json")
    args = parser.parse_args(argv)

    from pipeline import data_checks as D

    measured = measure(args.data, args.schema, args.rows)
    path = D.limits_path(args.schema)
    with open(path) as f:
        limits = json.load(f)
    comparator_limits = _schema_comparator_limits(args.schema)
    print(f"{'measure':<34} {'limit':>8} {'natural (max)':>14}")
    for feature, value in measured["comparators"].items():
        print(f"{feature + ' (comparator)':<34} {comparator_limits.get(feature, '-'):>8} {value:>14}")
    for feature, value in measured["decile_shift"].items():
        print(f"{feature + ' (decile shift)':<34} {limits['quantile_shift'].get(feature, '-'):>8} {value:>14}")
    for feature, value in measured["scale_factor"].items():
        print(f"{feature + ' (scale factor)':<34} {limits['scale_shift'].get(feature, '-'):>8} {value:>14}")
    worst = max(measured["presence_change"].items(), key=lambda kv: kv[1])
    print(f"{'presence change (' + worst[0] + ')':<34} {limits['max_presence_change']:>8} {worst[1]:>14}")
    print(f"{'event time gap (days)':<34} {limits['event_time']['max_gap_days']:>8} {measured['event_time_gap_days']:>14}")
    for factor, values in measured["rescaled_block"].items():
        print(f"amounts {factor} (least-most): " + ", ".join(f"{k} {v[0]}-{v[1]}" for k, v in values.items()))
    label, rate = limits["label"], measured["label_rate"]
    print(f"{'label rate range':<34} {label['rate_min']:>3}-{label['rate_max']:<4} {rate['min']:>6}-{rate['max']}")
    print(f"{'label rate change':<34} {label['max_rate_change']:>8} {rate['max_change']:>14}")
    bad = violations(measured, limits, comparator_limits)
    for line in bad:
        print(f"limit not above natural variation: {line}")
    if args.write:
        limits["calibration"] = {
            "command": f"python scripts/calibrate_drift.py --rows {args.rows} --write",
            "data": os.path.relpath(args.data, ROOT),
            "date": datetime.date.today().isoformat(),
            "natural_variation_max": measured,
        }
        with open(path, "w") as f:
            json.dump(limits, f, indent=2)
            f.write("\n")
        print(f"recorded in {path}")
    return 1 if bad else 0


def _schema_comparator_limits(schema_path: str) -> dict[str, float]:
    from pipeline import validation as V

    limits = {}
    for f in V.load_schema(schema_path).feature:
        for comparator in (f.drift_comparator.infinity_norm, f.drift_comparator.jensen_shannon_divergence):
            if comparator.threshold:
                limits[f.name] = comparator.threshold
    return limits


if __name__ == "__main__":
    sys.exit(main())
