"""The TFMA evaluation config: metrics, slices and the thresholds that bless a model."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from modules import features as F
from modules.contract import PREDICTION_KEY, TRANSFORM_SIGNATURE
from pipeline.configs import EvalThresholds


def _gated(class_name: str, lower_bound: float, max_regression: float) -> tfma.MetricConfig:
    """The metric must be at least `lower_bound` on the overall slice and, when a baseline
    exists, no worse than the baseline's by more than `max_regression` (absolute).

    The gate applies to the overall slice only: small slices (a payment type with no positive
    example has no AUC at all) are reported, not gated.
    """
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}),
        # Ignored on the first run, when the resolver finds no blessed baseline.
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max(max_regression, 1e-10)},
        ),
    )
    return tfma.MetricConfig(
        class_name=class_name,
        per_slice_thresholds=[tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)],
    )


def build_eval_config(thresholds: EvalThresholds) -> tfma.EvalConfig:
    """Overall and per-slice metrics; AUC and accuracy gate the blessing."""
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                prediction_key=PREDICTION_KEY,
                label_key=F.LABEL_KEY,
                # The label is computed by Transform, so TFMA reads it from this signature.
                preprocessing_function_names=[TRANSFORM_SIGNATURE],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[k]) for k in F.SLICE_FEATURES],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    _gated("AUC", thresholds.min_auc, thresholds.max_auc_regression),
                    _gated("BinaryAccuracy", thresholds.min_accuracy, thresholds.max_accuracy_regression),
                    tfma.MetricConfig(class_name="Precision"),
                    tfma.MetricConfig(class_name="Recall"),
                    tfma.MetricConfig(class_name="MeanLabel"),
                    tfma.MetricConfig(class_name="MeanPrediction"),
                ]
            )
        ],
    )
