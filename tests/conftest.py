"""Session fixtures: real rows of the bundled data and their tf.Transform analysis."""

from __future__ import annotations

import os

# Keras 2 for TFX's code paths; must precede any TensorFlow import (see runner.py).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# TensorFlow and the pipeline are imported by the fixtures that need them, not here: with
# pytest-xdist this file is also loaded by the controller process, which runs no test
# (importing them there cost ~4 s of CPU and ~1.5 s before the workers started).


@pytest.fixture(scope="session")
def sample_rows() -> list[dict]:
    from helpers import read_rows

    return read_rows(400)


@pytest.fixture(scope="session")
def exported_model(transformed_sample, tmp_path_factory):
    """(SavedModel dir, the Keras model's own predictions on the sample): a model trained a
    little on the transformed sample and exported as the Trainer exports it."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from helpers import batch
    from modules.hparams import HParams
    from modules.model import build_model
    from modules.trainer import export_serving_model

    rows, graph_dir = transformed_sample
    tf.keras.utils.set_random_seed(1)
    model = build_model(HParams(dropout=0.0))
    features, labels = batch(rows)
    model.fit(features, labels, batch_size=64, epochs=3, verbose=0)  # weights that matter
    export_dir = str(tmp_path_factory.mktemp("model"))
    export_serving_model(model, tft.TFTransformOutput(graph_dir), export_dir)
    return export_dir, model.predict(features, verbose=0)[:, 0]


@pytest.fixture(scope="session")
def transformed_sample(sample_rows, tmp_path_factory):
    """(transformed rows, transform graph dir) for `sample_rows`."""
    from helpers import analyze_and_transform

    out = tmp_path_factory.mktemp("transform_graph")
    return analyze_and_transform(sample_rows, str(out)), str(out)


# Scheduling units, longest first: with two workers (pytest-xdist, --dist loadgroup) the story
# of pipeline runs and the compiled Vertex spec's executions start at once, one per worker, and
# everything else fills in beside them.
_ORDER = {"vertex-exec": 0, "story": 1, "full": 2, "mariadb": 3, "transform-sample": 4}


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        mark = item.get_closest_marker("xdist_group")
        return _ORDER.get(mark.args[0] if mark else "", len(_ORDER))

    items.sort(key=rank)
