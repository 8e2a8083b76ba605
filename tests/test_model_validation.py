"""Model validation on the slice that carries the signal: a model that learned nothing but the
payment type is blessed when only the overall slice gates (cash tips are not recorded, so
"cash or card" scores well overall), and refused by the pipeline's eval config, which gates
the dataset's gated slices (features.GATED_SLICES) too. TFMA as the Evaluator runs it, on the
bundled rows."""

from __future__ import annotations

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from helpers import read_rows, to_example
from modules import features as F
from modules.contract import PREDICTION_KEY, TRANSFORM_SIGNATURE
from pipeline.configs import EvalThresholds
from pipeline.eval_config import build_eval_config

pytestmark = pytest.mark.xdist_group("transform-sample")


class PaymentTypeOnly(tf.Module):
    """The big-tipper rate of each payment type in the training rows, and nothing else; with
    the exported model's two signatures that TFMA reads (predictions, and the label through
    the transform signature)."""

    def __init__(self, rates: dict[str, float]):
        super().__init__()
        keys = tf.constant(list(rates), tf.string)
        values = tf.constant(list(rates.values()), tf.float32)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), 0.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        spec = {"payment_type": tf.io.FixedLenFeature([], tf.string, default_value="")}
        return {PREDICTION_KEY: self.table.lookup(tf.io.parse_example(examples, spec)["payment_type"])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform(self, examples):
        spec = {k: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for k in F.LABEL_INPUT_KEYS}
        return {F.LABEL_KEY: F.make_label(tf.io.parse_example(examples, spec))}


@pytest.fixture(scope="module")
def payment_type_only(tmp_path_factory):
    """(the model's folder, eval data): rates from rows 0-9,999, evaluated on 10,000-15,000."""
    train = read_rows(10_000)
    rates: dict[str, list[int]] = {}
    for r in train:
        label = int(r["fare"] and r["tips"] and r["fare"][0] > 0 and r["tips"][0] > F.BIG_TIP_FRACTION * r["fare"][0])
        rates.setdefault(r["payment_type"][0].decode() if r["payment_type"] else "", []).append(label)
    root = tmp_path_factory.mktemp("payment-type-only")
    module = PaymentTypeOnly({k: sum(v) / len(v) for k, v in rates.items()})
    tf.saved_model.save(
        module, str(root / "model"), signatures={"serving_default": module.serve, TRANSFORM_SIGNATURE: module.transform}
    )
    data = str(root / "eval.tfrecord")
    with tf.io.TFRecordWriter(data) as w:
        for r in read_rows(5_000, start=10_000):
            w.write(to_example(r))
    return str(root / "model"), data


def validate(model_dir: str, data: str, eval_config, out: str) -> tfma.ValidationResult:
    """TFMA's validation as TFX's Evaluator runs it on a first run (no baseline yet)."""
    eval_config = tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=False, rubber_stamp=True)
    shared = tfma.default_eval_shared_model(model_dir, eval_config=eval_config)
    tfma.run_model_analysis(eval_shared_model=shared, eval_config=eval_config, data_location=data, output_path=out)
    return tfma.load_validation_result(out)


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


def test_a_payment_type_only_model_is_not_blessed(payment_type_only, tmp_path):
    model_dir, data = payment_type_only
    config = build_eval_config(EvalThresholds())
    # Gated on the overall slice only, it clears the bar: AUC and accuracy above 0.9 and 0.85.
    loose = validate(model_dir, data, overall_only(config), str(tmp_path / "overall"))
    assert loose.validation_ok, loose
    # The pipeline's config gates the card payments too, where it is at chance: refused.
    strict = validate(model_dir, data, config, str(tmp_path / "sliced"))
    assert not strict.validation_ok
    failed = {
        (tuple((k.column, k.bytes_value.decode()) for k in f.slice_key.single_slice_keys), c.metric_key.name)
        for f in strict.metric_validations_per_slice
        for c in f.failures
    }
    assert failed == {((("payment_type", "Credit Card"),), "auc")}
