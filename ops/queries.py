"""Read-only queries over ML Metadata: runs, artifacts, lineage, model comparison.

Everything goes through the `ml_metadata` MetadataStore API, so every store TFX writes to
(SQLite locally, MySQL/MariaDB shared) answers the same questions. The queries return
plain data (dataclasses, dicts); `ops/render.py` renders them as tables, trees
or JSON.

Reading Vertex ML Metadata: Vertex runs record the same TFX types and events in a Vertex
ML Metadata store, which is reached through the aiplatform API (`aiplatform.Artifact`,
`aiplatform.Execution`, `MetadataStore` lineage subgraphs), not an ml_metadata connection.
The `Metadata` class needs five primitives from a store (contexts by type and name, children
of a context, executions of a context, events by execution/artifact, artifacts by id); a
Vertex reader would implement those over the aiplatform API and reuse everything else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from ml_metadata.proto.metadata_store_pb2 import Artifact

from modules.hparams import HParams, from_tuned
from ops import files
from ops.evaluation import select_slices, sliced_metrics
from ops.store import MetadataError
from pipeline import lineage

_STATES = {
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}
_INPUTS = lineage.INPUT_EVENTS
_OUTPUTS = lineage.OUTPUT_EVENTS
# Artifact properties worth showing, in this order.
KEY_PROPERTIES = ("span", "version", "split_names", "blessed", "pushed", "pushed_version", "pushed_destination")


def prop(message, name: str) -> Any:
    """A property or custom property's value for display (protos and structs as text), or None."""
    value = lineage.property_value(message, name)
    return value if value is None or isinstance(value, (int, float, str, bytes)) else _one_line(value)


def tuned_values(uri: str) -> dict[str, Any]:
    """The values a Tuner chose (KerasTuner's HyperParameters.values in its
    best_hyperparameters artifact)."""
    return dict(json.loads(files.read_bytes(os.path.join(uri, "best_hyperparameters.txt"))).get("values", {}))


def _one_line(message: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(message, as_one_line=True) if hasattr(message, "DESCRIPTOR") else str(message)


def artifact_dict(artifact: Artifact) -> dict[str, Any]:
    """The user-facing view of an artifact: id, type, uri and key properties."""
    props = {}
    for name in KEY_PROPERTIES:
        value = prop(artifact, name)
        if value is not None:
            if name == "split_names" and isinstance(value, str):
                value = json.loads(value)
            props[name] = value
    return {
        "id": artifact.id,
        "type": artifact.type,
        "uri": artifact.uri,
        "properties": props,
        "created_ms": artifact.create_time_since_epoch,
    }


# --- Runs ------------------------------------------------------------------------------------


@dataclasses.dataclass
class ComponentRun:
    component: str
    state: str
    execution_id: int
    outputs: dict[str, list[Artifact]]


@dataclasses.dataclass
class RunInfo:
    run_id: str
    context_id: int
    start_ms: int
    end_ms: int
    components: dict[str, ComponentRun]

    @property
    def status(self) -> str:
        states = {c.state for c in self.components.values()}
        if "failed" in states:
            return "failed"
        if "canceled" in states:
            return "interrupted"
        if states & {"new", "running"}:
            return "running"
        return "complete"

    def output(self, component: str, key: str) -> Artifact | None:
        run = self.components.get(component)
        artifacts = run.outputs.get(key, []) if run else []
        return artifacts[0] if artifacts else None

    @property
    def pushed_version(self) -> str | None:
        for c in self.components.values():
            for artifacts in c.outputs.values():
                for a in artifacts:
                    if a.type == "PushedModel" and prop(a, "pushed"):
                        return prop(a, "pushed_version")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "status": self.status,
            "components": {name: c.state for name, c in self.components.items()},
            "pushed_version": self.pushed_version,
        }


class Metadata:
    """Queries over one pipeline's records in an ML Metadata store."""

    def __init__(self, store: metadata_store.MetadataStore, pipeline_name: str):
        self.store = store
        self.pipeline_name = pipeline_name
        self._component_cache: dict[int, str] = {}

    # ----- primitives
    def _pipeline_context(self) -> metadata_store_pb2.Context:
        ctx = self.store.get_context_by_type_and_name("pipeline", self.pipeline_name)
        if ctx is None:
            raise MetadataError(f"no runs of pipeline {self.pipeline_name!r} in this metadata store")
        return ctx

    def component_of(self, execution_id: int) -> str:
        if execution_id not in self._component_cache:
            prefix = self.pipeline_name + "."
            name = "?"
            for ctx in self.store.get_contexts_by_execution(execution_id):
                if ctx.type == "node" and ctx.name.startswith(prefix):
                    name = ctx.name[len(prefix) :]
            self._component_cache[execution_id] = name
        return self._component_cache[execution_id]

    def _events_by_execution(self, execution_ids, kinds) -> dict[int, dict[str, list[Artifact]]]:
        return lineage.events_by_key(self.store, execution_ids, kinds)

    def execution(self, execution_id: int) -> metadata_store_pb2.Execution:
        return self.store.get_executions_by_id([execution_id])[0]

    # ----- runs
    def runs(self) -> list[RunInfo]:
        """All runs of the pipeline, newest first."""
        pipeline_ctx = self._pipeline_context()
        run_contexts = [c for c in self.store.get_children_contexts_by_context(pipeline_ctx.id) if c.type == "pipeline_run"]
        runs = []
        for ctx in run_contexts:
            executions = sorted(self.store.get_executions_by_context(ctx.id), key=lambda e: e.id)
            outputs = self._events_by_execution((e.id for e in executions), _OUTPUTS)
            components = {}
            for e in executions:
                name = self.component_of(e.id)
                components[name] = ComponentRun(name, _STATES.get(e.last_known_state, "unknown"), e.id, outputs.get(e.id, {}))
            end = max((e.last_update_time_since_epoch for e in executions), default=ctx.create_time_since_epoch)
            runs.append(RunInfo(ctx.name, ctx.id, ctx.create_time_since_epoch, end, components))
        return sorted(runs, key=lambda r: (r.start_ms, r.context_id), reverse=True)

    def latest_run(self) -> RunInfo:
        runs = self.runs()
        if not runs:
            raise MetadataError(f"pipeline {self.pipeline_name!r} has no runs")
        return runs[0]

    def run(self, run_id: str) -> RunInfo:
        for r in self.runs():
            if r.run_id == run_id:
                return r
        raise MetadataError(f"no run {run_id!r} of pipeline {self.pipeline_name!r}")

    # ----- artifacts
    def artifacts(self, run_id: str | None = None, component: str | None = None, type_name: str | None = None) -> list[dict]:
        """Artifacts the pipeline produced, newest first, filtered by run, component or type."""
        runs = [self.run(run_id)] if run_id else self.runs()
        seen: dict[int, dict] = {}
        for r in runs:
            for c in r.components.values():
                if component and c.component != component:
                    continue
                for key, artifacts in c.outputs.items():
                    for a in artifacts:
                        if type_name and a.type != type_name:
                            continue
                        if a.id not in seen:
                            seen[a.id] = {**artifact_dict(a), "component": c.component, "output_key": key, "run_id": r.run_id}
        if component and not any(component in r.components for r in runs):
            raise MetadataError(f"no component {component!r} in the selected runs")
        return sorted(seen.values(), key=lambda a: a["id"], reverse=True)

    def pushed_models(self) -> list[Artifact]:
        """This pipeline's pushed models (pushed=1), newest first."""
        self._pipeline_context()
        return lineage.pushed_models(self.store, self.pipeline_name)

    def resolve(self, ref: str) -> Artifact:
        """One of this pipeline's artifacts, by pushed model version or by artifact id."""
        ref = str(ref).strip()
        for a in self.pushed_models():
            if lineage.pushed_version(a) == ref:
                return a
        if ref.isdigit():
            found = self.store.get_artifacts_by_id([int(ref)])
            if found and lineage.belongs_to(self.store, self.pipeline_name, found[0]):
                return found[0]
        raise MetadataError(
            f"no artifact or pushed model version {ref!r} of pipeline {self.pipeline_name!r} in this metadata store"
        )

    # ----- lineage
    def producer(self, artifact: Artifact) -> tuple[metadata_store_pb2.Execution, dict[str, list[Artifact]]] | None:
        """The execution that output `artifact` (the first, not a cached re-use) and its inputs."""
        produced = lineage.producer_inputs(self.store, artifact.id)
        if produced is None:
            return None
        return self.execution(produced[0]), produced[1]

    def consumers(self, artifact: Artifact) -> list[tuple[metadata_store_pb2.Execution, dict[str, list[Artifact]]]]:
        events = [e for e in self.store.get_events_by_artifact_ids([artifact.id]) if e.type in _INPUTS]
        ids = sorted({e.execution_id for e in events})
        outputs = self._events_by_execution(ids, _OUTPUTS)
        return [(self.execution(i), outputs.get(i, {})) for i in ids]

    def _execution_dict(self, execution: metadata_store_pb2.Execution) -> dict[str, Any]:
        d = {
            "id": execution.id,
            "component": self.component_of(execution.id),
            "state": _STATES.get(execution.last_known_state, "unknown"),
        }
        custom = prop(execution, "custom_config")
        if custom and custom != "null":
            config = json.loads(custom)
            if "hparams" in config:
                d["hparams"] = config["hparams"]
            if "module_fingerprint" in config:
                d["module_fingerprint"] = config["module_fingerprint"]
        for name in ("input_base", "train_args"):
            value = prop(execution, name)
            if value:
                d[name] = json.loads(value) if name == "train_args" else value
        return d

    def lineage(self, artifact: Artifact, downstream: bool = False, _seen: set[int] | None = None) -> dict[str, Any]:
        """The graph upstream of `artifact` (or downstream) as a nested dict.

        Upstream: artifact -> produced_by {execution, inputs: {key: [artifact nodes]},
        also_produced: [sibling outputs]}. An artifact met twice is expanded once; later
        occurrences say "seen": true.
        """
        seen = _seen if _seen is not None else set()
        node = artifact_dict(artifact)
        if artifact.id in seen:
            return {**node, "seen": True}
        seen.add(artifact.id)
        if downstream:
            node["consumed_by"] = []
            for execution, outputs in self.consumers(artifact):
                node["consumed_by"].append(
                    {
                        "execution": self._execution_dict(execution),
                        "outputs": {k: [self.lineage(a, True, seen) for a in v] for k, v in sorted(outputs.items())},
                    }
                )
            return node
        produced = self.producer(artifact)
        if produced is None:
            return node
        execution, inputs = produced
        siblings = self._events_by_execution([execution.id], _OUTPUTS).get(execution.id, {})
        node["produced_by"] = {
            "execution": self._execution_dict(execution),
            "inputs": {k: [self.lineage(a, False, seen) for a in v] for k, v in sorted(inputs.items())},
            "also_produced": [artifact_dict(a) for v in siblings.values() for a in v if a.id != artifact.id],
        }
        if artifact.type == "Examples":
            # What describes these examples: statistics and anomalies computed from them.
            node["described_by"] = [
                artifact_dict(a)
                for _, outs in self.consumers(artifact)
                for v in outs.values()
                for a in v
                if a.type in ("ExampleStatistics", "ExampleAnomalies")
            ]
        return node

    # ----- models
    def model_of(self, artifact: Artifact) -> Artifact:
        """The trained Model behind a PushedModel (or the Model itself)."""
        if artifact.type == "Model":
            return artifact
        if artifact.type == "PushedModel":
            produced = self.producer(artifact)
            if produced and produced[1].get("model"):
                return produced[1]["model"][0]
        raise MetadataError(f"artifact {artifact.id} is a {artifact.type}, not a model or pushed model")

    def evaluation_of(self, model: Artifact) -> Artifact | None:
        """The ModelEvaluation of the Evaluator run that took `model` as its candidate."""
        for execution, outputs in self.consumers(model):
            inputs = self._events_by_execution([execution.id], _INPUTS).get(execution.id, {})
            if any(a.id == model.id for a in inputs.get("model", [])):
                if outputs.get("evaluation"):
                    return outputs["evaluation"][0]
        return None

    def training_inputs(self, model: Artifact) -> dict[str, Any]:
        """What a model was made from: upstream artifacts by type, hyperparameters, code."""
        tree = self.lineage(model)
        result: dict[str, Any] = {"artifacts": {}}

        def walk(node):
            produced = node.get("produced_by")
            if not produced:
                return
            execution = produced["execution"]
            if execution["component"] == "trainer" and "hparams" not in result:
                result["hparams"] = execution.get("hparams")
                result["module_fingerprint"] = execution.get("module_fingerprint")
                result["train_args"] = execution.get("train_args")
                tuning = (produced["inputs"].get("hyperparameters") or [None])[0]
                if tuning is not None and result["hparams"] is not None:
                    # What the Trainer trained with: the configured values, the tuned ones on top.
                    tuned = from_tuned(HParams.from_dict(result["hparams"]), tuned_values(tuning["uri"]))
                    result["hparams"] = tuned.to_dict()
                    result["tuned_by"] = tuning["id"]
            if execution.get("input_base"):
                result.setdefault("input_base", execution["input_base"])
            for key, nodes in produced["inputs"].items():
                for n in nodes:
                    result["artifacts"].setdefault(f"{execution['component']}.{key}", n["id"])
                    if key != lineage.WARM_START_KEY:  # the base model's own inputs are not this model's
                        walk(n)

        walk(tree)
        return result

    def compare(self, ref_a: str | None = None, ref_b: str | None = None, slices: list[str] | None = None) -> dict[str, Any]:
        """Evaluation metrics of two models side by side, and what differed in their inputs.

        Default: the serving model (the newest pushed) and the one pushed before it. `slices`:
        keep only these ("overall", a feature for all its slices, or FEATURE=VALUE).
        """
        if ref_a is None or ref_b is None:
            pushed = self.pushed_models()
            if len(pushed) < 2 and (ref_a is None and ref_b is None):
                raise MetadataError(f"need two pushed models to compare, this store has {len(pushed)}")
            a = self.resolve(ref_a) if ref_a else pushed[0]
            b = self.resolve(ref_b) if ref_b else next((p for p in pushed if p.id != a.id), None)
            if b is None:
                raise MetadataError("no other pushed model to compare with")
        else:
            a, b = self.resolve(ref_a), self.resolve(ref_b)
        sides = {}
        for label, artifact in (("a", a), ("b", b)):
            model = self.model_of(artifact)
            evaluation = self.evaluation_of(model)
            sides[label] = {
                "artifact": artifact_dict(artifact),
                "model_id": model.id,
                "metrics": select_slices(sliced_metrics(evaluation.uri) if evaluation else {}, slices),
                "inputs": self.training_inputs(model),
            }
        ia, ib = sides["a"]["inputs"], sides["b"]["inputs"]
        differences = {}
        for key in sorted(set(ia["artifacts"]) | set(ib["artifacts"])):
            if ia["artifacts"].get(key) != ib["artifacts"].get(key):
                differences[key] = [ia["artifacts"].get(key), ib["artifacts"].get(key)]
        for key in ("module_fingerprint", "train_args", "input_base", "tuned_by"):
            if ia.get(key) != ib.get(key):
                differences[key] = [ia.get(key), ib.get(key)]
        ha, hb = ia.get("hparams") or {}, ib.get("hparams") or {}
        for key in sorted(set(ha) | set(hb)):
            if ha.get(key) != hb.get(key):
                differences[f"hparams.{key}"] = [ha.get(key), hb.get(key)]
        return {"a": sides["a"], "b": sides["b"], "differences": differences}
