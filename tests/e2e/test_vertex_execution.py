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
from helpers import ROOT, free_port, span_rows
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
            [sys.executable, str(SITE.parent / "gcs_emulator.py"), "--port", str(port), "--proxy-port", str(proxy_port),
             "--certs", str(root / "certs"), "--bucket", BUCKET],
            stdout=self.log, stderr=subprocess.STDOUT,
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


@pytest.fixture(scope="session")
def job(cloud, tmp_path_factory) -> dict:
    settings = dict(
        project="my-project",
        region="europe-west4",
        pipeline_root=f"gs://{BUCKET}/tfx",
        data_root=DATA,
        image="europe-west4-docker.pkg.dev/my-project/tfx/taxi:1.0",
        # The curated schema inside the image (the Dockerfile's WORKDIR /pipeline).
        schema_path=cloud.image.path("/pipeline/schemas/schema.pbtxt"),
        endpoint_name="taxi-endpoint",
        serving_image="europe-west4-docker.pkg.dev/my-project/tfx/taxi-serving:1.0",
        train_steps=300,
    )
    path = vertex.compile_pipeline(vertex.VertexConfig(**settings), str(tmp_path_factory.mktemp("spec") / "pipeline.json"))
    return json.loads(pathlib.Path(path).read_text())


@pytest.fixture(scope="session")
def first_run(cloud, job):
    cloud.put_span(1, span_rows(1))
    return cloud.launcher.run(job)


def test_the_compiled_pipeline_runs_task_by_task_on_gcs(first_run, job):
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    containers = [t for t in tasks if "resolver" not in t]
    assert sorted(first_run.executed) == sorted(containers)
    assert first_run.executed[0] == "example_gen" and first_run.executed[-1] == "pusher"
    examples = first_run.outputs["example_gen"]["examples"][0]
    assert examples.uri.startswith(f"gs://{BUCKET}/tfx/")
    # ExampleGen's driver (the preCacheCheck step) resolved the newest span folder.
    assert examples.metadata["span"] == 1
    assert first_run.outputs["evaluator"]["blessing"][0].metadata["blessed"] == 1
