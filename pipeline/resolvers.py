"""Input resolution for continuous training: which spans to train on, which model to start from.

Both resolve from ML Metadata, across runs, and both are stable for an unchanged re-run (same
inputs, so the Trainer's cache still hits).
"""

from __future__ import annotations

from typing import Any

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver
from tfx.types import standard_artifacts

from pipeline.gate import span_of


class SpanWindowStrategy(resolver.ResolverStrategy):
    """The newest `num_spans` spans of ExampleGen output that passed the data gate (the latest
    version of each span). Spans the gate rejected never enter the training window."""

    def __init__(self, num_spans: int):
        self._num_spans = num_spans

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]] | None:
        passed = {span_of(v) for v in input_dict.get("verdicts", [])}
        newest: dict[int, types.Artifact] = {}
        for examples in sorted(input_dict.get("examples", []), key=lambda a: a.id):
            if span_of(examples) in passed:
                newest[span_of(examples)] = examples
        window = [newest[s] for s in sorted(newest, reverse=True)[: self._num_spans]]
        return {"examples": window, "verdicts": []}


def span_window_resolver(example_gen_id: str, gate_id: str, num_spans: int) -> Any:
    return resolver.Resolver(
        strategy_class=SpanWindowStrategy,
        config={"num_spans": num_spans},
        examples=types.Channel(type=standard_artifacts.Examples, producer_component_id=example_gen_id, output_key="examples"),
        verdicts=types.Channel(type=standard_artifacts.ExampleAnomalies, producer_component_id=gate_id, output_key="result"),
    )


def _upstream(store: mlmd.MetadataStore, artifact_ids: list[int]) -> list:
    """Artifacts that were inputs to the executions that produced these artifacts."""
    outputs = [e for e in store.get_events_by_artifact_ids(artifact_ids) if e.type == mlmd.proto.Event.OUTPUT]
    if not outputs:
        return []
    inputs = [e for e in store.get_events_by_execution_ids({e.execution_id for e in outputs})
              if e.type == mlmd.proto.Event.INPUT]
    return store.get_artifacts_by_id({e.artifact_id for e in inputs}) if inputs else []


def training_spans(store: mlmd.MetadataStore, model_id: int, max_depth: int = 6) -> set[int]:
    """The spans of the ExampleGen outputs a model was trained on (through Trainer and
    Transform, or through a rollback to the original model)."""
    spans: set[int] = set()
    frontier, seen = [model_id], {model_id}
    for _ in range(max_depth):
        parents = [a for a in _upstream(store, frontier) if a.id not in seen]
        seen.update(a.id for a in parents)
        frontier = []
        for a in parents:
            if "input_fingerprint" in a.custom_properties:  # an ExampleGen output: stop here
                value = a.properties["span"] if "span" in a.properties else a.custom_properties.get("span")
                spans.add(int(value.int_value or value.string_value or 0) if value is not None else 0)
            else:
                frontier.append(a.id)
        if not frontier:
            break
    return spans


def _blessed_newest_first(input_dict: dict[str, list[types.Artifact]]):
    """(model, its blessing) for every blessed model, newest model first."""
    blessed = {
        b.get_int_custom_property("current_model_id"): b
        for b in input_dict.get("model_blessing", []) if b.get_int_custom_property("blessed") == 1
    }
    for model in sorted(input_dict.get("model", []), key=lambda a: a.id, reverse=True):
        if model.id in blessed:
            yield model, blessed[model.id]


class WarmStartModelStrategy(resolver.ResolverStrategy):
    """The newest blessed model that was trained only on spans older than the newest ingested
    span: the model to warm-start from when a new span arrives. For an unchanged re-run it is
    the same model as in the first run of that span, so the Trainer's cache still applies."""

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]] | None:
        empty = {key: [] for key in input_dict}
        examples = input_dict.get("examples") or []
        if not examples:
            return empty
        newest = max(span_of(e) for e in examples)
        for model, blessing in _blessed_newest_first(input_dict):
            if max(training_spans(store, model.id), default=newest) < newest:
                return {"model": [model], "model_blessing": [blessing], "examples": []}
        return empty


def warm_start_resolver(example_gen_id: str) -> Any:
    return resolver.Resolver(
        strategy_class=WarmStartModelStrategy,
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        examples=types.Channel(type=standard_artifacts.Examples, producer_component_id=example_gen_id, output_key="examples"),
    )


class EarlierPassStrategy(resolver.ResolverStrategy):
    """The gate's reference for drift: the newest pass (a gate result) of a span older than the
    newest ingested span. Stable for an unchanged re-run, so the gate's cache still applies."""

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]] | None:
        examples = input_dict.get("examples") or []
        newest = max((span_of(e) for e in examples), default=0)
        earlier = [v for v in input_dict.get("verdicts", []) if span_of(v) < newest]
        best = max(earlier, key=lambda v: (span_of(v), v.id), default=None)
        return {"verdicts": [best] if best is not None else [], "examples": []}


def earlier_pass_resolver(example_gen_id: str, gate_id: str) -> Any:
    return resolver.Resolver(
        strategy_class=EarlierPassStrategy,
        examples=types.Channel(type=standard_artifacts.Examples, producer_component_id=example_gen_id, output_key="examples"),
        verdicts=types.Channel(type=standard_artifacts.ExampleAnomalies, producer_component_id=gate_id, output_key="result"),
    )


class BaselineModelStrategy(resolver.ResolverStrategy):
    """The Evaluator's baseline: the newest blessed model other than the candidate itself. (TFX's
    LatestBlessedModelStrategy returns the candidate when an unchanged re-run reuses a blessed
    model from the cache, which changes the Evaluator's inputs and re-runs it for nothing.)"""

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]] | None:
        candidates = {a.id for a in input_dict.get("candidate", [])}
        for model, blessing in _blessed_newest_first(input_dict):
            if model.id not in candidates:
                return {"model": [model], "model_blessing": [blessing], "candidate": []}
        return {key: [] for key in input_dict}


def baseline_resolver(candidate) -> Any:
    return resolver.Resolver(
        strategy_class=BaselineModelStrategy,
        candidate=candidate,
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
    )
