"""pipeline/beam_speed.py: the cached DoFn state/timer specs, the state cache's weights and the
parsed pipeline options are Beam's own answers."""

from __future__ import annotations

import sys

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, TypeOptions
from apache_beam.options.value_provider import ValueProvider
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
    assert getattr(PipelineOptions.__init__, "__wrapped_original__", None) is not None
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


class TemplatedOptions(PipelineOptions):
    """Options a templated pipeline declares: ValueProvider arguments beside a plain one."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_value_provider_argument("--table", default="trips")
        parser.add_value_provider_argument("--threshold", type=float)
        parser.add_argument("--plain", default=["kept"], action="append")


FLAG_SETS = [
    [],
    ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=2"],
    ["--experiments=a", "--experiments=b", "--project=p", "--region", "r", "--no_pipeline_type_check"],
    ["--unknown_flag=3", "--table=rides", "--threshold", "0.5", "--plain", "x", "--save_main_session"],
]


def every_options_class():
    seen, todo = [], [PipelineOptions]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


def plain(value):
    """An option's value, comparable: a ValueProvider by its class and fields."""
    if isinstance(value, ValueProvider):
        return type(value).__name__, sorted((k, repr(v)) for k, v in vars(value).items())
    return value


def parsed(options):
    return {k: plain(v) for k, v in vars(options._visible_options).items()}, {
        k: plain(v) for k, v in options.get_all_options(retain_unknown_options=True).items()
    }


def test_every_options_view_parses_as_beams_own_init(monkeypatch):
    classes = every_options_class()
    assert TypeOptions in classes and TemplatedOptions in classes and len(classes) > 10
    ours = {(c, i): parsed(c(flags)) for c in classes for i, flags in enumerate(FLAG_SETS)}
    again = {(c, i): parsed(c(list(flags))) for c in classes for i, flags in enumerate(FLAG_SETS)}  # from the cache
    monkeypatch.setattr(PipelineOptions, "__init__", PipelineOptions.__init__.__wrapped_original__)
    beams = {(c, i): parsed(c(flags)) for c in classes for i, flags in enumerate(FLAG_SETS)}
    assert ours == beams and again == beams
    assert beams[(TypeOptions, 2)][0]["pipeline_type_check"] is False  # the flags were read


def test_a_views_values_are_its_own_as_after_a_fresh_parse():
    flags = ["--experiments=a", "--plain", "x"]
    first = PipelineOptions(flags)
    first.view_as(DebugOptions).add_experiment("b")
    first.view_as(TemplatedOptions).plain.append("y")
    assert first.view_as(DebugOptions).experiments == ["a", "b"]  # views share one store, as in Beam
    fresh = PipelineOptions(flags)
    assert fresh.view_as(DebugOptions).experiments == ["a"]
    assert fresh.view_as(TemplatedOptions).plain == ["kept", "x"]


def test_options_without_flags_read_the_command_line_every_time(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--no_pipeline_type_check"])
    assert PipelineOptions().view_as(TypeOptions).pipeline_type_check is False
    monkeypatch.setattr(sys, "argv", ["prog"])
    assert PipelineOptions().view_as(TypeOptions).pipeline_type_check is True


@pytest.mark.parametrize("flags", [["--direct_num_workers=abc"], ["--direct_running_mode=bogus"]])
def test_bad_flags_are_refused_with_beams_error_every_time(flags, capsys):
    from apache_beam.options.pipeline_options import DirectOptions

    for _ in range(2):  # a refused parse is not kept
        with pytest.raises(SystemExit) as refused:
            PipelineOptions(flags).view_as(DirectOptions)
        assert refused.value.code == 2
        assert f"argument {flags[0].split('=')[0]}: invalid" in capsys.readouterr().err
