"""The Keras model: forward pass and a few real training steps on transformed rows."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from modules import features as F
from modules.hparams import HParams
from modules.model import build_model


def batch(rows):
    features = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != F.LABEL_KEY}
    return features, np.array([r[F.LABEL_KEY] for r in rows])


def test_forward_pass_returns_probabilities(transformed_sample):
    rows, _ = transformed_sample
    features, _ = batch(rows[:3])
    out = build_model(HParams())(features).numpy()
    assert out.shape == (3, 1)
    assert np.all((out > 0) & (out < 1))


def test_training_steps_reduce_the_loss(transformed_sample):
    tf.keras.utils.set_random_seed(0)
    rows, _ = transformed_sample
    features, labels = batch(rows)
    model = build_model(HParams(batch_size=64, dropout=0.0))
    before = model.evaluate(features, labels, verbose=0)[0]
    model.fit(features, labels, batch_size=64, epochs=15, verbose=0)
    after = model.evaluate(features, labels, verbose=0)[0]
    assert after < 0.7 * before


def test_wide_part_sees_crosses_and_deep_part_does_not():
    model = build_model(HParams())
    names = {layer.name for layer in model.layers}
    for cross in F.CROSSES:
        assert f"wide_{F.transformed_name(cross)}" in names
        assert f"emb_{F.transformed_name(cross)}" not in names
    assert f"emb_{F.transformed_name('company')}" in names


def test_autograph_leaves_tf_keras_code_alone():
    # Without the rule (modules.model), the first training step transpiles tf_keras: ~14 s.
    import tf_keras as keras
    from tensorflow.python.autograph.impl import conversion

    assert conversion.is_allowlisted(keras.layers.Dense.call)
    assert conversion.is_allowlisted(keras.Model.train_step)
    assert not conversion.is_allowlisted(build_model)  # our own code is still converted
