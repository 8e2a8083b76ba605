"""The TFMA fix (pipeline/tfma_speed.py) answers exactly as TFMA's own function, on every kind
of input TFMA's metric combiners hand it, and is what the combiners call once applied."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import binary_confusion_matrices, metric_types, metric_util

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


@pytest.mark.parametrize("version", ["0.46.0", "0.48.0"])
def test_another_tfma_version_keeps_its_own_function(monkeypatch, version):
    monkeypatch.setattr(tfma, "__version__", version)
    assert tfma_speed.patched_function() is None
