"""Input resolution for continuous training, across runs, from ML Metadata.

Five resolvers: the training window (Examples artifacts that passed the gate), the drift
reference (the newest earlier pass), the warm-start model, the Evaluator's baseline and the
newest tuning. Each
resolves *artifacts* through `pipeline.lineage`, never span numbers alone: a span that was
re-delivered and rejected has a passed copy and a rejected copy, and only the passed copy can
be resolved. Each is stable for an unchanged re-run (same inputs, so the cache still hits),
also after a rejected span has been removed from the data.
"""

from __future__ import annotations

from typing import Any

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver
from tfx.types import standard_artifacts

from pipeline import lineage
from pipeline.gate import DataGateResult

Inputs = dict[str, list[types.Artifact]]


def _empty(input_dict: Inputs) -> Inputs:
    return {key: [] for key in input_dict}


def _verdicts(gate_id: str) -> types.Channel:
    return types.Channel(type=DataGateResult, producer_component_id=gate_id, output_key="result")


def _by_id(artifacts: list[types.Artifact]) -> dict[int, types.Artifact]:
    return {a.id: a for a in artifacts}


class SpanWindowStrategy(resolver.ResolverStrategy):
    """The newest `num_spans` spans that passed the data gate: per span, the Examples artifact
    the newest pass judged. Rejected data never enters the window."""

    def __init__(self, num_spans: int):
        self._num_spans = num_spans

    def resolve_artifacts(self, store: mlmd.MetadataStore, input_dict: Inputs) -> Inputs | None:
        examples = _by_id(input_dict.get("examples", []))
        window = lineage.training_window(store, input_dict.get("verdicts", []), self._num_spans)
        return {"examples": [examples[a.id] for a in window if a.id in examples], "verdicts": []}


def span_window_resolver(example_gen_id: str, gate_id: str, num_spans: int) -> Any:
    return resolver.Resolver(
        strategy_class=SpanWindowStrategy,
        config={"num_spans": num_spans},
        examples=types.Channel(type=standard_artifacts.Examples, producer_component_id=example_gen_id, output_key="examples"),
        verdicts=_verdicts(gate_id),
    )


class WarmStartModelStrategy(resolver.ResolverStrategy):
    """The newest blessed model trained only on spans older than the current span (the newest
    span that passed the gate). For an unchanged re-run, also after a rejected span was
    removed, it is the model of the first run of that span, so the Trainer's cache applies."""

    def resolve_artifacts(self, store: mlmd.MetadataStore, input_dict: Inputs) -> Inputs | None:
        current = lineage.current_span(store, input_dict.get("verdicts", []))
        if current is None:
            return _empty(input_dict)
        for model, blessing in lineage.blessed_newest_first(input_dict.get("model", []), input_dict.get("model_blessing", [])):
            spans = [lineage.span_of(e) for e in lineage.examples_trained_on(store, model)]
            if max(spans, default=current) < current:
                return {"model": [model], "model_blessing": [blessing], "verdicts": []}
        return _empty(input_dict)


def warm_start_resolver(gate_id: str) -> Any:
    return resolver.Resolver(
        strategy_class=WarmStartModelStrategy,
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        verdicts=_verdicts(gate_id),
    )


class EarlierPassStrategy(resolver.ResolverStrategy):
    """The gate's drift reference: the newest pass of a span older than the span this run
    ingested (`current`, this run's ExampleGen output)."""

    def resolve_artifacts(self, store: mlmd.MetadataStore, input_dict: Inputs) -> Inputs | None:
        current = input_dict.get("current") or []
        if not current:
            return _empty(input_dict)
        span = lineage.span_of(current[0])
        verdicts = _by_id(input_dict.get("verdicts", []))
        earlier = [
            (lineage.span_of(examples), result.id)
            for examples, result in lineage.passed_examples(store, verdicts.values())
            if lineage.span_of(examples) < span
        ]
        if not earlier:
            return _empty(input_dict)
        return {"verdicts": [verdicts[max(earlier)[1]]], "current": []}


def earlier_pass_resolver(current_examples: types.BaseChannel, gate_id: str) -> Any:
    return resolver.Resolver(
        strategy_class=EarlierPassStrategy,
        current=current_examples,
        verdicts=_verdicts(gate_id),
    )


class BaselineModelStrategy(resolver.ResolverStrategy):
    """The Evaluator's baseline: the newest blessed model other than the candidate itself. (TFX's
    LatestBlessedModelStrategy returns the candidate when an unchanged re-run reuses a blessed
    model from the cache, which changes the Evaluator's inputs and re-runs it for nothing.)"""

    def resolve_artifacts(self, store: mlmd.MetadataStore, input_dict: Inputs) -> Inputs | None:
        candidates = {a.id for a in input_dict.get("candidate", [])}
        for model, blessing in lineage.blessed_newest_first(input_dict.get("model", []), input_dict.get("model_blessing", [])):
            if model.id not in candidates:
                return {"model": [model], "model_blessing": [blessing], "candidate": []}
        return _empty(input_dict)


def baseline_resolver(candidate: types.BaseChannel) -> Any:
    return resolver.Resolver(
        strategy_class=BaselineModelStrategy,
        candidate=candidate,
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
    )


class LatestTuningStrategy(resolver.ResolverStrategy):
    """The newest best_hyperparameters of this pipeline's Tuner, or none (TFX's
    LatestArtifactStrategy fails the resolver when there is none: the Trainer then simply uses
    HParams)."""

    def resolve_artifacts(self, store: mlmd.MetadataStore, input_dict: Inputs) -> Inputs | None:
        found = input_dict.get("hyperparameters", [])
        return {"hyperparameters": [max(found, key=lambda a: a.id)] if found else []}


def latest_tuning_resolver(tuner_id: str) -> Any:
    return resolver.Resolver(
        strategy_class=LatestTuningStrategy,
        hyperparameters=types.Channel(
            type=standard_artifacts.HyperParameters, producer_component_id=tuner_id, output_key="best_hyperparameters"
        ),
    )
