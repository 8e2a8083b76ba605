"""Runs a compiled Vertex AI PipelineJob task by task, as Vertex AI Pipelines' launcher does.

For each task of the spec's root DAG, in dependency order:
  * its executor input is built: parameters (constants, or the job's runtime parameters),
    the upstream tasks' output artifacts, output artifacts with URIs under the pipeline root
    and the output file;
  * the executor's lifecycle `preCacheCheck` command, where it has one (ExampleGen's driver,
    which resolves the span), then the task's exact `command` + `args`, run as subprocesses of
    the image's Python, in a neutral working directory;
  * its executor output is read back and its artifacts registered, so that downstream tasks
    and the resolver tasks (`outputArtifactQueries`, answered like Vertex ML Metadata's
    filters) of this and later runs see them.

Only the Dataflow Beam args are swapped (for the DirectRunner): the rest is the spec as written.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

# Beam args that only make sense on Dataflow; the rest (project, temp_location, ...) are kept.
DATAFLOW_ONLY = (
    "--runner=",
    "--region=",
    "--machine_type=",
    "--max_num_workers=",
    "--disk_size_gb=",
    "--sdk_container_image=",
    "--experiments=",
    "--service_account_email=",
)
DIRECT_RUNNER = ("--runner=DirectRunner", "--direct_num_workers=1", "--no_auth")


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
    created: float
    state: str = "LIVE"

    def runtime(self, instance_schema: str) -> dict[str, Any]:
        return {"name": self.name, "type": {"instanceSchema": instance_schema}, "uri": self.uri, "metadata": self.metadata}


@dataclasses.dataclass
class MetadataStore:
    """The artifacts every run registered (what Vertex ML Metadata holds for the resolvers)."""

    project: str = "my-project"
    region: str = "europe-west4"
    artifacts: list[Artifact] = dataclasses.field(default_factory=list)
    _ids: Any = dataclasses.field(default_factory=lambda: itertools.count(1))

    def new_name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/metadataStores/default/artifacts/{next(self._ids)}"

    def query(self, expression: str) -> list[Artifact]:
        """Vertex ML Metadata's artifact filter, for the clauses TFX's compiler writes
        (`schema_title="..." AND state=LIVE AND metadata.<key>.number_value=<n> AND name="..."`),
        newest first. An unknown clause is an error, not a silent match."""
        clauses = [c.strip() for c in expression.split(" AND ")]
        found = []
        for artifact in self.artifacts:
            if all(_matches(artifact, clause) for clause in clauses):
                found.append(artifact)
        return sorted(found, key=lambda a: a.created, reverse=True)


def _matches(artifact: Artifact, clause: str) -> bool:
    if m := re.fullmatch(r'schema_title="([^"]+)"', clause):
        return artifact.schema_title == m.group(1)
    if m := re.fullmatch(r"state=(\w+)", clause):
        return artifact.state == m.group(1)
    if m := re.fullmatch(r'name="([^"]*)"', clause):
        return artifact.name == m.group(1)
    if m := re.fullmatch(r"metadata\.(\w+)\.number_value=([-\d.]+)", clause):
        return float(artifact.metadata.get(m.group(1), "nan")) == float(m.group(2))
    raise ValueError(f"resolver filter clause not understood: {clause!r}")


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
    outputs: dict[str, dict[str, list[Artifact]]]  # task -> output key -> artifacts
    executed: list[str]
    logs: dict[str, str]


class Launcher:
    def __init__(self, env: Mapping[str, str], cwd: str, read: Callable[[str], bytes], store: MetadataStore | None = None):
        """`env`: the tasks' environment (the image's, with its python first on PATH); `read`:
        reads a file of the pipeline root (the executor output)."""
        self.env, self.cwd, self.read = dict(env), cwd, read
        self.store = store or MetadataStore()
        self._runs = itertools.count(1)

    def run(
        self, job: Mapping[str, Any], parameter_values: Mapping[str, Any] | None = None, stop_after: str | None = None
    ) -> Run:
        """Runs every task of `job` (the PipelineJob JSON `vertex compile` writes). Raises
        TaskFailed with the task's log when one fails, as the job would fail on Vertex."""
        spec = job["pipelineSpec"]
        root = job["runtimeConfig"]["gcsOutputDirectory"].rstrip("/")
        # The runtime parameters: the spec's defaults (KFP's `parameters` {"stringValue": ...}),
        # then this run's values, as PipelineJob(parameter_values=...) merges them.
        params = {k: next(iter(v.values())) for k, v in job["runtimeConfig"].get("parameters", {}).items()}
        params.update(parameter_values or {})
        run = Run(run_id=f"{spec['pipelineInfo']['name']}-{next(self._runs)}", outputs={}, executed=[], logs={})
        tasks = spec["root"]["dag"]["tasks"]
        for name in _order(tasks):
            task = tasks[name]
            component = spec["components"][task["componentRef"]["name"]]
            executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
            inputs = self._inputs(task, component, run, params)
            if "resolver" in executor:
                run.outputs[name] = self._resolve(executor["resolver"], inputs)
            else:
                run.outputs[name] = self._execute(name, executor["container"], component, inputs, f"{root}/{run.run_id}", run)
                run.executed.append(name)
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

    def _resolve(self, resolver, inputs) -> dict[str, list[Artifact]]:
        out = {}
        for key, query in resolver["outputArtifactQueries"].items():
            expression = query["filter"]

            def placeholder(m: re.Match) -> str:
                found = inputs["artifacts"].get(m.group(1)) or []
                return str(found[0]["metadata"].get(m.group(2), "")) if found else ""

            expression = re.sub(r"\{\{\$\.inputs\.artifacts\['(\w+)'\]\.metadata\['(\w+)'\]\}\}", placeholder, expression)
            out[key] = self.store.query(expression)[:1]
        return out

    def _execute(self, name, container, component, inputs, job_root, run: Run) -> dict[str, list[Artifact]]:
        task_root = f"{job_root}/{name}"
        outputs = {}
        for key, spec in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            schema = spec["artifactType"]["instanceSchema"]
            outputs[key] = {
                "artifacts": [{"name": self.store.new_name(), "type": {"instanceSchema": schema}, "uri": f"{task_root}/{key}"}]
            }
        executor_input = {
            "inputs": {
                "parameters": inputs["parameters"],
                "artifacts": {k: {"artifacts": v} for k, v in inputs["artifacts"].items()},
            },
            "outputs": {"artifacts": outputs, "outputFile": f"{task_root}/executor_output.json"},
        }
        # The launcher hands over a valid ExecutorInput: parse it as one.
        json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
        log: list[str] = []
        steps = []
        if "lifecycle" in container and "preCacheCheck" in container["lifecycle"]:
            pre = container["lifecycle"]["preCacheCheck"]
            steps.append(("preCacheCheck", pre["command"] + pre["args"]))
        steps.append(("executor", container["command"] + container["args"]))
        for step, argv in steps:
            serialized = json.dumps(executor_input)
            argv = [serialized if a == "{{$}}" else a for a in argv]
            argv = [a for a in argv if not a.startswith(DATAFLOW_ONLY)]
            if any(a.startswith("--project=") for a in argv):
                argv += list(DIRECT_RUNNER)
            started = time.monotonic()
            proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True)
            log.append(f"$ {step}: {' '.join(argv[:3])} ({time.monotonic() - started:.1f} s)\n{proc.stdout}\n{proc.stderr}")
            run.logs[name] = "\n".join(log)
            if proc.returncode != 0:
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
                    metadata = (listed.get("artifacts") or [{}])[0].get("metadata")
                    if metadata:
                        outputs[key]["artifacts"][0]["metadata"] = metadata
        output = self._read(f"{task_root}/executor_output.json")
        produced = {}
        for key, spec in outputs.items():
            declared = spec["artifacts"][0]
            written = (output.get("artifacts", {}).get(key, {}).get("artifacts") or [{}])[0]
            artifact = Artifact(
                name=declared["name"],
                schema_title=_title(declared["type"]["instanceSchema"]),
                uri=written.get("uri", declared["uri"]),
                metadata=written.get("metadata", {}),
                created=time.time(),
            )
            self.store.artifacts.append(artifact)
            produced[key] = [artifact]
        return produced

    def _read(self, uri: str) -> dict[str, Any]:
        return json.loads(self.read(uri))
