"""The production path executed, not just compiled: the spec `vertex compile` writes, run task
by task as Vertex AI Pipelines runs it (tests/harness/launcher.py), in the pipeline image as the
Dockerfile builds it (tests/harness/image.py), with every artifact on gs:// behind a Cloud
Storage emulator (tests/harness/gcs_emulator.py), where `open()` cannot read a byte.

Swapped, and only these: Dataflow's Beam args for the DirectRunner, and Vertex AI's services
(Training, Model, Endpoint, Vizier, ML Metadata), faked at their GAPIC transports
(tests/harness/site/fake_vertex.py) after the real clients have built and type-checked each
request. The launcher records every run in the faked Vertex ML Metadata as Vertex AI Pipelines
does, and caches unchanged tasks as it does; the components resolve their cross-run inputs
there, and the CLI reads it.

The story, as production lives it:
  span 1          the weekly tuning spec: Vizier's trials, training, blessed, deployed
  span 2          trip durations in minutes: rejected by the drift check (daily spec)
  span 3          good: trained on the window [1, 3] (never 2), warm-started from span 1's model,
                  evaluated against it, deployed
  another name    a second pipeline in the same region: a span rejected then accepted as a
                  runtime parameter, trained with nothing of the first pipeline's
  the CLI         runs, lineage and compare read Vertex ML Metadata; rollback restores span 1's
                  model on the endpoint
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest
import requests
from harness import gcs_emulator, image, launcher

from helpers import ROOT, assert_model_facts, free_port, in_minutes, readme_request_body, span_rows
from modules.hparams import SEARCH_SPACE, HParams, from_tuned
from ops.queries import Metadata
from pipeline import lineage
from pipeline import pipeline as P
from pipeline.configs import PIPELINE_NAME
from pipeline.metadata_backends import VertexBackend
from runners import vertex

pytestmark = [pytest.mark.vertex, pytest.mark.e2e, pytest.mark.xdist_group("vertex-exec")]

BUCKET = "my-bucket"
DATA = f"gs://{BUCKET}/data"
SITE = pathlib.Path(__file__).resolve().parents[1] / "harness" / "site"
PROJECT, REGION = "my-project", "europe-west4"
STORE = f"vertex://{PROJECT}/{REGION}"
OTHER = "taxi-other-pipeline"


def _site(name: str):
    """A module of the tasks' site folder (tests/harness/site), loaded in the test process."""
    spec = importlib.util.spec_from_file_location(name, SITE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What every task imports before it does anything (~9 s cold): imported once by the forkserver.
WARM_MODULES = [
    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_entrypoint_utils",
    "tfx.components",
    "apache_beam",
    "tensorflow_transform",
    "tensorflow_model_analysis",
    "tfx.extensions.google_cloud_ai_platform.trainer.executor",
    "tfx.extensions.google_cloud_ai_platform.pusher.executor",
]


class Cloud:
    """The emulated project: Cloud Storage on loopback, Vertex AI's faked services, the image."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        port, proxy_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        ca_bundle = gcs_emulator.make_certificates(str(root / "certs"))
        self.log = open(root / "gcs.log", "w")
        self.gcs = subprocess.Popen(
            [
                sys.executable,
                str(SITE.parent / "gcs_emulator.py"),
                "--port",
                str(port),
                "--proxy-port",
                str(proxy_port),
                "--certs",
                str(root / "certs"),
                "--bucket",
                BUCKET,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.image = image.build(root / "image")
        self.vertex_dir = root / "vertex"
        self.workdir = root / "neutral"
        self.workdir.mkdir()
        env = self.image.environ()
        self.gcs_env = gcs_emulator.environment(self.endpoint, f"http://127.0.0.1:{proxy_port}", ca_bundle, "my-project")
        env.update(self.gcs_env)
        env.update(PYTHONPATH=str(SITE), FAKE_VERTEX_DIR=str(self.vertex_dir), TF_CPP_MIN_LOG_LEVEL="2")
        self.env = env
        deadline = time.time() + 30
        while True:
            try:
                requests.get(self.endpoint, timeout=1)
                break
            except requests.ConnectionError:
                assert time.time() < deadline and self.gcs.poll() is None, (root / "gcs.log").read_text()
                time.sleep(0.2)
        # Vertex ML Metadata, as the launcher writes it and the components and the CLI read it.
        self.metadata_client = _site("fake_vertex").metadata_client(str(self.vertex_dir))
        # Each task's `python -m` command runs in a fork of one warm interpreter of the image
        # (tasks and CustomJob replicas alike): the same command, without ~9 s of imports.
        forkserver = _site("forkserver")
        socket_path = str(root / "forkserver.sock")
        env[forkserver.SOCKET_ENV] = socket_path
        self.forkserver = forkserver.start(
            str(self.image.python), socket_path, env, str(self.workdir), WARM_MODULES, str(root / "forkserver.log")
        )
        self.launcher = launcher.Launcher(
            env,
            str(self.workdir),
            read=lambda uri: gcs_emulator.read(self.endpoint, uri),
            metadata=self.metadata_client,
            forkserver=functools.partial(forkserver.run, socket_path),
        )

    def put_span(self, span: int, frame, data: str = DATA) -> None:
        gcs_emulator.write(self.endpoint, f"{data}/span-{span}/taxi.csv", frame.to_csv(index=False).encode())

    def metadata(self, pipeline_name: str = PIPELINE_NAME) -> Metadata:
        """The queries over the pipeline's records in the faked Vertex ML Metadata, through the
        real aiplatform client."""
        return Metadata(VertexBackend(PROJECT, REGION, pipeline_name, client=self.metadata_client))

    def cli(self, *argv: str) -> subprocess.CompletedProcess:
        """runner.py as a user runs it against production: its own process, the real aiplatform
        client, Google's APIs faked at their transports."""
        env = dict(os.environ, **self.gcs_env, PYTHONPATH=str(SITE), FAKE_VERTEX_DIR=str(self.vertex_dir))
        return subprocess.run(
            [sys.executable, str(ROOT / "runner.py"), *argv, "--metadata", STORE],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    def read(self, uri: str) -> bytes:
        return gcs_emulator.read(self.endpoint, uri)

    def requests(self, method: str) -> list[dict]:
        path = self.vertex_dir / "requests.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["method"] == method]

    def close(self) -> None:
        self.forkserver.kill()
        self.gcs.terminate()
        self.gcs.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("cloud"))
    yield c
    c.close()


IMAGE = "europe-west4-docker.pkg.dev/my-project/tfx/taxi:1.0"


# 3,000 training rows and 300 steps: a lower bar than the full data's. A later span's model may
# be a little worse than the served one and still be pushed: this story is about what runs
# where, not about the (noisy) comparison on 1,000 eval rows.
THRESHOLDS = {
    "min_auc": 0.85,
    "min_accuracy": 0.8,
    "max_auc_regression": 0.05,
    "max_accuracy_regression": 0.05,
    "slice_min_auc": 0.5,
    "slice_max_auc_regression": 0.1,
}


def compile_job(cloud, tmp_path_factory, **overrides) -> dict:
    settings = dict(
        project=PROJECT,
        region=REGION,
        pipeline_root=f"gs://{BUCKET}/tfx",
        data_root=DATA,
        image=IMAGE,
        # The curated schema inside the image (the Dockerfile's WORKDIR /pipeline).
        schema_path=cloud.image.path("/pipeline/schemas/schema.pbtxt"),
        endpoint_name="taxi-endpoint",
        serving_image="europe-west4-docker.pkg.dev/my-project/tfx/taxi-serving:1.0",
        train_steps=300,
        thresholds=THRESHOLDS,
    )
    settings.update(overrides)
    path = vertex.compile_pipeline(vertex.VertexConfig(**settings), str(tmp_path_factory.mktemp("spec") / "pipeline.json"))
    return json.loads(pathlib.Path(path).read_text())


@pytest.fixture(scope="session")
def job(cloud, tmp_path_factory) -> dict:
    """The daily spec: no tuning (the newest tuning in ML Metadata, if any, is used)."""
    return compile_job(cloud, tmp_path_factory)


@pytest.fixture(scope="session")
def tuning_job(cloud, tmp_path_factory) -> dict:
    """The weekly spec: 3 trials chosen by Vizier, 2 at a time, then training."""
    return compile_job(cloud, tmp_path_factory, tune_trials=3, tune_parallel_trials=2)


@pytest.fixture(scope="session")
def first_run(cloud, tuning_job):
    cloud.put_span(1, span_rows(1))
    return cloud.launcher.run(tuning_job)


def test_the_compiled_pipeline_runs_task_by_task_on_gcs(first_run, tuning_job):
    tasks = tuning_job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert sorted(first_run.executed) == sorted(tasks) and not first_run.cached
    assert first_run.executed[0] == "example_gen" and first_run.executed[-1] == "pusher"
    examples = first_run.outputs["example_gen"]["examples"][0]
    assert examples.uri.startswith(f"gs://{BUCKET}/tfx/")
    # ExampleGen's driver (the preCacheCheck step) resolved the newest span folder.
    assert examples.metadata["custom:span"] == 1
    assert first_run.outputs["evaluator"]["blessing"][0].metadata["blessed"] == 1


def custom_jobs(cloud) -> dict[str, dict]:
    """The CustomJobs created, by the TFX executor that created them (TFX names the tuning
    jobs tfx_tuner_<time>)."""
    jobs: dict[str, list[dict]] = {"tuner": [], "trainer": []}
    for created in cloud.requests("CreateCustomJob"):
        job = created["request"]["customJob"]
        jobs["tuner" if job["displayName"].startswith("tfx_tuner_") else "trainer"].append(job)
    return jobs


def test_the_tuner_runs_parallel_trials_on_vertex_training_chosen_by_vizier(first_run, cloud):
    """TFX's Vertex Tuner: one CustomJob of two replicas; the primary's chief oracle asks Vertex
    AI Vizier for the trials (the defaults first), both replicas train them, and Vizier hears
    every result. The best trial's values are the tuner's output."""
    (tuning,) = custom_jobs(cloud)["tuner"]
    pools = tuning["jobSpec"]["workerPoolSpecs"]
    assert [int(p["replicaCount"]) for p in pools] == [1, 1]
    assert {p["containerSpec"]["imageUri"] for p in pools} == {IMAGE}
    (study,) = cloud.requests("create_study")
    spec = study["request"]["study"]["studySpec"]
    assert spec["metrics"] == [{"metricId": "val_auc", "goal": "MAXIMIZE"}]
    assert sorted(p["parameterId"] for p in spec["parameters"]) == sorted(SEARCH_SPACE)
    (defaults,) = cloud.requests("create_trial")
    sent = {p["parameterId"]: p["value"] for p in defaults["request"]["trial"]["parameters"]}
    assert sent["learning_rate"] == HParams().learning_rate and sent["hidden_units"] == "128,64"
    assert len(cloud.requests("suggest_trials")) == 2
    completed = cloud.requests("complete_trial")
    assert len(completed) == 3 and all("finalMeasurement" in c["request"] for c in completed)
    # Both replicas trained trials (each replica's log, as Vertex AI Training keeps it).
    logs = (cloud.vertex_dir / "jobs").glob(f"*-{tuning['displayName']}/workerpool*.log")
    ran = {log.name: log.read_text().count(", trial ") for log in logs}
    assert ran.keys() == {"workerpool0-0.log", "workerpool1-0.log"} and all(ran.values()) and sum(ran.values()) == 3, ran
    # The output is Vizier's best trial.
    state = json.loads((cloud.vertex_dir / "state.json").read_text())
    (trials,) = (entry["trials"] for entry in state["studies"].values())
    trials = [json.loads(t) for t in trials]
    best = max(trials, key=lambda t: t["finalMeasurement"]["metrics"][0]["value"])
    artifact = first_run.outputs["tuner"]["best_hyperparameters"][0]
    tuned = json.loads(cloud.read(f"{artifact.uri}/best_hyperparameters.txt"))["values"]
    assert from_tuned(HParams(), tuned) == from_tuned(HParams(), {p["parameterId"]: p["value"] for p in best["parameters"]})
    # The Trainer trained with them.
    record = json.loads(cloud.read(first_run.outputs["trainer"]["model_run"][0].uri + "/training.json"))
    assert record["tuned"] and HParams.from_dict(record["hparams"]) == from_tuned(HParams(), tuned)


def test_training_and_deployment_go_through_vertex_ai(first_run, cloud, job):
    """The Trainer ran as a Vertex AI CustomJob in the pipeline image; the Pusher uploaded the
    model with this project's serving image and deployed it on dedicated machines."""
    (created,) = custom_jobs(cloud)["trainer"]
    pool = created["jobSpec"]["workerPoolSpecs"][0]
    assert pool["containerSpec"]["imageUri"] == "europe-west4-docker.pkg.dev/my-project/tfx/taxi:1.0"
    assert pool["machineSpec"]["machineType"] == "n1-standard-8"
    (upload,) = cloud.requests("upload_model")
    model = upload["request"]["model"]
    assert model["containerSpec"]["imageUri"] == "europe-west4-docker.pkg.dev/my-project/tfx/taxi-serving:1.0"
    assert model["artifactUri"].startswith(f"gs://{BUCKET}/tfx/")
    (deploy,) = cloud.requests("deploy_model")
    resources = deploy["request"]["deployedModel"]["dedicatedResources"]
    assert resources["machineSpec"]["machineType"] == "n1-standard-2"
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (1, 2)


def serve(cloud, model_uri: str, tmp_path) -> tuple[subprocess.Popen, str]:
    """The serving image's entrypoint, started as Vertex AI starts it for a deployed model."""
    port = free_port()
    route = "/v1/endpoints/1002/deployedModels/1004"
    env = dict(
        cloud.env,
        AIP_HTTP_PORT=str(port),
        AIP_PREDICT_ROUTE=route + ":predict",
        AIP_HEALTH_ROUTE=route,
        AIP_STORAGE_URI=model_uri,
        AIP_DEPLOYED_MODEL_ID="1004",
    )
    log = open(tmp_path / "serving.log", "w")
    proc = subprocess.Popen(
        [str(cloud.image.python), "-m", "serving.vertex"], cwd=cloud.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}{route}"
    deadline = time.time() + 120
    while True:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "serving.log").read_text()[-3000:]
        time.sleep(0.5)


def test_the_deployed_model_answers_from_gcs(first_run, cloud, tmp_path):
    """The model the Pusher uploaded (its artifactUri on gs://) served by the serving image's
    entrypoint answers the README's request."""
    (upload,) = cloud.requests("upload_model")
    proc, url = serve(cloud, upload["request"]["model"]["artifactUri"], tmp_path)
    try:
        body = readme_request_body()
        r = requests.post(url + ":predict", json=body, timeout=60)
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        assert len(predictions) == len(body["instances"])
        assert all(0.0 <= float(p) <= 1.0 for p in predictions)
    finally:
        proc.terminate()
        proc.wait(30)


def anomalous_span(span: int):
    """A span whose payment types are half unknown to the schema (an ENUM anomaly)."""
    frame = span_rows(span)
    half = frame.index[: len(frame) // 2]
    frame.loc[half, "payment_type"] = "Bitcoin"
    return frame


@pytest.fixture(scope="session")
def rejected_run(first_run, cloud, job):
    """Span 2 with trip durations in minutes: the schema cannot see it; drift against span 1
    (the drift reference the gate found in Vertex ML Metadata) does."""
    cloud.put_span(2, in_minutes(2))
    with pytest.raises(launcher.TaskFailed) as failed:
        cloud.launcher.run(job)
    return failed.value


def test_a_drifted_span_is_rejected_on_vertex_as_it_is_locally(rejected_run, cloud):
    assert rejected_run.task == "data_gate"
    assert "trip_seconds" in rejected_run.log and "QUANTILE_SHIFT_HIGH" in rejected_run.log
    assert "nothing was trained or pushed" in rejected_run.log
    run = cloud.metadata().latest_run()
    assert run.status == "rejected" and run.components[P.DATA_GATE].state == "failed"
    assert not {P.TRANSFORM, P.TRAINER, P.EVALUATOR, P.PUSHER} & set(run.components)
    assert len(cloud.requests("upload_model")) == 1  # nothing new deployed


@pytest.fixture(scope="session")
def third_run(rejected_run, cloud, job):
    cloud.put_span(3, span_rows(3))
    return cloud.launcher.run(job)


def test_span_3_trains_on_the_passed_window_warm_started_and_compared_with_span_1(third_run, first_run, cloud):
    """The guarantees of local runs, on Vertex: the window holds spans 1 and 3 (the rejected
    span 2 never), warm start and baseline are span 1's model, drift was measured against
    span 1, and the daily spec trained with the weekly tuning."""
    md = cloud.metadata()
    g = md.graph
    model = g.find(third_run.outputs[P.TRAINER]["model"][0].name)
    first_model = g.find(first_run.outputs[P.TRAINER]["model"][0].name)
    assert_model_facts(g, model, spans=[1, 3], warm_start_spans=[1], baseline_spans=[1], reference_span=1)
    facts = lineage.model_facts(g, model)
    assert facts["warm_started_from"] == facts["baseline"] == first_model.ref
    assert facts["hyperparameters_from"] == first_run.outputs[P.TUNER]["best_hyperparameters"][0].uri
    record = json.loads(cloud.read(third_run.outputs[P.TRAINER]["model_run"][0].uri + "/training.json"))
    assert record["warm_start"]["applied"] and record["warm_start"]["base_model"].startswith(first_model.uri)
    first_record = json.loads(cloud.read(first_run.outputs[P.TRAINER]["model_run"][0].uri + "/training.json"))
    assert record["tuned"] and record["hparams"] == first_record["hparams"]
    # The baseline, as TFX's Evaluator recorded it on the blessing.
    blessing = third_run.outputs[P.EVALUATOR]["blessing"][0]
    assert blessing.metadata["baseline_model"] == first_model.uri
    # Unchanged tasks were not recomputed: the schema import is the first run's.
    assert P.SCHEMA_IMPORTER in third_run.cached


def test_the_endpoint_serves_span_3_and_keeps_one_deployment(third_run, first_run, cloud):
    state = json.loads((cloud.vertex_dir / "state.json").read_text())
    (endpoint,) = (json.loads(e) for e in state["endpoints"].values())
    (deployed,) = endpoint["deployedModels"]
    pushed = third_run.outputs[P.PUSHER]["pushed_model"][0]
    assert third_run.outputs[P.EVALUATOR]["blessing"][0].metadata["blessed"] == 1
    assert deployed["model"] == pushed.metadata["pushed_destination"]
    assert len(cloud.requests("undeploy_model")) == 1  # span 1's model, idle after the push


@pytest.fixture(scope="session")
def other_pipeline(third_run, cloud, tmp_path_factory):
    """A second pipeline in the same project and region, on data of its own: its first span has
    an unknown payment type (rejected), then the operator accepts it as the job's runtime
    parameter (what `vertex submit --accept-anomalies` sets), without recompiling."""
    data = f"gs://{BUCKET}/other-data"
    cloud.put_span(7, anomalous_span(4), data=data)
    job = compile_job(cloud, tmp_path_factory, pipeline_name=OTHER, data_root=data, endpoint_name="other-endpoint")
    with pytest.raises(launcher.TaskFailed) as rejected:
        cloud.launcher.run(job)
    accept = json.dumps(["payment_type:ENUM_TYPE_UNEXPECTED_STRING_VALUES"])
    accepted = cloud.launcher.run(job, parameter_values={"accept_anomalies": accept}, stop_after=P.EVALUATOR)
    return rejected.value, accepted


def test_an_accepted_anomaly_passes_as_a_runtime_parameter(other_pipeline):
    rejected, accepted = other_pipeline
    assert rejected.task == "data_gate" and "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in rejected.log
    # The re-run reused what the rejected run had computed, and the gate passed.
    assert {P.EXAMPLE_GEN, P.STATISTICS_GEN, P.EXAMPLE_VALIDATOR} <= set(accepted.cached)
    gate = accepted.outputs[P.DATA_GATE]["result"][0]
    assert gate.metadata["accepted_anomalies"] == 2  # the unknown payment type, in each split


def test_a_second_pipeline_in_the_region_resolves_nothing_of_the_first(other_pipeline, cloud):
    """Every resolution is scoped to the pipeline's name: no drift reference, no window beyond
    its own span, no warm start, no baseline, no tuning from the first pipeline."""
    _, accepted = other_pipeline
    g = cloud.metadata(OTHER).graph
    model = g.find(accepted.outputs[P.TRAINER]["model"][0].name)
    assert_model_facts(g, model, spans=[7], warm_start_spans=[], baseline_spans=[], reference_span=None)
    assert model.get(lineage.HYPERPARAMETERS_FROM) is None
    record = json.loads(cloud.read(accepted.outputs[P.TRAINER]["model_run"][0].uri + "/training.json"))
    assert not record["tuned"] and not record["warm_start"]["applied"]
    assert not accepted.outputs[P.EVALUATOR]["blessing"][0].metadata.get("baseline_model")
    # And the first pipeline's queries do not see the second's records.
    ours = cloud.metadata().graph
    assert not set(ours.artifacts) & set(g.artifacts)


def test_the_cli_answers_runs_and_lineage_from_vertex_ml_metadata(other_pipeline, third_run, first_run, cloud):
    done = cloud.cli("runs", "--json")
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    assert [r["status"] for r in runs] == ["complete", "rejected", "complete"]
    assert runs[1]["components"][P.DATA_GATE] == "failed" and P.TRANSFORM not in runs[1]["components"]
    third_model = third_run.outputs[P.PUSHER]["pushed_model"][0]
    version = lineage.pushed_version(cloud.metadata().graph.find(third_model.name))
    assert runs[0]["pushed_version"] == version and runs[0]["components"][P.SCHEMA_IMPORTER] == "cached"
    table = cloud.cli("runs")
    assert table.returncode == 0 and "rejected" in table.stdout and version in table.stdout

    tree = cloud.cli("lineage", version)
    assert tree.returncode == 0, tree.stderr
    text = tree.stdout
    # Served model -> its model, trained on spans 3 and 1 (the window), warm-started from and
    # evaluated against span 1's model; the data gate's drift reference was span 1.
    first_model = cloud.metadata().graph.find(first_run.outputs[P.TRAINER]["model"][0].name)
    assert f"warm started from: Model #{first_model.id}" in text and f"baseline: Model #{first_model.id}" in text
    assert "window: Examples" in text and "span=3" in text and "span=1" in text and "span=2" not in text
    assert "described by pipeline.DataGateResult" in text and "reference_span=1" in text
    assert "<- trainer" in text and "<- transform" in text
    as_json = json.loads(cloud.cli("lineage", version, "--json").stdout)
    assert as_json["type"] == "PushedModel"
    compared = cloud.cli("compare", "--json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["differences"]["spans"] == [[1, 3], [1]]


def test_rollback_restores_span_1s_model_on_the_endpoint(other_pipeline, third_run, first_run, cloud):
    """After span 3's push, span 1's model was undeployed; rollback deploys it again from the
    Model Registry, moves the traffic to it, undeploys span 3's and records the rollback."""
    first_pushed = first_run.outputs[P.PUSHER]["pushed_model"][0].metadata["pushed_destination"]
    done = cloud.cli("rollback", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["how"] == "deployed again from the Model Registry"
    state = json.loads((cloud.vertex_dir / "state.json").read_text())
    (endpoint,) = (json.loads(e) for e in state["endpoints"].values() if json.loads(e)["displayName"] == "taxi-endpoint")
    (deployed,) = endpoint["deployedModels"]
    assert deployed["model"] == first_pushed and endpoint["trafficSplit"] == {deployed["id"]: 100}
    md = cloud.metadata()
    assert md.served().get("pushed_destination") == first_pushed
    newest = md.latest_run()
    assert newest.run_id == result["run_id"] and list(newest.components) == ["rollback"]
    # The next candidate would be evaluated against span 1's model again.
    assert lineage.baseline_model(md.graph, "a new candidate").uri == first_run.outputs[P.TRAINER]["model"][0].uri
    # Nothing older to go back to but span 3's: a second rollback restores it (traffic moved).
    again = json.loads(cloud.cli("rollback", "--json").stdout)
    assert again["rolled_back_to"] == result["served_before"]
