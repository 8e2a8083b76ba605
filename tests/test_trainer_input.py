"""The Trainer's input: raw examples transformed by the transform graph as they are read, held
in memory, or streamed when large."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx_bsl.public import tfxio

from helpers import batch, to_example
from modules import features as F
from modules import trainer

# They share one tf.Transform analysis of sample rows (a session fixture): one worker.
pytestmark = pytest.mark.xdist_group("transform-sample")


@pytest.fixture(scope="module")
def split(sample_rows, transformed_sample, tmp_path_factory):
    """The raw sample as gzipped tf.Examples, as ExampleGen writes them; the transform graph's
    outputs; and the rows tf.Transform's Beam implementation transformed them to."""
    rows, graph_dir = transformed_sample
    path = tmp_path_factory.mktemp("raw") / "data_tfrecord-00000-of-00001.gz"
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for row in sample_rows:
            writer.write(to_example(row))
    # TFX's own factory for tf.Example payloads is this tfxio reader.
    accessor = DataAccessor(
        tf_dataset_factory=lambda pattern, options, schema: tfxio.TFExampleRecord(pattern, schema=schema).TensorFlowDataset(
            options
        ),
        record_batch_factory=None,
        data_view_decode_fn=None,
    )
    return [str(path.parent / "*")], accessor, tft.TFTransformOutput(graph_dir), rows


def row_keys(features, labels):
    """One hashable key per row: every transformed value (to 5 decimals), so duplicates stay
    countable."""
    columns = [np.asarray(features[k]).reshape(len(labels), -1) for k in sorted(features)]
    values = np.concatenate([c.astype(np.float64) for c in columns] + [np.asarray(labels).reshape(-1, 1)], axis=1)
    return [tuple(v) for v in np.round(values, 5)]


def first_rows(dataset, n):
    keys = []
    for features, labels in dataset:
        keys += row_keys(features, labels)
        if len(keys) >= 2 * n:
            return keys[:n], keys[n : 2 * n]


def test_each_pass_over_an_in_memory_split_is_a_permutation(split):
    pattern, accessor, output, rows = split
    n = len(rows)
    expected = collections.Counter(first_rows(trainer._dataset(pattern, accessor, output, n, seed=1).take(1).repeat(), n)[0])
    first, second = first_rows(trainer._dataset(pattern, accessor, output, 64, seed=1), n)
    assert collections.Counter(first) == expected == collections.Counter(second)
    assert first != second  # reshuffled every pass
    assert sum(expected.values()) == n


def test_the_trainer_reads_what_tf_transform_would_have_written(split):
    """The Trainer applies the transform graph to raw examples: row for row what tf.Transform's
    Beam implementation outputs for them (what Transform would have materialised)."""
    pattern, accessor, output, rows = split
    beam, beam_labels = batch(rows)
    features, labels = next(iter(trainer._dataset(pattern, accessor, output, len(rows), seed=1)))
    assert sorted(features) == sorted(beam)
    assert collections.Counter(row_keys(features, labels)) == collections.Counter(row_keys(beam, beam_labels))


def test_in_memory_split_is_repeatable_with_a_seed(split):
    pattern, accessor, output, rows = split
    a = first_rows(trainer._dataset(pattern, accessor, output, 64, seed=7), len(rows))
    b = first_rows(trainer._dataset(pattern, accessor, output, 64, seed=7), len(rows))
    c = first_rows(trainer._dataset(pattern, accessor, output, 64, seed=8), len(rows))
    assert a == b != c


def test_large_split_streams_from_disk_with_the_same_rows(split, monkeypatch):
    pattern, accessor, output, rows = split
    in_memory = trainer._dataset(pattern, accessor, output, 64, seed=1)
    monkeypatch.setattr(trainer, "IN_MEMORY_MAX_BYTES", 0)
    streamed = trainer._dataset(pattern, accessor, output, 64, seed=1)
    compatible = tf.nest.map_structure(
        lambda a, b: a.dtype == b.dtype and a.shape.is_compatible_with(b.shape), streamed.element_spec, in_memory.element_spec
    )
    assert all(tf.nest.flatten(compatible))
    first, _ = first_rows(streamed, len(rows))
    assert len(first) == len(rows)
    assert set(first) <= set(first_rows(in_memory, len(rows))[0])
    assert F.LABEL_KEY not in streamed.element_spec[0]
