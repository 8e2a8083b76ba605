"""Facts about one pipeline's records in ML Metadata, each computed in exactly one place.

The span of an artifact, the data a model was trained on, its warm-start ancestry, which
Examples artifacts passed the data gate, and which models were pushed: the resolvers (inside
a run), the queries, the report, monitoring and rollback (outside a run) all ask here, so two
walks of the same lineage cannot disagree.

Everything works on `ml_metadata` protos; TFX `Artifact` wrappers are accepted too (their
`mlmd_artifact` is used). Nothing here imports TensorFlow or TFX at module import time: the
query commands stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
from ml_metadata.proto.metadata_store_pb2 import Artifact

INPUT_EVENTS = (pb.Event.INPUT, pb.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (pb.Event.OUTPUT, pb.Event.DECLARED_OUTPUT)

# Input keys (event path keys) of our components that matter to lineage.
WARM_START_KEY = "base_model"  # Trainer: the model it started from, not data it trained on
EXAMPLES_KEY = "examples"  # Trainer, Transform, the data gate: the Examples they read
MODEL_KEY = "model"  # Pusher, rollback: the Model they pushed

# The type of the data gate's result (see pipeline/gate.py).
# KFP (the Vertex compiler) requires custom type names of the form "namespace.TypeName".
GATE_RESULT_TYPE = "pipeline.DataGateResult"
# Deep enough for Trainer -> Transform -> window -> ExampleGen, and a rollback on top.
_MAX_DEPTH = 8


def _proto(artifact: Any) -> Artifact:
    return getattr(artifact, "mlmd_artifact", artifact)


def property_value(message: Any, name: str) -> Any:
    """A property or custom property of an artifact or execution, or None."""
    message = _proto(message)
    for props in (message.properties, message.custom_properties):
        if name in props:
            value = props[name]
            kind = value.WhichOneof("value")
            if kind == "struct_value":
                # How Vertex AI hands artifact metadata to an executor: a JSON value in a
                # Struct, a scalar under TFX's "__value__" key.
                from google.protobuf import json_format

                decoded = json_format.MessageToDict(value.struct_value)
                return decoded.get("__value__", decoded)
            return None if kind is None else getattr(value, kind)
    return None


def span_of(artifact: Any) -> int:
    """The span of an ExampleGen output (or of a gate result); 0 without span folders.

    ExampleGen records the span as a custom property (so TFX's `artifact.span` reads 0); older
    artifacts may hold it as a string.
    """
    value = property_value(artifact, "span")
    return int(value or 0)


def is_ingested_examples(artifact: Any) -> bool:
    """An ExampleGen output (as opposed to Transform's transformed examples)."""
    return "input_fingerprint" in _proto(artifact).custom_properties


# --- Scope: one pipeline in a shared store ---------------------------------------------------


def pipeline_context(store: metadata_store.MetadataStore, pipeline_name: str) -> pb.Context | None:
    return store.get_context_by_type_and_name("pipeline", pipeline_name)


def pipeline_artifacts(store: metadata_store.MetadataStore, pipeline_name: str, type_name: str) -> list[Artifact]:
    """Artifacts of one type that belong to the pipeline (a shared store holds others too)."""
    ctx = pipeline_context(store, pipeline_name)
    if ctx is None:
        return []
    return [a for a in store.get_artifacts_by_context(ctx.id) if a.type == type_name]


def belongs_to(store: metadata_store.MetadataStore, pipeline_name: str, artifact: Any) -> bool:
    ctx = pipeline_context(store, pipeline_name)
    return ctx is not None and _proto(artifact).id in {a.id for a in store.get_artifacts_by_context(ctx.id)}


# --- Lineage walks ----------------------------------------------------------------------------


def producer_inputs(store: metadata_store.MetadataStore, artifact_id: int) -> tuple[int, dict[str, list[Artifact]]] | None:
    """(execution id, inputs by key) of the execution that first produced the artifact (not a
    cached re-use), or None for an artifact nothing produced."""
    outputs = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in OUTPUT_EVENTS]
    if not outputs:
        return None
    execution_id = min(e.execution_id for e in outputs)
    return execution_id, events_by_key(store, [execution_id], INPUT_EVENTS).get(execution_id, {})


def events_by_key(
    store: metadata_store.MetadataStore, execution_ids: Iterable[int], kinds: Sequence[int]
) -> dict[int, dict[str, list[Artifact]]]:
    """execution id -> event key -> artifacts, for the events of these kinds."""
    events = [e for e in store.get_events_by_execution_ids(list(execution_ids)) if e.type in kinds]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))} if events else {}
    result: dict[int, dict[str, list[Artifact]]] = {}
    for e in events:
        key = e.path.steps[0].key if e.path.steps else "artifact"
        result.setdefault(e.execution_id, {}).setdefault(key, []).append(artifacts[e.artifact_id])
    return result


def examples_trained_on(store: metadata_store.MetadataStore, model: Any) -> list[Artifact]:
    """The ExampleGen outputs a model was trained on, oldest first.

    Follows the Trainer's and Transform's inputs (through the training window) and a
    rollback's `model` input to the original model; never the warm-start `base_model`, whose
    data is not this model's training data.
    """
    found: dict[int, Artifact] = {}
    frontier, seen = [_proto(model).id], {_proto(model).id}
    for _ in range(_MAX_DEPTH):
        next_frontier = []
        for artifact_id in frontier:
            produced = producer_inputs(store, artifact_id)
            if produced is None:
                continue
            for key, inputs in produced[1].items():
                if key == WARM_START_KEY:
                    continue
                for a in inputs:
                    if a.id in seen:
                        continue
                    seen.add(a.id)
                    if is_ingested_examples(a):
                        found[a.id] = a
                    else:
                        next_frontier.append(a.id)
        frontier = next_frontier
        if not frontier:
            break
    return [found[i] for i in sorted(found)]


def warm_start_ancestry(store: metadata_store.MetadataStore, model: Any) -> list[Artifact]:
    """The models this model was warm-started from, nearest first (through rollbacks too)."""
    chain: list[Artifact] = []
    current, seen = _proto(model).id, {_proto(model).id}
    for _ in range(_MAX_DEPTH * 4):
        produced = producer_inputs(store, current)
        if produced is None:
            break
        inputs = produced[1]
        if inputs.get(WARM_START_KEY):
            parent = inputs[WARM_START_KEY][0]
            chain.append(parent)
        elif inputs.get(MODEL_KEY):
            parent = inputs[MODEL_KEY][0]  # a rollback's Model stands for the original model
        else:
            break
        if parent.id in seen:
            break
        current = parent.id
        seen.add(current)
    return chain


# --- The data gate ---------------------------------------------------------------------------


def judged_examples(store: metadata_store.MetadataStore, verdicts: Iterable[Any]) -> dict[int, Artifact]:
    """Gate result id -> the Examples artifact that gate execution judged (and passed: the
    gate publishes a result only when the data passes)."""
    ids = [_proto(v).id for v in verdicts]
    if not ids:
        return {}
    producers: dict[int, int] = {}
    for e in store.get_events_by_artifact_ids(ids):
        if e.type in OUTPUT_EVENTS:
            producers.setdefault(e.artifact_id, e.execution_id)
    inputs = events_by_key(store, set(producers.values()), INPUT_EVENTS)
    result = {}
    for verdict_id, execution_id in producers.items():
        examples = inputs.get(execution_id, {}).get(EXAMPLES_KEY) or []
        if examples:
            result[verdict_id] = examples[0]
    return result


def passed_examples(store: metadata_store.MetadataStore, verdicts: Iterable[Any]) -> list[tuple[Artifact, Artifact]]:
    """(Examples artifact, its gate result) for every Examples artifact that passed the gate,
    newest result first. Only artifacts: a span re-delivered and rejected has a passed copy
    and a rejected copy under the same span number, and only the passed copy is here."""
    verdicts = [_proto(v) for v in verdicts]
    judged = judged_examples(store, verdicts)
    by_id = {v.id: v for v in verdicts}
    pairs = [(judged[i], by_id[i]) for i in judged]
    return sorted(pairs, key=lambda p: p[1].id, reverse=True)


def training_window(store: metadata_store.MetadataStore, verdicts: Iterable[Any], num_spans: int) -> list[Artifact]:
    """The newest `num_spans` spans that passed, newest span first: for each span, the copy
    whose pass is newest."""
    newest: dict[int, Artifact] = {}
    for examples, _ in passed_examples(store, verdicts):
        newest.setdefault(span_of(examples), examples)
    return [newest[s] for s in sorted(newest, reverse=True)[:num_spans]]


def current_span(store: metadata_store.MetadataStore, verdicts: Iterable[Any]) -> int | None:
    """The newest span that passed the gate (None before any pass)."""
    spans = [span_of(examples) for examples, _ in passed_examples(store, verdicts)]
    return max(spans) if spans else None


# --- Models: blessed, pushed, served ---------------------------------------------------------


def blessed_newest_first(models: Iterable[Any], blessings: Iterable[Any]) -> list[tuple[Any, Any]]:
    """(model, its blessing) for every blessed model, newest model first."""
    blessed = {}
    for b in blessings:
        if property_value(b, "blessed") == 1:
            blessed[property_value(b, "current_model_id")] = b
    return [
        (m, blessed[_proto(m).id]) for m in sorted(models, key=lambda a: _proto(a).id, reverse=True) if _proto(m).id in blessed
    ]


def pushed_models(store: metadata_store.MetadataStore, pipeline_name: str) -> list[Artifact]:
    """The pipeline's pushed models (pushed=1, rollbacks included), newest first."""
    pushed = [a for a in pipeline_artifacts(store, pipeline_name, "PushedModel") if property_value(a, "pushed")]
    return sorted(pushed, key=lambda a: (a.create_time_since_epoch, a.id), reverse=True)


def pushed_version(artifact: Any) -> str | None:
    """The serving version of a PushedModel: its version property, else its folder's name."""
    version = property_value(artifact, "pushed_version")
    if version:
        return str(version)
    destination = property_value(artifact, "pushed_destination")
    return os.path.basename(str(destination).rstrip("/")) if destination else None


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
