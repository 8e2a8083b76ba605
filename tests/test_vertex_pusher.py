"""The Vertex Pusher's traffic policy, against Vertex AI's services faked at their transports
(tests/harness/site/fake_vertex.py): the aiplatform SDK builds the real requests."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

SITE = pathlib.Path(__file__).parent / "harness" / "site"
ENDPOINT = "projects/my-project/locations/europe-west4/endpoints/7"
NEW_MODEL = "projects/my-project/locations/europe-west4/models/3"


def deployed(id_: str, model: int) -> dict:
    return {
        "id": id_,
        "model": f"projects/my-project/locations/europe-west4/models/{model}",
        "dedicatedResources": {"machineSpec": {"machineType": "n1-standard-2"}, "minReplicaCount": 1},
    }


def run_policy(tmp_path, deployments: list[dict], split: dict[str, int]) -> tuple[list[str], dict, list[dict]]:
    state = {
        "jobs": {},
        "models": {},
        "counter": 100,
        "endpoints": {
            ENDPOINT: json.dumps(
                {"name": ENDPOINT, "displayName": "taxi-endpoint", "deployedModels": deployments, "trafficSplit": split}
            )
        },
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    config = {
        "ai_platform_vertex_region": "europe-west4",
        "ai_platform_serving_args": {"project_id": "my-project", "endpoint_name": "taxi-endpoint"},
    }
    code = (
        "import json, sys; from pipeline.vertex_pusher import undeploy_idle; "
        "print(json.dumps(undeploy_idle(json.loads(sys.argv[1]), sys.argv[2])))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SITE), str(SITE.parents[2])]), FAKE_VERTEX_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config), NEW_MODEL], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads(json.loads((tmp_path / "state.json").read_text())["endpoints"][ENDPOINT])
    sent = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    return json.loads(done.stdout.splitlines()[-1]), after, sent


@pytest.mark.parametrize(
    "split, gone, kept",
    [
        ({"12": 100}, ["10", "11"], ["12"]),  # full replacement: the older ones are idle
        ({"11": 90, "12": 10}, ["10"], ["11", "12"]),  # a canary: the previous model keeps its share
    ],
)
def test_only_deployments_without_traffic_are_undeployed(tmp_path, split, gone, kept):
    undeployed, endpoint, sent = run_policy(tmp_path, [deployed("10", 1), deployed("11", 2), deployed("12", 3)], split)
    assert undeployed == gone
    assert [d["id"] for d in endpoint["deployedModels"]] == kept
    undeploys = [r for r in sent if r["method"] == "undeploy_model"]
    assert [r["request"]["deployedModelId"] for r in undeploys] == gone
    assert all(r["type"] == "UndeployModelRequest" for r in undeploys)


def test_the_model_just_pushed_is_kept_even_before_it_has_traffic(tmp_path):
    undeployed, endpoint, _ = run_policy(tmp_path, [deployed("10", 1), deployed("12", 3)], {"10": 100})
    assert undeployed == [] and len(endpoint["deployedModels"]) == 2
