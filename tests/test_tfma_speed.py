"""The TFMA fixes (pipeline/tfma_speed.py) answer exactly as TFMA's own functions, on every
kind of input TFMA hands them, and are what TFMA calls once applied."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import binary_confusion_matrices, calibration_histogram, metric_types, metric_util

from pipeline import tfma_speed


def _outcome(function, inputs, **kwargs):
    """What a call yields (as lists), or the error it raises (type and message)."""
    try:
        return [tuple(np.asarray(v).tolist() for v in result) for result in function(inputs, **kwargs)]
    except Exception as e:  # noqa: BLE001 - errors are compared too
        return (type(e).__name__, str(e))


def _cases():
    labels = {
        "plain": np.array([1.0]),
        "fractional": np.array([0.25]),
        "per model": {"candidate": np.array([1.0]), "baseline": np.array([0.0])},
        "per output": {"out": np.array([0.0])},
        "by label key": {"tips": np.array([1.0])},
        "none": None,
        "unknown keys": {"other": np.array([1.0])},
    }
    predictions = {
        "plain": np.array([0.7]),
        "two values": np.array([0.2, 0.9]),
        "per model": {"candidate": np.array([0.7]), "baseline": np.array([0.4])},
        "per model and output": {"candidate": {"out": np.array([0.6])}, "baseline": {"out": np.array([0.1])}},
        "per output": {"out": np.array([0.3])},
        "none": None,
    }
    weights = {
        "none": None,
        "plain": np.array([2.0]),
        "per model": {"candidate": np.array([3.0]), "baseline": np.array([0.5])},
        "per output": {"out": np.array([4.0])},
    }
    configs = {
        "none": None,
        "label key": tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key="tips")]),
        "two models": tfma.EvalConfig(
            model_specs=[tfma.ModelSpec(name="candidate"), tfma.ModelSpec(name="baseline", is_baseline=True)]
        ),
    }
    for (lk, label), (pk, prediction), (wk, weight), (ck, config) in itertools.product(
        labels.items(), predictions.items(), weights.items(), configs.items()
    ):
        inputs = metric_types.StandardMetricInputs(labels=label, predictions=prediction, example_weights=weight)
        shapes = itertools.cycle([(True, False), (False, True)])  # flatten, allow_none: by turns
        for (model_name, output_name, weighted, fractional), (flatten, allow_none) in zip(
            itertools.product(("", "candidate", "baseline"), ("", "out"), (False, True), (False, True)), shapes
        ):
            kwargs = dict(
                eval_config=config,
                model_name=model_name,
                output_name=output_name,
                example_weighted=weighted,
                fractional_labels=fractional,
                flatten=flatten,
                allow_none=allow_none,
            )
            yield f"label {lk}, prediction {pk}, weight {wk}, config {ck}, {kwargs}", inputs, kwargs


def test_the_fix_answers_as_tfma_on_every_kind_of_input():
    patched = tfma_speed.patched_function()
    assert patched is not None, "the fix no longer applies to this TFMA (version or source changed)"
    original = patched.__wrapped_original__
    compared = errors = 0
    for name, inputs, kwargs in _cases():
        ours, theirs = _outcome(patched, inputs, **kwargs), _outcome(original, inputs, **kwargs)
        assert ours == theirs, name
        compared += 1
        errors += isinstance(theirs, tuple)
    # Both answers and errors were compared (the grid is not all one or the other).
    assert compared > 10_000 and 0 < errors < compared


def test_once_applied_every_combiner_calls_the_fix():
    assert tfma_speed.apply() and tfma_speed.apply()  # idempotent
    fixed = metric_util.to_label_prediction_example_weight
    assert getattr(fixed, "__wrapped_original__", None) is not None
    assert tfma.metrics.to_label_prediction_example_weight is fixed
    # A default taken at import (the confusion matrices behind AUC, precision and recall).
    defaults = binary_confusion_matrices.binary_confusion_matrices.__defaults__
    assert fixed in defaults and fixed.__wrapped_original__ not in defaults
    # No class is defined per call any more.
    nested = [c for c in fixed.__code__.co_consts if hasattr(c, "co_consts")]
    assert nested and not any("NotFound" in getattr(c, "co_names", ()) for c in nested)
    # The confusion matrices, as an AUC builds its computations.
    matrices = binary_confusion_matrices.binary_confusion_matrices
    assert getattr(matrices, "__wrapped_original__", None) is not None
    auc = tfma.metrics.AUC().computations(eval_config=tfma.EvalConfig(model_specs=[tfma.ModelSpec()]))
    assert any("_rebinned_arrays" in c.result.__code__.co_names for c in auc if hasattr(c, "result"))


def _histogram(rng: random.Random, size: int) -> list:
    """A calibration histogram as TFMA's combiner hands it over: buckets sorted by id, whole and
    fractional weights; from 50 buckets on, with the catch-all buckets (0 and 10,001) and the
    bucket whose lower edge is exactly 0 (a threshold TFMA keeps unshifted)."""
    top = calibration_histogram.DEFAULT_NUM_BUCKETS + 1
    ids = sorted(set(rng.sample(range(top + 1), size)) | ({0, 1, top} if size >= 50 else set()))
    buckets = []
    for bucket_id in ids:
        examples = rng.choice([1.0, 2.0, rng.random() * 5])
        labels = rng.choice([0.0, examples, rng.random() * examples])
        buckets.append(calibration_histogram.Bucket(bucket_id, labels, rng.random() * examples, examples))
    return buckets


# The threshold sets the histogram path is built with: AUC's 10,000 and a few fixed ones,
# with the edges TFMA treats apart (0, a negative first one, one at or above 1 + epsilon).
_THRESHOLDS = {
    "num_thresholds=10000": dict(num_thresholds=10_000),
    "num_thresholds=3": dict(num_thresholds=3),
    "0.5 from the histogram": dict(thresholds=[0.5], use_histogram=True),
    "0, 0.3, 0.5, 1": dict(thresholds=[0.0, 0.3, 0.5, 1.0], use_histogram=True),
    "from below 0 to above 1": dict(thresholds=[-0.5, 0.25, 0.75, 1.0 + 2e-7, 2.0], use_histogram=True),
    "top k (one negative)": dict(thresholds=[-1e-7]),
}


@pytest.mark.parametrize("name", list(_THRESHOLDS))
def test_the_matrices_fix_gives_tfma_s_matrices_to_the_bit(name):
    patched = tfma_speed.patched_matrices()
    assert patched is not None, "the fix no longer applies to this TFMA (version or source changed)"
    original = patched.__wrapped_original__
    ours, theirs = patched(**_THRESHOLDS[name]), original(**_THRESHOLDS[name])
    histogram_key, matrices_key = theirs[0].keys[-1], theirs[-1].keys[-1]
    assert [c.keys for c in ours] == [c.keys for c in theirs]
    rng = random.Random(name)
    for size in (0, 1, 2, 50, 3_000):
        histogram = _histogram(rng, size)
        a = ours[-1].result({histogram_key: histogram})[matrices_key]
        b = theirs[-1].result({histogram_key: histogram})[matrices_key]
        assert a == b, (name, size)  # every count equal, as floats, not within a tolerance
        assert all(type(v) is float for v in a.tp + a.fn), "the same types as TFMA's lists"


@pytest.mark.parametrize("version", ["0.46.0", "0.48.0"])
def test_another_tfma_version_keeps_its_own_functions(monkeypatch, version):
    monkeypatch.setattr(tfma, "__version__", version)
    assert tfma_speed.patched_function() is None and tfma_speed.patched_matrices() is None
