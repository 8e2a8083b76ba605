"""The dataset's feature spec: the one place that knows the Chicago taxi columns.

Everything else (preprocessing, the model, serving signatures, the eval config, the tests)
reads the feature lists from here. A new dataset needs a new version of this file and a new
curated schema in `schemas/`, not new pipeline code.

Missing values are explicit, never silently zero:
  * numeric features are imputed with the training mean and carry a `<name>_missing` flag;
  * categorical features map "missing" to its own id (0 for integer categories, hashed ids
    and buckets; a reserved token for vocabularies).
"""

from __future__ import annotations

import tensorflow as tf

# --- Label ----------------------------------------------------------------------------------
LABEL_KEY = "big_tipper"
# Raw columns that exist only to compute the label: absent in the SERVING environment.
LABEL_SOURCE_KEYS = ("tips",)
# Every raw column make_label reads (label sources and ordinary features).
LABEL_INPUT_KEYS = ("fare", "tips")
BIG_TIP_FRACTION = 0.2


def make_label(raw: dict[str, tf.Tensor]) -> tf.Tensor:
    """Binary label: the tip is more than 20% of the fare. `raw` holds dense, filled values.

    A missing or zero fare counts as "not a big tipper" rather than dividing by zero.
    """
    fare, tips = raw["fare"], raw["tips"]
    return tf.cast(tf.logical_and(fare > 0, tips > BIG_TIP_FRACTION * fare), tf.int64)


# --- Inputs ---------------------------------------------------------------------------------
# Numeric features -> number of quantile buckets. Each becomes a z-scored dense value (deep
# part), a quantile-bucket id (wide part and crosses) and a 0/1 "was missing" flag.
NUMERIC_FEATURES = {
    "fare": 50,
    "trip_miles": 20,
    "trip_seconds": 20,
    "pickup_latitude": 10,
    "pickup_longitude": 10,
    "dropoff_latitude": 10,
    "dropoff_longitude": 10,
}
# Skewed non-negative amounts are log1p-compressed before scaling.
LOG_SCALED_FEATURES = ("fare", "trip_miles", "trip_seconds")
# Strings: vocabulary of the top_k values seen in training plus OOV hash buckets.
VOCAB_FEATURES = {"payment_type": 10, "company": 100}  # name -> top_k
VOCAB_OOV_BUCKETS = 5
# Small integer categories: name -> largest valid value + 1. Missing -> 0, values shift by 1.
INT_CATEGORICAL_FEATURES = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}
# High-cardinality integer ids: hashed. name -> hash buckets.
HASHED_FEATURES = {"pickup_census_tract": 64, "dropoff_census_tract": 256}
# Hashed feature crosses for the wide part: name -> (input features, hash buckets).
# The inputs stay in the model uncrossed as well.
CROSSES = {
    "pickup_cell": (("pickup_latitude", "pickup_longitude"), 200),
    "dropoff_cell": (("dropoff_latitude", "dropoff_longitude"), 200),
    "trip_cell": (("pickup_community_area", "dropoff_community_area"), 1000),
    "day_hour": (("trip_start_day", "trip_start_hour"), 200),
    "payment_company": (("payment_type", "company"), 500),
}
# Columns present in the data that the model does not use (kept in the data for slicing,
# lineage and the split key).
UNUSED_FEATURES = ("trip_start_timestamp",)

# --- Pipeline-level facts about the dataset --------------------------------------------------
# ExampleGen hashes this column to assign splits: the same trip always lands in the same split,
# and trips that started in the same 15-minute window (the data's timestamp resolution; shared
# rides and fleet dispatches) can never straddle train and eval.
SPLIT_KEY = "trip_start_timestamp"
# When each row happened (seconds since 1970): the data gate refuses a span whose events lie in
# the future of the run, or far from the previous span's.
EVENT_TIME_KEY = "trip_start_timestamp"
# TFMA slices the evaluation by these raw features (plus overall).
SLICE_FEATURES = ("payment_type", "trip_start_hour")
# Slices that gate the blessing beside the overall one: where the model has work to do. Cash
# tips are not recorded in this data (every cash trip is "not a big tipper"), so the overall
# figures mostly measure "cash or card"; a model that learned nothing but the payment type
# scores well overall and at chance on card payments. Feature -> values, each a gated slice.
GATED_SLICES = {"payment_type": ("Credit Card",)}

# --- Serving-time missing-value convention for the raw-feature (JSON) signature --------------
# tf.Example requests mark a missing value by leaving the feature out. JSON clients send every
# feature as a dense value; these sentinels say "missing".
MISSING_INT = -1
MISSING_STRING = ""
# float features: NaN


def transformed_name(key: str) -> str:
    return f"{key}_xf"


def missing_flag_name(key: str) -> str:
    return f"{key}_missing_xf"


def vocab_size(key: str) -> int:
    """Number of ids `compute_and_apply_vocabulary` can emit for a vocabulary feature."""
    return VOCAB_FEATURES[key] + VOCAB_OOV_BUCKETS


def bucket_name(key: str) -> str:
    return f"{key}_bucket_xf"


def dense_feature_names() -> list[str]:
    """Transformed float features fed to the deep part."""
    return [transformed_name(k) for k in NUMERIC_FEATURES] + [missing_flag_name(k) for k in NUMERIC_FEATURES]


def categorical_cardinalities(include_crosses: bool = True) -> dict[str, int]:
    """Transformed int64 id features -> number of distinct ids (0 included)."""
    out = {}
    for key, n in NUMERIC_FEATURES.items():
        out[bucket_name(key)] = n + 1
    for key in VOCAB_FEATURES:
        out[transformed_name(key)] = vocab_size(key)
    for key, n in INT_CATEGORICAL_FEATURES.items():
        out[transformed_name(key)] = n + 1
    for key, n in HASHED_FEATURES.items():
        out[transformed_name(key)] = n + 1
    if include_crosses:
        for key, (_, n) in CROSSES.items():
            out[transformed_name(key)] = n
    return out


def cross_names() -> set[str]:
    return {transformed_name(k) for k in CROSSES}


def raw_input_keys() -> list[str]:
    """Raw columns the model reads at serving time (label sources excluded)."""
    keys = [
        *NUMERIC_FEATURES,
        *VOCAB_FEATURES,
        *INT_CATEGORICAL_FEATURES,
        *HASHED_FEATURES,
    ]
    return list(dict.fromkeys(keys))
