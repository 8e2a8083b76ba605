"""Two fixes to TensorFlow Model Analysis, for speed; both leave every figure as TFMA's own code
computes it.

1. A model's label, prediction and weight are picked out of an example without defining a
   Python class each time. TFMA's metric combiners call `metric_util.to_label_prediction_
   example_weight` once per example, slice, combiner and model. With a model name (an
   evaluation against a baseline names both models) it calls its nested `optionally_get_by_
   keys` three more times, and that helper defines a class (`class NotFound`) on every call
   to use as a "not found" marker: 265,032 class definitions in one Evaluator run of 4,908
   eval rows against a baseline, and every `isinstance(..., Mapping)` goes through
   `typing.Mapping` (1.1 M `__instancecheck__` calls). Together about a third of the
   Evaluator's Python time with a baseline. The fix: one marker object made once, and
   `collections.abc.Mapping` (what `typing.Mapping` checks against) for the isinstance
   checks.

2. The confusion matrices behind AUC (10,000 thresholds) are derived from the calibration
   histogram with arrays instead of Python loops. Per slice and model, TFMA's `rebin` builds
   10,000 `Bucket` dataclass objects and `_histogram_to_binary_confusion_matrices` walks them
   in Python: ~50 ms each, 62 times in an evaluation against a baseline (31 slices, 2 models),
   about a sixth of the Evaluator's time. The fix does the same sums in the same order
   (`np.bincount` and `np.cumsum` add one value at a time, as the loops do), so the matrices
   are equal to the bit (`tests/test_tfma_speed.py` compares them on histograms and
   thresholds of every shape TFMA builds).

Each fix is TFMA's own source of the function with textual edits, applied only to the TFMA
version it was written against and only when each edit finds its text exactly once; otherwise
TFMA's own function runs (`python bench/evaluator_bench.py`: what they buy, side by side).
"""

from __future__ import annotations

import collections.abc
import inspect
from typing import Any

import numpy as np

from pipeline.source_edit import edited

TFMA_VERSION = "0.47.1"
_PATCHED = "_pipeline_tfma_speed"

# 1. metric_util.to_label_prediction_example_weight
_LABEL_EDITS = (
    ("class NotFound(object):\n      pass\n", ""),
    ("default_value=NotFound()", "default_value=_NOT_FOUND"),
    ("not isinstance(new_value, NotFound)", "new_value is not _NOT_FOUND"),
)
# 2. binary_confusion_matrices.binary_confusion_matrices: its derived computation's two calls.
_MATRICES_EDITS = (
    ("histogram = calibration_histogram.rebin(rebin_thresholds,", "histogram = _rebinned_arrays(rebin_thresholds,"),
    (
        "matrices = _histogram_to_binary_confusion_matrices(thresholds, histogram)",
        "matrices = _matrices_from_histogram(thresholds, histogram)",
    ),
)


def _supported() -> bool:
    import tensorflow_model_analysis as tfma

    return bool(tfma.__version__ == TFMA_VERSION)


def patched_function() -> Any | None:
    """TFMA's `to_label_prediction_example_weight` with fix 1, or None when TFMA is not the
    version it was written against or its source does not read as expected."""
    from tensorflow_model_analysis.metrics import metric_util

    if not _supported():
        return None
    names = {"_NOT_FOUND": object(), "Mapping": collections.abc.Mapping}
    return edited(metric_util.to_label_prediction_example_weight, _LABEL_EDITS, names, _PATCHED)


# --- fix 2: the confusion matrices from arrays -----------------------------------------------


def rebinned_arrays(
    thresholds: list[float], histogram: list, num_buckets: int | None = None, left: float = 0.0, right: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """What `calibration_histogram.rebin` computes, as the two arrays the confusion matrices
    read (weighted labels and examples per new bucket) instead of `len(thresholds)` Bucket
    objects.

    TFMA walks the histogram's buckets (sorted by id) and moves to the next threshold while a
    bucket's lower edge reaches it, so a bucket lands in the last threshold at or below its
    edge (`searchsorted`); each new bucket's sums are added in the histogram's order, one value
    at a time, as `np.bincount` adds them."""
    from tensorflow_model_analysis.metrics import calibration_histogram

    if num_buckets is None:
        num_buckets = calibration_histogram.DEFAULT_NUM_BUCKETS
    count = len(thresholds)
    ids = np.fromiter((b.bucket_id for b in histogram), dtype=np.int64, count=len(histogram))
    edges = (ids - 1) / num_buckets * (right - left) + left
    edges[ids == 0] = -np.inf
    edges[ids >= num_buckets + 1] = np.inf
    offsets = np.searchsorted(np.asarray(thresholds[1:], dtype=np.float64), edges, side="right")

    def sums(attribute: str) -> np.ndarray:
        values = np.fromiter((getattr(b, attribute) for b in histogram), dtype=np.float64, count=len(histogram))
        # (float even for an empty histogram, where numpy's bincount counts in integers)
        return np.bincount(offsets, weights=values, minlength=count).astype(np.float64, copy=False)

    return sums("weighted_labels"), sums("weighted_examples")


def matrices_from_histogram(thresholds: list[float], histogram: Any) -> Any:
    """What `_histogram_to_binary_confusion_matrices` computes, from `rebinned_arrays`' arrays
    (a histogram of Bucket objects, the top-k case TFMA does not rebin, goes to TFMA's own)."""
    from tensorflow_model_analysis.metrics import binary_confusion_matrices as bcm

    original = bcm._histogram_to_binary_confusion_matrices
    if not isinstance(histogram, tuple):
        return original(thresholds, histogram)
    labels, examples = histogram
    n = len(labels)
    positives, negatives = labels, examples - labels
    # tp(i), fp(i): the sums of buckets >= i, added from the last bucket down; tn(i), fn(i):
    # the sums of buckets < i, added from the first up (0.0 for the first).
    tp, fp = np.cumsum(positives[::-1])[::-1], np.cumsum(negatives[::-1])[::-1]
    tn = np.concatenate(([0.0], np.cumsum(negatives)[:-1])) if n else np.zeros(0)
    fn = np.concatenate(([0.0], np.cumsum(positives)[:-1])) if n else np.zeros(0)
    # Without a threshold below 0 the first bucket is the -epsilon one TFMA added.
    offset = 1 if (thresholds[0] >= 0 or len(thresholds) == 1) and n > 1 else 0
    tp, fp, tn, fn = (a[offset : offset + len(thresholds)].tolist() for a in (tp, fp, tn, fn))
    for i in np.flatnonzero(np.asarray(thresholds) >= 1.0 + bcm._EPSILON):  # noqa: SLF001 - TFMA's own constant
        tp[i], fp[i], fn[i], tn[i] = 0.0, 0.0, tp[0], fp[0]
    return bcm.Matrices(thresholds, tp, tn, fp, fn)


def patched_matrices() -> Any | None:
    """TFMA's `binary_confusion_matrices` with fix 2, or None (as `patched_function`)."""
    from tensorflow_model_analysis.metrics import binary_confusion_matrices as bcm

    if not _supported():
        return None
    names = {"_rebinned_arrays": rebinned_arrays, "_matrices_from_histogram": matrices_from_histogram}
    return edited(bcm.binary_confusion_matrices, _MATRICES_EDITS, names, _PATCHED)


# Each fix: where TFMA keeps the function (module, name) and what builds its replacement.
_FIXES = {
    "label lookup": ("tensorflow_model_analysis.metrics.metric_util", "to_label_prediction_example_weight", patched_function),
    "confusion matrices": (
        "tensorflow_model_analysis.metrics.binary_confusion_matrices",
        "binary_confusion_matrices",
        patched_matrices,
    ),
}
FIXES = tuple(_FIXES)


def apply(fixes: tuple[str, ...] = FIXES) -> bool:
    """Installs the fixes (both by default; idempotent). False when one does not apply: TFMA's
    own function then runs in its place."""
    import importlib

    applied = True
    for name in fixes:
        module, attribute, make = _FIXES[name]
        if getattr(getattr(importlib.import_module(module), attribute), _PATCHED, False):
            continue
        function = make()
        if function is None:
            applied = False
            continue
        _rebind(function.__wrapped_original__, function)
    return applied


def _rebind(original: Any, function: Any) -> None:
    """Every name TFMA binds to the original: module attributes (the defining module's own,
    `tfma.metrics`'s re-exports) and parameter defaults taken at import
    (`extract_label_prediction_and_weight=metric_util.to_label_prediction_example_weight` in
    the confusion matrix computations, which every AUC, precision and recall goes through)."""
    import sys

    for name, module in list(sys.modules.items()):
        if not name.startswith("tensorflow_model_analysis") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if value is original:
                setattr(module, attribute, function)
            elif inspect.isfunction(value) and value.__module__ == name:
                if value.__defaults__ and any(d is original for d in value.__defaults__):
                    value.__defaults__ = tuple(function if d is original else d for d in value.__defaults__)
                if value.__kwdefaults__ and any(d is original for d in value.__kwdefaults__.values()):
                    value.__kwdefaults__ = {k: function if d is original else d for k, d in value.__kwdefaults__.items()}
