"""The Tuner's Vizier oracle (modules/vizier.py) against Vertex AI Vizier faked at its transport
(tests/harness/site/fake_vertex.py): the aiplatform client builds and type-checks every request,
and the fake refuses what the service refuses. The search scores a known function instead of
training (tests/harness/vizier_search.py); the pipeline's Vertex Tuner runs for real in
tests/e2e/test_vertex_execution.py."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from modules.hparams import SEARCH_SPACE, HParams, from_tuned
from modules.vizier import from_vizier, study_name_for, study_spec, to_vizier

HERE = pathlib.Path(__file__).parent
SITE = HERE / "harness" / "site"
sys.path.insert(0, str(SITE))
import fake_vertex  # noqa: E402  (its checks, used here without installing the fakes)


def search(tmp_path, study: str, trials: int = 4, fail_trial: str = "", nan_trial: str = "") -> tuple[dict, list[dict], dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SITE), str(HERE.parent)]), FAKE_VERTEX_DIR=str(tmp_path / "vertex"))
    argv = [sys.executable, str(HERE / "harness" / "vizier_search.py"), "--study", study, "--trials", str(trials)]
    argv += ["--dir", str(tmp_path / f"kt-{study}"), "--fail-trial", fail_trial, "--nan-trial", nan_trial]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    sent = [json.loads(line) for line in (tmp_path / "vertex" / "requests.jsonl").read_text().splitlines()]
    state = json.loads((tmp_path / "vertex" / "state.json").read_text())
    return json.loads(done.stdout.splitlines()[-1])["best"], sent, state


def trials_of(state: dict) -> list[dict]:
    (entry,) = state["studies"].values()
    return [json.loads(t) for t in entry["trials"]]


def test_the_search_space_is_a_valid_study_and_values_round_trip():
    spec = study_spec(SEARCH_SPACE)
    fake_vertex._check_spec(spec)  # what CreateStudy would refuse
    assert [p.parameter_id for p in spec.parameters] == list(SEARCH_SPACE)
    assert spec.parameters[0].scale_type.name == "UNIT_LOG_SCALE"  # learning_rate
    values = {"learning_rate": 0.003, "hidden_units": "256,128", "embedding_dim": 16, "dropout": 0.3}
    values.update(wide_l2=0.02, deep_l2=0.001, batch_size=512)
    parameters = to_vizier(SEARCH_SPACE, values)
    fake_vertex._check_parameters(spec, parameters)
    back = from_vizier(SEARCH_SPACE, parameters)
    assert back == values and type(back["embedding_dim"]) is int and type(back["batch_size"]) is int


def test_a_value_outside_the_space_is_refused_as_the_service_refuses_it():
    from google.api_core import exceptions

    with pytest.raises(exceptions.InvalidArgument, match="learning_rate"):
        fake_vertex._check_parameters(study_spec(SEARCH_SPACE), to_vizier(SEARCH_SPACE, {"learning_rate": 0.5}))
    with pytest.raises(ValueError, match="no value for"):
        from_vizier(SEARCH_SPACE, to_vizier(SEARCH_SPACE, {"learning_rate": 0.003}))


def test_study_names_are_stable_for_a_retry_and_differ_for_another_tuning():
    a = study_name_for("taxi-big-tipper", ["gs://b/t/train"], {"max_trials": 8})
    assert a == study_name_for("taxi-big-tipper", ["gs://b/t/train"], {"max_trials": 8})
    assert a != study_name_for("taxi-big-tipper", ["gs://b/t2/train"], {"max_trials": 8})
    assert len(study_name_for("x" * 300, [])) <= 128


def test_vizier_chooses_the_trials_starting_from_the_defaults_and_hears_every_result(tmp_path):
    best, sent, state = search(tmp_path, "taxi-a", trials=4)
    methods = [r["method"] for r in sent]
    assert methods[:3] == ["lookup_study", "create_study", "create_trial"]  # no study yet: created
    assert methods.count("suggest_trials") == 3 and methods.count("complete_trial") == 4
    defaults = {p["parameterId"]: p["value"] for p in sent[2]["request"]["trial"]["parameters"]}
    assert from_tuned(HParams(), defaults) == HParams()
    trials = trials_of(state)
    assert [t["state"] for t in trials] == ["SUCCEEDED"] * 4
    # Each result reached Vizier at the step of the best weights, then as the final measurement.
    assert all(t["measurements"][0]["stepCount"] == "300" for t in trials)
    winner = max(trials, key=lambda t: t["finalMeasurement"]["metrics"][0]["value"])
    assert from_tuned(HParams(), best) == from_tuned(HParams(), {p["parameterId"]: p["value"] for p in winner["parameters"]})


def test_a_retried_tuning_continues_its_study(tmp_path):
    search(tmp_path, "taxi-b", trials=2)
    _, sent, state = search(tmp_path, "taxi-b", trials=2)
    assert [r["method"] for r in sent].count("create_study") == 1
    assert len(trials_of(state)) == 4  # Vizier has both searches' trials


def test_failed_and_diverged_trials_are_reported_infeasible_and_the_search_goes_on(tmp_path):
    best, sent, state = search(tmp_path, "taxi-c", trials=4, fail_trial="1", nan_trial="2")
    trials = trials_of(state)
    assert [t["state"] for t in trials] == ["SUCCEEDED", "INFEASIBLE", "INFEASIBLE", "SUCCEEDED"]
    assert "ran out of memory" in trials[1]["infeasibleReason"] and "nan" in trials[2]["infeasibleReason"]
    # The best of the trials that completed.
    scores = {t["id"]: t["finalMeasurement"]["metrics"][0]["value"] for t in trials if t["state"] == "SUCCEEDED"}
    winner = next(t for t in trials if t["id"] == max(scores, key=scores.get))
    assert from_tuned(HParams(), best) == from_tuned(HParams(), {p["parameterId"]: p["value"] for p in winner["parameters"]})
