"""The TFMA evaluation config: metrics, slices and the thresholds that bless a model."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from modules import features as F
from modules.contract import PREDICTION_KEY, TRANSFORM_SIGNATURE
from pipeline.configs import EvalThresholds


def _threshold(lower_bound: float, max_regression: float) -> tfma.MetricThreshold:
    """At least `lower_bound` and, when a baseline exists, no worse than the baseline's by more
    than `max_regression` (absolute; 0: a tie passes, a loss does not)."""
    return tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}),
        # Ignored on the first run, when there is no blessed baseline.
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max(max_regression, 1e-10)},
        ),
    )


def gated_slices() -> list[tfma.SlicingSpec]:
    """The dataset's gated slices (features.GATED_SLICES), one spec per value."""
    return [tfma.SlicingSpec(feature_values={k: v}) for k, values in F.GATED_SLICES.items() for v in values]


def _gated(
    class_name: str, lower_bound: float, max_regression: float, slices: tuple[float, float] | None = None
) -> tfma.MetricConfig:
    """The metric gates the blessing on the overall slice and, with `slices` (lower bound, max
    regression), on each of the dataset's gated slices. Other slices (a payment type with no
    positive example has no AUC at all) are reported, not gated."""
    per_slice = [
        tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=_threshold(lower_bound, max_regression))
    ]
    if slices is not None and gated_slices():
        per_slice.append(tfma.PerSliceMetricThreshold(slicing_specs=gated_slices(), threshold=_threshold(*slices)))
    return tfma.MetricConfig(class_name=class_name, per_slice_thresholds=per_slice)


def build_eval_config(thresholds: EvalThresholds) -> tfma.EvalConfig:
    """Overall and per-slice metrics; AUC and accuracy gate the blessing on the overall slice,
    AUC on the dataset's gated slices too."""
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                # What TFMA would find out by loading the model as Keras (one load per model
                # and run, ~1.2 s, failing: the export is not a Keras model).
                model_type=tfma.TF_GENERIC,
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
                    _gated(
                        "AUC",
                        thresholds.min_auc,
                        thresholds.max_auc_regression,
                        slices=(thresholds.slice_min_auc, thresholds.slice_max_auc_regression),
                    ),
                    _gated("BinaryAccuracy", thresholds.min_accuracy, thresholds.max_accuracy_regression),
                    tfma.MetricConfig(class_name="Precision"),
                    tfma.MetricConfig(class_name="Recall"),
                    tfma.MetricConfig(class_name="MeanLabel"),
                    tfma.MetricConfig(class_name="MeanPrediction"),
                ]
            )
        ],
    )
