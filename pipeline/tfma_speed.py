"""One fix to TensorFlow Model Analysis, for speed: a model's label, prediction and weight are
picked out of an example without defining a Python class each time.

TFMA's metric combiners call `metric_util.to_label_prediction_example_weight` once per example,
slice, combiner and model. With a model name (an evaluation against a baseline names both
models) it calls its nested `optionally_get_by_keys` three more times, and that helper defines
a class (`class NotFound`) on every call to use as a "not found" marker: 265,032 class
definitions in one Evaluator run of 4,908 eval rows against a baseline, and every
`isinstance(..., Mapping)` goes through `typing.Mapping` (1.1 M `__instancecheck__` calls).
Together about a third of the Evaluator's Python time with a baseline
(`python bench/evaluator_bench.py`, the "evaluated" row; EVALUATOR.md).

The fix is TFMA's own source of that function with one marker object made once, and
`collections.abc.Mapping` (what `typing.Mapping` checks against) for the isinstance checks;
nothing else in it changes (`tests/test_tfma_speed.py` compares the two on every kind of
input TFMA hands it). Applied only to the TFMA version it was written against, and only when
each edit finds its text exactly once; otherwise TFMA's own function runs.
"""

from __future__ import annotations

import ast
import collections.abc
import inspect
import textwrap
from typing import Any

TFMA_VERSION = "0.47.1"
_EDITS = (
    ("class NotFound(object):\n      pass\n", ""),
    ("default_value=NotFound()", "default_value=_NOT_FOUND"),
    ("not isinstance(new_value, NotFound)", "new_value is not _NOT_FOUND"),
)
_PATCHED = "_pipeline_tfma_speed"


def patched_function() -> Any | None:
    """TFMA's `to_label_prediction_example_weight` with the edits, or None when TFMA is not
    the version they were written against or its source does not read as expected."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.metrics import metric_util

    if tfma.__version__ != TFMA_VERSION:
        return None
    original = metric_util.to_label_prediction_example_weight
    original = getattr(original, "__wrapped_original__", original)
    lines, first = inspect.getsourcelines(original)
    source = textwrap.dedent("".join(lines))
    for old, new in _EDITS:
        if source.count(old) != 1:
            return None
        source = source.replace(old, new)
    tree = ast.parse(source)
    ast.increment_lineno(tree, first - 1)  # tracebacks point at TFMA's own lines
    namespace = dict(vars(metric_util))
    namespace["_NOT_FOUND"] = object()
    namespace["Mapping"] = collections.abc.Mapping
    exec(compile(tree, inspect.getsourcefile(original) or "<tfma>", "exec"), namespace)  # noqa: S102 - TFMA's source
    function = namespace["to_label_prediction_example_weight"]
    function.__wrapped_original__ = original
    setattr(function, _PATCHED, True)
    return function


def apply() -> bool:
    """Installs the faster function (idempotent). False when it does not apply: TFMA's own
    then runs."""
    from tensorflow_model_analysis.metrics import metric_util

    if getattr(metric_util.to_label_prediction_example_weight, _PATCHED, False):
        return True
    function = patched_function()
    if function is None:
        return False
    _rebind(function.__wrapped_original__, function)
    return True


def _rebind(original: Any, function: Any) -> None:
    """Every name TFMA binds to the original: module attributes (`metric_util`'s own,
    `tfma.metrics`'s re-export) and parameter defaults taken at import (`extract_label_
    prediction_and_weight=metric_util.to_label_prediction_example_weight` in the confusion
    matrix computations, which every AUC, precision and recall goes through)."""
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
