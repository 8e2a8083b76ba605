"""Continuous training on spans, on the story's real pipeline runs: the rolling window, warm
start, blessing against the served model, the data gate's verdicts and what survives them,
faults (a killed run, two runs at once), rollback, skew checks and the HTML report."""

from __future__ import annotations

import json
import os
import re

import pytest
import tensorflow as tf

from helpers import DATA_CSV, assert_model_facts, changed_records, snapshot, span_rows
from modules.trainer import TRAINING_RECORD
from ops import report as html_report
from ops.queries import open_metadata, prop
from pipeline import gate, lineage
from pipeline import pipeline as P
from serving.model_store import ModelStore

# The story of pipeline runs is built once, in one worker: its tests go there.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("story")]

AFTER_GATE = {P.TRANSFORM, P.TRAINER, P.EVALUATOR, P.PUSHER}


def version_of(summary: dict) -> str:
    return os.path.basename(summary["pushed_model"])


def assert_rejected_and_intact(step, expected: set[tuple[str, str]]) -> None:
    """The run stopped at the gate naming `expected`, nothing after the gate ran, and every
    earlier record and served file is unchanged."""
    found = {(r["feature"], r["kind"]) for r in step.rejected.rows}
    assert expected <= found, found
    message = str(step.rejected)
    for feature, kind in expected:
        assert feature in message and kind in message
    assert "nothing was trained or pushed" in message
    latest = step.metadata().latest_run()
    assert latest.status == "rejected" and latest.components[P.DATA_GATE].state == "failed"
    assert not AFTER_GATE & set(latest.components)
    assert changed_records(step.before, snapshot(step.cfg.replace(metadata_uri=step.store))) == {
        "executions": [],
        "artifacts": [],
    }
    assert snapshot(step.cfg)["served"] == step.before["served"]


# --- A new span ------------------------------------------------------------------------------


def test_a_new_span_trains_on_the_window_and_warm_starts_from_the_served_model(s1_first, s3_span2):
    md = s3_span2.metadata()
    run = md.latest_run()
    assert s3_span2.summary["status"] == "complete"
    # ExampleGen ingested only the new span; Transform read spans 1 and 2 (the window it
    # resolved, recorded on its outputs), warm start and the Evaluator's baseline were span
    # 1's model, the one being served, and the gate measured drift against span 1.
    assert lineage.span_of(run.output(P.EXAMPLE_GEN, "examples")) == 2
    first_model = md.model_of(md.resolve(version_of(s1_first.summary)))
    model = run.output(P.TRAINER, "model")
    assert_model_facts(md.graph, model, spans=[1, 2], warm_start_spans=[1], baseline_spans=[1], reference_span=1)
    facts = lineage.model_facts(md.graph, model)
    assert facts["warm_started_from"] == facts["baseline"] == first_model.ref
    record = json.loads(tf.io.gfile.GFile(os.path.join(run.output(P.TRAINER, "model_run").uri, TRAINING_RECORD)).read())
    assert record["warm_start"]["applied"] is True and record["warm_start"]["base_model"].startswith(first_model.uri)
    assert [m.ref for m in lineage.warm_start_ancestry(md.graph, run.output(P.TRAINER, "model"))] == [first_model.ref]
    # The gate's result has a type of its own and says what it measured.
    result_artifact = run.output(P.DATA_GATE, "result")
    assert result_artifact.type == lineage.GATE_RESULT_TYPE
    result = gate.read_result(result_artifact.uri)
    assert result["span"] == 2 and result["reference_span"] == 1
    assert {m["feature"] for m in result["drift"]["train"]} >= {"payment_type", "trip_start_hour"}
    # Blessed against the served model, so pushed as a new version.
    assert s3_span2.summary["blessed"] and version_of(s3_span2.summary) != version_of(s1_first.summary)


# --- The gate --------------------------------------------------------------------------------


def test_drift_between_spans_is_rejected_and_the_failed_run_is_reported(s5_drift, cli, browser, tmp_path):
    assert_rejected_and_intact(
        s5_drift, {("payment_type", "COMPARATOR_L_INFTY_HIGH"), ("trip_start_hour", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH")}
    )
    page = tmp_path / "failed-run.html"
    code, _, err = cli("report", "--metadata", s5_drift.store, "--output", str(page))
    assert code == 0, err
    dom, _ = browser(page)
    for section in html_report.SECTIONS:
        assert f'id="{section}"' in dom
    assert "failed: the run stopped before Transform" in dom and "beyond threshold" in dom
    assert "Against span 2" in dom
    verdict = dom[dom.index('id="verdict"') : dom.index('id="gate"')]
    assert "failed" in verdict and "not evaluated" in verdict and "nothing" in verdict
    # The drift is marked on the features where it occurs.
    assert '<b>payment_type</b><br><span class="badge">COMPARATOR_L_INFTY_HIGH</span>' in dom


def test_a_shifted_fare_is_rejected_naming_fare_and_the_label(s5_fare_shift):
    assert_rejected_and_intact(
        s5_fare_shift,
        {("fare", "QUANTILE_SHIFT_HIGH"), ("big_tipper", "LABEL_RATE_OUT_OF_RANGE"), ("big_tipper", "LABEL_RATE_CHANGE_HIGH")},
    )
    eval_rows = [r for r in s5_fare_shift.rejected.rows if r["feature"] == "big_tipper" and r["split"] == "eval"]
    assert {r["kind"] for r in eval_rows} >= {"LABEL_RATE_OUT_OF_RANGE", "TOO_FEW_EXAMPLES_PER_CLASS"}


def test_what_is_wrong_with_the_files_is_named_before_tfdv_speaks(s5_bad_files):
    """Through the CLI: exit 3, nothing on stdout, and the table on stderr names the files'
    problems first, one line each."""
    step = s5_bad_files
    assert step.extra["exit_code"] == 3 and step.extra["stdout"] == ""
    above, table = step.extra["stderr"].split("error: data validation failed:", 1)
    assert "ERROR" not in above  # no log line above the table without --verbose
    table = table.splitlines()
    assert "nothing was trained or pushed" in table[0]
    kinds = [line.split()[3] for line in table[2:6]]
    assert kinds == ["FILE_HAS_BOM", "FILE_HAS_BOM", "DUPLICATE_FILE", "DUPLICATE_ROWS"]
    assert "taxi_copy.csv has the same content as taxi.csv" in table[4]
    assert "1200 of 3000 rows (40.0%) repeat an earlier row" in table[5]
    latest = step.metadata().latest_run()
    assert latest.status == "rejected" and not AFTER_GATE & set(latest.components)
    assert not any(changed_records(step.before, snapshot(step.cfg.replace(metadata_uri=step.store))).values())


def test_the_gates_blind_spots_are_seen(s5_blind_spots):
    """A price rise, a feature that empties out, timestamps 50 years ahead: all allowed by the
    schema (optional features, a domain to the year 2100), each refused and named."""
    assert_rejected_and_intact(
        s5_blind_spots,
        {
            ("fare", "SCALE_SHIFT_HIGH"),
            ("dropoff_latitude", "PRESENCE_CHANGE_HIGH"),
            ("dropoff_community_area", "PRESENCE_CHANGE_HIGH"),
            ("trip_start_timestamp", "TIME_IN_FUTURE"),
            ("trip_start_timestamp", "TIME_FAR_FROM_PREVIOUS"),
        },
    )
    message = str(s5_blind_spots.rejected)
    assert "factor of 2." in message and "0.0% of rows have a value" in message and "days after this run" in message


def test_files_the_parser_cannot_read_and_text_in_numbers_end_in_the_table(s5_semicolons, s5_text_numbers):
    """Through the CLI: exit 3 and the gate's table, never a traceback or exit 1; `runs` tells
    a rejection from a failure."""
    for step, expected in (
        (s5_semicolons, ["WRONG_DELIMITER", "taxi.csv: the header is one column", "looks ;-delimited"]),
        (s5_text_numbers, ["fare", "LABEL_UNREADABLE", "the label cannot be computed"]),
    ):
        err = step.extra["stderr"]
        assert step.extra["exit_code"] == 3 and step.extra["stdout"] == "", err[-2000:]
        assert "Traceback" not in err and "ERROR" not in err
        for text in expected:
            assert text in err, (text, err[-2000:])
        latest = step.metadata().latest_run()
        assert latest.status == "rejected" and not AFTER_GATE & set(latest.components)
        assert not any(changed_records(step.before, snapshot(step.cfg.replace(metadata_uri=step.store))).values())


def test_after_a_rejected_span_is_removed_the_rerun_is_all_cache_hits(s3_span2, s6_removed):
    for component, state in s6_removed.summary["components"].items():
        assert state == "cached", component
    assert s6_removed.summary["pushed_model"] == s3_span2.summary["pushed_model"]


def test_bad_rows_in_a_redelivered_span_are_each_named(s7_redelivered):
    assert_rejected_and_intact(
        s7_redelivered,
        {
            ("fare", "SCHEMA_MISSING_COLUMN"),
            ("trip_miles", "UNEXPECTED_DATA_TYPE"),
            ("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
            ("company", "COMPARATOR_L_INFTY_HIGH"),
        },
    )
    assert {r["span"] for r in s7_redelivered.rejected.rows} == {2}


def test_a_span_with_no_rows_is_rejected_and_a_file_with_no_bytes_is_refused(s8_empty, cli, tmp_path):
    assert_rejected_and_intact(s8_empty, {("(dataset)", "EMPTY_DATA")})
    # No bytes at all: refused before anything runs or is recorded.
    data = tmp_path / "data" / "span-5"
    data.mkdir(parents=True)
    (data / "taxi.csv").write_text("")
    code, _, err = cli("run", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"))
    assert code == 2 and "is empty (0 bytes)" in err
    assert not (tmp_path / "out").exists()


def test_no_model_ever_trains_on_a_rejected_copy_of_a_span(s3_span2, s7_redelivered, s9_span3):
    """Span 2 passed, was re-delivered with bad rows and rejected; span 3 then passed. The span
    3 model's window holds span 2's passed copy, never the rejected one."""
    md = s9_span3.metadata()
    rejected_copy = s7_redelivered.metadata().latest_run().output(P.EXAMPLE_GEN, "examples")
    passed_copy = s3_span2.metadata().latest_run().output(P.EXAMPLE_GEN, "examples")
    assert lineage.span_of(rejected_copy) == lineage.span_of(passed_copy) == 2 and rejected_copy.ref != passed_copy.ref
    for model in md.graph.of_type("Model"):
        trained_on = {a.ref for a in lineage.examples_trained_on(md.graph, model)}
        assert rejected_copy.ref not in trained_on, model.ref
    facts = lineage.model_facts(md.graph, md.latest_run().output(P.TRAINER, "model"))
    assert facts["spans"] == [1, 2, 3]
    assert passed_copy.ref in facts["examples"] and rejected_copy.ref not in facts["examples"]
    # Drift was measured against span 2's passed copy.
    assert facts["drift_reference_span"] == 2
    assert gate.read_result(md.latest_run().output(P.DATA_GATE, "result").uri)["reference_span"] == 2


def test_a_run_killed_while_training_completes_on_rerun_and_a_concurrent_run_is_refused(s9_span3):
    code, _, err = s9_span3.extra["second"]
    assert code == 1
    assert "is in use by a running pipeline (pid" in err and "wait for it to finish" in err
    summary = s9_span3.summary
    assert summary["status"] == "complete"
    # What finished before the kill is reused; the interrupted Trainer runs again.
    for component in (P.EXAMPLE_GEN, P.STATISTICS_GEN, P.EXAMPLE_VALIDATOR, P.DATA_GATE, P.TRANSFORM):
        assert summary["components"][component] == "cached", component
    assert summary["components"][P.TRAINER] == "ran"
    md = s9_span3.metadata()
    assert md.graph.executions[str(s9_span3.extra["killed_execution"])].state == lineage.CANCELED
    assert not [e for e in md.graph.executions.values() if e.state == lineage.RUNNING]
    assert [r.status for r in md.runs()[:2]] == ["complete", "interrupted"]
    assert not any(changed_records(s9_span3.before, snapshot(s9_span3.cfg.replace(metadata_uri=s9_span3.store))).values())


def test_run_shows_progress_at_once_and_at_least_every_15_seconds(s9_span3):
    """`run` on the CLI: a line at once, a line per component as it starts and ends, and never
    15 s without one (stderr; stdout keeps the result only)."""
    stamps, lines = [], []
    for line in s9_span3.extra["rerun_stderr"].splitlines():
        match = re.match(r"^progress \[\s*([\d.]+)s\] (.*)$", line)
        if match:
            stamps.append(float(match.group(1)))
            lines.append(match.group(2))
    assert stamps[0] < 10 and len(stamps) > 5
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= 15, list(zip(stamps, lines))
    assert "trainer started" in lines and any(line.startswith("trainer ran (") for line in lines)
    assert any(line.startswith("transform cached (") for line in lines)


def test_accepted_anomalies_let_the_run_train_and_are_on_record(s10_accepted):
    summary = s10_accepted.summary
    assert summary["status"] == "complete" and summary["components"][P.TRAINER] == "ran"
    md = s10_accepted.metadata()
    run = md.latest_run()
    gate_execution = md.graph.executions[str(run.components[P.DATA_GATE].execution_id)]
    assert json.loads(prop(gate_execution, "accept")) == sorted(s10_accepted.cfg.accept_anomalies)
    assert prop(run.output(P.DATA_GATE, "result"), "accepted_anomalies") == 4  # 2 features x 2 splits
    assert run.accepted_anomalies == 4
    assert not any(
        changed_records(s10_accepted.before, snapshot(s10_accepted.cfg.replace(metadata_uri=s10_accepted.store))).values()
    )


def test_a_worse_candidate_is_not_blessed_or_pushed(s9_span3, s10_accepted):
    """The accepted span's model trained one step from scratch: far worse than the served
    model, so it is neither blessed nor pushed, and what is served stays as it was."""
    assert s10_accepted.summary["blessed"] is False and s10_accepted.summary["pushed_model"] is None
    md = s10_accepted.metadata()
    pushed = md.latest_run().output(P.PUSHER, "pushed_model")
    assert pushed is None or not prop(pushed, "pushed")
    served_before = s9_span3.metadata().served()
    assert md.served().ref == served_before.ref
    assert snapshot(s10_accepted.cfg)["served"] == s10_accepted.before["served"]


# --- Operations on the store after span 2 -----------------------------------------------------


def test_rollback_serves_the_earlier_model_and_is_recorded(s1_first, s3_span2, cli, clone):
    cfg = clone(s3_span2)
    first, second = version_of(s1_first.summary), version_of(s3_span2.summary)
    before = lineage.serving_versions(cfg.serving_model_dir)
    assert before[-1] == int(second)

    code, _, err = cli("rollback", "--metadata", cfg.metadata_uri, "--model-dir", cfg.serving_model_dir, "--to", "123")
    assert code == 2 and "no such pushed version" in err
    assert lineage.serving_versions(cfg.serving_model_dir) == before

    code, out, err = cli("rollback", "--metadata", cfg.metadata_uri, "--model-dir", cfg.serving_model_dir, "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["served_before"] == second and done["rolled_back_to"] == first
    assert lineage.serving_versions(cfg.serving_model_dir) == [*before, int(done["new_version"])]
    # What a server loads now is the first model, byte for byte.
    served = ModelStore(cfg.serving_model_dir)
    served.refresh()
    assert served.current.version == int(done["new_version"])
    for name in ("saved_model.pb", "variables/variables.index"):
        with open(os.path.join(cfg.serving_model_dir, first, name), "rb") as a, open(os.path.join(done["path"], name), "rb") as b:
            assert a.read() == b.read()

    # Recorded: `runs` lists it, `lineage` leads from the new version to the first model.
    code, out, _ = cli("runs", "--metadata", cfg.metadata_uri, "--json")
    newest = json.loads(out)[0]
    assert newest["run_id"] == done["run_id"] and newest["run_id"].startswith("rollback-")
    assert newest["components"] == {"rollback": "ran"} and newest["pushed_version"] == done["new_version"]
    md = open_metadata(cfg.metadata_uri, cfg.pipeline_name)
    assert lineage.pushed_version(md.served()) == done["new_version"]
    first_model = md.model_of(md.resolve(first))
    assert md.model_of(md.resolve(done["new_version"])).ref == first_model.ref
    code, out, _ = cli("lineage", "--metadata", cfg.metadata_uri, done["new_version"], "--json")
    assert f'"id": {first_model.id}' in out
    # The rolled-back model was trained on what the first model was trained on.
    rolled_back = md.graph.of_type("Model")[-1]
    assert lineage.original_model(md.graph, rolled_back).ref == first_model.ref
    assert lineage.examples_trained_on(md.graph, rolled_back) == lineage.examples_trained_on(md.graph, first_model)

    # The next candidate is judged against the rolled-back model, not the one rolled back.
    baseline = lineage.baseline_model(md.graph, candidate_uri="a new candidate")
    assert baseline.uri == first_model.uri

    # Rolled back again, with one version left to go back to: the second model.
    code, out, err = cli("rollback", "--metadata", cfg.metadata_uri, "--model-dir", cfg.serving_model_dir, "--json")
    assert code == 0 and json.loads(out)["rolled_back_to"] == second, err


def test_validate_reports_skew_per_feature(s3_span2, cli, tmp_path):
    clean = tmp_path / "batch.csv"
    span_rows(5).drop(columns=["tips"]).iloc[:1500].to_csv(clean, index=False)
    code, out, err = cli("validate", "--metadata", s3_span2.store, "--data", str(clean), "--json")
    assert code == 0, err + out
    checked = json.loads(out)
    assert checked["ok"] and checked["rows"] == 1500 and checked["training_span"] == 2
    assert checked["features"]["payment_type"]["skew"]["exceeded"] is False

    # A request log (what `serve --request-log` writes) where one company took over.
    log = tmp_path / "requests.jsonl"
    rows = span_rows(5).drop(columns=["tips"]).iloc[:1500].assign(company="Acme Cabs")
    with open(log, "w") as f:
        for start in range(0, len(rows), 100):
            f.write(json.dumps({"instances": rows.iloc[start : start + 100].to_dict("records")}) + "\n")
    code, out, err = cli("validate", "--metadata", s3_span2.store, "--data", str(log))
    assert code == 3, err
    line = next(line for line in out.splitlines() if line.startswith("company"))
    assert "L_infinity" in line and "HIGH" in line
    assert "NOT OK" in out

    # The bundled CSV as it is (label source and split key included) is clean data too.
    code, out, err = cli("validate", "--metadata", s3_span2.store, "--data", str(DATA_CSV))
    assert code == 0, out + err

    code, _, err = cli("validate", "--metadata", s3_span2.store, "--data", str(tmp_path / "nothing-here"))
    assert code == 2 and "no .csv or .jsonl files" in err


def test_report_renders_in_a_browser_with_every_section(s3_span2, cli, browser, tmp_path):
    serving = tmp_path / "serving.csv"
    span_rows(5).drop(columns=["tips"]).iloc[:1000].to_csv(serving, index=False)
    page = tmp_path / "report.html"
    code, _, err = cli("report", "--metadata", s3_span2.store, "--output", str(page), "--serving-data", str(serving))
    assert code == 0, err
    dom, screenshot = browser(page)
    for section in html_report.SECTIONS:
        assert f'id="{section}"' in dom, section
    # The verdict comes first: gate, blessing, pushed version, metrics against the threshold and
    # the baseline (span 2's model was evaluated against span 1's).
    assert dom.index('id="verdict"') < dom.index('id="gate"') < dom.index('id="statistics"')
    verdict = dom[dom.index('id="verdict"') : dom.index('id="gate"')]
    assert "passed" in verdict and "blessed" in verdict and os.path.basename(s3_span2.summary["pushed_model"]) in verdict
    assert "min 0.85" in verdict and "baseline 0." in verdict  # the story's THRESHOLDS
    assert "Against span 1" in dom  # drift
    assert "payment_type" in dom and "L_infinity" in dom
    # Distributions: train and eval overlaid, with axes; a long tail on a log scale.
    assert dom.count('aria-label="train and eval distributions"') >= 10 and "log scale" in dom
    # A feature with no value at all is marked (pickup_census_tract is empty in this data).
    assert "all missing" in dom and 'class="flag"' in dom
    # Slices in natural order, n/a where a metric is undefined (a one-class slice's AUC).
    evaluation = dom[dom.index('id="evaluation"') :]
    assert evaluation.index("trip_start_hour=2<") < evaluation.index("trip_start_hour=10<")
    assert "n/a" in evaluation and "nan" not in evaluation and "baseline AUC" in evaluation

    # What a person sees: the verdict's pass colour at the top of the page, and both splits'
    # colours in the first screenful of distributions.
    from PIL import Image

    image = Image.open(screenshot).convert("RGB")
    top = set(image.crop((0, 0, image.width, 160)).getdata())
    assert (0xE6, 0xF4, 0xEA) in top  # a passing card's background
    charts = image.crop((image.width // 2, 250, image.width, 1400))
    colours = set(charts.getdata())

    def near(rgb, target, tol=40):
        return any(all(abs(a - b) <= tol for a, b in zip(c, target)) for c in rgb)

    assert near(colours, (0x3B, 0x6F, 0xC4)) and near(colours, (0xE8, 0x83, 0x3A))  # train, eval
