"""Online and batch serving of models pushed by real pipeline runs.

The server is `runner.py serve` in its own process on a loopback port; the client is plain
HTTP. Expected values come from loading the same SavedModel in the test.
"""

from __future__ import annotations

import concurrent.futures
import csv
import glob
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import tensorflow as tf

from helpers import DATA_CSV, ROOT, UNSEEN_START, free_port, read_rows, readme_request_body
from modules import features as F
from serving import batch
from serving.model_store import LoadedModel

# The story of pipeline runs is built once, in one worker: its tests go there.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("story")]


def instances(rows: list[dict]) -> list[dict]:
    """Raw rows as JSON instances: every model input, null for missing."""
    keys = F.raw_input_keys()
    out = []
    for r in rows:
        inst = {}
        for k in keys:
            v = r[k][0] if r[k] else None
            inst[k] = v.decode() if isinstance(v, bytes) else v
        out.append(inst)
    return out


def expected(model_dir: str, insts: list[dict]) -> np.ndarray:
    model = LoadedModel.load(model_dir, 0)
    return np.array(model.predict(insts))


class Server:
    def __init__(self, model_dir: str, port: int, *extra: str):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(os.path.dirname(model_dir), f"server-{port}.log"), "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "runner.py"),
                "serve",
                "--model-dir",
                model_dir,
                "--port",
                str(port),
                "--poll-seconds",
                "0.5",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not become ready: {open(self.log.name).read()[-3000:]}")
            time.sleep(0.3)

    def predict(self, body) -> requests.Response:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return requests.post(self.url + "/v1/models/taxi:predict", data=data, timeout=30)

    def version(self) -> str:
        return requests.get(self.url + "/v1/models/taxi", timeout=5).json()["model_version_status"][0]["version"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def two_versions(s1_first, s3_span2, tmp_path_factory):
    """(old dir, new dir, empty serving dir to publish into) from two real pushes."""
    return s1_first.summary["pushed_model"], s3_span2.summary["pushed_model"], tmp_path_factory.mktemp("serving")


def publish(src: str, serving_dir, version: int) -> None:
    """Copy then rename, as a careful pusher would: the server never sees half a model."""
    tmp = os.path.join(serving_dir, f".tmp-{version}")
    shutil.copytree(src, tmp)
    os.rename(tmp, os.path.join(serving_dir, str(version)))


@pytest.fixture(scope="module")
def server(two_versions):
    old, _, serving_dir = two_versions
    publish(old, serving_dir, 1)
    srv = Server(str(serving_dir), free_port())
    yield srv
    srv.stop()


ROWS = read_rows(300, start=UNSEEN_START)


def test_predictions_equal_the_models_own_outputs(server, two_versions):
    old, _, _ = two_versions
    insts = instances(ROWS)
    response = server.predict({"instances": insts})
    assert response.status_code == 200, response.text
    got = np.array(response.json()["predictions"])
    np.testing.assert_allclose(got, expected(old, insts), rtol=1e-5, atol=1e-6)
    assert response.json()["model_version"] == "1"


BAD = [
    ("{not json", "malformed JSON"),
    ({"rows": []}, 'with an "instances" list'),
    ({"instances": []}, "non-empty list"),
    ({"instances": [dict(instances(ROWS[:1])[0], colour="red")]}, "unknown feature 'colour'"),
    ({"instances": [{k: v for k, v in instances(ROWS[:1])[0].items() if k != "fare"}]}, "missing feature 'fare'"),
    ({"instances": [dict(instances(ROWS[:1])[0], fare="twelve")]}, "feature 'fare' must be a number or null"),
    ({"instances": [dict(instances(ROWS[:1])[0], trip_start_hour=3.5)]}, "feature 'trip_start_hour' must be an integer"),
    ({"instances": [dict(instances(ROWS[:1])[0], payment_type=1)]}, "feature 'payment_type' must be a string"),
    ({"instances": instances(ROWS[:1]) * 1001}, "too many instances: 1001"),
    # Values that pass a type check but not the tensor: alone in a batch, they failed it.
    ({"instances": [dict(instances(ROWS[:1])[0], trip_start_hour=2**70)]}, "'trip_start_hour' is out of the int64 range"),
    ({"instances": [dict(instances(ROWS[:1])[0], trip_start_hour=2**63)]}, "'trip_start_hour' is out of the int64 range"),
    ({"instances": [dict(instances(ROWS[:1])[0], pickup_census_tract=-(2**70))]}, "out of the int64 range"),
    ({"instances": [dict(instances(ROWS[:1])[0], fare=1e39)]}, "'fare' is out of the float32 range"),
    # The schema's domains, stored with the model, are the limits.
    ({"instances": [dict(instances(ROWS[:1])[0], fare=-50.0)]}, "'fare' is -50.0, outside the schema's domain [0, 10000]"),
    (
        {"instances": [dict(instances(ROWS[:1])[0], trip_start_hour=31)]},
        "'trip_start_hour' is 31, outside the schema's domain [0, 23]",
    ),
    ('{"instances": [' + json.dumps(dict(instances(ROWS[:1])[0], fare=math.nan)) + "]}", "'fare' must be a finite number"),
    # Fuzz cases that were 500s or echoed a whole body back.
    ('{"instances": [{"fare": ' + "7" * 5000 + "}]}", "malformed JSON"),
    ({"instances": [dict(instances(ROWS[:1])[0], company="\ud800")]}, "'company' is not valid text (an unpaired surrogate)"),
    ({"instances": [dict(instances(ROWS[:1])[0], **{"x" * 5_000_000: 1})]}, "unknown feature 'xxxxxxxx"),
    ({"instances": [dict(instances(ROWS[:1])[0], trip_miles=10**40)]}, "'trip_miles' is out of the float32 range"),
    ({"instances": [dict(instances(ROWS[:1])[0], trip_start_day=True)]}, "'trip_start_day' must be an integer or null, got True"),
    ("[" * 100_000, "nested too deeply"),
    ('{"instances": [{"fare": 1', "malformed JSON"),
    ("", "malformed JSON"),
]


def test_bad_requests_get_400_with_reason_while_good_ones_succeed(server, two_versions):
    old, _, _ = two_versions
    good = instances(ROWS[:20])
    want = expected(old, good)
    jobs = [("bad", body, reason) for body, reason in BAD] * 5 + [("good", i, None) for i in range(len(good))] * 5

    def call(job):
        kind, body, reason = job
        if kind == "good":
            r = server.predict({"instances": [good[body]]})
            return kind, r.status_code, r.json(), body
        r = server.predict(body)
        return kind, r.status_code, r.json(), reason

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, jobs))
    for kind, status, payload, detail in results:
        if kind == "good":
            assert status == 200
            assert payload["predictions"][0] == pytest.approx(want[detail], rel=1e-5, abs=1e-6)
        else:
            assert status == 400, payload
            assert detail in payload["error"] and len(payload["error"]) <= 1000
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    # The access log: one JSON object per request, as a log shipper reads it.
    server.log.flush()
    access = [json.loads(line) for line in open(server.log.name) if '"logger": "serving.access"' in line]
    predicts = [e for e in access if e["path"].endswith(":predict")]
    assert len(predicts) >= len(jobs)
    assert {e["status"] for e in predicts} == {200, 400}
    ok = next(e for e in predicts if e["status"] == 200)
    assert {"time", "severity", "request_id", "model_version", "latency_ms", "instances"} <= set(ok)
    assert len({e["request_id"] for e in predicts}) == len(predicts)


def test_the_tf_serving_api_where_it_is_claimed(server, two_versions):
    old, _, _ = two_versions
    insts = instances(ROWS[:3])
    want = expected(old, insts)
    version = server.version()
    # Versioned paths: the loaded version answers, another is a JSON 404.
    r = requests.post(f"{server.url}/v1/models/taxi/versions/{version}:predict", json={"instances": insts}, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"] == pytest.approx(list(want), rel=1e-5)
    r = requests.post(f"{server.url}/v1/models/taxi/versions/7:predict", json={"instances": insts}, timeout=30)
    assert r.status_code == 404 and f"serves version {version}" in r.json()["error"]
    # The columnar format answers "outputs", as TF Serving does.
    columns = {k: [inst[k] for inst in insts] for k in insts[0]}
    r = requests.post(f"{server.url}/v1/models/taxi:predict", json={"inputs": columns}, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"] == pytest.approx(list(want), rel=1e-5)
    # signature_name: ours is honoured, another is refused by name, not ignored.
    r = requests.post(
        f"{server.url}/v1/models/taxi:predict", json={"signature_name": "serving_raw", "instances": insts}, timeout=30
    )
    assert r.status_code == 200
    r = requests.post(f"{server.url}/v1/models/taxi:predict", json={"signature_name": "classify", "instances": insts}, timeout=30)
    assert r.status_code == 400 and "signature_name 'classify'" in r.json()["error"]
    # Metadata in TF Serving's shape, at both paths.
    for path in ("/v1/models/taxi/metadata", f"/v1/models/taxi/versions/{version}/metadata"):
        meta = requests.get(server.url + path, timeout=5).json()
        assert meta["model_spec"] == {"name": "taxi", "signature_name": "", "version": version}
        signature = meta["metadata"]["signature_def"]["signature_def"]["serving_raw"]
        assert signature["inputs"]["fare"]["dtype"] == "DT_FLOAT" and signature["inputs"]["company"]["dtype"] == "DT_STRING"
        assert signature["outputs"]["probability"]["dtype"] == "DT_FLOAT"
    # Unknown paths and methods are JSON errors too.
    r = requests.get(server.url + "/v2/nothing", timeout=5)
    assert r.status_code == 404 and "error" in r.json()
    r = requests.get(server.url + "/v1/models/taxi:predict", timeout=5)
    assert r.status_code == 405 and "error" in r.json()


def test_the_production_container_answers_the_readme_body_as_runner_serve_does(s3_span2, two_versions, tmp_path):
    """Production serves this project's server too, as a Vertex AI custom container: started
    the way Vertex starts it (its entrypoint, the AIP_* variables, the model at
    AIP_STORAGE_URI, from a directory outside the checkout), it answers the README's body with
    the same prediction as `runner.py serve` (here pinned to that model's version: a newer
    one pushed beside it is ignored)."""
    body = readme_request_body()
    model = s3_span2.summary["pushed_model"]
    publish(model, tmp_path / "serving", 1)
    publish(two_versions[0], tmp_path / "serving", 2)  # a newer push: the pin ignores it
    local = Server(str(tmp_path / "serving"), free_port(), "--version", "1", "--no-batching")
    try:
        response = local.predict(body).json()
        want = response["predictions"]
        assert response["model_version"] == "1"
        np.testing.assert_allclose(want, expected(model, body["instances"]), rtol=1e-5, atol=1e-6)
    finally:
        local.stop()
    port = free_port()
    route = "/v1/endpoints/1234/deployedModels/5678"
    env = {
        **os.environ,
        "AIP_HTTP_PORT": str(port),
        "AIP_PREDICT_ROUTE": route + ":predict",
        "AIP_HEALTH_ROUTE": route,
        "AIP_STORAGE_URI": model,
        "AIP_DEPLOYED_MODEL_ID": "5678",
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp_path / "container.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "serving.vertex"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(url + route, timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "container.log").read_text()[-3000:]
            time.sleep(0.3)
        r = requests.post(url + route + ":predict", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == pytest.approx(want, rel=1e-6)
        assert r.json()["model_version"] == "5678"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    # Without what Vertex provides, the container says which variable is missing.
    done = subprocess.run(
        [sys.executable, "-m", "serving.vertex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "AIP_STORAGE_URI"},
        timeout=120,
    )
    assert done.returncode == 2 and "AIP_STORAGE_URI is not set" in done.stderr


def test_a_newly_pushed_version_is_picked_up_without_failing_requests(server, two_versions):
    _, new, serving_dir = two_versions
    insts = instances(ROWS[:50])
    stop, statuses = False, []

    def hammer():
        while not stop:
            statuses.append(server.predict({"instances": insts[:5]}).status_code)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(hammer) for _ in range(2)]
        publish(new, serving_dir, 2)
        deadline = time.time() + 60
        while server.version() != "2":
            assert time.time() < deadline, "new version not picked up"
            time.sleep(0.2)
        time.sleep(0.5)
        stop = True
        for f in futures:
            f.result()
    assert statuses and set(statuses) == {200}
    response = server.predict({"instances": insts}).json()
    assert response["model_version"] == "2"
    np.testing.assert_allclose(response["predictions"], expected(new, insts), rtol=1e-5, atol=1e-6)


def test_the_servers_own_request_log_passes_the_skew_check(s3_span2, tmp_path, cli):
    """Monitoring is quiet on clean traffic: the request log `serve --request-log` writes,
    checked by `validate` against the served model's training data."""
    log = tmp_path / "requests.jsonl"
    srv = Server(s3_span2.summary["pushed_model"].rsplit("/", 1)[0], free_port(), "--request-log", str(log))
    try:
        rows = instances(read_rows(1500, start=UNSEEN_START))
        for start in range(0, len(rows), 100):
            assert srv.predict({"instances": rows[start : start + 100]}).status_code == 200
    finally:
        srv.stop()
    assert sum(1 for _ in open(log)) == 15
    code, out, err = cli("validate", "--metadata", s3_span2.store, "--data", str(log))
    assert code == 0, out + err
    assert "ok: no anomalies" in out


# Batch prediction in this process (the default) and as a Beam pipeline (what Dataflow runs):
# the same steps, the same files.
DRIVERS = pytest.mark.parametrize("beam_args", [None, batch.DEFAULT_BEAM_ARGS], ids=["in-process", "beam"])


@DRIVERS
def test_batch_predict_scores_every_parsable_row_and_keeps_dead_letters(two_versions, tmp_path, beam_args):
    old, _, _ = two_versions
    src = tmp_path / "in"
    src.mkdir()
    lines = open(DATA_CSV).read().splitlines()
    # Data row i is line i + 1: these are the rows read_rows(1000, start=UNSEEN_START) reads.
    header, body = lines[0], lines[UNSEEN_START + 1 : UNSEEN_START + 1001]
    bad_fare = next(csv.reader([body[0]]))
    bad_fare[header.split(",").index("fare")] = "twelve"
    broken = [",".join(bad_fare), "too,few,columns", body[1] + ",extra"]
    (src / "part-1.csv").write_text("\n".join([header, *body[:500], broken[0], broken[1]]) + "\n")
    (src / "part-2.csv").write_text("\n".join([header, *body[500:], broken[2]]) + "\n")
    bar = io.StringIO()
    out = batch.predict(
        old,
        str(src / "*.csv"),
        str(tmp_path / "out"),
        key_columns=["trip_start_timestamp", "fare"],
        progress=bar,
        beam_args=beam_args,
    )
    predicted = [row for f in glob.glob(out["predictions"]) for row in csv.DictReader(open(f))]
    # The progress bar ends with every scored row, against an estimate of the input's size.
    last = bar.getvalue().splitlines()[-1]
    assert last.startswith("predict [") and f" {len(predicted):,} of ~" in last
    estimate = int(last.split(" of ~")[1].split(" rows")[0].replace(",", ""))
    assert 0.8 * len(predicted) < estimate < 1.25 * len(predicted)
    dead = [json.loads(line) for f in glob.glob(out["dead_letters"]) for line in open(f)]
    assert len(dead) == 3
    assert len(predicted) == len(body) + len(broken) - len(dead)
    reasons = " | ".join(d["reason"] for d in dead)
    assert "expected 18 columns, got 3" in reasons and "expected 18 columns, got 19" in reasons
    # The message the server gives for the same value (one validator for both).
    assert "feature 'fare' must be a number or null, got 'twelve'" in reasons
    assert set(predicted[0]) == {"trip_start_timestamp", "fare", "probability"}
    probabilities = [float(r["probability"]) for r in predicted]
    assert all(0 <= p <= 1 for p in probabilities) and not any(math.isnan(p) for p in probabilities)
    # The same rows through the model directly: same multiset of probabilities.
    rows = read_rows(1000, start=UNSEEN_START)
    want = sorted(np.round(expected(old, instances(rows)), 5))
    assert sorted(round(p, 5) for p in probabilities) == pytest.approx(want, abs=2e-5)


@DRIVERS
def test_batch_reads_each_file_with_its_own_header_and_checks_rows_as_the_server_does(two_versions, server, tmp_path, beam_args):
    """Two files with their columns in other orders are scored exactly as the server scores the
    same rows; a row the server refuses is a dead letter with the server's message; rows in =
    rows scored + dead letters, per file; a file whose columns are not the schema's is refused,
    naming it, before anything runs."""
    import pandas as pd

    old, new, _ = two_versions
    served = {"1": old, "2": new}[server.version()]  # the swap test may have published version 2
    frame = pd.read_csv(DATA_CSV, dtype=str, keep_default_na=False).iloc[UNSEEN_START : UNSEEN_START + 300]
    bad = frame.iloc[[7]].assign(trip_start_month="19")
    src = tmp_path / "in"
    src.mkdir()
    columns = list(frame.columns)
    frame.iloc[:150].to_csv(src / "part-1.csv", index=False, columns=columns)
    shuffled = columns[::-1]  # hour and month, and everything else, in another order
    pd.concat([frame.iloc[150:], bad]).to_csv(src / "part-2.csv", index=False, columns=shuffled)
    out = batch.predict(served, str(src / "*.csv"), str(tmp_path / "out"), beam_args=beam_args)
    assert out["files"] == {
        str(src / "part-1.csv"): {"rows": 150, "scored": 150, "dead_letters": 0},
        str(src / "part-2.csv"): {"rows": 151, "scored": 150, "dead_letters": 1},
    }
    # Each output row carries the input's columns (its key): the same row, whatever the file.
    keys = [c for c in columns if c not in F.LABEL_SOURCE_KEYS]
    scored = {
        tuple(r[k] for k in keys): float(r["probability"]) for f in glob.glob(out["predictions"]) for r in csv.DictReader(open(f))
    }
    # What the server answers for the same rows (typed as JSON clients send them).
    rows = read_rows(300, start=UNSEEN_START)
    response = server.predict({"instances": instances(rows)}).json()["predictions"]
    got = [scored[tuple(frame.iloc[i][k] for k in keys)] for i in range(300)]
    assert got == pytest.approx(response, abs=2e-6)
    (dead,) = [json.loads(line) for f in glob.glob(out["dead_letters"]) for line in open(f)]
    refused = server.predict({"instances": [dict(instances(rows[7:8])[0], trip_start_month=19)]}).json()["error"]
    assert refused == f"instance 0: {dead['reason']}" and dead["file"].endswith("part-2.csv") and dead["line"] == 152
    assert "'trip_start_month' is 19, outside the schema's domain [1, 12]" in refused

    frame.drop(columns=["fare"]).to_csv(src / "part-3.csv", index=False)
    with pytest.raises(batch.InputError, match=r"part-3.csv: no column 'fare'"):
        batch.predict(old, str(src / "*.csv"), str(tmp_path / "out2"))
    frame.assign(colour="red").to_csv(src / "part-3.csv", index=False)
    with pytest.raises(batch.InputError, match=r"part-3.csv: a column the schema does not know: 'colour'"):
        batch.predict(old, str(src / "*.csv"), str(tmp_path / "out2"))
    assert not (tmp_path / "out2").exists()


def test_the_predict_command_exits_cleanly(two_versions, tmp_path):
    """What an operator sees: the summary and the progress bar, no TensorFlow teardown noise
    (Beam's model cache, left to interpreter exit, printed a TypeError per tf.function)."""
    old, _, _ = two_versions
    src = tmp_path / "in.csv"
    lines = open(DATA_CSV).read().splitlines()
    src.write_text("\n".join([lines[0], *lines[UNSEEN_START + 1 : UNSEEN_START + 201]]) + "\n")
    argv = [
        sys.executable,
        str(ROOT / "runner.py"),
        "predict",
        "--model",
        old,
        "--input",
        str(src),
        "--output",
        str(tmp_path / "o"),
        "--json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["predictions"].endswith("predictions*.csv")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-3000:]


@DRIVERS
def test_batch_predict_reads_tfrecords(two_versions, tmp_path, beam_args):
    from helpers import to_example

    old, _, _ = two_versions
    rows = read_rows(200, start=UNSEEN_START)
    path = str(tmp_path / "rows.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for r in rows:
            w.write(to_example(r, drop=F.LABEL_SOURCE_KEYS))
        w.write(b"\xff\xff\xff\xff")  # not decodable
        w.write(tf.train.Example().SerializeToString())  # decodable, but carries nothing
    out = batch.predict(old, path, str(tmp_path / "out"), key_columns=["fare"], beam_args=beam_args)
    predicted = [row for f in glob.glob(out["predictions"]) for row in csv.DictReader(open(f))]
    dead = [json.loads(line) for f in glob.glob(out["dead_letters"]) for line in open(f)]
    assert len(predicted) == len(rows) and len(dead) == 2
    assert sorted(d["reason"].split(":")[0] for d in dead) == ["none of the model's features", "not a tf.Example"]
    want = sorted(np.round(expected(old, instances(rows)), 5))
    assert sorted(round(float(r["probability"]), 5) for r in predicted) == pytest.approx(want, abs=2e-5)
