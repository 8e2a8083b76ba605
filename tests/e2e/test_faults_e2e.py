"""The eight fault cases of the continuous-training issue, each on real pipeline runs.

Every case starts from a copy of a store where span 1 was trained and pushed, feeds it a bad
span 2 (or a bad situation), and checks: a clear message, nothing pushed that should not be,
the served model and every earlier metadata record unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from e2e.conftest import clone, span_rows, write_span
from e2e.test_continuous_e2e import render
from ml_metadata.proto import metadata_store_pb2

from helpers import ROOT, SCHEMA_PATH
from modules.hparams import HParams
from pipeline import configs, local, metadata
from pipeline import pipeline as P
from pipeline import report as html_report
from pipeline.validation import DataValidationError

pytestmark = pytest.mark.e2e


# --- What must survive a fault ----------------------------------------------------------------

def snapshot(cfg: configs.PipelineConfig) -> dict:
    """Every execution and artifact record, and every served file's digest."""
    store = metadata.open_store(cfg.metadata_uri)
    served = {}
    for dirpath, _, files in os.walk(cfg.serving_model_dir):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                served[os.path.relpath(path, cfg.serving_model_dir)] = hashlib.sha256(f.read()).hexdigest()
    return {
        "executions": {e.id: e.SerializeToString(deterministic=True) for e in store.get_executions()},
        "artifacts": {a.id: a.SerializeToString(deterministic=True) for a in store.get_artifacts()},
        "events": len(store.get_events_by_execution_ids([e.id for e in store.get_executions()])),
        "served": served,
    }


def assert_intact(before: dict, cfg: configs.PipelineConfig) -> dict:
    """Earlier records are unchanged (new ones may be added) and the served files are identical."""
    after = snapshot(cfg)
    for kind in ("executions", "artifacts"):
        changed = [i for i, record in before[kind].items() if after[kind].get(i) != record]
        assert not changed, f"earlier {kind} changed: {changed}"
    assert after["events"] >= before["events"]
    assert after["served"] == before["served"], "the served models changed"
    return after


def bad_span_config(ct_base, tmp_path, frame=None, text=None, **overrides):
    base_cfg, _ = ct_base
    data = write_span(tmp_path / "data", 2, frame=frame, text=text)
    return clone(base_cfg, tmp_path, data, **overrides)


def assert_rejected(cfg, expected: set[tuple[str, str]]) -> DataValidationError:
    """The run stops at the gate naming `expected` (feature, kind) pairs; nothing after it ran."""
    before = snapshot(cfg)
    with pytest.raises(DataValidationError) as failure:
        local.run(cfg)
    found = {(r["feature"], r["kind"]) for r in failure.value.rows}
    assert expected <= found, found
    message = str(failure.value)
    for feature, kind in expected:
        assert feature in message and kind in message
    assert "nothing was trained or pushed" in message
    latest = metadata.Metadata(metadata.open_store(cfg.metadata_uri), cfg.pipeline_name).latest_run()
    assert latest.status == "failed" and latest.components[P.DATA_GATE].state == "failed"
    assert not {P.TRANSFORM, P.TRAINER, P.EVALUATOR, P.PUSHER} & set(latest.components)
    assert_intact(before, cfg)
    return failure.value


# --- 1-5: bad data stops at the gate ------------------------------------------------------------

def test_1_a_missing_column_is_rejected(ct_base, tmp_path):
    cfg = bad_span_config(ct_base, tmp_path, frame=span_rows(2).drop(columns=["fare"]))
    assert_rejected(cfg, {("fare", "SCHEMA_MISSING_COLUMN")})


def test_2_text_in_a_numeric_column_is_rejected(ct_base, tmp_path):
    frame = span_rows(2).copy()
    frame.loc[frame.index[::50], "trip_miles"] = "about five"
    cfg = bad_span_config(ct_base, tmp_path, frame=frame)
    assert_rejected(cfg, {("trip_miles", "UNEXPECTED_DATA_TYPE")})


def test_3_an_empty_file_is_refused(ct_base, tmp_path, capsys):
    import runner

    # No bytes at all: refused before anything runs or is recorded.
    data = tmp_path / "zero"
    write_span(data, 2, text="")
    before = snapshot(ct_base[0])
    code = runner.main(["run", "--data", str(data), "--output", str(tmp_path / "zero-out")])
    assert code == 2
    assert "is empty (0 bytes)" in capsys.readouterr().err
    assert not (tmp_path / "zero-out").exists()
    assert_intact(before, ct_base[0])
    # A header and no rows: ingested, then stopped by the gate.
    header = ",".join(span_rows(2).columns) + "\n"
    cfg = bad_span_config(ct_base, tmp_path, text=header)
    assert_rejected(cfg, {("(dataset)", "EMPTY_DATA")})


def test_4_a_flood_of_unseen_categories_is_rejected(ct_base, tmp_path):
    frame = span_rows(2).copy()
    flooded = frame.index[: len(frame) // 2]
    frame.loc[flooded, "payment_type"] = [f"Wallet-{i % 40}" for i in range(len(flooded))]
    frame.loc[flooded, "company"] = [f"New Cab Co {i % 200}" for i in range(len(flooded))]
    cfg = bad_span_config(ct_base, tmp_path, frame=frame)
    assert_rejected(cfg, {("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"), ("company", "COMPARATOR_L_INFTY_HIGH")})


def test_5_drift_between_spans_is_rejected_reported_and_can_be_accepted(ct_base, tmp_path, capsys):
    import runner

    frame = span_rows(2).assign(payment_type="Cash", trip_start_hour="3")
    cfg = bad_span_config(ct_base, tmp_path, frame=frame, train_steps=50)
    assert_rejected(cfg, {("payment_type", "COMPARATOR_L_INFTY_HIGH"), ("trip_start_hour", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH")})

    # The report of the failed run shows the drift, in a browser.
    page = tmp_path / "report.html"
    assert runner.main(["report", "--metadata", cfg.metadata_uri, "--output", str(page)]) == 0
    capsys.readouterr()
    dom = render(page)
    for section in html_report.SECTIONS:
        assert f'id="{section}"' in dom
    assert "failed: the run stopped before Transform" in dom and "beyond threshold" in dom

    # An operator who knows why accepts exactly these anomalies: the run trains, and the
    # acceptance is on record in ML Metadata.
    before = snapshot(cfg)
    accepted = cfg.replace(accept_anomalies=("payment_type:COMPARATOR_L_INFTY_HIGH", "trip_start_hour"))
    summary = local.run(accepted)
    assert summary["status"] == "complete" and summary["components"][P.TRAINER] == "ran"
    md = metadata.Metadata(metadata.open_store(cfg.metadata_uri), cfg.pipeline_name)
    run = md.latest_run()
    gate_execution = md.execution(run.components[P.DATA_GATE].execution_id)
    assert json.loads(metadata.prop(gate_execution, "accept")) == sorted(accepted.accept_anomalies)
    assert metadata.prop(run.output(P.DATA_GATE, "result"), "accepted_anomalies") == 4  # 2 features x 2 splits
    assert_intact_records(before, cfg)


def assert_intact_records(before: dict, cfg: configs.PipelineConfig) -> None:
    after = snapshot(cfg)
    for kind in ("executions", "artifacts"):
        assert all(after[kind].get(i) == record for i, record in before[kind].items()), kind


# --- 6: a worse model is not pushed -----------------------------------------------------------

def test_6_a_worse_candidate_is_not_blessed_or_pushed(ct_base, tmp_path):
    base_cfg, first = ct_base
    # One step from scratch: far worse than the served model.
    cfg = bad_span_config(ct_base, tmp_path, frame=span_rows(2), train_steps=1, hparams=HParams(warm_start=False))
    before = snapshot(cfg)
    summary = local.run(cfg)
    assert summary["status"] == "complete"
    assert summary["blessed"] is False and summary["pushed_model"] is None
    md = metadata.Metadata(metadata.open_store(cfg.metadata_uri), cfg.pipeline_name)
    pushed = md.latest_run().output(P.PUSHER, "pushed_model")
    assert pushed is None or not metadata.prop(pushed, "pushed")
    assert_intact(before, cfg)


# --- 7, 8: the process dies; two runs at once -------------------------------------------------

def cli_run(cfg: configs.PipelineConfig, *extra: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "runner.py"), "run", "--data", cfg.data_root, "--schema", str(SCHEMA_PATH),
         "--output", os.path.dirname(cfg.metadata_uri), "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def wait_for_state(cfg, component: str, state: int, proc: subprocess.Popen, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        store = metadata.open_store(cfg.metadata_uri)
        md = metadata.Metadata(store, cfg.pipeline_name)
        for e in store.get_executions():
            if e.last_known_state == state and md.component_of(e.id) == component:
                return e.id
        time.sleep(0.5)
    pytest.fail(f"{component} never reached state {state}")


def test_7_killed_during_training_then_rerun_completes_reusing_what_finished(ct_base, tmp_path):
    cfg = bad_span_config(ct_base, tmp_path, frame=span_rows(2))
    before = snapshot(cfg)
    proc = cli_run(cfg, "--train-steps", "1500")
    killed = wait_for_state(cfg, P.TRAINER, metadata_store_pb2.Execution.RUNNING, proc)
    time.sleep(2)  # well into training
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    rerun = cli_run(cfg, "--train-steps", "1500")
    out, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["status"] == "complete"
    # What finished before the kill is reused; the interrupted Trainer runs again.
    for component in (P.EXAMPLE_GEN, P.STATISTICS_GEN, P.EXAMPLE_VALIDATOR, P.TRANSFORM):
        assert summary["components"][component] == "cached", component
    assert summary["components"][P.TRAINER] == "ran"
    # The store is consistent: the killed execution is marked, not left RUNNING.
    store = metadata.open_store(cfg.metadata_uri)
    [execution] = store.get_executions_by_id([killed])
    assert execution.last_known_state == metadata_store_pb2.Execution.CANCELED
    assert not [e for e in store.get_executions() if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
    runs = metadata.Metadata(store, cfg.pipeline_name).runs()
    assert [r.status for r in runs[:2]] == ["complete", "interrupted"]
    after = snapshot(cfg)
    for kind in ("executions", "artifacts"):
        assert all(after[kind].get(i) == record for i, record in before[kind].items()), kind
    if not summary["pushed_model"]:
        assert after["served"] == before["served"]


def test_8_two_runs_at_once_on_one_store(ct_base, tmp_path):
    cfg = bad_span_config(ct_base, tmp_path, frame=span_rows(2))
    before = snapshot(cfg)
    first = cli_run(cfg, "--train-steps", "100")
    lock = cfg.metadata_uri + ".lock"
    deadline = time.time() + 120
    while not (os.path.exists(lock) and open(lock).read().startswith("pid")):
        assert first.poll() is None and time.time() < deadline, "the first run never took the store"
        time.sleep(0.2)
    second = cli_run(cfg, "--train-steps", "100")
    out2, err2 = second.communicate(timeout=300)
    out1, err1 = first.communicate(timeout=900)
    # The second fails at once with a message that says why; the first is not disturbed.
    assert second.returncode == 1
    assert "is in use by a running pipeline (pid" in err2 and "wait for it to finish" in err2
    assert first.returncode == 0, err1[-3000:]
    assert json.loads(out1)["status"] == "complete"
    store = metadata.open_store(cfg.metadata_uri)
    assert not [e for e in store.get_executions() if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
    assert_intact_records(before, cfg)
    # And the store still answers queries.
    assert metadata.Metadata(store, cfg.pipeline_name).latest_run().status == "complete"
