"""preprocessing_fn through tf.Transform's Beam implementation, checked value by value."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import analyze_and_transform
from modules import features as F


def _row(fare, tips, payment=b"Credit Card", company=b"Flash Cab", hour=12, lat=41.9, miles=1.0, tract=None):
    return {
        "fare": [fare],
        "tips": [tips],
        "payment_type": [payment] if payment else [],
        "company": [company] if company else [],
        "trip_start_hour": [hour] if hour is not None else [],
        "trip_start_day": [3],
        "trip_start_month": [5],
        "trip_start_timestamp": [1400000000],
        "pickup_latitude": [lat] if lat is not None else [],
        "pickup_longitude": [-87.6],
        "dropoff_latitude": [],
        "dropoff_longitude": [],
        "trip_miles": [miles],
        "trip_seconds": [600],
        "pickup_census_tract": [],
        "dropoff_census_tract": [tract] if tract else [],
        "pickup_community_area": [8],
        "dropoff_community_area": [],
    }


ROWS = [
    _row(10.0, 3.0),  # 30% tip -> label 1
    _row(10.0, 2.0),  # exactly 20%: not more -> 0
    _row(0.0, 1.0, payment=b"Cash", company=None),  # zero fare -> 0, not a division by zero
    _row(40.0, 0.0, payment=b"Cash", hour=0, lat=None, tract=17031081500),
    _row(25.0, 6.0, hour=24, company=None),  # hour out of the schema's range
    _row(5.0, 1.5, payment=None, hour=None, miles=3.0),
]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return analyze_and_transform(ROWS, str(tmp_path_factory.mktemp("tg")))


def test_label_is_tip_over_20_percent_of_fare(out):
    assert [r[F.LABEL_KEY] for r in out] == [1, 0, 0, 0, 1, 1]


def test_numeric_is_log_z_score_over_the_analyzed_rows(out):
    logs = np.log1p([r["fare"][0] for r in ROWS])
    expected = (logs - logs.mean()) / logs.std()
    np.testing.assert_allclose([r[F.transformed_name("fare")] for r in out], expected, rtol=1e-4)


def test_missing_numeric_is_mean_imputed_and_flagged(out):
    # (The imputed value's z-score is checked on varied values in the next test.)
    flags = [r[F.missing_flag_name("pickup_latitude")] for r in out]
    assert flags == [0, 0, 0, 1, 0, 0]
    assert out[3][F.bucket_name("pickup_latitude")] == 0
    assert all(r[F.bucket_name("pickup_latitude")] > 0 for i, r in enumerate(out) if i != 3)


def test_numeric_statistics_ignore_missing_values(tmp_path):
    lats = [41.80, 41.90, 42.00, None, 41.85, 41.95]
    rows = [_row(10.0, 3.0, lat=lat) for lat in lats]
    out = analyze_and_transform(rows, str(tmp_path))
    present = np.array([lat for lat in lats if lat is not None])
    # Population mean and standard deviation of the five present values: the imputed row
    # neither shifts the mean nor shrinks the variance.
    expected = [(lat - present.mean()) / present.std() if lat is not None else 0.0 for lat in lats]
    got = [r[F.transformed_name("pickup_latitude")] for r in out]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_fare_buckets_follow_the_order_of_fares(out):
    buckets = [r[F.bucket_name("fare")] for r in out]
    fares = [r["fare"][0] for r in ROWS]
    for (fa, ba), (fb, bb) in zip(zip(fares, buckets), zip(fares[1:], buckets[1:])):
        assert (fa < fb) <= (ba <= bb)
    assert len(set(buckets)) >= 4  # 5 distinct fares, 50 requested buckets
    assert all(1 <= b <= F.NUMERIC_FEATURES["fare"] for b in buckets)


def test_integer_categories_shift_by_one_and_missing_or_out_of_range_is_zero(out):
    assert [r[F.transformed_name("trip_start_hour")] for r in out] == [13, 13, 13, 1, 0, 0]


def test_vocabulary_gives_missing_its_own_id(out):
    company = [r[F.transformed_name("company")] for r in out]
    # rows 2 and 4 have no company: same id, different from Flash Cab's (rows 0, 1, 3, 5).
    assert company[2] == company[4] != company[0]
    assert company[0] == company[1] == company[3] == company[5]
    payment = [r[F.transformed_name("payment_type")] for r in out]
    assert payment[0] == payment[1] == payment[4]  # Credit Card
    assert payment[2] == payment[3] != payment[0]  # Cash
    assert payment[5] not in (payment[0], payment[2])  # missing
    assert all(0 <= p < F.vocab_size("payment_type") for p in payment)


def test_hashed_ids_reserve_zero_for_missing(out):
    tract = [r[F.transformed_name("dropoff_census_tract")] for r in out]
    assert tract[3] >= 1 and tract[:3] == [0, 0, 0]


def test_crosses_are_deterministic_and_in_range(out):
    cross = [r[F.transformed_name("payment_company")] for r in out]
    assert cross[0] == cross[1]  # same payment type and company
    assert cross[0] != cross[2]
    _, buckets = F.CROSSES["payment_company"]
    assert all(0 <= c < buckets for c in cross)


def test_every_model_input_is_produced(out):
    expected = set(F.dense_feature_names()) | set(F.categorical_cardinalities()) | {F.LABEL_KEY}
    assert set(out[0]) == expected
