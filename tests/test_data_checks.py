"""The data gate's own checks on real rows: decile shifts, the label's rate, the files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from helpers import DATA_CSV, ROOT, SCHEMA_PATH
from pipeline import data_checks as D


@pytest.fixture(scope="module")
def limits() -> D.Limits:
    return D.Limits.from_json(D.read_limits_text(str(SCHEMA_PATH)))


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA_CSV)


def stats(frame):
    return tfdv.generate_statistics_from_dataframe(frame)


def test_a_shifted_fare_moves_every_decile_far_beyond_the_limit(data, limits):
    before = data.iloc[:3000]
    after = data.iloc[3000:6000].assign(fare=lambda f: f.fare * 10 + 40)
    rows, measured = D.quantile_rows(stats(after), stats(before), limits, span=2, split="train")
    assert [(r["feature"], r["kind"]) for r in rows] == [("fare", D.QUANTILE_SHIFT_HIGH)]
    fare = next(m for m in measured if m["feature"] == "fare")
    assert fare["value"] > 1.3 * limits.quantile_shift["fare"]


def test_outliers_do_not_move_the_deciles(data, limits):
    before = data.iloc[:3000]
    after = data.iloc[:3000].copy()
    after.loc[after.index[:100], "fare"] = 9000.0  # 3% of the rows become absurd fares
    assert D.quantile_shift(stats(after), stats(before), "fare") < 0.2 * limits.quantile_shift["fare"]


def test_every_limit_sits_above_the_natural_variation_of_the_bundled_data():
    """The calibration measured now, on the bundled data, against the limits in force (and the
    measurements recorded beside them are what it measures)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate_drift", ROOT / "scripts" / "calibrate_drift.py")
    calibrate_drift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate_drift)
    measured = calibrate_drift.measure(str(DATA_CSV), str(SCHEMA_PATH), 3000)
    with open(D.limits_path(str(SCHEMA_PATH))) as f:
        config = json.load(f)
    assert calibrate_drift.violations(measured, config, calibrate_drift._schema_comparator_limits(str(SCHEMA_PATH))) == []
    assert config["calibration"]["natural_variation_max"] == measured


def test_the_label_rate_out_of_range_moved_or_too_thin_is_named(limits):
    counts = {"train": (2, 2000), "eval": (1, 1000)}
    rows = D.label_rows(counts, {"train": 0.23, "eval": 0.24}, limits, "big_tipper", span=3)
    kinds = {(r["split"], r["kind"]) for r in rows}
    assert kinds == {
        ("train", D.LABEL_RATE_OUT_OF_RANGE),
        ("train", D.LABEL_RATE_CHANGE_HIGH),
        ("eval", D.LABEL_RATE_OUT_OF_RANGE),
        ("eval", D.LABEL_RATE_CHANGE_HIGH),
        ("eval", D.TOO_FEW_EXAMPLES_PER_CLASS),
    }
    assert all(r["feature"] == "big_tipper" and r["span"] == 3 for r in rows)
    assert D.label_rows({"train": (460, 2000), "eval": (240, 1000)}, {"train": 0.23, "eval": 0.24}, limits, "big_tipper") == []


def test_files_with_a_bom_delivered_twice_or_full_of_repeats_are_named(tmp_path, limits):
    header = b"a,b\n"
    rows = [f"{i},{i * 2}\n".encode() for i in range(100)]
    (tmp_path / "one.csv").write_bytes(D.BOM + header + b"".join(rows))
    (tmp_path / "two.csv").write_bytes(D.BOM + header + b"".join(rows))
    (tmp_path / "three.csv").write_bytes(header + b"".join(rows[:60]))
    found = D.file_rows(sorted(str(p) for p in tmp_path.iterdir()), limits, span=1)
    kinds = [(r["kind"], r["description"].split(" ")[0]) for r in found]
    assert kinds == [
        (D.FILE_HAS_BOM, "one.csv"),
        (D.FILE_HAS_BOM, "two.csv"),
        (D.DUPLICATE_FILE, "two.csv"),
        (D.DUPLICATE_ROWS, "60"),
    ]
    assert "60 of 160 rows (37.5%)" in found[-1]["description"]
    assert D.file_rows([str(tmp_path / "three.csv")], limits) == []


def test_the_limits_config_beside_the_schema_is_validated(tmp_path):
    schema = tmp_path / "schema.pbtxt"
    schema.write_text("")
    (tmp_path / "limits.json").write_text(json.dumps({"quantile_shift": {}, "label": {"rate_min": 0.1}}))
    with pytest.raises(KeyError):
        D.read_limits_text(str(schema))
    assert ROOT.joinpath("schemas", "limits.json").is_file()


@pytest.mark.parametrize("factor, caught", [(2.0, True), (10.0, True), (1.0, False)])
def test_a_price_rise_is_a_scale_shift_the_decile_shift_misses(data, limits, factor, caught):
    """Fare and tips doubled (labels unchanged) against the span before: the decile shift, in
    units of a wide spread, stays under its limit; the scale factor sees the factor."""
    before, after = data.iloc[:3000], data.iloc[3000:6000]
    rescaled = after.assign(fare=after.fare * factor, tips=after.tips * factor)
    rows, measured = D.scale_rows(stats(rescaled), stats(before), limits, span=2, split="train")
    assert [(r["feature"], r["kind"]) for r in rows] == ([("fare", D.SCALE_SHIFT_HIGH)] if caught else [])
    if factor == 2.0:
        shifted, _ = D.quantile_rows(stats(rescaled), stats(before), limits, span=2, split="train")
        assert not shifted  # the blind spot this measure closes
        assert "moved up by a factor of" in rows[0]["description"]


def test_a_feature_that_empties_out_is_named_optional_or_not(data, limits):
    before, after = data.iloc[:3000], data.iloc[3000:6000]
    emptied = after.assign(dropoff_latitude=float("nan"), company=None)
    rows, measured = D.presence_rows(stats(emptied), stats(before), ["dropoff_latitude", "company", "fare"], limits)
    assert sorted((r["feature"], r["kind"]) for r in rows) == [
        ("company", D.PRESENCE_CHANGE_HIGH),
        ("dropoff_latitude", D.PRESENCE_CHANGE_HIGH),
    ]
    assert "0.0% of rows have a value" in rows[0]["description"]
    assert {m["feature"] for m in measured} == {"dropoff_latitude", "company", "fare"}


def test_event_times_in_the_future_or_far_from_the_previous_span_are_named(data, limits):
    import time

    before, after = data.iloc[:3000], data.iloc[3000:6000]
    now = time.time()
    assert D.time_rows(stats(after), stats(before), "trip_start_timestamp", now, limits) == []
    ahead = after.assign(trip_start_timestamp=after.trip_start_timestamp + 50 * 365 * 86400)
    kinds = {r["kind"] for r in D.time_rows(stats(ahead), stats(before), "trip_start_timestamp", now, limits)}
    assert kinds == {D.TIME_IN_FUTURE, D.TIME_FAR_FROM_PREVIOUS}
    older = after.assign(trip_start_timestamp=after.trip_start_timestamp - 3 * 365 * 86400)
    rows = D.time_rows(stats(older), stats(before), "trip_start_timestamp", now, limits)
    assert [r["kind"] for r in rows] == [D.TIME_FAR_FROM_PREVIOUS] and "days from the previous span's" in rows[0]["description"]


def test_text_in_a_label_input_is_a_row_not_a_crash(tmp_path):
    import tensorflow as tf

    split = tmp_path / "Split-train"
    split.mkdir()
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as w:
        example = tf.train.Example()
        example.features.feature["fare"].bytes_list.value.append(b"n/a")
        example.features.feature["tips"].float_list.value.append(1.0)
        w.write(example.SerializeToString())
    with pytest.raises(D.LabelUnreadable):
        D.label_counts(str(tmp_path), "train")
    row = D.label_unreadable_row("train", "Key: fare. Data types don't match", "big_tipper", span=3)
    assert row["kind"] == D.LABEL_UNREADABLE and "fare, tips must be numbers" in row["description"]


@pytest.mark.parametrize(
    "text, kind, detail",
    [
        ("a;b;c\n1;2;3\n", "WRONG_DELIMITER", "looks ;-delimited"),
        ("a\tb\tc\n1\t2\t3\n", "WRONG_DELIMITER", "looks tab-delimited"),
        ("a,b,c\n1,2,3\n1,2\n4,5,6,7\n1,2\n", "RAGGED_ROWS", "2 row(s) of 2 fields, the header has 3 (first at line 3)"),
        ('a,b,c\n1,"2,3\n', "UNREADABLE_CSV", "an unterminated quote?"),
        (b"a,b\n1,\xff\n", "NOT_UTF8", "line 2 is not UTF-8 (byte 0xff)"),
        ("", "EMPTY_FILE", "no bytes"),
        ("\n \n", "EMPTY_FILE", "no bytes"),
        (b"a,b\n1,2\n\xef\xbb\xbf3,\xe9\n", "NOT_UTF8", "line 3 is not UTF-8 (byte 0xe9)"),
        ("\n\na,b,c\n1,2,3\n1,2\n", "RAGGED_ROWS", "1 row(s) of 2 fields, the header has 3 (first at line 5)"),
    ],
)
def test_files_csv_example_gen_would_crash_on_are_named_before_it_runs(tmp_path, text, kind, detail):
    from pipeline import ingest

    path = tmp_path / "part.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    (problem,) = [p for p in ingest.file_problems(str(path)) if p["kind"] == kind and detail in p["description"]]
    assert problem["description"].startswith("part.csv: ") and detail in problem["description"], problem


def test_a_well_formed_file_has_no_problem(tmp_path):
    from pipeline import ingest

    path = tmp_path / "ok.csv"
    path.write_text('\ufeffa,b,c\n1,"x, y",3\n\n4,"two\nlines",6\n')
    assert ingest.file_problems(str(path)) == []
