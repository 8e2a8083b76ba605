"""One fix to Apache Beam's Python SDK, for speed: the state and timer specs of a DoFn are
worked out once per DoFn class, not on every question.

`apache_beam.transforms.userstate.get_dofn_specs(dofn)` inspects the signature of every
method of the DoFn (~30 with DoFn's own: `inspect.signature` each time) to find state and
timer parameters, and Beam asks it again for every DoFn of every bundle it sets up and every
transform it translates: tf.Transform's ~170 bundles made 5,268 calls and 164,544 signature
inspections in one Transform run, over a quarter of its time on 3,000 rows (28.1 -> 20.6 s,
`python bench/transform_bench.py --modes tf1_compat tf1_compat_beam_uncached`; RESULTS notes).

What the answer depends on, and what is cached:
  * methods defined by the DoFn's class, which Beam reads through `getattr` (no
    `_inspect_<name>` hook): fixed by the class, computed once per class;
  * methods with an `_inspect_<name>` hook (beam.Map's and beam.FlatMap's `process` is the
    wrapped function, a per-instance signature): asked every time, as Beam does;
  * a DoFn with a bound method or an `_inspect_` hook stored on the instance (it shadows its
    class's): Beam's own function, uncached.
The result is the same sets Beam computes (`tests/test_beam_speed.py` compares them), and the
same ValueError for a method that repeats a parameter. Applied only to the Beam version it was
written against; with any other, Beam's own function runs.
"""

from __future__ import annotations

import types
from typing import Any

BEAM_VERSION = "2.59.0"
_CLASS_SPECS: dict[type, tuple[tuple[str, ...], frozenset, frozenset]] = {}


def _method_specs(dofn: Any, name: str) -> tuple[set, set]:
    """State and timer specs among one method's parameter defaults (Beam's loop body)."""
    from apache_beam.runners.common import MethodWrapper
    from apache_beam.transforms.core import _DoFnParam, _StateDoFnParam, _TimerDoFnParam

    method = MethodWrapper(dofn, name)
    param_ids = [d.param_id for d in method.defaults if isinstance(d, _DoFnParam)]
    if len(param_ids) != len(set(param_ids)):
        raise ValueError(f"DoFn {dofn!r} has duplicate {name} method parameters: {param_ids}.")
    states = {d.state_spec for d in method.defaults if isinstance(d, _StateDoFnParam)}
    timers = {d.timer_spec for d in method.defaults if isinstance(d, _TimerDoFnParam)}
    return states, timers


def get_dofn_specs(dofn: Any) -> tuple[set, set]:
    """Beam's `get_dofn_specs`, with the class-determined part cached per class."""
    own = getattr(dofn, "__dict__", {})
    if any(isinstance(v, types.MethodType) or k.startswith("_inspect_") for k, v in own.items()):
        return _ORIGINAL(dofn)
    cls = type(dofn)
    cached = _CLASS_SPECS.get(cls)
    if cached is None:
        methods = [n for n in dir(dofn) if isinstance(getattr(dofn, n, None), types.MethodType)]
        hooked = tuple(n for n in methods if hasattr(cls, f"_inspect_{n}"))
        states: set = set()
        timers: set = set()
        for name in methods:
            if name not in hooked:
                s, t = _method_specs(dofn, name)
                states |= s
                timers |= t
        cached = _CLASS_SPECS[cls] = (hooked, frozenset(states), frozenset(timers))
    hooked, class_states, class_timers = cached
    states, timers = set(class_states), set(class_timers)
    for name in hooked:
        s, t = _method_specs(dofn, name)
        states |= s
        timers |= t
    return states, timers


_ORIGINAL: Any = None


def apply() -> bool:
    """Installs the cached `get_dofn_specs` (idempotent). False when Beam is not the version
    it was written against: Beam's own then runs."""
    global _ORIGINAL
    import apache_beam
    from apache_beam.transforms import userstate

    if apache_beam.__version__ != BEAM_VERSION:
        return False
    if userstate.get_dofn_specs is not get_dofn_specs:
        _ORIGINAL = userstate.get_dofn_specs
        userstate.get_dofn_specs = get_dofn_specs
    return True
