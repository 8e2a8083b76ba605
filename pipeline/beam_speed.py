"""Two fixes to Apache Beam's Python SDK, for speed. Both give Beam's own answers.

1. The state and timer specs of a DoFn are worked out once per DoFn class, not on every
question.

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
same ValueError for a method that repeats a parameter.

2. The state cache weighs a value without listing every loaded module first. Each time the
SDK worker caches a side input or state value (`statecache.StateCache.get`/`put`), it weighs
it with `objsize.get_deep_size`, which first collects the ids of every loaded module's
globals, so that a value's size stops at them: in a TFX process that is over ten thousand
modules, for a value of a few hundred bytes. In a full run of this pipeline that bookkeeping
took ~12 s of ~100 (profiled with py-spy; Transform reads ~170 bundles' side inputs).
`get_deep_size` here keeps that set, rebuilt when an import or a removal changed the loaded
modules (their number and the newest one, read on each call), and weighs the value with
Beam's own size, referent and filter functions: the same number (`tests/test_beam_speed.py`
compares them, also after an import and a removal).

3. Pipeline options are parsed once per options class and flags. `PipelineOptions.__init__`
builds an argparse parser for its class and parses the flags, and `Pipeline.apply` asks
`options.view_as(TypeOptions)` (a new instance, so a new parser and parse) for every
transform applied: tf.Transform's graphs apply thousands, 1.4 s of a full run (py-spy). Here
`__init__` is Beam's own source with that step replaced by `visible_options`: Beam's parse,
kept per (class, flags), handed out as a deep copy, so a view's values are its own as after a
fresh parse (`tests/test_beam_speed.py` compares every option class's views with Beam's).

Applied only to the Beam (and objsize) versions they were written against; with any other,
Beam's own functions run.
"""

from __future__ import annotations

import sys
import types
from typing import Any

BEAM_VERSION = "2.59.0"
OBJSIZE_VERSION = "0.7.1"
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


# --- 2. the state cache's weighing -------------------------------------------------------------

# (the modules' state the set was built from, the ids of their globals and of None)
_MODULE_GLOBALS: tuple[tuple, frozenset] = ((), frozenset())
_WEIGHING: Any = None  # objsize settings with Beam's size, referent and filter functions


def _modules_state() -> tuple:
    """What tells that the set of loaded modules changed: their number and the newest one (an
    import adds at the end of `sys.modules`, a re-import after a removal too). Reading every
    module on each call, as this did first, took 1.45 s of a full run (py-spy): the weighing is
    asked tens of thousands of times."""
    modules = sys.modules
    return (len(modules), next(reversed(modules.values()), None))


def _module_globals() -> frozenset:
    """objsize's exclude set: the ids of every loaded module's globals, and of None, rebuilt
    when an import or a removal changed the loaded modules. (A module object put in place of
    another under an existing name, `sys.modules[name] = other`, is seen at the next import or
    removal; until then a value that reaches its globals weighs them too: the weight sizes
    Beam's state cache, it is not an output.)"""
    global _MODULE_GLOBALS
    state = _modules_state()
    built_from, ids = _MODULE_GLOBALS
    if state != built_from:
        from objsize.traverse import _iter_modules_globals

        ids = frozenset(map(id, _iter_modules_globals())) | {id(None)}
        _MODULE_GLOBALS = (state, ids)
    return ids


def _context_class() -> type:
    from objsize.traverse import TraversalContext

    class KeptModuleGlobals(TraversalContext):
        """objsize's traversal with the module globals' ids kept between calls (it only reads
        the exclude set when nothing is to be excluded besides them, as Beam asks)."""

        def _update_exclude_set(self) -> None:
            self.exclude_set = _module_globals()

    return KeptModuleGlobals


def get_deep_size(*objs: Any) -> int:
    """Beam's `statecache.get_deep_size`: the same size, without listing the modules again."""
    return _WEIGHING.context(_WEIGHING.settings).get_deep_size(*objs)


def _install_weighing() -> None:
    """Installs fix 2, unless objsize is not the version it was written against."""
    global _WEIGHING
    import objsize
    from apache_beam.runners.worker import statecache

    if objsize.__version__ != OBJSIZE_VERSION:
        return
    if statecache.get_deep_size is not get_deep_size:
        settings = objsize.traverse.ObjSizeSettings(
            get_referents_func=statecache._get_referents_func,
            filter_func=statecache._filter_func,
            get_size_func=statecache._size_func,
        )
        _WEIGHING = types.SimpleNamespace(settings=settings, context=_context_class(), original=statecache.get_deep_size)
        statecache.get_deep_size = get_deep_size


def apply() -> bool:
    """Installs the three fixes (idempotent). False when Beam is not the version they were written
    against: Beam's own functions then run."""
    global _ORIGINAL
    import apache_beam
    from apache_beam.transforms import userstate

    if apache_beam.__version__ != BEAM_VERSION:
        return False
    if userstate.get_dofn_specs is not get_dofn_specs:
        _ORIGINAL = userstate.get_dofn_specs
        userstate.get_dofn_specs = get_dofn_specs
    _install_weighing()
    _install_parse_cache()
    return True


# --- 3. pipeline options parsed once per class and flags --------------------------------------

_PARSED: dict[tuple, Any] = {}  # (options class, flags) -> Beam's parse of them
_PARSED_LIMIT = 1024  # distinct (class, flags) pairs kept; a pipeline run has a handful
_PARSE_MARKER = "_pipeline_beam_speed"
# PipelineOptions.__init__ (Beam 2.59.0, dedented): its parser and parse, as one step.
_INIT_EDITS = (
    (
        "  parser = _BeamArgumentParser()\n"
        "  for cls in type(self).mro():\n"
        "    if cls == PipelineOptions:\n"
        "      break\n"
        "    elif '_add_argparse_args' in cls.__dict__:\n"
        "      cls._add_argparse_args(parser)  # type: ignore\n"
        "\n"
        "  # The _visible_options attribute will contain options that were recognized\n"
        "  # by the parser.\n"
        "  self._visible_options, _ = parser.parse_known_args(flags)\n",
        "  self._visible_options = _visible_options(type(self), flags)\n",
    ),
)


def visible_options(cls: type, flags: Any) -> Any:
    """What `PipelineOptions.__init__` parses for the options class `cls` from `flags` (Beam's
    own steps: a parser with the arguments of `cls` and its bases up to PipelineOptions, the
    unknown flags left aside), parsed once per class and flags and handed out as a deep copy:
    a view's values are its own (`add_experiment` appends to the `experiments` list it was
    given). Flags of None (argparse then reads sys.argv) or not all strings are parsed every
    time."""
    import copy

    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    kept = isinstance(flags, (list, tuple)) and all(isinstance(f, str) for f in flags)
    key = (cls, tuple(flags)) if kept else None
    parsed = _PARSED.get(key) if key is not None else None
    if parsed is None:
        parser = _BeamArgumentParser()
        for klass in cls.mro():
            if klass == PipelineOptions:
                break
            if "_add_argparse_args" in klass.__dict__:
                klass._add_argparse_args(parser)  # type: ignore[attr-defined]
        parsed, _ = parser.parse_known_args(flags)
        if key is None:
            return parsed
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.clear()
        _PARSED[key] = parsed
    return copy.deepcopy(parsed)


def _install_parse_cache() -> None:
    """Installs fix 3 (Beam's version is checked by `apply`), unless Beam's `__init__` does not
    read as expected."""
    from apache_beam.options.pipeline_options import PipelineOptions

    if getattr(PipelineOptions.__init__, _PARSE_MARKER, False):
        return
    from pipeline.source_edit import edited

    init = edited(PipelineOptions.__init__, _INIT_EDITS, {"_visible_options": visible_options}, _PARSE_MARKER)
    if init is not None:
        PipelineOptions.__init__ = init
