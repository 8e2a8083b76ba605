"""Model validation on the slice that carries the signal: a model that learned nothing but the
payment type is blessed when only the overall slice gates (cash tips are not recorded, so
"cash or card" scores well overall), and refused by the pipeline's eval config, which gates
the dataset's gated slices (features.GATED_SLICES) too. TFMA as the Evaluator runs it, on the
bundled rows."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from helpers import read_rows, to_example
from modules import features as F
from modules.contract import PREDICTION_KEY, TRANSFORM_SIGNATURE
from pipeline.configs import EvalThresholds
from pipeline.eval_config import build_eval_config

pytestmark = pytest.mark.xdist_group("transform-sample")


class RateOf(tf.Module):
    """The big-tipper rate of each value of one feature in the training rows, and nothing
    else; with the exported model's two signatures that TFMA reads (predictions, and the label
    through the transform signature)."""

    def __init__(self, feature: str, rates: dict[str, float]):
        super().__init__()
        self.feature = feature
        keys = tf.constant(list(rates), tf.string)
        values = tf.constant(list(rates.values()), tf.float32)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), 0.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        spec = {self.feature: tf.io.FixedLenFeature([], tf.string, default_value="")}
        return {PREDICTION_KEY: self.table.lookup(tf.io.parse_example(examples, spec)[self.feature])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform(self, examples):
        spec = {k: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for k in F.LABEL_INPUT_KEYS}
        return {F.LABEL_KEY: F.make_label(tf.io.parse_example(examples, spec))}


def rate_model(feature: str, folder) -> str:
    """A RateOf(feature) model with the rates of rows 0-9,999, saved in `folder`."""
    rates: dict[str, list[int]] = {}
    for r in read_rows(10_000):
        label = int(r["fare"] and r["tips"] and r["fare"][0] > 0 and r["tips"][0] > F.BIG_TIP_FRACTION * r["fare"][0])
        rates.setdefault(r[feature][0].decode() if r[feature] else "", []).append(label)
    module = RateOf(feature, {k: sum(v) / len(v) for k, v in rates.items()})
    path = str(folder / "model")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve, TRANSFORM_SIGNATURE: module.transform})
    return path


def eval_data(path: str, rows: int) -> str:
    """Rows 10,000 on (not the rates' rows) as tf.Examples."""
    with tf.io.TFRecordWriter(path) as w:
        for r in read_rows(rows, start=10_000):
            w.write(to_example(r))
    return path


@pytest.fixture(scope="module")
def payment_type_only(tmp_path_factory):
    """(the model's folder, eval data): rates from rows 0-9,999, evaluated on 10,000-11,999."""
    root = tmp_path_factory.mktemp("payment-type-only")
    return rate_model("payment_type", root), eval_data(str(root / "eval.tfrecord"), 2_000)


def evaluate(models: dict[str, str], data: str, out: str, eval_config) -> tfma.ValidationResult:
    """TFMA's evaluation as TFX's Evaluator runs it: one model alone (a first run, no baseline
    yet), or a candidate against a baseline (models: {"candidate": dir, "baseline": dir})."""
    config = tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=len(models) > 1, rubber_stamp=True)
    shared = [
        tfma.default_eval_shared_model(models[spec.name or tfma.CANDIDATE_KEY], model_name=spec.name, eval_config=config)
        for spec in config.model_specs
    ]
    tfma.run_model_analysis(
        eval_shared_model=shared[0] if len(shared) == 1 else shared, eval_config=config, data_location=data, output_path=out
    )
    return tfma.load_validation_result(out)


@pytest.fixture(scope="module")
def evaluations(payment_type_only, tmp_path_factory):
    """(models by name, eval data, folder): TFMA's evaluations with the pipeline's eval config
    of each model alone (<name>/) and of the company model against the payment-type one
    (company-vs-payment/)."""
    folder = tmp_path_factory.mktemp("evaluations")
    models = {"payment": payment_type_only[0], "company": rate_model("company", folder)}
    data, config = payment_type_only[1], build_eval_config(EvalThresholds())
    for name, path in models.items():
        evaluate({tfma.CANDIDATE_KEY: path}, data, str(folder / name), config)
    both = {tfma.CANDIDATE_KEY: models["company"], tfma.BASELINE_KEY: models["payment"]}
    evaluate(both, data, str(folder / "company-vs-payment"), config)
    return models, data, folder


def overall_only(config):
    """The eval config as it was: the thresholds on the overall slice only."""
    pruned = tfma.EvalConfig()
    pruned.CopyFrom(config)
    for spec in pruned.metrics_specs:
        for metric in spec.metrics:
            kept = [t for t in metric.per_slice_thresholds if list(t.slicing_specs) == [tfma.SlicingSpec()]]
            del metric.per_slice_thresholds[:]
            metric.per_slice_thresholds.extend(kept)
    return pruned


def test_a_payment_type_only_model_is_not_blessed(evaluations, tmp_path):
    models, data, folder = evaluations
    config = build_eval_config(EvalThresholds())
    # Gated on the overall slice only, it clears the bar: AUC and accuracy above 0.9 and 0.85.
    loose = evaluate({tfma.CANDIDATE_KEY: models["payment"]}, data, str(tmp_path / "overall"), overall_only(config))
    assert loose.validation_ok, loose
    # The pipeline's config gates the card payments too, where it is at chance: refused.
    strict = tfma.load_validation_result(str(folder / "payment"))
    assert not strict.validation_ok
    failed = {
        (tuple((k.column, k.bytes_value.decode()) for k in f.slice_key.single_slice_keys), c.metric_key.name)
        for f in strict.metric_validations_per_slice
        for c in f.failures
    }
    assert failed == {((("payment_type", "Credit Card"),), "auc")}


# --- A baseline's recorded figures (pipeline/recorded_baseline.py) --------------------------------


def all_metrics(out: str) -> dict[tuple[str, str], float]:
    metrics = tfma.load_metrics(out)
    return {(str(m.slice_key), str(kv.key)): kv.value.double_value.value for m in metrics for kv in m.metric_keys_and_values}


def test_a_baseline_s_recorded_figures_complete_the_evaluation_as_tfma_would(evaluations, tmp_path):
    """The company model evaluated alone, completed with the payment-type model's own
    evaluation as the baseline's figures, is the two-model evaluation TFMA writes."""
    import json
    import math
    import shutil

    from pipeline import recorded_baseline

    models, _, folder = evaluations
    out = str(tmp_path / "evaluation")
    shutil.copytree(folder / "company", out)
    config = build_eval_config(EvalThresholds())
    config = tfma.utils.update_eval_config_with_defaults(config, has_baseline=True, rubber_stamp=True)
    locations = {tfma.CANDIDATE_KEY: models["company"], tfma.BASELINE_KEY: models["payment"]}
    result = recorded_baseline.complete(out, str(folder / "payment"), config, locations)

    truth = str(folder / "company-vs-payment")
    # The same failures (in TFMA's order within a slice) and details; TFMA merges the slices in
    # the order Beam hands them over.
    assert recorded_baseline.canonical(result) == recorded_baseline.canonical(tfma.load_validation_result(truth))
    assert tfma.load_validation_result(out) == result
    # Refused for falling behind the baseline (the change thresholds ran), not only for
    # missing the bar.
    changes = {c.metric_key.name for f in result.metric_validations_per_slice for c in f.failures if c.metric_key.is_diff}
    assert not result.validation_ok and "auc" in changes
    ours, theirs = all_metrics(out), all_metrics(truth)
    assert set(ours) == set(theirs)
    assert any('model_name: "baseline"' in key and "auc" in key for _, key in ours)
    for key, value in ours.items():
        assert value == pytest.approx(theirs[key], rel=1e-6, abs=1e-9) or math.isnan(value) and math.isnan(theirs[key]), key
    with open(os.path.join(out, "eval_config.json")) as a, open(os.path.join(truth, "eval_config.json")) as b:
        assert json.load(a) == json.load(b)


def test_the_evaluation_key_ignores_thresholds_and_names_but_not_data_or_metrics():
    from pipeline.recorded_baseline import evaluation_key

    config = build_eval_config(EvalThresholds())
    key = evaluation_key(config, ["/a/examples/1"], ["eval"])
    assert evaluation_key(build_eval_config(EvalThresholds(min_auc=0.5)), ["/a/examples/1/"], ["eval"]) == key
    named = tfma.utils.update_eval_config_with_defaults(config, has_baseline=True, rubber_stamp=True)
    assert evaluation_key(named, ["/a/examples/1"], ["eval"]) == key
    assert evaluation_key(config, ["/a/examples/2"], ["eval"]) != key
    assert evaluation_key(config, ["/a/examples/1"], ["train"]) != key
    fewer = tfma.EvalConfig()
    fewer.CopyFrom(config)
    del fewer.slicing_specs[-1]
    assert evaluation_key(fewer, ["/a/examples/1"], ["eval"]) != key
