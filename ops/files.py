"""Reading files of a store's artifacts, local or not: local paths with the standard library
(no TensorFlow import, so queries stay fast), anything with a scheme (gs://) through
tf.io.gfile."""

from __future__ import annotations

import glob as _glob


def read_bytes(path: str) -> bytes:
    if "://" in path:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def glob(pattern: str) -> list[str]:
    if "://" in pattern:
        import tensorflow as tf

        return sorted(tf.io.gfile.glob(pattern))
    return sorted(_glob.glob(pattern))
