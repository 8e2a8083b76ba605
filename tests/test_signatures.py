"""No training/serving skew: both serving signatures of the exported model give exactly what
the model gives on the rows as tf.Transform's Beam pipeline transformed them for training."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from helpers import dense_columns, to_example
from modules import features as F
from modules.contract import PREDICTION_KEY, SERVING_RAW_SIGNATURE, TRANSFORM_SIGNATURE

# They share one tf.Transform analysis of sample rows (a session fixture): one worker.
pytestmark = pytest.mark.xdist_group("transform-sample")


@pytest.fixture(scope="module")
def exported(exported_model):
    export_dir, expected = exported_model
    return tf.saved_model.load(export_dir), expected


def test_sample_has_missing_values(sample_rows):
    # The equality below only means something if some inputs are missing.
    assert any(not r["company"] for r in sample_rows)
    assert any(not r["dropoff_latitude"] for r in sample_rows)


def test_serving_default_matches_training_path(exported, sample_rows):
    loaded, expected = exported
    examples = tf.constant([to_example(r, drop=F.LABEL_SOURCE_KEYS) for r in sample_rows])
    got = loaded.signatures["serving_default"](examples=examples)[PREDICTION_KEY].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_serving_raw_matches_training_path(exported, sample_rows):
    loaded, expected = exported
    got = loaded.signatures[SERVING_RAW_SIGNATURE](**dense_columns(sample_rows))[PREDICTION_KEY].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_label_columns_in_a_request_are_ignored(exported, sample_rows):
    loaded, expected = exported
    examples = tf.constant([to_example(r) for r in sample_rows])  # tips included
    got = loaded.signatures["serving_default"](examples=examples)[PREDICTION_KEY].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_transform_signature_yields_the_training_label(exported, sample_rows, transformed_sample):
    loaded, _ = exported
    rows, _ = transformed_sample
    examples = tf.constant([to_example(r) for r in sample_rows])
    labels = loaded.signatures[TRANSFORM_SIGNATURE](examples=examples)[F.LABEL_KEY].numpy()
    assert labels.tolist() == [r[F.LABEL_KEY] for r in rows]
    assert 0 < labels.mean() < 1


def test_a_new_model_warm_starts_from_the_export(exported_model, transformed_sample):
    """The export keeps the Keras model's variables (not its per-layer functions) under their
    names: a new model of the same architecture starts from exactly the exported weights, and
    predicts what the exported model predicted."""
    from helpers import batch
    from modules.hparams import HParams
    from modules.model import build_model
    from modules.trainer import _warm_start

    export_dir, expected = exported_model
    model = build_model(HParams(dropout=0.0))
    features, _ = batch(transformed_sample[0])
    assert not np.allclose(model.predict(features, verbose=0)[:, 0], expected, atol=1e-3)  # fresh weights differ
    assert _warm_start(model, export_dir)
    np.testing.assert_allclose(model.predict(features, verbose=0)[:, 0], expected, rtol=1e-5, atol=1e-6)
    assert not _warm_start(build_model(HParams(hidden_units=(8,))), export_dir)  # another architecture: skipped


def test_the_export_holds_one_transform_graph_per_set_of_inputs(exported_model):
    """Every traced use of the Transform layer adds a pruned copy of the whole Transform graph
    to saved_model.pb, and every load of the model (server, batch, Evaluator, warm start)
    rebuilds each copy. The export holds three: the loaded graph itself, the one both serving
    signatures share (the same raw inputs) and the transform signature's (label inputs too)."""
    from tensorflow.core.protobuf import saved_model_pb2

    export_dir, _ = exported_model
    with open(f"{export_dir}/saved_model.pb", "rb") as f:
        library = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs[0].graph_def.library
    sizes = {f.signature.name: len(f.node_def) for f in library.function}
    largest = max(sizes.values())
    copies = [name for name, size in sizes.items() if name.startswith("__inference_pruned") and size > largest / 2]
    assert len(copies) == 3, sorted(sizes.items(), key=lambda kv: -kv[1])[:10]
