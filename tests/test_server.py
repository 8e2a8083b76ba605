"""The REST server in this process (aiohttp's test server on loopback), on a model exported as
the Trainer exports it: the TF Serving API, the checks before batching, the Vertex routes,
health, the request log and the JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from helpers import read_rows
from modules import features as F
from serving.logs import JsonFormatter
from serving.model_store import LoadedModel
from serving.server import ServerConfig, create_app

pytestmark = pytest.mark.xdist_group("transform-sample")


def instances(n: int) -> list[dict]:
    out = []
    for r in read_rows(n, start=12000):
        inst = {}
        for k in F.raw_input_keys():
            v = r[k][0] if r[k] else None
            inst[k] = v.decode() if isinstance(v, bytes) else v
        out.append(inst)
    return out


@pytest.fixture(scope="module")
def serving_dir(exported_model, tmp_path_factory):
    export_dir, _ = exported_model
    root = tmp_path_factory.mktemp("serving")
    shutil.copytree(export_dir, root / "7")
    return root


def call(cfg: ServerConfig, requests: list[tuple[str, str, object]]) -> list[tuple[int, object]]:
    """Sends (method, path, body) requests to the app in this process; (status, JSON body) each."""

    async def go():
        app = create_app(cfg)
        async with TestClient(TestServer(app)) as client:
            out = []
            for method, path, body in requests:
                data = body if isinstance(body, str) else json.dumps(body)
                response = await client.request(method, path, data=data if body is not None else None)
                out.append((response.status, await response.json()))
            return out

    return asyncio.run(go())


def test_the_tf_serving_api_and_its_errors(serving_dir):
    insts = instances(5)
    want = LoadedModel.load(str(serving_dir / "7"), 7).predict(insts)
    columns = {k: [i[k] for i in insts] for k in insts[0]}
    one = insts[0]
    responses = call(
        ServerConfig(model_dir=str(serving_dir), poll_seconds=3600),
        [
            ("POST", "/v1/models/taxi:predict", {"instances": insts}),
            ("POST", "/v1/models/taxi/versions/7:predict", {"instances": insts}),
            ("POST", "/v1/models/taxi:predict", {"inputs": columns}),
            ("POST", "/v1/models/taxi/versions/8:predict", {"instances": insts}),
            ("POST", "/v1/models/other:predict", {"instances": insts}),
            ("POST", "/v1/models/taxi:predict", {"signature_name": "classify", "instances": insts}),
            ("POST", "/v1/models/taxi:predict", {"instances": [dict(one, trip_start_hour=2**70)]}),
            ("POST", "/v1/models/taxi:predict", {"instances": [dict(one, fare=-50.0)]}),
            ("POST", "/v1/models/taxi:predict", '{"instances": [' + json.dumps(dict(one, fare=math.nan)) + "]}"),
            ("POST", "/v1/models/taxi:predict", "[" * 100_000),
            ("POST", "/v1/models/taxi:predict", {"inputs": {"fare": [1.0], "company": []}}),
            ("GET", "/v1/models/taxi/versions/7/metadata", None),
            ("GET", "/v1/models/taxi", None),
            ("GET", "/nothing/here", None),
            ("GET", "/readyz", None),
            ("GET", "/v1/models/taxi/versions/7", None),
            ("GET", "/v1/models/taxi/versions/8", None),
        ],
    )
    (s1, r1), (s2, r2), (s3, r3), *rest = responses
    assert (s1, s2, s3) == (200, 200, 200)
    np.testing.assert_allclose(r1["predictions"], want, rtol=1e-6)
    assert r2["predictions"] == r1["predictions"] and r1["model_version"] == "7"
    assert r3["outputs"] == r1["predictions"]
    errors = rest[:8]
    assert [s for s, _ in errors] == [404, 404, 400, 400, 400, 400, 400, 400]
    messages = [body["error"] for _, body in errors]
    assert "serves version 7" in messages[0] and "no model named 'other'" in messages[1]
    assert "signature_name 'classify'" in messages[2]
    assert "out of the int64 range" in messages[3]
    assert "'fare' is -50.0, outside the schema's domain [0, 10000]" in messages[4]
    assert "'fare' must be a finite number" in messages[5]
    assert "nested too deeply" in messages[6]
    assert "the same length" in messages[7]
    (_, meta), (_, status), (s404, not_found), (_, ready), (s7, status7), (s8, status8) = rest[8:]
    # TF Serving's status API for one version: the loaded one, else a JSON 404.
    assert s7 == 200 and status7["model_version_status"][0] == {
        "version": "7",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    assert s8 == 404 and "serves version 7" in status8["error"]
    assert meta["model_spec"]["version"] == "7"
    assert meta["metadata"]["signature_def"]["signature_def"]["serving_raw"]["inputs"]["fare"]["dtype"] == "DT_FLOAT"
    assert status["model_version_status"][0]["version"] == "7"
    assert s404 == 404 and "error" in not_found
    assert ready == {"status": "ready", "model_version": "7"}


def test_a_big_request_is_scored_in_chunks_with_the_same_answers(serving_dir):
    """1,000 instances with a batch size of 64: scored as 16 chunks queued one after the other,
    with single-row requests answered meanwhile; the answers are the model's own, in order."""
    insts = instances(1000)
    want = LoadedModel.load(str(serving_dir / "7"), 7).predict(insts)
    cfg = ServerConfig(model_dir=str(serving_dir), poll_seconds=3600, max_batch_size=64)

    async def go():
        app = create_app(cfg)
        async with TestClient(TestServer(app)) as client:

            async def post(body):
                response = await client.post("/v1/models/taxi:predict", data=json.dumps(body))
                return response.status, await response.json()

            return await asyncio.gather(post({"instances": insts}), *(post({"instances": [i]}) for i in insts[:20]))

    (status, big), *singles = asyncio.run(go())
    assert status == 200
    np.testing.assert_allclose(big["predictions"], want, rtol=1e-5, atol=1e-6)
    for i, (s, body) in enumerate(singles):
        assert s == 200 and body["predictions"][0] == pytest.approx(want[i], rel=1e-5, abs=1e-6)


def test_vertex_routes_a_single_model_and_the_request_log(exported_model, tmp_path):
    export_dir, _ = exported_model
    log = tmp_path / "requests.jsonl"
    cfg = ServerConfig(
        model_dir=export_dir,
        single_model_version=5678,
        predict_route="/v1/endpoints/1/deployedModels/5678:predict",
        health_route="/v1/endpoints/1/deployedModels/5678",
        request_log=str(log),
        batching=False,
        poll_seconds=3600,
    )
    insts = instances(3)
    (s1, health), (s2, body) = call(cfg, [("GET", cfg.health_route, None), ("POST", cfg.predict_route, {"instances": insts})])
    assert s1 == 200 and health["model_version"] == "5678"
    assert s2 == 200 and len(body["predictions"]) == 3 and body["model_version"] == "5678"
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"instances": insts}]


def test_log_lines_are_one_json_object_each():
    formatter = JsonFormatter()
    access = logging.LogRecord("serving.access", logging.INFO, __file__, 1, "POST /x 200", (), None)
    access.fields = {"request_id": "abc", "status": 200, "latency_ms": 1.5, "model_version": "7"}
    entry = json.loads(formatter.format(access))
    assert entry["severity"] == "INFO" and entry["logger"] == "serving.access"
    assert {k: entry[k] for k in ("request_id", "status", "latency_ms", "model_version")} == access.fields
    assert entry["time"].endswith("+00:00")
    plain = logging.LogRecord("serving", logging.WARNING, __file__, 1, "model %s loaded", ("7",), None)
    assert json.loads(formatter.format(plain))["message"] == "model 7 loaded"
