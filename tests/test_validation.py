"""Validation rules on real statistics of the bundled data (no pipeline runs)."""

from __future__ import annotations

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from helpers import DATA_CSV, SCHEMA_PATH
from pipeline import accepting
from pipeline import validation as V


@pytest.fixture(scope="module")
def schema():
    return V.load_schema(str(SCHEMA_PATH))


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA_CSV)


def stats(frame):
    return tfdv.generate_statistics_from_dataframe(frame)


def csv_stats(frame, path):
    """As the pipeline sees a CSV: TFDV's CSV decoder infers the types (pandas would turn an
    integer column with gaps into floats)."""
    frame.to_csv(path, index=False)
    return tfdv.generate_statistics_from_csv(str(path))


def test_natural_variation_between_blocks_of_real_data_is_not_drift(schema, data):
    """Consecutive 3,000-row blocks (how the tests make spans) stay under every threshold."""
    blocks = [stats(data.iloc[i : i + 3000]) for i in range(0, 12000, 3000)]
    for before, after in zip(blocks, blocks[1:]):
        found, measured = V.compare(after, before, schema)
        assert found == []
        assert {m.feature for m in measured} == {
            "payment_type",
            "company",
            "trip_start_hour",
            "trip_start_day",
            "dropoff_community_area",
        }


def test_a_shifted_mix_is_drift_and_names_feature_and_measure(schema, data):
    before = data.iloc[:3000]
    after = data.iloc[3000:6000].assign(payment_type="Cash", trip_start_hour=3)
    found, measured = V.compare(stats(after), stats(before), schema, span=2, split="train")
    kinds = {(r["feature"], r["kind"]) for r in found}
    assert kinds == {
        ("payment_type", "COMPARATOR_L_INFTY_HIGH"),
        ("trip_start_hour", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"),
    }
    assert all(r["span"] == 2 and r["split"] == "train" for r in found)
    exceeded = {m.feature: m for m in measured if m.exceeded}
    assert exceeded["payment_type"].measure == "L_infinity" and exceeded["payment_type"].value > 0.3


def test_skew_compares_serving_data_with_training_data(schema, data):
    training = stats(data.iloc[:6000])
    serving_ok = stats(data.iloc[6000:9000].drop(columns=["tips"]))
    serving_skewed = stats(data.iloc[6000:9000].drop(columns=["tips"]).assign(company="Acme Cabs"))
    assert V.compare(serving_ok, training, schema, kind="skew", environment="SERVING")[0] == []
    found, _ = V.compare(serving_skewed, training, schema, kind="skew", environment="SERVING")
    assert [(r["feature"], r["kind"]) for r in found] == [("company", "COMPARATOR_L_INFTY_HIGH")]


def test_schema_anomalies_of_bad_data(schema, tmp_path):
    sample = pd.read_csv(DATA_CSV, dtype=str, keep_default_na=False).iloc[:3000]  # the text as it is
    assert V.validate(csv_stats(sample, tmp_path / "clean.csv"), schema) == []
    missing_column = V.validate(csv_stats(sample.drop(columns=["fare"]), tmp_path / "missing.csv"), schema)
    assert ("fare", "SCHEMA_MISSING_COLUMN") in {(r["feature"], r["kind"]) for r in missing_column}
    text = sample.copy()
    text.loc[text.index[:10], "fare"] = "n/a"
    assert ("fare", "UNEXPECTED_DATA_TYPE") in {
        (r["feature"], r["kind"]) for r in V.validate(csv_stats(text, tmp_path / "text.csv"), schema)
    }
    # At serving time, the label's source and the split key may come or not: they are left out.
    with_both = csv_stats(sample.iloc[:1000], tmp_path / "serving.csv")
    assert ("tips", "SCHEMA_NEW_COLUMN") in {
        (r["feature"], r["kind"]) for r in V.validate(with_both, schema, environment="SERVING")
    }
    assert V.validate(V.restrict_to_environment(with_both, schema, "SERVING"), schema, environment="SERVING") == []
    without = csv_stats(sample.iloc[:1000].drop(columns=["tips", "trip_start_timestamp"]), tmp_path / "requests.csv")
    assert V.validate(V.restrict_to_environment(without, schema, "SERVING"), schema, environment="SERVING") == []


def test_empty_data_is_an_anomaly(schema, data):
    rows = V.validate(stats(data.iloc[:0]), schema, span=3)
    assert {"span": 3, "feature": V.DATASET, "kind": "EMPTY_DATA", "description": "no rows"} in rows


@pytest.mark.parametrize("spec", ["payment_type", "payment_type:ENUM_TYPE_UNEXPECTED_STRING_VALUES", "*"])
def test_accept_specs_match(spec):
    row = {"feature": "payment_type", "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "description": "x"}
    other = {"feature": "company", "kind": "COMPARATOR_L_INFTY_HIGH", "description": "y"}
    rejected, accepted = accepting.split_accepted([row, other], accepting.parse_accept([spec]))
    assert accepted[0] == row
    assert rejected == ([] if spec == "*" else [other])


def test_file_and_dataset_rows_can_be_accepted_by_name():
    rows = [
        {"feature": "(file)", "kind": "DUPLICATE_ROWS", "description": "x"},
        {"feature": "(dataset)", "kind": "EMPTY_DATA", "description": "y"},
    ]
    rejected, accepted = accepting.split_accepted(rows, accepting.parse_accept(["(file):DUPLICATE_ROWS"]))
    assert accepted == rows[:1] and rejected == rows[1:]


@pytest.mark.parametrize("bad", ["payment type", "fare:lowercase", ":KIND", "a:B:C"])
def test_bad_accept_specs_are_refused(bad):
    with pytest.raises(ValueError, match="--accept-anomalies"):
        accepting.parse_accept([bad])


def test_validation_error_lists_every_row_and_the_way_out():
    rows = [
        {
            "span": 2,
            "split": "train",
            "feature": "fare",
            "kind": "SCHEMA_MISSING_COLUMN",
            "description": "Column is completely missing",
        }
    ]
    message = str(V.DataValidationError(rows))
    assert "1 anomaly" in message and "nothing was trained or pushed" in message
    assert "fare" in message and "SCHEMA_MISSING_COLUMN" in message and "Column is completely missing" in message
    assert "--accept-anomalies" in message


@pytest.mark.parametrize(
    "value, message",
    [
        ("fare", "not JSON"),
        ('{"fare": 1}', "not a JSON list of strings"),
        ('["fare:not a kind"]', "'fare:not a kind' is not FEATURE, FEATURE:KIND or *"),
    ],
)
def test_a_malformed_accept_parameter_fails_the_gate_naming_the_format(value, message):
    """On Vertex AI an operator types the accept_anomalies parameter: a bad one is a clear error."""
    from pipeline.gate import accepted_anomalies

    assert accepted_anomalies('["fare", "company:ENUM_TYPE_UNEXPECTED_STRING_VALUES"]') == (
        "fare",
        "company:ENUM_TYPE_UNEXPECTED_STRING_VALUES",
    )
    with pytest.raises(ValueError, match="accept_anomalies: ") as failure:
        accepted_anomalies(value)
    assert message in str(failure.value) and "expected e.g." in str(failure.value)
