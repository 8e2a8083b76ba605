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


# The endpoints the policy meets: (deployments, traffic split).
SCENARIOS = {
    "replaced": ([deployed("10", 1), deployed("11", 2), deployed("12", 3)], {"12": 100}),
    "canary": ([deployed("10", 1), deployed("11", 2), deployed("12", 3)], {"11": 90, "12": 10}),
    "pushed-without-traffic": ([deployed("10", 1), deployed("12", 3)], {"10": 100}),
}
# One process applies the policy to each scenario's fake region in turn (each process spends
# ~10 s importing TFX's Vertex Pusher before it does anything).
POLICY = """
import json, sys
import fake_vertex
from pipeline.vertex_pusher import undeploy_idle
for directory in sys.argv[3:]:
    fake_vertex.install(directory)
    print(json.dumps(undeploy_idle(json.loads(sys.argv[1]), sys.argv[2])))
"""


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict[str, tuple[list[str], dict, list[dict]]]:
    """Scenario -> (what the policy undeployed, the endpoint after, the requests sent)."""
    dirs = {}
    for name, (deployments, split) in SCENARIOS.items():
        dirs[name] = tmp_path_factory.mktemp(name)
        endpoint = {"name": ENDPOINT, "displayName": "taxi-endpoint", "deployedModels": deployments, "trafficSplit": split}
        state = {"jobs": {}, "models": {}, "counter": 100, "endpoints": {ENDPOINT: json.dumps(endpoint)}}
        (dirs[name] / "state.json").write_text(json.dumps(state))
    config = {
        "ai_platform_vertex_region": "europe-west4",
        "ai_platform_serving_args": {"project_id": "my-project", "endpoint_name": "taxi-endpoint"},
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SITE), str(SITE.parents[2])]))
    env.pop("FAKE_VERTEX_DIR", None)  # installed per scenario by the script
    done = subprocess.run(
        [sys.executable, "-c", POLICY, json.dumps(config), NEW_MODEL, *map(str, dirs.values())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = done.stdout.splitlines()[-len(dirs) :]
    out = {}
    for (name, directory), result in zip(dirs.items(), results):
        after = json.loads(json.loads((directory / "state.json").read_text())["endpoints"][ENDPOINT])
        sent = [json.loads(line) for line in (directory / "requests.jsonl").read_text().splitlines()]
        out[name] = (json.loads(result), after, sent)
    return out


@pytest.mark.parametrize(
    "scenario, gone, kept",
    [
        ("replaced", ["10", "11"], ["12"]),  # full replacement: the older ones are idle
        ("canary", ["10"], ["11", "12"]),  # a canary: the previous model keeps its share
    ],
)
def test_only_deployments_without_traffic_are_undeployed(policies, scenario, gone, kept):
    undeployed, endpoint, sent = policies[scenario]
    assert undeployed == gone
    assert [d["id"] for d in endpoint["deployedModels"]] == kept
    undeploys = [r for r in sent if r["method"] == "undeploy_model"]
    assert [r["request"]["deployedModelId"] for r in undeploys] == gone
    assert all(r["type"] == "UndeployModelRequest" for r in undeploys)


def test_the_model_just_pushed_is_kept_even_before_it_has_traffic(policies):
    undeployed, endpoint, _ = policies["pushed-without-traffic"]
    assert undeployed == [] and len(endpoint["deployedModels"]) == 2
