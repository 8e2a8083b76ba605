"""A library's function compiled again from its own source with exact textual edits: how
`tfma_speed` and `beam_speed` change one step of TFMA's and Beam's code and leave the rest as
the library wrote it (version-pinned by their callers)."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from typing import Any


def edited(original: Any, edits: tuple[tuple[str, str], ...], names: dict[str, Any], marker: str) -> Any | None:
    """`original` compiled again from its own source with `edits`, in a copy of its module's
    namespace with `names` added; None when an edit does not find its text exactly once.

    The result carries `__wrapped_original__` (the library's own function) and the attribute
    `marker` (True), by which a caller tells an installed edit from the library's function."""
    original = getattr(original, "__wrapped_original__", original)
    lines, first = inspect.getsourcelines(original)
    source = textwrap.dedent("".join(lines))
    for old, new in edits:
        if source.count(old) != 1:
            return None
        source = source.replace(old, new)
    tree = ast.parse(source)
    ast.increment_lineno(tree, first - 1)  # tracebacks point at the library's own lines
    namespace = {**vars(sys.modules[original.__module__]), **names}
    exec(compile(tree, inspect.getsourcefile(original) or "<library>", "exec"), namespace)  # noqa: S102 - the library's source
    function = namespace[original.__name__]
    function.__wrapped_original__ = original
    setattr(function, marker, True)
    return function
