"""Facts about one pipeline's records, each computed in exactly one place, on either store.

A `Graph` is one pipeline's records as both stores keep them: its runs, the executions of each
run (component, state), the artifacts they read and wrote, and the events between them. A
backend (`pipeline/metadata_backends.py`) loads it from ML Metadata (SQLite, MySQL/MariaDB) or
from Vertex ML Metadata; nothing here knows which.

Every fact the pipeline and the operations tools need is a function of the Graph: the span of
an artifact, the spans that passed the data gate, the training window, the drift reference,
the warm-start model, the evaluation baseline, the newest tuning, the data a model was trained
on, the pushed and the served model. The components resolve their cross-run inputs with them
(inside a run), and `runs`, `lineage`, `compare`, the report, monitoring and rollback read
them (outside a run), so two walks of the same lineage cannot disagree.

What a component resolved for itself is recorded on what it wrote (custom properties), so
lineage answers the same questions on both stores:

  data gate result   span, reference_uri, reference_span: the pass it measured drift against
  transform outputs  window: the Examples (URIs) it analysed and transformed, newest span first
  model              window (copied), warm_start_from: the base model's URI ("" for none),
                     hyperparameters_from: the tuning it trained with ("" for none)
  model blessing     baseline_model, current_model: their URIs (TFX's Evaluator)
  model evaluation   evaluated_on: what the figures depend on besides the model (the eval
                     data, the config without thresholds); baseline_evaluation: the recorded
                     evaluation the baseline's figures were read from ("" for computed)

Nothing here imports TensorFlow, TFX or ml_metadata: the query commands stay fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import Any

# The type of the data gate's result (pipeline/gate.py). KFP (the Vertex compiler) requires
# custom type names of the form "namespace.TypeName".
GATE_RESULT_TYPE = "pipeline.DataGateResult"

# Execution states, as both stores name them (lowercase, for display).
RAN, CACHED, FAILED, RUNNING, CANCELED, NEW = "ran", "cached", "failed", "running", "canceled", "new"

# Properties our components record about what they resolved for themselves.
WINDOW = "window"
WARM_START_FROM = "warm_start_from"
HYPERPARAMETERS_FROM = "hyperparameters_from"
REFERENCE_URI = "reference_uri"
REFERENCE_SPAN = "reference_span"
BASELINE_URI = "baseline_model"  # the baseline's URI, set by TFX's Evaluator on the blessing
CURRENT_MODEL_URI = "current_model"  # the candidate's URI, ditto
ROLLBACK_OF = "rollback_of"  # the PushedModel URI a rollback served again
EVALUATED_ON = "evaluated_on"  # on a ModelEvaluation (pipeline/recorded_baseline.py)
BASELINE_EVALUATION = "baseline_evaluation"  # ditto: where the baseline's figures came from

# Component ids whose outputs the facts below read (pipeline/pipeline.py names them so).
TUNER = "tuner"
TRANSFORM = "transform"
ROLLBACK = "rollback"
DATA_GATE = "data_gate"
# Set on a failed execution that refused the data (not a crash): the runner records it.
REJECTED = "rejected"


def run_status(executions: Iterable[Execution]) -> str:
    """A run's status from its executions: complete, running, interrupted, failed, or rejected
    (the data gate, or ExampleGen's file check, refused the data: nothing was trained)."""
    executions = list(executions)
    states = {e.state for e in executions}
    if FAILED in states:
        failed = [e for e in executions if e.state == FAILED]
        if all(e.component == DATA_GATE or e.props.get(REJECTED) for e in failed):
            return "rejected"
        return "failed"
    if CANCELED in states:
        return "interrupted"
    if states & {NEW, RUNNING}:
        return "running"
    return "complete"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """An artifact as both stores record it. `ref` is the store's own key: the MLMD id as a
    string locally, the resource name on Vertex; `id` is what people type (the number)."""

    ref: str
    type: str
    uri: str
    props: dict[str, Any]
    created_ms: int
    order: int  # creation order in the store (ties of created_ms broken)

    @property
    def id(self) -> int:
        return int(self.ref.rsplit("/", 1)[-1])

    def get(self, name: str, default: Any = None) -> Any:
        value = self.props.get(name)
        return default if value is None or value == "" else value


@dataclasses.dataclass(frozen=True)
class Execution:
    ref: str
    component: str
    state: str
    props: dict[str, Any]
    created_ms: int
    updated_ms: int
    order: int

    @property
    def id(self) -> int:
        return int(self.ref.rsplit("/", 1)[-1])


@dataclasses.dataclass(frozen=True)
class Event:
    execution: str
    artifact: str
    output: bool
    key: str


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    created_ms: int
    executions: tuple[str, ...]
    order: int


class Graph:
    """One pipeline's records: runs, executions, artifacts and events."""

    def __init__(
        self,
        pipeline: str,
        runs: Iterable[Run],
        executions: Iterable[Execution],
        artifacts: Iterable[Artifact],
        events: Iterable[Event],
    ):
        self.pipeline = pipeline
        self.runs = sorted(runs, key=lambda r: (r.created_ms, r.order))
        self.executions = {e.ref: e for e in executions}
        self.artifacts = {a.ref: a for a in artifacts}
        self.events = [e for e in events if e.execution in self.executions and e.artifact in self.artifacts]
        self._in: dict[str, list[Event]] = {}
        self._out: dict[str, list[Event]] = {}
        self._by_artifact: dict[str, list[Event]] = {}
        for e in self.events:
            (self._out if e.output else self._in).setdefault(e.execution, []).append(e)
            self._by_artifact.setdefault(e.artifact, []).append(e)

    # ----- primitives
    def _keyed(self, events: list[Event]) -> dict[str, list[Artifact]]:
        result: dict[str, list[Artifact]] = {}
        for e in events:
            result.setdefault(e.key, []).append(self.artifacts[e.artifact])
        return result

    def inputs(self, execution: Execution) -> dict[str, list[Artifact]]:
        return self._keyed(self._in.get(execution.ref, []))

    def outputs(self, execution: Execution) -> dict[str, list[Artifact]]:
        return self._keyed(self._out.get(execution.ref, []))

    def input_artifacts(self, execution: Execution, type_name: str) -> list[Artifact]:
        return [
            self.artifacts[e.artifact] for e in self._in.get(execution.ref, []) if self.artifacts[e.artifact].type == type_name
        ]

    def output_artifacts(self, execution: Execution, type_name: str) -> list[Artifact]:
        return [
            self.artifacts[e.artifact] for e in self._out.get(execution.ref, []) if self.artifacts[e.artifact].type == type_name
        ]

    def producer(self, artifact: Artifact) -> Execution | None:
        """The execution that first wrote the artifact (not a cached re-use)."""
        writers = [self.executions[e.execution] for e in self._by_artifact.get(artifact.ref, []) if e.output]
        return min(writers, key=lambda x: x.order) if writers else None

    def consumers(self, artifact: Artifact) -> list[Execution]:
        readers = {e.execution for e in self._by_artifact.get(artifact.ref, []) if not e.output}
        return sorted((self.executions[r] for r in readers), key=lambda x: x.order)

    def of_type(self, type_name: str) -> list[Artifact]:
        """Artifacts of a type, oldest first."""
        return sorted((a for a in self.artifacts.values() if a.type == type_name), key=lambda a: a.order)

    def by_uri(self, uri: str, type_name: str) -> list[Artifact]:
        return [a for a in self.of_type(type_name) if a.uri.rstrip("/") == uri.rstrip("/")]

    def find(self, ref: str) -> Artifact | None:
        """An artifact by its store key or by its number."""
        if ref in self.artifacts:
            return self.artifacts[ref]
        if ref.isdigit():
            return next((a for a in self.artifacts.values() if a.id == int(ref)), None)
        return None

    def executions_of(self, run: Run) -> list[Execution]:
        return sorted((self.executions[r] for r in run.executions if r in self.executions), key=lambda x: x.order)


# --- Artifacts ----------------------------------------------------------------------------------


def span_of(artifact: Artifact | None) -> int:
    """The span of an ExampleGen output (or of a gate result); 0 without span folders."""
    return int(artifact.get("span", 0)) if artifact is not None else 0


def is_ingested(artifact: Artifact) -> bool:
    """An ExampleGen output (as opposed to Transform's transformed examples)."""
    return artifact.type == "Examples" and artifact.get("input_fingerprint") is not None


def window_uris(artifact: Artifact) -> list[str]:
    value = artifact.get(WINDOW)
    return list(json.loads(value)) if value else []


def examples_by_uri(g: Graph, uris: Iterable[str]) -> list[Artifact]:
    """The ingested Examples artifacts with these URIs, in that order."""
    found = []
    for uri in uris:
        matches = [a for a in g.by_uri(uri, "Examples") if is_ingested(a)]
        if matches:
            found.append(matches[0])
    return found


# --- The data gate -------------------------------------------------------------------------------


def passes(g: Graph) -> list[tuple[Artifact, Artifact]]:
    """(Examples artifact, its gate result) for every Examples artifact that passed the gate,
    newest pass first. Only artifacts: a span re-delivered and rejected has a passed copy and
    a rejected copy under the same span number, and only the passed copy is here (the gate
    publishes a result only when the data passes)."""
    found = []
    for result in g.of_type(GATE_RESULT_TYPE):
        gate = g.producer(result)
        judged = [a for a in g.input_artifacts(gate, "Examples") if is_ingested(a)] if gate else []
        if judged:
            found.append((judged[0], result))
    return sorted(found, key=lambda p: p[1].order, reverse=True)


def _newest_pass_per_span(g: Graph) -> dict[int, tuple[Artifact, Artifact]]:
    newest: dict[int, tuple[Artifact, Artifact]] = {}
    for examples, result in passes(g):
        newest.setdefault(span_of(examples), (examples, result))
    return newest


def drift_reference(g: Graph, current: Artifact) -> Artifact | None:
    """The gate result of the newest pass of a span older than `current`'s (the data gate
    measures drift against its statistics), or None."""
    earlier = {s: p for s, p in _newest_pass_per_span(g).items() if s < span_of(current)}
    return earlier[max(earlier)][1] if earlier else None


def training_window(g: Graph, current: Artifact, num_spans: int) -> list[Artifact]:
    """What Transform analyses and the Trainer trains on: `current` (this run's span, which
    passed the gate), then the passed copies of the newest `num_spans - 1` older spans, newest
    first. Rejected data never enters: only passes are considered."""
    older = {s: p[0] for s, p in _newest_pass_per_span(g).items() if s < span_of(current)}
    return [current] + [older[s] for s in sorted(older, reverse=True)[: max(num_spans - 1, 0)]]


def accepted_anomalies(result: Artifact) -> int:
    return int(result.get("accepted_anomalies", 0))


# --- Models ------------------------------------------------------------------------------------


def blessed_model(g: Graph, blessing: Artifact) -> Artifact | None:
    """The Model a blessing is about: the Evaluator's candidate (its one Model input), or the
    Model a rollback wrote beside its blessing."""
    execution = g.producer(blessing)
    if execution is None:
        return None
    models = g.output_artifacts(execution, "Model") or g.input_artifacts(execution, "Model")
    return models[0] if models else None


def blessed_models(g: Graph) -> list[tuple[Artifact, Artifact]]:
    """(model, blessing) for every blessing that blessed, most recently blessed first."""
    found = []
    for blessing in reversed(g.of_type("ModelBlessing")):
        if int(blessing.get("blessed", 0)) == 1:
            model = blessed_model(g, blessing)
            if model is not None:
                found.append((model, blessing))
    return found


def original_model(g: Graph, model: Artifact) -> Artifact:
    """A rollback's Model stands for the model it served again: that one's Trainer output."""
    seen = set()
    while model.ref not in seen:
        seen.add(model.ref)
        execution = g.producer(model)
        if execution is None or execution.component != ROLLBACK:
            return model
        inputs = g.input_artifacts(execution, "Model")
        if not inputs:
            return model
        model = inputs[0]
    return model


def examples_trained_on(g: Graph, model: Artifact) -> list[Artifact]:
    """The ingested Examples a model was trained on, oldest span first (for a rollback's
    Model, the original model's). Never the warm-start model's data."""
    model = original_model(g, model)
    found = examples_by_uri(g, window_uris(model))
    return sorted(found, key=lambda a: (span_of(a), a.order))


def spans_trained_on(g: Graph, model: Artifact) -> list[int]:
    return [span_of(a) for a in examples_trained_on(g, model)]


def models_at(g: Graph, uri: str) -> list[Artifact]:
    """Trainer-written Models at a URI (a rollback's Model shares its original's URI)."""
    models = g.by_uri(uri, "Model")
    originals = [m for m in models if getattr(g.producer(m), "component", None) != ROLLBACK]
    return originals or models


def warm_started_from(g: Graph, model: Artifact) -> Artifact | None:
    """The model this one was warm-started from, or None."""
    uri = original_model(g, model).get(WARM_START_FROM)
    found = models_at(g, uri) if uri else []
    return found[0] if found else None


def warm_start_ancestry(g: Graph, model: Artifact) -> list[Artifact]:
    """The models this model was warm-started from, nearest first (through rollbacks too)."""
    chain: list[Artifact] = []
    seen = {model.ref}
    current = warm_started_from(g, model)
    while current is not None and current.ref not in seen:
        chain.append(current)
        seen.add(current.ref)
        current = warm_started_from(g, current)
    return chain


def warm_start_model(g: Graph, current_span: int) -> Artifact | None:
    """The model to warm-start from: the most recently blessed model trained only on spans
    older than `current_span` (so an unchanged re-run of a span resolves the same model as its
    first run, and the cache applies)."""
    for model, _ in blessed_models(g):
        spans = spans_trained_on(g, model)
        if spans and max(spans) < current_span:
            return model
    return None


def baseline_model(g: Graph, candidate_uri: str) -> Artifact | None:
    """The Evaluator's baseline: the most recently blessed model other than the candidate
    (TFX's LatestBlessedModelStrategy returns the candidate itself when an unchanged re-run
    reuses a blessed model from the cache)."""
    for model, _ in blessed_models(g):
        if model.uri.rstrip("/") != candidate_uri.rstrip("/"):
            return model
    return None


def baseline_of(g: Graph, model: Artifact) -> Artifact | None:
    """The baseline the model was evaluated against (when it was the candidate), or None."""
    for blessing in g.of_type("ModelBlessing"):
        execution = g.producer(blessing)
        if execution is not None and execution.component != ROLLBACK and blessed_model(g, blessing) == model:
            uri = blessing.get(BASELINE_URI)
            found = models_at(g, uri) if uri else []
            return found[0] if found else None
    return None


def analyzer_cache(g: Graph) -> Artifact | None:
    """The newest tf.Transform analyzer cache Transform wrote in this pipeline (its analyses of
    each span it read, keyed by the span's files): the next run analyses only the new span."""
    caches = [a for a in g.of_type("TransformCache") if getattr(g.producer(a), "component", None) == TRANSFORM]
    return caches[-1] if caches else None


def latest_tuning(g: Graph) -> Artifact | None:
    """The newest best_hyperparameters a Tuner of this pipeline wrote, or None."""
    tuned = [a for a in g.of_type("HyperParameters") if (p := g.producer(a)) is not None and p.component == TUNER]
    return tuned[-1] if tuned else None


# --- Pushed and served models ------------------------------------------------------------------


def pushed_models(g: Graph) -> list[Artifact]:
    """The pipeline's pushes (pushed=1, rollbacks included), newest first."""
    pushed = [a for a in g.of_type("PushedModel") if int(a.get("pushed", 0)) == 1]
    return sorted(pushed, key=lambda a: (a.created_ms, a.order), reverse=True)


def served(g: Graph) -> Artifact | None:
    """The push that is served: the newest (a rollback is a push). Local servers load the
    highest version under the serving folder, which the newest push always is; on Vertex the
    newest push is the deployment that takes the traffic."""
    pushed = pushed_models(g)
    return pushed[0] if pushed else None


def pushed_version(artifact: Artifact) -> str | None:
    """The serving version of a PushedModel: its version property, else its folder's name."""
    version = artifact.get("pushed_version")
    if version:
        return str(version)
    destination = artifact.get("pushed_destination")
    return os.path.basename(str(destination).rstrip("/")) if destination else None


def model_of(g: Graph, artifact: Artifact) -> Artifact | None:
    """The Model behind a PushedModel (the Pusher's or a rollback's Model input)."""
    if artifact.type == "Model":
        return artifact
    execution = g.producer(artifact)
    if execution is None:
        return None
    models = g.input_artifacts(execution, "Model")
    return models[0] if models else None


def evaluation_of(g: Graph, model: Artifact) -> Artifact | None:
    """The ModelEvaluation of the Evaluator run that took `model` as its candidate."""
    for execution in g.consumers(model):
        evaluations = g.output_artifacts(execution, "ModelEvaluation")
        if evaluations:
            return evaluations[0]
    return None


def recorded_evaluation(g: Graph, model: Artifact, key: str) -> Artifact | None:
    """The evaluation of `model` as a candidate whose figures depend on exactly `key`
    (EVALUATED_ON: the same eval data and metrics), or None: the Evaluator reads a baseline's
    figures from it instead of evaluating the baseline again."""
    evaluation = evaluation_of(g, model)
    return evaluation if evaluation is not None and evaluation.get(EVALUATED_ON) == key else None


def _reference_span(result: Artifact | None) -> int | None:
    span = int(result.get(REFERENCE_SPAN, -1)) if result is not None else -1
    return span if span >= 0 else None


def model_facts(g: Graph, model: Artifact) -> dict[str, Any]:
    """What lineage answers about a model on either store: the spans it was trained on, the
    model it warm-started from, the span its data gate measured drift against, the baseline
    it was evaluated against and the tuning it trained with."""
    original = original_model(g, model)
    trainer = g.producer(original)
    examples = examples_trained_on(g, original)
    newest = max(examples, key=lambda a: (span_of(a), a.order)) if examples else None
    reference = None
    if newest is not None:
        for examples_, result in passes(g):
            if examples_.ref == newest.ref:
                reference = result
                break
    warm = warm_started_from(g, original)
    baseline = baseline_of(g, original)
    return {
        "model": original.ref,
        "trained_by": trainer.component if trainer else None,
        "spans": [span_of(a) for a in examples],
        "examples": [a.ref for a in examples],
        "warm_started_from": warm.ref if warm else None,
        "warm_start_spans": spans_trained_on(g, warm) if warm else [],
        "drift_reference_span": _reference_span(reference),
        "baseline": baseline.ref if baseline else None,
        "baseline_spans": spans_trained_on(g, baseline) if baseline else [],
        "hyperparameters_from": original.get(HYPERPARAMETERS_FROM),
    }


def serving_versions(serving_dir: str) -> list[int]:
    """Version numbers under a Pusher directory that hold a SavedModel, ascending. Local
    paths and gs:// alike (tf.io.gfile)."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(serving_dir):
        return []
    versions = []
    for name in tf.io.gfile.listdir(serving_dir):
        name = name.rstrip("/")
        if name.isdigit() and tf.io.gfile.exists(os.path.join(serving_dir, name, "saved_model.pb")):
            versions.append(int(name))
    return sorted(versions)
