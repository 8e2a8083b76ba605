"""Runs a compiled Vertex AI PipelineJob task by task, as Vertex AI Pipelines does, and records
the run in Vertex ML Metadata as the service does.

For each task of the spec's root DAG, in dependency order:
  * its executor input is built: parameters (constants, or the job's runtime parameters),
    the upstream tasks' output artifacts, output artifacts with URIs under the pipeline root
    and the output file;
  * the executor's lifecycle `preCacheCheck` command, where it has one (ExampleGen's driver,
    which resolves the span), then the cache: with `cachingOptions.enableCache`, a task whose
    container, parameters and input artifacts match a completed execution of this pipeline
    reuses that execution's outputs and is recorded as CACHED, without running;
  * otherwise the task's exact `command` + `args`, run as a subprocess of the image's Python,
    in a neutral working directory, and its executor output read back.

The record, through the real aiplatform client (`MetadataServiceClient`, answered by the fake
service at its transport, tests/harness/site/fake_vertex.py):
  * a context for the pipeline (`contexts/<pipeline name>`, schema system.Pipeline) and one
    per run (schema system.PipelineRun, its child);
  * an execution per task (display name: the task; schema system.ContainerExecution; its
    input parameters as `input:<name>` metadata), RUNNING, then COMPLETE, FAILED or CACHED;
  * its output artifacts, created PENDING before the task runs and LIVE with the executor's
    metadata after (display name: the output key; schema title: the artifact type's);
  * INPUT and OUTPUT events (without labels: what Vertex AI Pipelines puts on events is not
    documented, so nothing here relies on any), and the execution and every artifact it read
    or wrote attributed to the run's context.

Only the Dataflow Beam args are swapped (for the DirectRunner): the rest is the spec as written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

# Beam args that only make sense on Dataflow; the rest (project, temp_location, the SDK
# container image, which also tells TFX the workers have its code, ...) are kept.
DATAFLOW_ONLY = (
    "--runner=",
    "--region=",
    "--machine_type=",
    "--max_num_workers=",
    "--disk_size_gb=",
    "--experiments=",
    "--service_account_email=",
)
DIRECT_RUNNER = ("--runner=DirectRunner", "--direct_num_workers=1", "--no_auth")
PIPELINE_SCHEMA, RUN_SCHEMA, EXECUTION_SCHEMA = "system.Pipeline", "system.PipelineRun", "system.ContainerExecution"


class TaskFailed(RuntimeError):
    def __init__(self, task: str, returncode: int, log: str):
        self.task, self.returncode, self.log = task, returncode, log
        tail = "\n".join(log.strip().splitlines()[-25:])
        super().__init__(f"task {task} exited {returncode}:\n{tail}")


@dataclasses.dataclass
class Artifact:
    name: str  # projects/.../metadataStores/default/artifacts/<id>
    schema_title: str
    uri: str
    metadata: dict[str, Any]

    def runtime(self, instance_schema: str) -> dict[str, Any]:
        return {"name": self.name, "type": {"instanceSchema": instance_schema}, "uri": self.uri, "metadata": self.metadata}


def _title(instance_schema: str) -> str:
    return re.search(r"^title: (\S+)", instance_schema, re.M).group(1)


def _order(tasks: Mapping[str, Any]) -> list[str]:
    """Tasks in dependency order (dependentTasks and artifact producers), ties by name."""
    needs = {}
    for name, task in tasks.items():
        deps = set(task.get("dependentTasks", []))
        for spec in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in spec:
                deps.add(spec["taskOutputArtifact"]["producerTask"])
        needs[name] = deps
    order: list[str] = []
    while needs:
        ready = sorted(n for n, d in needs.items() if d <= set(order))
        if not ready:
            raise ValueError(f"cycle among tasks {sorted(needs)}")
        order.append(ready[0])
        del needs[ready[0]]
    return order


@dataclasses.dataclass
class Run:
    run_id: str
    pipeline: str
    context: str
    outputs: dict[str, dict[str, list[Artifact]]]  # task -> output key -> artifacts
    executed: list[str]
    cached: list[str]
    logs: dict[str, str]
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # task -> wall time


def _metadata(resource: Any) -> dict[str, Any]:
    return json_format.MessageToDict(type(resource).pb(resource).metadata)


class Launcher:
    def __init__(
        self,
        env: Mapping[str, str],
        cwd: str,
        read: Callable[[str], bytes],
        metadata: Any,
        project: str = "my-project",
        region: str = "europe-west4",
        forkserver: Callable[..., int] | None = None,
    ):
        """`env`: the tasks' environment (the image's, with its python first on PATH); `read`:
        reads a file of the pipeline root (the executor output); `metadata`: a
        MetadataServiceClient (the fake's); `forkserver`: `site/forkserver.run` bound to a
        server of the image's Python, which runs each `python -m` command in a warm fork
        instead of a cold start."""
        self.env, self.cwd, self.read, self.md = dict(env), cwd, read, metadata
        self.forkserver = forkserver
        self.store = f"projects/{project}/locations/{region}/metadataStores/default"
        self._runs = itertools.count(1)

    # ----- the record
    def _pipeline_context(self, pipeline_name: str) -> str:
        from google.api_core import exceptions
        from google.cloud import aiplatform_v1 as v1

        try:
            return self.md.get_context(name=f"{self.store}/contexts/{pipeline_name}").name
        except exceptions.NotFound:
            context = v1.Context(display_name=pipeline_name, schema_title=PIPELINE_SCHEMA)
            return self.md.create_context(parent=self.store, context=context, context_id=pipeline_name).name

    def _artifact(self, name: str) -> Artifact:
        found = self.md.get_artifact(name=name)
        return Artifact(found.name, found.schema_title, found.uri, _metadata(found))

    def _record(self, run: Run, execution: str, inputs: dict[str, list[dict]], outputs: dict[str, list[Artifact]]) -> None:
        from google.cloud import aiplatform_v1 as v1

        read = [a["name"] for arts in inputs.values() for a in arts]
        written = [a.name for arts in outputs.values() for a in arts]
        events = [v1.Event(artifact=n, type_=v1.Event.Type.INPUT) for n in read]
        events += [v1.Event(artifact=n, type_=v1.Event.Type.OUTPUT) for n in written]
        if events:
            self.md.add_execution_events(execution=execution, events=events)
        self.md.add_context_artifacts_and_executions(
            context=run.context, artifacts=list(dict.fromkeys(read + written)), executions=[execution]
        )

    # ----- the run
    def run(
        self, job: Mapping[str, Any], parameter_values: Mapping[str, Any] | None = None, stop_after: str | None = None
    ) -> Run:
        """Runs every task of `job` (the PipelineJob JSON `vertex compile` writes). Raises
        TaskFailed with the task's log when one fails, as the job would fail on Vertex."""
        from google.cloud import aiplatform_v1 as v1

        spec = job["pipelineSpec"]
        root = job["runtimeConfig"]["gcsOutputDirectory"].rstrip("/")
        pipeline_name = spec["pipelineInfo"]["name"]
        # The runtime parameters: the spec's defaults (KFP's `parameters` {"stringValue": ...}),
        # then this run's values, as PipelineJob(parameter_values=...) merges them.
        params = {k: next(iter(v.values())) for k, v in job["runtimeConfig"].get("parameters", {}).items()}
        params.update(parameter_values or {})
        run_id = f"{pipeline_name}-{time.strftime('%Y%m%d%H%M%S')}-{next(self._runs)}"
        pipeline_context = self._pipeline_context(pipeline_name)
        context = self.md.create_context(
            parent=self.store, context=v1.Context(display_name=run_id, schema_title=RUN_SCHEMA), context_id=run_id
        ).name
        self.md.add_context_children(context=pipeline_context, child_contexts=[context])
        run = Run(run_id=run_id, pipeline=pipeline_name, context=context, outputs={}, executed=[], cached=[], logs={})
        self._earlier = self._executions_of(pipeline_context, exclude=context)
        tasks = spec["root"]["dag"]["tasks"]
        for name in _order(tasks):
            task = tasks[name]
            component = spec["components"][task["componentRef"]["name"]]
            executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
            if "container" not in executor:
                raise ValueError(f"task {name}: only container tasks are supported, got {sorted(executor)}")
            inputs = self._inputs(task, component, run, params)
            caching = bool(task.get("cachingOptions", {}).get("enableCache"))
            started = time.monotonic()
            try:
                run.outputs[name] = self._execute(
                    name, executor["container"], component, inputs, f"{root}/{run_id}", run, caching
                )
            finally:
                run.seconds[name] = round(time.monotonic() - started, 1)
            if name == stop_after:
                break
        return run

    def _inputs(self, task, component, run: Run, params) -> dict[str, Any]:
        parameters: dict[str, Any] = {}
        for key, spec in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in spec:
                parameters[key] = spec["runtimeValue"]["constantValue"]
            elif "componentInputParameter" in spec:
                value = params[spec["componentInputParameter"]]
                parameters[key] = {"stringValue": value} if isinstance(value, str) else {"intValue": str(value)}
            else:
                raise ValueError(f"parameter {key}: unsupported source {spec}")
        artifacts: dict[str, list[dict]] = {}
        definitions = component.get("inputDefinitions", {}).get("artifacts", {})
        for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
            source = spec["taskOutputArtifact"]
            produced = run.outputs.get(source["producerTask"], {}).get(source["outputArtifactKey"], [])
            schema = definitions[key]["artifactType"]["instanceSchema"]
            artifacts[key] = [a.runtime(schema) for a in produced]
        return {"parameters": parameters, "artifacts": artifacts}

    def _cache_key(self, pipeline: str, container, parameters, artifacts, outputs) -> str:
        """What Vertex AI Pipelines' cache compares: the container, the input parameters (after
        the preCacheCheck step) and artifacts, and the output definitions; per pipeline."""
        key = {
            "pipeline": pipeline,
            "container": {k: container.get(k) for k in ("image", "command", "args")},
            "parameters": parameters,
            "artifacts": {k: [a["name"] for a in v] for k, v in sorted(artifacts.items())},
            "outputs": {k: v["artifacts"][0]["type"] for k, v in sorted(outputs.items())},
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _executions_of(self, pipeline_context: str, exclude: str) -> set[str]:
        """The executions of the pipeline's earlier runs (its run contexts' members)."""
        from google.cloud import aiplatform_v1 as v1

        runs = self.md.list_contexts(
            request=v1.ListContextsRequest(
                parent=self.store, filter=f'schema_title="{RUN_SCHEMA}" AND parent_contexts:"{pipeline_context}"'
            )
        )
        members: set[str] = set()
        for run_context in runs:
            if run_context.name != exclude:
                members.update(e.name for e in self.md.query_context_lineage_subgraph(context=run_context.name).executions)
        return members

    def _cached(self, key: str) -> str | None:
        """The newest completed execution of this pipeline with this cache key, or None."""
        from google.cloud import aiplatform_v1 as v1

        found = self.md.list_executions(
            request=v1.ListExecutionsRequest(
                parent=self.store,
                filter=f'metadata.cache_key.string_value="{key}" AND state=COMPLETE AND schema_title="{EXECUTION_SCHEMA}"',
            )
        )
        ours = [e for e in found if e.name in self._earlier]
        return max(ours, key=lambda e: e.create_time).name if ours else None

    def _execute(self, name, container, component, inputs, job_root, run: Run, caching: bool) -> dict[str, list[Artifact]]:
        from google.cloud import aiplatform_v1 as v1

        task_root = f"{job_root}/{name}"
        outputs = {}
        for key, spec in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            schema = spec["artifactType"]["instanceSchema"]
            pending = self.md.create_artifact(
                parent=self.store,
                artifact=v1.Artifact(
                    display_name=key, schema_title=_title(schema), uri=f"{task_root}/{key}", state=v1.Artifact.State.PENDING
                ),
            )
            outputs[key] = {"artifacts": [{"name": pending.name, "type": {"instanceSchema": schema}, "uri": pending.uri}]}
        executor_input = {
            "inputs": {
                "parameters": inputs["parameters"],
                "artifacts": {k: {"artifacts": v} for k, v in inputs["artifacts"].items()},
            },
            "outputs": {"artifacts": outputs, "outputFile": f"{task_root}/executor_output.json"},
        }
        # The launcher hands over a valid ExecutorInput: parse it as one.
        json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
        metadata = {f"input:{k}": next(iter(v.values())) for k, v in inputs["parameters"].items()}
        execution = self.md.create_execution(
            parent=self.store,
            execution=v1.Execution(
                display_name=name, schema_title=EXECUTION_SCHEMA, state=v1.Execution.State.RUNNING, metadata=metadata
            ),
        ).name
        log: list[str] = []
        steps = []
        if "lifecycle" in container and "preCacheCheck" in container["lifecycle"]:
            pre = container["lifecycle"]["preCacheCheck"]
            steps.append(("preCacheCheck", pre["command"] + pre["args"]))
        steps.append(("executor", container["command"] + container["args"]))
        for step, argv in steps:
            if step == "executor" and caching:
                key = self._cache_key(
                    run.pipeline, container, executor_input["inputs"]["parameters"], inputs["artifacts"], outputs
                )
                hit = self._cached(key)
                if hit is not None:
                    return self._reuse(run, name, execution, hit, inputs["artifacts"], key)
                self.md.update_execution(
                    execution=v1.Execution(name=execution, metadata={**metadata, "cache_key": key}),
                    update_mask={"paths": ["metadata"]},
                )
            serialized = json.dumps(executor_input)
            argv = [serialized if a == "{{$}}" else a for a in argv]
            argv = [a for a in argv if not a.startswith(DATAFLOW_ONLY)]
            if any(a.startswith("--project=") for a in argv):
                argv += list(DIRECT_RUNNER)
            started = time.monotonic()
            proc = self._command(argv)
            log.append(f"$ {step}: {' '.join(argv[:3])} ({time.monotonic() - started:.1f} s)\n{proc.stdout}\n{proc.stderr}")
            run.logs[name] = "\n".join(log)
            if proc.returncode != 0:
                self.md.update_execution(
                    execution=v1.Execution(name=execution, state=v1.Execution.State.FAILED), update_mask={"paths": ["state"]}
                )
                self._record(run, execution, inputs["artifacts"], {})
                raise TaskFailed(name, proc.returncode, run.logs[name])
            if step == "preCacheCheck":
                # The service takes the driver's parameters (ExampleGen: the resolved span, its
                # pattern and fingerprint) into the task's inputs before the executor runs. A
                # 2.0 spec's executor reads `parameters` only, so they are handed over there.
                driver = self._read(f"{task_root}/executor_output.json")
                for key, value in driver.get("parameterValues", {}).items():
                    kind = "stringValue" if isinstance(value, str) else "intValue"
                    executor_input["inputs"]["parameters"][key] = {kind: value if isinstance(value, str) else str(int(value))}
                # And the output artifacts' metadata it computed (ExampleGen: span, version,
                # fingerprint), which the executor does not set again.
                for key, listed in driver.get("artifacts", {}).items():
                    found = (listed.get("artifacts") or [{}])[0].get("metadata")
                    if found:
                        outputs[key]["artifacts"][0]["metadata"] = found
        output = self._read(f"{task_root}/executor_output.json")
        produced = {}
        for key, spec in outputs.items():
            declared = spec["artifacts"][0]
            written = (output.get("artifacts", {}).get(key, {}).get("artifacts") or [{}])[0]
            final = v1.Artifact(
                name=declared["name"],
                uri=written.get("uri", declared["uri"]),
                metadata=written.get("metadata", declared.get("metadata", {})),
                state=v1.Artifact.State.LIVE,
            )
            self.md.update_artifact(artifact=final, update_mask={"paths": ["uri", "metadata", "state"]})
            produced[key] = [self._artifact(declared["name"])]
        self._record(run, execution, inputs["artifacts"], produced)
        self.md.update_execution(
            execution=v1.Execution(name=execution, state=v1.Execution.State.COMPLETE), update_mask={"paths": ["state"]}
        )
        run.executed.append(name)
        return produced

    def _reuse(self, run: Run, name: str, execution: str, hit: str, inputs, key: str) -> dict[str, list[Artifact]]:
        """A cache hit: the earlier execution's outputs, recorded for this run as CACHED."""
        from google.cloud import aiplatform_v1 as v1

        earlier = self.md.query_execution_inputs_and_outputs(execution=hit)
        outputs_of = {e.artifact for e in earlier.events if e.type_ == v1.Event.Type.OUTPUT}
        produced: dict[str, list[Artifact]] = {}
        for artifact in earlier.artifacts:
            if artifact.name in outputs_of:
                produced.setdefault(artifact.display_name, []).append(self._artifact(artifact.name))
        self._record(run, execution, inputs, produced)
        self.md.update_execution(
            execution=v1.Execution(
                name=execution, state=v1.Execution.State.CACHED, metadata={"cache_key": key, "cached_from": hit}
            ),
            update_mask={"paths": ["state", "metadata"]},
        )
        run.cached.append(name)
        run.logs[name] = f"cached: the outputs of {hit}"
        return produced

    def _command(self, argv: list[str]) -> subprocess.CompletedProcess:
        """The task's command, in its own process: cold, or forked from the forkserver."""
        if self.forkserver is None:
            return subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True)
        with tempfile.TemporaryDirectory() as tmp:
            out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
            code = self.forkserver(argv, self.cwd, self.env, out, err)
            with open(out) as o, open(err) as e:
                return subprocess.CompletedProcess(argv, code, o.read(), e.read())

    def _read(self, uri: str) -> dict[str, Any]:
        return json.loads(self.read(uri))
