"""Read-only queries over a pipeline's metadata: runs, artifacts, lineage, model comparison.

The same on every store: `Metadata` reads the pipeline's `lineage.Graph` through its backend
(`pipeline/metadata_backends.py`: ML Metadata on SQLite or MySQL/MariaDB, Vertex ML Metadata
for production runs), and every fact comes from `pipeline/lineage.py`. The queries return
plain data (dataclasses, dicts); `ops/render.py` renders them as tables, trees or JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from modules.hparams import HParams, from_tuned
from ops import files
from ops.evaluation import select_slices, sliced_metrics
from pipeline import lineage
from pipeline.lineage import Artifact, Execution
from pipeline.metadata_backends import Backend, open_backend
from pipeline.stores import MetadataError

# Artifact properties worth showing, in this order.
KEY_PROPERTIES = (
    "span",
    "version",
    "split_names",
    "blessed",
    "pushed",
    "pushed_version",
    "pushed_destination",
    "accepted_anomalies",
    "reference_span",
)


# The reference to the served push, wherever a model or version is asked for.
SERVED = "served"


def prop(artifact: Artifact | Execution | None, name: str) -> Any:
    """A property's value for display, or None."""
    return None if artifact is None else artifact.props.get(name)


def tuned_values(uri: str) -> dict[str, Any]:
    """The values a Tuner chose (KerasTuner's HyperParameters.values in its
    best_hyperparameters artifact)."""
    return dict(json.loads(files.read_bytes(os.path.join(uri, "best_hyperparameters.txt"))).get("values", {}))


def artifact_dict(artifact: Artifact) -> dict[str, Any]:
    """The user-facing view of an artifact: id, type, uri and key properties."""
    props = {}
    for name in KEY_PROPERTIES:
        value = artifact.props.get(name)
        if value is not None and value != "":
            if name == "split_names" and isinstance(value, str):
                value = json.loads(value)
            props[name] = value
    return {
        "id": artifact.id,
        "type": artifact.type,
        "uri": artifact.uri,
        "properties": props,
        "created_ms": artifact.created_ms,
    }


def open_metadata(uri: str, pipeline_name: str, read_only: bool = True) -> Metadata:
    """The queries over a store URI (SQLite path, mysql://, vertex://PROJECT/REGION)."""
    return Metadata(open_backend(uri, pipeline_name, read_only=read_only))


# --- Runs ------------------------------------------------------------------------------------


@dataclasses.dataclass
class ComponentRun:
    component: str
    state: str
    execution_id: int | str
    outputs: dict[str, list[Artifact]]


@dataclasses.dataclass
class RunInfo:
    run_id: str
    start_ms: int
    end_ms: int
    components: dict[str, ComponentRun]
    accepted_anomalies: int = 0
    status: str = "complete"  # lineage.run_status

    def output(self, component: str, key: str) -> Artifact | None:
        run = self.components.get(component)
        artifacts = run.outputs.get(key, []) if run else []
        return artifacts[0] if artifacts else None

    @property
    def pushed_version(self) -> str | None:
        for c in self.components.values():
            for artifacts in c.outputs.values():
                for a in artifacts:
                    if a.type == "PushedModel" and a.get("pushed"):
                        return lineage.pushed_version(a)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "status": self.status,
            "components": {name: c.state for name, c in self.components.items()},
            "pushed_version": self.pushed_version,
            "accepted_anomalies": self.accepted_anomalies,
        }


class Metadata:
    """Queries over one pipeline's records, on whichever store its backend reads."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.pipeline_name = backend.pipeline_name
        self._graph: lineage.Graph | None = None

    @property
    def graph(self) -> lineage.Graph:
        """The pipeline's records, read once (`refresh` reads them again)."""
        if self._graph is None:
            self._graph = self.backend.load()
            if not self._graph.runs:
                raise MetadataError(f"no runs of pipeline {self.pipeline_name!r} in {self.backend.location or 'this store'}")
        return self._graph

    def refresh(self) -> None:
        self._graph = None

    def component_of(self, execution: Execution) -> str:
        return execution.component

    # ----- runs
    def runs(self) -> list[RunInfo]:
        """All runs of the pipeline, newest first."""
        g = self.graph
        runs = []
        for run in g.runs:
            executions = g.executions_of(run)
            components = {e.component: ComponentRun(e.component, e.state, e.id, g.outputs(e)) for e in executions}
            end = max((e.updated_ms for e in executions), default=run.created_ms)
            accepted = sum(
                lineage.accepted_anomalies(a) for e in executions for a in g.output_artifacts(e, lineage.GATE_RESULT_TYPE)
            )
            runs.append(RunInfo(run.name, run.created_ms, end, components, accepted, lineage.run_status(executions)))
        return list(reversed(runs))

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
        seen: dict[str, dict] = {}
        order: dict[str, int] = {}
        for r in runs:
            for c in r.components.values():
                if component and c.component != component:
                    continue
                for key, artifacts in c.outputs.items():
                    for a in artifacts:
                        if type_name and a.type != type_name:
                            continue
                        if a.ref not in seen:
                            seen[a.ref] = {**artifact_dict(a), "component": c.component, "output_key": key, "run_id": r.run_id}
                            order[a.ref] = a.order
        if component and not any(component in r.components for r in runs):
            raise MetadataError(f"no component {component!r} in the selected runs")
        return [seen[ref] for ref in sorted(seen, key=lambda ref: order[ref], reverse=True)]

    def pushed_models(self) -> list[Artifact]:
        """This pipeline's pushed models (pushed=1), newest first."""
        return lineage.pushed_models(self.graph)

    def served(self) -> Artifact | None:
        return lineage.served(self.graph)

    def resolve(self, ref: str) -> Artifact:
        """One of this pipeline's artifacts: `served` (the push being served), a pushed model
        version or an artifact id."""
        ref = str(ref).strip()
        if ref == SERVED:
            served = self.served()
            if served is None:
                raise MetadataError(f"pipeline {self.pipeline_name!r} has pushed no model")
            return served
        for a in self.pushed_models():
            if lineage.pushed_version(a) == ref:
                return a
        found = self.graph.find(ref)
        if found is not None:
            return found
        raise MetadataError(f"no artifact or pushed model version {ref!r} of pipeline {self.pipeline_name!r} in this store")

    # ----- lineage
    def producer(self, artifact: Artifact) -> tuple[Execution, dict[str, list[Artifact]]] | None:
        """The execution that output `artifact` (the first, not a cached re-use) and its inputs."""
        execution = self.graph.producer(artifact)
        return None if execution is None else (execution, self.graph.inputs(execution))

    def consumers(self, artifact: Artifact) -> list[tuple[Execution, dict[str, list[Artifact]]]]:
        return [(e, self.graph.outputs(e)) for e in self.graph.consumers(artifact)]

    def _execution_dict(self, execution: Execution) -> dict[str, Any]:
        d: dict[str, Any] = {"id": execution.id, "component": execution.component, "state": execution.state}
        custom = execution.props.get("custom_config")
        if custom and custom != "null":
            config = json.loads(custom)
            if "hparams" in config:
                d["hparams"] = config["hparams"]
            if "module_fingerprint" in config:
                d["module_fingerprint"] = config["module_fingerprint"]
        for name in ("input_base", "train_args"):
            value = execution.props.get(name)
            if value:
                d[name] = json.loads(value) if name == "train_args" else value
        accept = execution.props.get("accept")
        if accept and accept != "[]":
            d["accepted"] = json.loads(accept)
        return d

    def resolved(self, artifact: Artifact) -> dict[str, Any]:
        """What the component that wrote `artifact` resolved from earlier runs: the window, the
        warm-start model, the baseline, the drift reference."""
        g = self.graph
        found: dict[str, Any] = {}
        if lineage.window_uris(artifact):
            found["window"] = [artifact_dict(a) for a in lineage.examples_by_uri(g, lineage.window_uris(artifact))]
        if artifact.type == "Model":
            tunings = (
                g.by_uri(artifact.get(lineage.HYPERPARAMETERS_FROM), "HyperParameters")
                if artifact.get(lineage.HYPERPARAMETERS_FROM)
                else []
            )
            if tunings:
                found["tuned_with"] = artifact_dict(tunings[0])
            warm = lineage.warm_started_from(g, artifact)
            if warm is not None:
                found["warm_started_from"] = artifact_dict(warm)
            baseline = lineage.baseline_of(g, artifact)
            if baseline is not None:
                found["baseline"] = artifact_dict(baseline)
        if artifact.type == "ModelBlessing" and artifact.get(lineage.BASELINE_URI):
            models = lineage.models_at(g, artifact.get(lineage.BASELINE_URI))
            if models:
                found["baseline"] = artifact_dict(models[0])
        if artifact.type == lineage.GATE_RESULT_TYPE and artifact.get(lineage.REFERENCE_URI):
            references = g.by_uri(artifact.get(lineage.REFERENCE_URI), lineage.GATE_RESULT_TYPE)
            if references:
                found["drift_reference"] = artifact_dict(references[0])
        return found

    def lineage(self, artifact: Artifact, downstream: bool = False, _seen: set[str] | None = None) -> dict[str, Any]:
        """The graph upstream of `artifact` (or downstream) as a nested dict.

        Upstream: artifact -> produced_by {execution, inputs: {key: [artifact nodes]},
        also_produced: [sibling outputs]}, and `resolved`: what its component resolved from
        earlier runs. An artifact met twice is expanded once; later occurrences say "seen".
        """
        seen = _seen if _seen is not None else set()
        node = artifact_dict(artifact)
        if artifact.ref in seen:
            return {**node, "seen": True}
        seen.add(artifact.ref)
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
        resolved = self.resolved(artifact)
        if resolved:
            node["resolved"] = resolved
        produced = self.producer(artifact)
        if produced is None:
            return node
        execution, inputs = produced
        siblings = self.graph.outputs(execution)
        node["produced_by"] = {
            "execution": self._execution_dict(execution),
            "inputs": {k: [self.lineage(a, False, seen) for a in v] for k, v in sorted(inputs.items())},
            "also_produced": [artifact_dict(a) for v in siblings.values() for a in v if a.ref != artifact.ref],
        }
        if artifact.type == "Examples":
            # What describes these examples: statistics and anomalies computed from them, and the
            # data gate's verdict (with the span it measured drift against).
            node["described_by"] = [
                artifact_dict(a)
                for _, outs in self.consumers(artifact)
                for v in outs.values()
                for a in v
                if a.type in ("ExampleStatistics", "ExampleAnomalies", lineage.GATE_RESULT_TYPE)
            ]
        return node

    # ----- models
    def model_of(self, artifact: Artifact) -> Artifact:
        """The trained Model behind a PushedModel (or the Model itself)."""
        model = lineage.model_of(self.graph, artifact) if artifact.type in ("Model", "PushedModel") else None
        if model is None:
            raise MetadataError(f"artifact {artifact.id} is a {artifact.type}, not a model or pushed model")
        return model

    def evaluation_of(self, model: Artifact) -> Artifact | None:
        return lineage.evaluation_of(self.graph, lineage.original_model(self.graph, model))

    def training_inputs(self, model: Artifact) -> dict[str, Any]:
        """What a model was made from: upstream artifacts by type, hyperparameters, code."""
        g = self.graph
        original = lineage.original_model(g, model)
        tree = self.lineage(original)
        result: dict[str, Any] = {"artifacts": {}}
        facts = lineage.model_facts(g, original)
        result["spans"] = facts["spans"]

        def walk(node):
            produced = node.get("produced_by")
            if not produced:
                return
            execution = produced["execution"]
            if execution["component"] == "trainer" and "hparams" not in result:
                result["hparams"] = execution.get("hparams")
                result["module_fingerprint"] = execution.get("module_fingerprint")
                result["train_args"] = execution.get("train_args")
            if execution.get("input_base"):
                result.setdefault("input_base", execution["input_base"])
            for key, nodes in produced["inputs"].items():
                for n in nodes:
                    result["artifacts"].setdefault(f"{execution['component']}.{key}", n["id"])
                    walk(n)

        walk(tree)
        tuning_uri = original.get(lineage.HYPERPARAMETERS_FROM)
        if tuning_uri and result.get("hparams") is not None:
            # What the Trainer trained with: the configured values, the tuned ones on top.
            tuned = from_tuned(HParams.from_dict(result["hparams"]), tuned_values(tuning_uri))
            result["hparams"] = tuned.to_dict()
            tunings = g.by_uri(tuning_uri, "HyperParameters")
            result["tuned_by"] = tunings[0].id if tunings else tuning_uri
        if facts["warm_started_from"]:
            result["artifacts"]["trainer.warm_start"] = g.artifacts[facts["warm_started_from"]].id
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
            others = [p for p in pushed if p.id != a.id]
            other = self.resolve(ref_b) if ref_b else (others[0] if others else None)
            if other is None:
                raise MetadataError("no other pushed model to compare with")
            b = other
        else:
            a, b = self.resolve(ref_a), self.resolve(ref_b)
        sides: dict[str, dict[str, Any]] = {}
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
        for key in ("spans", "module_fingerprint", "train_args", "input_base", "tuned_by"):
            if ia.get(key) != ib.get(key):
                differences[key] = [ia.get(key), ib.get(key)]
        ha, hb = ia.get("hparams") or {}, ib.get("hparams") or {}
        for key in sorted(set(ha) | set(hb)):
            if ha.get(key) != hb.get(key):
                differences[f"hparams.{key}"] = [ha.get(key), hb.get(key)]
        return {"a": sides["a"], "b": sides["b"], "differences": differences}
