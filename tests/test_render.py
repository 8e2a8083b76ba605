"""The text renderings of the metadata queries."""

from __future__ import annotations

from ops import render


def side(model_id: int, version: str, metrics: dict) -> dict:
    return {
        "artifact": {"type": "PushedModel", "id": model_id, "properties": {"pushed_version": version}},
        "model_id": model_id,
        "metrics": metrics,
    }


def test_comparison_says_n_a_for_an_undefined_metric_and_orders_slices_naturally():
    nan = float("nan")
    result = {
        "a": side(7, "1700000002", {"overall": {"auc": 0.95}, "trip_miles=10.0": {"auc": nan}, "trip_miles=2.0": {"auc": 0.9}}),
        "b": side(5, "1700000001", {"overall": {"auc": 0.94}, "trip_miles=10.0": {"auc": 0.8}, "trip_miles=2.0": {"auc": 0.91}}),
        "differences": {},
    }
    text = render.comparison(result)
    assert "nan" not in text
    (undefined,) = [line for line in text.splitlines() if line.startswith("trip_miles=10.0")]
    assert undefined.split()[2:] == ["n/a", "0.8000"]  # and no A - B
    rows = [line.split() for line in text.splitlines()[5:8]]
    # The overall slice first, then by value (2 before 10, not as text).
    assert [r[0] for r in rows] == ["overall", "trip_miles=2.0", "trip_miles=10.0"]
    assert rows[0][-1] == "+0.0100"
