"""The production path executed, not just compiled: the spec `vertex compile` writes, run task
by task as Vertex AI Pipelines runs it (tests/harness/launcher.py), in the pipeline image as the
Dockerfile builds it (tests/harness/image.py), with every artifact on gs:// behind a Cloud
Storage emulator (tests/harness/gcs_emulator.py), where `open()` cannot read a byte.

Swapped, and only these: Dataflow's Beam args for the DirectRunner, and Vertex AI's services
(Training, Model, Endpoint), faked at their GAPIC transports (tests/harness/site/fake_vertex.py)
after the real clients have built and type-checked each request.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import pytest
import requests
from harness import gcs_emulator, image, launcher

from helpers import free_port, readme_request_body, span_rows
from modules.hparams import SEARCH_SPACE, HParams, from_tuned
from runners import vertex

pytestmark = [pytest.mark.vertex, pytest.mark.e2e, pytest.mark.xdist_group("vertex-exec")]

BUCKET = "my-bucket"
DATA = f"gs://{BUCKET}/data"
SITE = pathlib.Path(__file__).resolve().parents[1] / "harness" / "site"


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
        env.update(gcs_emulator.environment(self.endpoint, f"http://127.0.0.1:{proxy_port}", ca_bundle, "my-project"))
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
        self.launcher = launcher.Launcher(env, str(self.workdir), read=lambda uri: gcs_emulator.read(self.endpoint, uri))

    def put_span(self, span: int, frame) -> None:
        gcs_emulator.write(self.endpoint, f"{DATA}/span-{span}/taxi.csv", frame.to_csv(index=False).encode())

    def read(self, uri: str) -> bytes:
        return gcs_emulator.read(self.endpoint, uri)

    def requests(self, method: str) -> list[dict]:
        path = self.vertex_dir / "requests.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["method"] == method]

    def close(self) -> None:
        self.gcs.terminate()
        self.gcs.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("cloud"))
    yield c
    c.close()


IMAGE = "europe-west4-docker.pkg.dev/my-project/tfx/taxi:1.0"


def compile_job(cloud, tmp_path_factory, **overrides) -> dict:
    settings = dict(
        project="my-project",
        region="europe-west4",
        pipeline_root=f"gs://{BUCKET}/tfx",
        data_root=DATA,
        image=IMAGE,
        # The curated schema inside the image (the Dockerfile's WORKDIR /pipeline).
        schema_path=cloud.image.path("/pipeline/schemas/schema.pbtxt"),
        endpoint_name="taxi-endpoint",
        serving_image="europe-west4-docker.pkg.dev/my-project/tfx/taxi-serving:1.0",
        train_steps=300,
        **overrides,
    )
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
    containers = [t for t in tasks if "resolver" not in t]
    assert sorted(first_run.executed) == sorted(containers)
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
    cloud.put_span(2, anomalous_span(2))
    with pytest.raises(launcher.TaskFailed) as failed:
        cloud.launcher.run(job)
    return failed.value


def test_the_gate_stops_a_bad_span_on_vertex(rejected_run):
    assert rejected_run.task == "data_gate"
    assert "payment_type" in rejected_run.log and "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in rejected_run.log
    assert "Transform" not in rejected_run.log


@pytest.fixture(scope="session")
def accepted_run(rejected_run, cloud, job):
    """The same span, re-run with the anomaly accepted as the job's runtime parameter (what
    `vertex submit --accept-anomalies` sets): same spec, same image."""
    accept = json.dumps(["payment_type:ENUM_TYPE_UNEXPECTED_STRING_VALUES"])
    return cloud.launcher.run(job, parameter_values={"accept_anomalies": accept})


def test_an_accepted_anomaly_passes_as_a_runtime_parameter(accepted_run):
    assert accepted_run.outputs["example_gen"]["examples"][0].metadata["custom:span"] == 2
    gate = accepted_run.outputs["data_gate"]["result"][0]
    assert gate.metadata["accepted_anomalies"] == 2  # the unknown payment type, in each split
    assert "pusher" in accepted_run.executed


def test_a_run_without_tuning_trains_with_the_newest_tuning(accepted_run, first_run, cloud):
    """The daily spec has no Tuner: its resolver found the weekly run's tuning in ML Metadata,
    and the Trainer trained with it."""
    assert "tuner" not in accepted_run.executed
    resolved = accepted_run.outputs["latest_hyperparameters_resolver"]["hyperparameters"]
    assert [a.name for a in resolved] == [first_run.outputs["tuner"]["best_hyperparameters"][0].name]
    first, second = (
        json.loads(cloud.read(run.outputs["trainer"]["model_run"][0].uri + "/training.json")) for run in (first_run, accepted_run)
    )
    assert second["tuned"] and second["hparams"] == first["hparams"]


def test_the_second_run_compares_with_the_first_and_leaves_one_deployment(accepted_run, first_run, cloud):
    """The baseline resolver found the first run's blessed model; whatever the verdict, the
    endpoint ends with one deployment: the new model (the first one, idle, undeployed) or the
    first model (nothing pushed)."""
    baseline = accepted_run.outputs["latest_blessed_model_resolver-model-resolver"]["model"]
    assert [m.name for m in baseline] == [first_run.outputs["trainer"]["model"][0].name]
    state = json.loads((cloud.vertex_dir / "state.json").read_text())
    (endpoint,) = (json.loads(e) for e in state["endpoints"].values())
    (deployed,) = endpoint["deployedModels"]
    models = [json.loads(m) for m in state["models"].values()]
    if accepted_run.outputs["evaluator"]["blessing"][0].metadata["blessed"]:
        assert deployed["model"] == accepted_run.outputs["pusher"]["pushed_model"][0].metadata["pushed_destination"]
        assert len(models) == 2 and len(cloud.requests("undeploy_model")) == 1
    else:
        assert len(models) == 1 and deployed["model"] == models[0]["name"]
