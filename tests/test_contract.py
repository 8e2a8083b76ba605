"""The one row validator (modules/contract.py): JSON values (REST, the Vertex endpoint) and CSV
text (batch) give the same verdict and the same message for the same value, column-wise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from modules.contract import Column, RowContract, shown

DTYPES = {"fare": tf.float32, "trip_start_hour": tf.int64, "payment_type": tf.string, "pickup_census_tract": tf.int64}
CONTRACT = RowContract.for_model(DTYPES, {"fare": (0.0, 10000.0), "trip_start_hour": (0.0, 23.0)})


def check_json(rows: list[dict]) -> list[str | None]:
    columns = {n: Column.from_json([r[n] for r in rows], k) for n, k in CONTRACT.kinds.items()}
    return CONTRACT.check(columns)


def check_text(rows: list[dict]) -> list[str | None]:
    columns = {n: Column.from_text(pd.Series([r[n] for r in rows], dtype=object), k) for n, k in CONTRACT.kinds.items()}
    return CONTRACT.check(columns)


GOOD = {"fare": 12.5, "trip_start_hour": 7, "payment_type": "Cash", "pickup_census_tract": None}
GOOD_TEXT = {"fare": "12.5", "trip_start_hour": "7", "payment_type": "Cash", "pickup_census_tract": ""}

# (JSON value, the same value as CSV text, the message) for one feature at a time.
CASES = [
    ("fare", "twelve", "twelve", "feature 'fare' must be a number or null, got 'twelve'"),
    ("fare", -50.0, "-50", "feature 'fare' is -50.0, outside the schema's domain [0, 10000]"),
    ("fare", 1e39, "1e39", "feature 'fare' is out of the float32 range: 1e+39"),
    ("fare", float("nan"), "nan", "feature 'fare' must be a finite number, got nan"),
    ("fare", float("inf"), "inf", "feature 'fare' must be a finite number, got inf"),
    ("trip_start_hour", 3.5, "3.5", "feature 'trip_start_hour' must be an integer or null, got 3.5"),
    ("trip_start_hour", 31, "31", "feature 'trip_start_hour' is 31, outside the schema's domain [0, 23]"),
    ("trip_start_hour", "3 am", "3 am", "feature 'trip_start_hour' must be an integer or null, got '3 am'"),
    ("pickup_census_tract", 2.0**70, "1180591620717411303424", "feature 'pickup_census_tract' is out of the int64 range"),
]


@pytest.mark.parametrize("name, value, text, message", CASES)
def test_json_and_csv_get_the_same_verdict_and_message(name, value, text, message):
    rows_json = [GOOD, dict(GOOD, **{name: value}), GOOD]
    rows_text = [GOOD_TEXT, dict(GOOD_TEXT, **{name: text}), GOOD_TEXT]
    from_json, from_text = check_json(rows_json), check_text(rows_text)
    assert from_json[0] is None and from_json[2] is None and from_text[0] is None and from_text[2] is None
    assert from_json[1] is not None and from_json[1].startswith(message), from_json[1]
    assert from_text[1] is not None and from_text[1].startswith(message), from_text[1]


def test_what_only_json_can_send_is_refused_too():
    problems = check_json(
        [
            dict(GOOD, trip_start_hour=True),
            dict(GOOD, payment_type=1),
            dict(GOOD, payment_type="\ud800"),
            dict(GOOD, pickup_census_tract=10**5000),
            dict(GOOD, fare=10**400),
        ]
    )
    assert problems == [
        "feature 'trip_start_hour' must be an integer or null, got True",
        "feature 'payment_type' must be a string or null, got 1",
        "feature 'payment_type' is not valid text (an unpaired surrogate): '\\ud800'",
        f"feature 'pickup_census_tract' is out of the int64 range: {shown(10**5000)}",
        f"feature 'fare' is out of the float32 range: {shown(10**400)}",
    ]
    assert all(len(p) < 200 for p in problems)


def test_messages_are_bounded_and_the_first_problem_of_a_row_is_reported():
    assert len(shown("x" * 5_000_000)) <= 42
    (problem,) = check_json([dict(GOOD, fare="x" * 10_000, trip_start_hour=99)])
    assert problem.startswith("feature 'fare' must be a number") and len(problem) < 120


def test_valid_rows_become_the_signatures_dense_columns():
    rows = [GOOD, dict(GOOD, fare=None, trip_start_hour=None, payment_type=None, pickup_census_tract=2**60 + 1)]
    columns = {n: Column.from_json([r[n] for r in rows], k) for n, k in CONTRACT.kinds.items()}
    assert CONTRACT.check(columns) == [None, None]
    dense = {n: columns[n].dense(CONTRACT.kinds[n], DTYPES[n].as_numpy_dtype) for n in DTYPES}
    assert dense["fare"].dtype == np.float32 and np.isnan(dense["fare"][1]) and dense["fare"][0] == 12.5
    assert dense["trip_start_hour"].tolist() == [7, -1]  # F.MISSING_INT
    assert dense["payment_type"].tolist() == ["Cash", ""]  # F.MISSING_STRING
    assert dense["pickup_census_tract"].tolist() == [-1, 2**60 + 1]  # exact beyond 2**53


def test_columns_the_schema_does_not_know_are_unknown_and_its_others_accepted():
    assert CONTRACT.unknown(["fare", "tips", "trip_start_timestamp", "colour"]) == ["colour"]
    assert CONTRACT.missing(["fare", "payment_type"]) == ["pickup_census_tract", "trip_start_hour"]
