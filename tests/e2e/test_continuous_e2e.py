"""Continuous training on spans: the rolling window, warm start, blessing against the served
model, rollback, skew checks and the HTML report, all on real pipeline runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from e2e.conftest import clone, span_rows
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.types import artifact_utils

import runner
from pipeline import gate, local, metadata
from pipeline import pipeline as P
from pipeline import report as html_report
from serving.model_store import ModelStore, list_versions

pytestmark = pytest.mark.e2e


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = runner.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def inputs_of(md: metadata.Metadata, run: metadata.RunInfo, component: str) -> dict[str, list]:
    execution_id = run.components[component].execution_id
    return md._events_by_execution([execution_id], (metadata.Event.INPUT,)).get(execution_id, {})


def test_a_new_span_trains_on_the_window_and_warm_starts_from_the_served_model(ct_history):
    cfg, (first, second) = ct_history
    assert second["status"] == "complete"
    md = metadata.Metadata(metadata.open_store(cfg.metadata_uri), cfg.pipeline_name)
    run = md.latest_run()
    # ExampleGen ingested only the new span; Transform read spans 1 and 2.
    assert metadata.prop(run.output(P.EXAMPLE_GEN, "examples"), "span") == 2
    window = inputs_of(md, run, P.TRANSFORM)["examples"]
    assert sorted(metadata.prop(e, "span") for e in window) == [1, 2]
    # Warm start and the Evaluator's baseline: span 1's model, the one being served.
    first_model = md.model_of(md.resolve(os.path.basename(first["pushed_model"])))
    assert [m.id for m in inputs_of(md, run, P.TRAINER)["base_model"]] == [first_model.id]
    with open(os.path.join(run.output(P.TRAINER, "model_run").uri, "warm_start.json")) as f:
        warm = json.load(f)
    assert warm["applied"] is True and warm["base_model"].startswith(first_model.uri)
    assert [m.id for m in inputs_of(md, run, P.EVALUATOR)["baseline_model"]] == [first_model.id]
    # The gate measured drift against span 1.
    result = gate.read_result(run.output(P.DATA_GATE, "result").uri)
    assert result["span"] == 2 and result["reference_span"] == 1
    assert {m["feature"] for m in result["drift"]["train"]} >= {"payment_type", "trip_start_hour"}
    # Blessed against the served model, so pushed as a new version.
    assert second["blessed"] and second["pushed_model"] != first["pushed_model"]


def test_unchanged_rerun_of_a_span_reuses_transform_and_training(ct_history, tmp_path):
    cfg, (_, second) = ct_history
    rerun = local.run(clone(cfg, tmp_path, cfg.data_root))
    for component in (P.EXAMPLE_GEN, P.STATISTICS_GEN, P.TRANSFORM, P.TRAINER):
        assert rerun["components"][component] == "cached", component
    assert rerun["pushed_model"] is None or os.path.basename(rerun["pushed_model"]) == os.path.basename(second["pushed_model"])


def test_rollback_serves_the_earlier_model_and_is_recorded(ct_history, tmp_path, capsys):
    cfg = clone(ct_history[0], tmp_path, ct_history[0].data_root)
    first, second = (os.path.basename(s["pushed_model"]) for s in ct_history[1])
    before = list_versions(cfg.serving_model_dir)
    assert before[-1] == int(second)

    code, _, err = cli(capsys, "rollback", "--metadata", cfg.metadata_uri, "--model-dir", cfg.serving_model_dir, "--to", "123")
    assert code == 2 and "no such version" in err
    assert list_versions(cfg.serving_model_dir) == before

    code, out, err = cli(capsys, "rollback", "--metadata", cfg.metadata_uri, "--model-dir", cfg.serving_model_dir, "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["served_before"] == int(second) and done["rolled_back_to"] == int(first)
    versions = list_versions(cfg.serving_model_dir)
    assert versions == [*before, done["new_version"]]
    # What a server loads now is the first model, byte for byte.
    store = ModelStore(cfg.serving_model_dir)
    store.refresh()
    assert store.current.version == done["new_version"]
    for name in ("saved_model.pb", "variables/variables.index"):
        with open(os.path.join(cfg.serving_model_dir, first, name), "rb") as a, open(os.path.join(done["path"], name), "rb") as b:
            assert a.read() == b.read()

    # Recorded: `runs` lists it, `lineage` leads from the new version to the first model.
    code, out, _ = cli(capsys, "runs", "--metadata", cfg.metadata_uri, "--json")
    newest = json.loads(out)[0]
    assert newest["run_id"].startswith("rollback-") and newest["components"] == {"rollback": "ran"}
    assert newest["pushed_version"] == str(done["new_version"])
    md = metadata.Metadata(metadata.open_store(cfg.metadata_uri), cfg.pipeline_name)
    first_model = md.model_of(md.resolve(first))
    assert md.model_of(md.resolve(str(done["new_version"]))).id == first_model.id
    code, out, _ = cli(capsys, "lineage", "--metadata", cfg.metadata_uri, str(done["new_version"]), "--json")
    assert f'"id": {first_model.id}' in out

    # The next candidate is judged against the rolled-back model, not the one rolled back.
    resolved = _latest_blessed(md)
    assert resolved.uri == first_model.uri


def _latest_blessed(md: metadata.Metadata):
    """What the Evaluator's baseline resolver picks (TFX's own strategy, on this store)."""
    def tfx_artifacts(type_name):
        return [artifact_utils.deserialize_artifact(md.store.get_artifact_type(type_name), a)
                for a in md.store.get_artifacts_by_type(type_name)]

    result = LatestBlessedModelStrategy().resolve_artifacts(
        md.store, {"model": tfx_artifacts("Model"), "model_blessing": tfx_artifacts("ModelBlessing")})
    return result["model"][0]


def test_validate_reports_skew_per_feature(ct_history, tmp_path, capsys):
    cfg, _ = ct_history
    clean = tmp_path / "batch.csv"
    span_rows(4).drop(columns=["tips"]).iloc[:1500].to_csv(clean, index=False)
    code, out, err = cli(capsys, "validate", "--metadata", cfg.metadata_uri, "--data", str(clean), "--json")
    assert code == 0, err + out
    checked = json.loads(out)
    assert checked["ok"] and checked["rows"] == 1500 and checked["training_span"] == 2
    assert checked["features"]["payment_type"]["skew"]["exceeded"] is False

    # A request log (what `serve --request-log` writes) where one company took over.
    log = tmp_path / "requests.jsonl"
    rows = span_rows(4).drop(columns=["tips"]).iloc[:1500].assign(company="Acme Cabs")
    with open(log, "w") as f:
        for start in range(0, len(rows), 100):
            f.write(json.dumps({"instances": rows.iloc[start:start + 100].to_dict("records")}) + "\n")
    code, out, err = cli(capsys, "validate", "--metadata", cfg.metadata_uri, "--data", str(log))
    assert code == 3, err
    line = next(line for line in out.splitlines() if line.startswith("company"))
    assert "L_infinity" in line and "HIGH" in line
    assert "NOT OK" in out

    code, _, err = cli(capsys, "validate", "--metadata", cfg.metadata_uri, "--data", str(tmp_path / "nothing-here"))
    assert code == 2 and "no .csv or .jsonl files" in err


def render(html_path) -> str:
    """The DOM after Chromium (Debian's package, headless) loaded the page."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("Chromium is not installed: run scripts/ensure-test-tools.sh (make test does)")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"file://{html_path}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_renders_in_a_browser_with_every_section(ct_history, tmp_path, capsys):
    cfg, _ = ct_history
    serving = tmp_path / "serving.csv"
    span_rows(4).drop(columns=["tips"]).iloc[:1000].to_csv(serving, index=False)
    page = tmp_path / "report.html"
    code, out, err = cli(capsys, "report", "--metadata", cfg.metadata_uri, "--output", str(page), "--serving-data", str(serving))
    assert code == 0, err
    dom = render(page)
    for section in html_report.SECTIONS:
        assert f'id="{section}"' in dom, section
    assert "passed" in dom  # the gate
    assert "Against span 1" in dom  # drift
    assert "payment_type" in dom and "L_infinity" in dom
    assert "overall" in dom and "payment_type=Cash" in dom  # evaluation slices
    assert "<svg" in dom  # histograms
