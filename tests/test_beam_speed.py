"""pipeline/beam_speed.py: the cached DoFn state/timer specs are Beam's own answers."""

from __future__ import annotations

import sys

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from pipeline import beam_speed

COUNT = userstate.BagStateSpec("seen", VarIntCoder())
TIMER = userstate.TimerSpec("flush", TimeDomain.WATERMARK)
SEEN, FLUSH = beam.DoFn.StateParam(COUNT), beam.DoFn.TimerParam(TIMER)  # parameter defaults


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Counting(beam.DoFn):
    def process(self, element, seen=SEEN):
        seen.add(element[1])
        yield element[0], len(list(seen.read()))


class WithTimer(beam.DoFn):
    def process(self, element, timer=FLUSH):
        yield element

    @userstate.on_timer(TIMER)
    def flush(self):
        yield "flushed"


class Repeats(beam.DoFn):
    def process(self, element, a=SEEN, b=SEEN):
        yield element


class Shadowed(beam.DoFn):
    """A DoFn whose instance carries its own bound `process`."""

    def __init__(self):
        super().__init__()
        self.process = self._stateful

    def _stateful(self, element, count=SEEN):
        yield element


class Hooked(beam.DoFn):
    """Like beam.Map's wrapper: `process`'s parameters are the wrapped function's, per instance
    (an `_inspect_process` hook)."""

    def __init__(self, fn):
        super().__init__()
        self._fn = fn

    def process(self, element, *args, **kwargs):
        yield self._fn(element, *args, **kwargs)

    def _inspect_process(self):
        from apache_beam.transforms.core import get_function_args_defaults

        return get_function_args_defaults(self._fn)


def stateful(element, seen=SEEN):
    return element


def stateless(element):
    return element


@pytest.fixture(scope="module", autouse=True)
def installed():
    assert beam_speed.apply() and beam_speed.apply()  # idempotent
    assert userstate.get_dofn_specs is beam_speed.get_dofn_specs
    yield


def dofns():
    """Every kind, twice (the second answer comes from the cache): classes with and without
    state or timers, beam.Map's wrapper around functions with and without state, a shadowed
    method."""
    return [
        Plain(),
        Counting(),
        WithTimer(),
        beam.Map(lambda x: x).fn,
        Hooked(stateful),
        Hooked(stateless),
        beam.ParDo(Plain()).fn,
        Shadowed(),
    ] * 2


def test_the_cached_specs_are_beams_own():
    for dofn in dofns():
        assert beam_speed.get_dofn_specs(dofn) == beam_speed._ORIGINAL(dofn), dofn
    assert userstate.is_stateful_dofn(Hooked(stateful))
    assert not userstate.is_stateful_dofn(Hooked(stateless))  # same class, another function
    assert beam_speed.get_dofn_specs(Shadowed()) == ({COUNT}, set())


def test_a_repeated_state_parameter_is_refused_every_time():
    for _ in range(2):
        with pytest.raises(ValueError, match="duplicate process method parameters"):
            beam_speed.get_dofn_specs(Repeats())


def test_a_stateful_dofn_keeps_its_state_on_the_direct_runner():
    with beam.Pipeline() as p:
        counted = p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(Counting())
        assert_that(counted, equal_to([("a", 1), ("a", 2), ("b", 1)]))


# --- the state cache's weighing ----------------------------------------------------------------


def weighed_values(module_globals):
    """Values like the side inputs and state Beam caches, and some that reach module globals
    (where Beam's size stops)."""
    import numpy as np

    shared = list(range(100))
    return [
        None,
        7,
        "x" * 1000,
        b"\x00" * 10,
        [1, 2.5, "three", (4, 5)],
        {"vocabulary": [f"token-{i}" for i in range(300)], "mean": np.float32(0.5)},
        np.zeros((64, 8), dtype=np.float32),
        [shared, shared, {"again": shared}],  # counted once
        {"module": module_globals, "and": "a little more"},
        [np.ones(3), module_globals, sys.modules[__name__].__dict__],
    ]


def test_the_state_cache_weighs_values_as_beam_does(monkeypatch):
    import types as pytypes

    from apache_beam.runners.worker import statecache

    assert statecache.get_deep_size is beam_speed.get_deep_size
    original = beam_speed._WEIGHING.original
    fresh = pytypes.ModuleType("beam_speed_fresh_module")
    fresh.payload = ["a" * 10_000]  # large: weighed unless the module is loaded
    for loaded in (False, True, False):  # the kept set follows sys.modules both ways
        if loaded:
            monkeypatch.setitem(sys.modules, fresh.__name__, fresh)
        else:
            monkeypatch.delitem(sys.modules, fresh.__name__, raising=False)
        for value in weighed_values(vars(fresh)) * 2:
            assert beam_speed.get_deep_size(value) == original(value), (loaded, value)
        assert beam_speed.get_deep_size(vars(fresh)) == original(vars(fresh))
        # Loaded, the module's globals are not counted: the payload is not in the size.
        assert (beam_speed.get_deep_size({"m": vars(fresh)}) < 10_000) is loaded


def test_the_state_cache_keeps_weighing_on_the_direct_runner():
    """Side inputs go through the state cache (and so through the weighing)."""
    with beam.Pipeline() as p:
        table = p | "table" >> beam.Create([("a", 1), ("b", 2)])
        looked_up = p | beam.Create(["a", "b", "a"]) | beam.Map(lambda k, t: (k, t[k]), t=beam.pvalue.AsDict(table))
        assert_that(looked_up, equal_to([("a", 1), ("b", 2), ("a", 1)]))
