"""The data gate's checks beyond TFDV's: numeric drift that outliers cannot dominate, the
label's distribution, and what is wrong with the delivered files themselves.

Limits live in one config beside the curated schema (`schemas/limits.json`), calibrated on the
natural variation of the bundled data by `scripts/calibrate_drift.py`, which records what it
measured in the same file. Rows are anomaly rows like TFDV's (span, split, feature, kind,
description), so the gate reports, rejects and accepts them the same way.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Kinds of our own (TFDV's have its enum names).
QUANTILE_SHIFT_HIGH = "QUANTILE_SHIFT_HIGH"
SCALE_SHIFT_HIGH = "SCALE_SHIFT_HIGH"
PRESENCE_CHANGE_HIGH = "PRESENCE_CHANGE_HIGH"
TIME_IN_FUTURE = "TIME_IN_FUTURE"
TIME_FAR_FROM_PREVIOUS = "TIME_FAR_FROM_PREVIOUS"
LABEL_UNREADABLE = "LABEL_UNREADABLE"
LABEL_RATE_OUT_OF_RANGE = "LABEL_RATE_OUT_OF_RANGE"
LABEL_RATE_CHANGE_HIGH = "LABEL_RATE_CHANGE_HIGH"
TOO_FEW_EXAMPLES_PER_CLASS = "TOO_FEW_EXAMPLES_PER_CLASS"
FILE_HAS_BOM = "FILE_HAS_BOM"
DUPLICATE_FILE = "DUPLICATE_FILE"
DUPLICATE_ROWS = "DUPLICATE_ROWS"
FILE = "(file)"
BOM = b"\xef\xbb\xbf"
# Deciles 10% .. 90%: the tails beyond them (where outliers live) never count.
DECILES = tuple(range(1, 10))


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the gate allows, from `schemas/limits.json`."""

    # Numeric feature -> largest decile shift, in units of the reference's 10%-90% range.
    quantile_shift: Mapping[str, float]
    # The label's positive rate must lie in [rate_min, rate_max] in every split, and move by at
    # most max_rate_change from the reference span's.
    label_rate_min: float
    label_rate_max: float
    label_max_rate_change: float
    # The eval split needs this many examples of each class before a verdict on it counts.
    min_eval_examples_per_class: int
    # Largest share of exactly repeated rows in a span.
    max_duplicate_row_share: float
    # Positive amount -> largest factor between its deciles and the reference's (median over
    # the deciles of the ratio, either way): a price rise, a change of unit.
    scale_shift: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Largest change of a feature's share of rows with a value, in points (to zero included).
    max_presence_change: float = 1.0
    # Event times: at most this far ahead of the run, and the span's median at most this many
    # days from the reference span's.
    max_future_seconds: float = math.inf
    max_time_gap_days: float = math.inf

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Limits:
        label = values["label"]
        time = values.get("event_time", {})
        return cls(
            quantile_shift=dict(values["quantile_shift"]),
            label_rate_min=float(label["rate_min"]),
            label_rate_max=float(label["rate_max"]),
            label_max_rate_change=float(label["max_rate_change"]),
            min_eval_examples_per_class=int(values["min_eval_examples_per_class"]),
            max_duplicate_row_share=float(values["max_duplicate_row_share"]),
            scale_shift=dict(values.get("scale_shift", {})),
            max_presence_change=float(values.get("max_presence_change", 1.0)),
            max_future_seconds=float(time.get("max_future_seconds", math.inf)),
            max_time_gap_days=float(time.get("max_gap_days", math.inf)),
        )

    @classmethod
    def from_json(cls, text: str) -> Limits:
        return cls.from_mapping(json.loads(text))


def limits_path(schema_path: str) -> str:
    """The limits config that belongs to a curated schema: limits.json beside it."""
    return os.path.join(os.path.dirname(schema_path), "limits.json")


def read_limits_text(schema_path: str) -> str:
    """The limits config as compact JSON (validated), from beside the schema."""
    path = limits_path(schema_path)
    with open(path) as f:
        values = json.load(f)
    Limits.from_mapping(values)  # fails on a missing or malformed entry
    values.pop("calibration", None)  # the record of how they were chosen is not a limit
    return json.dumps(values, sort_keys=True)


# --- Numeric drift: decile shifts ------------------------------------------------------------


def deciles(stats, feature: str) -> list[float] | None:
    """The 10%..90% quantiles of a numeric feature (TFDV's quantiles histogram), or None."""
    for dataset in stats.datasets[:1]:
        for f in dataset.features:
            if ".".join(f.path.step) == feature and f.HasField("num_stats"):
                for h in f.num_stats.histograms:
                    if h.type == h.QUANTILES and len(h.buckets) == 10:
                        return [h.buckets[i - 1].high_value for i in DECILES]
    return None


def quantile_shift(current, reference, feature: str) -> float | None:
    """The largest shift of a decile between two datasets, in units of the reference's
    10%-90% range. An outlier moves no decile, so it cannot dominate this measure; a shifted
    or rescaled distribution moves all of them. Skewed amounts (the feature spec's
    LOG_SCALED_FEATURES) are compared as log1p, as the model sees them: quantiles of log1p are
    log1p of the quantiles."""
    from modules import features as F

    cur, ref = deciles(current, feature), deciles(reference, feature)
    if cur is None or ref is None:
        return None
    if feature in F.LOG_SCALED_FEATURES:
        cur, ref = [math.log1p(max(v, 0.0)) for v in cur], [math.log1p(max(v, 0.0)) for v in ref]
    spread = ref[-1] - ref[0]
    if spread <= 0:
        spread = max(abs(ref[len(ref) // 2]), 1e-9)
    return max(abs(c - r) for c, r in zip(cur, ref)) / spread


def _rows_over_limits(measure: str, kind: str, measure_fn, limit_of: Mapping[str, float], describe, tags: dict):
    """(rows beyond a limit, every measurement as {feature, measure, value, threshold}) for
    one drift measure `measure_fn(feature)` against per-feature limits; `describe(feature,
    value, threshold)` words a row."""
    rows, measured = [], []
    for feature, threshold in sorted(limit_of.items()):
        value = measure_fn(feature)
        if value is None:
            continue
        measured.append({"feature": feature, "measure": measure, "value": round(value, 4), "threshold": threshold})
        if value > threshold:
            rows.append({**tags, "feature": feature, "kind": kind, "description": describe(feature, value, threshold)})
    return rows, measured


def quantile_rows(current, reference, limits: Limits, **tags) -> tuple[list[dict], list[dict]]:
    """(rows beyond a limit, every measurement as {feature, measure, value, threshold})."""
    return _rows_over_limits(
        "decile shift",
        QUANTILE_SHIFT_HIGH,
        lambda feature: quantile_shift(current, reference, feature),
        limits.quantile_shift,
        lambda feature, value, threshold: f"the deciles moved by up to {value:.2f}x the previous span's 10%-90% range "
        f"(limit {threshold})",
        tags,
    )


# --- Scale: a multiplicative change --------------------------------------------------------------


def scale_shift(current, reference, feature: str) -> float | None:
    """The factor by which a positive amount's whole lower half moved: over its 10%..50%
    deciles (the positive ones), the smallest ratio to the reference's, when all moved the
    same way (else 1). A price rise or a change of unit multiplies every value, so every
    decile moves by the same factor; the natural differences between spans of this data move
    the median and the tail (longer trips) but hardly the base fare, which a multiplicative
    change cannot leave behind. The decile shift (in units of the spread, on log1p) misses a
    doubling when the spread is wide."""
    cur, ref = deciles(current, feature), deciles(reference, feature)
    if cur is None or ref is None:
        return None
    logs = [math.log(c / r) for c, r in zip(cur[:5], ref[:5]) if c > 0 and r > 0]
    if not logs:
        return None
    if not (all(v > 0 for v in logs) or all(v < 0 for v in logs)):
        return 1.0
    return math.exp(min(abs(v) for v in logs))


def scale_rows(current, reference, limits: Limits, **tags) -> tuple[list[dict], list[dict]]:
    """(rows beyond a limit, every measurement), for the scale factor (scale_shift)."""

    def describe(feature: str, value: float, threshold: float) -> str:
        cur, ref = deciles(current, feature), deciles(reference, feature)
        direction = "up" if cur and ref and cur[4] > ref[4] else "down"
        return (
            f"its deciles moved {direction} by a factor of {value:.2f} from the previous span's "
            f"(limit x{threshold}): a change of price or unit?"
        )

    return _rows_over_limits(
        "scale factor",
        SCALE_SHIFT_HIGH,
        lambda feature: scale_shift(current, reference, feature),
        limits.scale_shift,
        describe,
        tags,
    )


# --- Presence: a feature that empties out -------------------------------------------------------


def presence(stats, feature: str) -> float | None:
    """The share of a split's rows where the feature has a value (a CSV's empty cell counts as
    no value), or None when the feature is not in the statistics."""
    for dataset in stats.datasets[:1]:
        total = dataset.num_examples
        for f in dataset.features:
            if ".".join(f.path.step) == feature:
                stats_of = f.num_stats if f.HasField("num_stats") else f.string_stats
                return min(stats_of.common_stats.tot_num_values, total) / total if total else None
        return 0.0 if total else None
    return None


def presence_rows(current, reference, features: Iterable[str], limits: Limits, **tags) -> tuple[list[dict], list[dict]]:
    """Features whose share of rows with a value moved beyond the limit from the reference's,
    optional features included (one that empties out has no value to measure otherwise)."""
    rows, measured = [], []
    for feature in sorted(features):
        now, before = presence(current, feature), presence(reference, feature)
        if now is None or before is None:
            continue
        change = abs(now - before)
        measured.append(
            {"feature": feature, "measure": "presence change", "value": round(change, 4), "threshold": limits.max_presence_change}
        )
        if change > limits.max_presence_change:
            rows.append(
                {
                    **tags,
                    "feature": feature,
                    "kind": PRESENCE_CHANGE_HIGH,
                    "description": f"{now:.1%} of rows have a value, {before:.1%} in the previous span "
                    f"(limit {limits.max_presence_change:.0%} points)",
                }
            )
    return rows, measured


# --- Event time -----------------------------------------------------------------------------------


def _time_range(stats, feature: str) -> tuple[float, float, float] | None:
    """(min, median, max) of an event-time feature (seconds since the epoch)."""
    for dataset in stats.datasets[:1]:
        for f in dataset.features:
            if ".".join(f.path.step) == feature and f.HasField("num_stats") and f.num_stats.common_stats.tot_num_values:
                middle = deciles(stats, feature)
                median = middle[4] if middle else (f.num_stats.min + f.num_stats.max) / 2
                return f.num_stats.min, median, f.num_stats.max
    return None


def _date(seconds: float) -> str:
    import datetime

    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.0f} s since 1970"


def time_rows(current, reference, feature: str, now: float, limits: Limits, **tags) -> list[dict]:
    """A span whose event times lie in the future of the run, or whose median is far from the
    reference span's: a clock or unit error upstream, or the wrong files."""
    rows: list[dict] = []
    span = _time_range(current, feature)
    if span is None:
        return rows
    low, median, high = span
    if high > now + limits.max_future_seconds:
        rows.append(
            {
                **tags,
                "feature": feature,
                "kind": TIME_IN_FUTURE,
                "description": f"events up to {_date(high)}, {(high - now) / 86400:,.0f} days after this run "
                f"(limit {limits.max_future_seconds / 3600:g} h ahead); the span runs from {_date(low)}",
            }
        )
    before = _time_range(reference, feature) if reference is not None else None
    if before is not None:
        gap = abs(median - before[1]) / 86400
        if gap > limits.max_time_gap_days:
            rows.append(
                {
                    **tags,
                    "feature": feature,
                    "kind": TIME_FAR_FROM_PREVIOUS,
                    "description": f"its median event time {_date(median)} is {gap:,.0f} days from the previous span's "
                    f"{_date(before[1])} (limit {limits.max_time_gap_days:g} days)",
                }
            )
    return rows


# --- The label -------------------------------------------------------------------------------


def label_counts(examples_uri: str, split: str, max_rows: int = 500_000) -> tuple[int, int]:
    """(positives, examples) of the label computed from a split's raw tf.Examples (ExampleGen's
    gzipped TFRecords), by the feature spec's own `make_label`. Reads at most `max_rows`."""
    import tensorflow as tf

    from modules import features as F

    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    if not files:
        return 0, 0
    spec = {k: tf.io.VarLenFeature(tf.float32) for k in F.LABEL_INPUT_KEYS}
    positives = total = 0
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(max_rows).batch(8192)
    for batch in dataset:
        try:
            parsed = tf.io.parse_example(batch, spec)
        except tf.errors.InvalidArgumentError as e:
            # A label input is not numeric in this span (text in a number column): the
            # schema's type anomaly names it; the label cannot be computed.
            raise LabelUnreadable(str(e).splitlines()[0]) from None
        raw = {k: tf.sparse.to_dense(tf.sparse.reset_shape(v, [tf.shape(batch)[0], 1]))[:, 0] for k, v in parsed.items()}
        label = F.make_label(raw)
        positives += int(tf.reduce_sum(label))
        total += int(tf.shape(label)[0])
    return positives, total


class LabelUnreadable(ValueError):
    """The label cannot be computed from a split's examples (an input of it is not numeric)."""


def label_unreadable_row(split: str, reason: str, label: str, **tags) -> dict:
    from modules import features as F

    return {
        **tags,
        "split": split,
        "feature": label,
        "kind": LABEL_UNREADABLE,
        "description": f"the label cannot be computed: {', '.join(F.LABEL_INPUT_KEYS)} must be numbers "
        f"(see their type anomalies) ({reason[:120]})",
    }


def label_rows(
    counts: Mapping[str, tuple[int, int]], reference: Mapping[str, float] | None, limits: Limits, label: str, **tags
) -> list[dict]:
    """Anomalies of the label's distribution per split: out of the expected range, moved too far
    from the reference span's, or too few examples of a class in the eval split."""
    rows = []
    for split, (positives, total) in sorted(counts.items()):
        if total == 0:
            continue
        rate = positives / total
        row = {**tags, "split": split, "feature": label}
        if not limits.label_rate_min <= rate <= limits.label_rate_max:
            rows.append(
                {
                    **row,
                    "kind": LABEL_RATE_OUT_OF_RANGE,
                    "description": f"{rate:.2%} of examples are positive; expected {limits.label_rate_min:.0%} to "
                    f"{limits.label_rate_max:.0%}",
                }
            )
        if reference and split in reference and abs(rate - reference[split]) > limits.label_max_rate_change:
            rows.append(
                {
                    **row,
                    "kind": LABEL_RATE_CHANGE_HIGH,
                    "description": f"the positive rate moved from {reference[split]:.2%} to {rate:.2%} "
                    f"(limit {limits.label_max_rate_change:.0%} points)",
                }
            )
        if split == "eval" and min(positives, total - positives) < limits.min_eval_examples_per_class:
            rows.append(
                {
                    **row,
                    "kind": TOO_FEW_EXAMPLES_PER_CLASS,
                    "description": f"{positives} positive and {total - positives} negative eval examples; a verdict "
                    f"needs {limits.min_eval_examples_per_class} of each",
                }
            )
    return rows


# --- The delivered files ---------------------------------------------------------------------


def file_rows(paths: Sequence[str], limits: Limits, read=None, **tags) -> list[dict]:
    """What is wrong with the files themselves, before any parser sees them: a UTF-8 byte-order
    mark (the first column's name would start with an invisible character), the same file
    delivered twice, a large share of exactly repeated rows."""
    if read is None:
        from tfx.dsl.io import fileio

        def read(path: str) -> bytes:
            with fileio.open(path, "rb") as f:
                return f.read()

    rows: list[dict] = []
    seen: dict[str, str] = {}
    lines: collections.Counter[bytes] = collections.Counter()
    for path in sorted(paths):
        data = read(path)
        name = os.path.basename(path)
        if data.startswith(BOM):
            rows.append(
                {
                    **tags,
                    "feature": FILE,
                    "kind": FILE_HAS_BOM,
                    "description": f"{name} starts with a UTF-8 byte-order mark: its first column would be read as "
                    f"'\\ufeff' + its name; save it as UTF-8 without BOM",
                }
            )
            data = data[len(BOM) :]
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            rows.append(
                {
                    **tags,
                    "feature": FILE,
                    "kind": DUPLICATE_FILE,
                    "description": f"{name} has the same content as {seen[digest]}: its rows would be ingested twice",
                }
            )
            continue
        seen[digest] = name
        body = data.splitlines()[1:]  # each file has a header
        lines.update(line for line in body if line.strip())
    total = sum(lines.values())
    repeated = sum(n - 1 for n in lines.values() if n > 1)
    if total and repeated / total > limits.max_duplicate_row_share:
        rows.append(
            {
                **tags,
                "feature": FILE,
                "kind": DUPLICATE_ROWS,
                "description": f"{repeated} of {total} rows ({repeated / total:.1%}) repeat an earlier row exactly "
                f"(limit {limits.max_duplicate_row_share:.0%})",
            }
        )
    return rows


def span_files(input_pattern: str, span: int) -> list[str]:
    """The files a span was read from: ExampleGen's input pattern with the span filled in."""
    from tfx.dsl.io import fileio

    pattern = input_pattern.replace("{SPAN}", str(span))
    return sorted(p for p in fileio.glob(pattern) if not fileio.isdir(p))


def summarize_counts(counts: Mapping[str, tuple[int, int]]) -> dict[str, float]:
    return {split: positives / total for split, (positives, total) in counts.items() if total}


def measurements(found: Iterable[dict]) -> list[dict]:
    return sorted(found, key=lambda m: (m["value"] <= m["threshold"], m["feature"]))
