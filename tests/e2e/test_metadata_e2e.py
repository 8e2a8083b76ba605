"""runner.py's metadata commands on stores written by real pipeline runs: the story's SQLite
store after span 2 (three runs), a real MariaDB server, and a store shared with another
pipeline."""

from __future__ import annotations

import json
import shutil

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from helpers import write_span
from ops.queries import open_metadata
from pipeline import lineage
from pipeline import pipeline as P
from pipeline.stores import open_store

# The story of pipeline runs is built once, in one worker: its tests go there.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("story")]


@pytest.fixture
def cli_json(cli):
    def call(*argv):
        code, out, err = cli(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    return call


@pytest.fixture
def history(s3_span2, s1_first, s2_rerun):
    """(store URI, run summaries in run order) of the story after span 2."""
    return s3_span2.store, [s1_first.summary, s2_rerun.summary, s3_span2.summary]


def test_runs_newest_first_with_states_and_pushes(history, cli, cli_json):
    uri, summaries = history
    runs = cli_json("runs", "--metadata", uri)
    assert [r["run_id"] for r in runs] == [s["run_id"] for s in reversed(summaries)]
    for r, s in zip(runs, reversed(summaries)):
        assert r["components"] == s["components"]
        assert r["status"] == "complete"
        pushed = s["pushed_model"]
        assert r["pushed_version"] == (pushed.rsplit("/", 1)[-1] if pushed else None)


def test_runs_table_matches_json(history, cli, cli_json):
    uri, _ = history
    runs = cli_json("runs", "--metadata", uri)
    code, table, _ = cli("runs", "--metadata", uri)
    assert code == 0
    lines = table.splitlines()[2:]
    assert len(lines) == len(runs)
    for line, r in zip(lines, runs):
        assert line.startswith(r["run_id"])
        assert r["status"] in line and (r["pushed_version"] or "-") in line


def test_runs_table_shows_which_components_were_cached(history, cli):
    uri, summaries = history
    code, table, _ = cli("runs", "--metadata", uri)
    rerun = next(line for line in table.splitlines() if line.startswith(summaries[1]["run_id"]))
    assert "cached: " in rerun and P.TRAINER in rerun


def test_artifacts_filters(history, cli, cli_json):
    uri, summaries = history
    models = cli_json("artifacts", "--metadata", uri, "--type", "Model")
    assert models and all(a["type"] == "Model" and a["component"] == P.TRAINER for a in models)
    first_run = summaries[0]["run_id"]
    in_run = cli_json("artifacts", "--metadata", uri, "--run", first_run)
    assert {a["run_id"] for a in in_run} == {first_run}
    assert {"Examples", "Schema", "TransformGraph", "Model", "ModelBlessing", "PushedModel"} <= {a["type"] for a in in_run}
    examples = cli_json("artifacts", "--metadata", uri, "--component", P.EXAMPLE_GEN)
    assert [e["properties"]["span"] for e in examples] == [2, 1]  # newest first
    assert examples[0]["properties"]["split_names"] == ["train", "eval"]


def test_lineage_from_the_pushed_model_reaches_its_examples_and_schema(history, cli, cli_json):
    uri, summaries = history
    version = summaries[0]["pushed_model"].rsplit("/", 1)[-1]
    tree = cli_json("lineage", "--metadata", uri, version)
    md = open_metadata(uri, "taxi-big-tipper")
    run = md.run(summaries[0]["run_id"])
    examples, schema = run.output(P.EXAMPLE_GEN, "examples"), run.output(P.SCHEMA_IMPORTER, "schema")
    graph, model = run.output(P.TRANSFORM, "transform_graph"), run.output(P.TRAINER, "model")

    found, executions = {}, {}

    def walk(node):
        found.setdefault(node["type"], set()).add(node["id"])
        if "produced_by" in node:
            e = node["produced_by"]["execution"]
            executions[e["component"]] = e
            for nodes in node["produced_by"]["inputs"].values():
                for n in nodes:
                    walk(n)
        for d in node.get("described_by", []):
            found.setdefault(d["type"], set()).add(d["id"])

    walk(tree)
    assert tree["type"] == "PushedModel" and tree["properties"]["pushed_version"] == version
    assert found["Examples"] >= {examples.id}
    assert found["Schema"] == {schema.id}
    assert found["TransformGraph"] == {graph.id}
    assert found["Model"] == {model.id}
    assert "ModelBlessing" in found and "ExampleStatistics" in found
    assert executions[P.TRAINER]["hparams"]["learning_rate"] == 0.002
    assert executions[P.EXAMPLE_GEN]["input_base"].endswith("data")
    code, text, _ = cli("lineage", "--metadata", uri, version)
    assert code == 0 and f"Examples #{examples.id}" in text and "hyperparameters:" in text


def test_lineage_downstream_of_examples(history, cli, cli_json):
    uri, summaries = history
    md = open_metadata(uri, "taxi-big-tipper")
    examples = md.run(summaries[0]["run_id"]).output(P.EXAMPLE_GEN, "examples")
    tree = cli_json("lineage", "--metadata", uri, str(examples.id), "--downstream")
    consumers = {c["execution"]["component"] for c in tree["consumed_by"]}
    assert {P.STATISTICS_GEN, P.TRANSFORM, P.EVALUATOR} <= consumers


def test_compare_defaults_to_serving_model_and_predecessor(history, cli, cli_json):
    uri, summaries = history
    result = cli_json("compare", "--metadata", uri)
    pushed = cli_json("artifacts", "--metadata", uri, "--type", "PushedModel")  # newest first
    assert result["a"]["artifact"]["id"] == pushed[0]["id"]
    assert result["b"]["artifact"]["id"] == pushed[1]["id"]
    assert result["a"]["artifact"]["properties"]["pushed_destination"] == summaries[-1]["pushed_model"]
    # B is the first run's model (on SQLite re-pushed by the unchanged re-run, whose baseline
    # was that same model): same model, same data, same evaluation.
    md = open_metadata(uri, "taxi-big-tipper")
    assert result["b"]["model_id"] == md.run(summaries[0]["run_id"]).output(P.TRAINER, "model").id
    assert result["a"]["metrics"]["overall"]["auc"] == pytest.approx(summaries[-1]["metrics"]["auc"])
    assert result["b"]["metrics"]["overall"]["auc"] == pytest.approx(summaries[0]["metrics"]["auc"])
    assert "payment_type=Credit Card" in result["a"]["metrics"]
    # A trained on the window {span 2, span 1} with another learning rate, warm-started from B.
    assert result["differences"]["hparams.learning_rate"] == [0.001, 0.002]
    assert "trainer.examples" in result["differences"] and "trainer.transform_graph" in result["differences"]
    assert result["differences"]["trainer.warm_start"] == [result["b"]["model_id"], None]
    assert result["differences"]["spans"] == [[1, 2], [1]]
    code, text, _ = cli("compare", "--metadata", uri)
    assert code == 0 and "hparams.learning_rate" in text and "payment_type=Credit Card" in text
    # --slice keeps the slices asked for: "overall", a feature's slices, or FEATURE=VALUE.
    only = cli_json("compare", "--metadata", uri, "--slice", "overall", "--slice", "payment_type")
    payment = {s for s in result["a"]["metrics"] if s.startswith("payment_type=")}
    assert len(payment) > 1 and set(only["a"]["metrics"]) == {"overall"} | payment
    assert set(cli_json("compare", "--metadata", uri, "--slice", "payment_type=Cash")["b"]["metrics"]) == {"payment_type=Cash"}
    code, _, err = cli("compare", "--metadata", uri, "--slice", "colour")
    assert code == 2 and "--slice 'colour': no such slice (overall, or one of: " in err


def test_evaluations_read_without_tfma_match_tfma(history):
    """`compare` reads TFMA's metrics file itself (no TFMA import): the same values per slice."""
    import tensorflow_model_analysis as tfma

    from ops.evaluation import sliced_metrics

    uri, summaries = history
    md = open_metadata(uri, "taxi-big-tipper")
    evaluation = md.run(summaries[-1]["run_id"]).output(P.EVALUATOR, "evaluation")
    ours = sliced_metrics(evaluation.uri)
    theirs = {}
    for metrics in tfma.load_metrics(evaluation.uri):
        key = tfma.slicer.deserialize_slice_key(metrics.slice_key)
        name = ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in key) or "overall"
        theirs[name] = {
            kv.key.name: kv.value.double_value.value
            for kv in metrics.metric_keys_and_values
            if kv.key.model_name in ("", "candidate") and not kv.key.is_diff and kv.value.HasField("double_value")
        }
    assert set(ours) == set(theirs) and len(ours) > 10
    for name, metrics in ours.items():  # NaN where undefined (a one-class slice's precision)
        assert metrics == pytest.approx(theirs[name], nan_ok=True), name


@pytest.mark.parametrize(
    "argv, message",
    [
        (["lineage", "999999"], "error: no artifact or pushed model version '999999'"),
        (["compare", "424242", "1"], "error: no artifact or pushed model version '424242'"),
        (["artifacts", "--run", "no-such-run"], "error: no run 'no-such-run'"),
        (["runs", "--pipeline-name", "other"], "error: no runs of pipeline 'other'"),
    ],
)
def test_bad_ids_fail_cleanly(history, cli, argv, message):
    uri, _ = history
    code, out, err = cli(*argv, "--metadata", uri)
    assert code == 2 and out == ""
    assert err.strip().startswith(message) and len(err.strip().splitlines()) == 1


def test_missing_store_and_unreachable_server_fail_cleanly(tmp_path, cli):
    code, _, err = cli("runs", "--metadata", str(tmp_path / "none.sqlite"))
    assert code == 2 and err.strip() == f"error: no metadata store at {tmp_path / 'none.sqlite'} (run the pipeline first)"
    assert not (tmp_path / "none.sqlite").exists()


def _add_other_pipelines_push(uri: str, version: str) -> int:
    """Records, in the same store, a newer pushed model of another pipeline (as a shared MySQL
    store holds): a context of its own, a Model, and a PushedModel attributed to it."""
    db = open_store(uri, read_only=False)
    ctx = pb.Context(type_id=db.get_context_type("pipeline").id, name="other-pipeline")
    run = pb.Context(type_id=db.get_context_type("pipeline_run").id, name="other-pipeline-run-1")
    model = pb.Artifact(type_id=db.get_artifact_type("Model").id, uri="/elsewhere/model", state=pb.Artifact.LIVE)
    pushed = pb.Artifact(
        type_id=db.get_artifact_type("PushedModel").id, uri=f"/elsewhere/serving/{version}", state=pb.Artifact.LIVE
    )
    pushed.custom_properties["pushed"].int_value = 1
    pushed.custom_properties["pushed_version"].string_value = version
    pushed.custom_properties["pushed_destination"].string_value = f"/elsewhere/serving/{version}"
    execution = pb.Execution(type_id=db.get_execution_types()[0].id, last_known_state=pb.Execution.COMPLETE)

    def event(kind, key):
        e = pb.Event(type=kind)
        e.path.steps.add().key = key
        return e

    _, [_, pushed_id], _ = db.put_execution(
        execution, [(model, event(pb.Event.INPUT, "model")), (pushed, event(pb.Event.OUTPUT, "pushed_model"))], [ctx, run]
    )
    return pushed_id


def test_a_store_shared_with_another_pipeline_answers_for_this_pipeline_only(history, cli, cli_json, tmp_path):
    uri, summaries = history
    shared = str(tmp_path / "shared.sqlite")
    shutil.copy(uri, shared)
    other_id = _add_other_pipelines_push(shared, "9999999999")
    ours = summaries[-1]["pushed_model"].rsplit("/", 1)[-1]
    # The other pipeline's push is newer, and it is not ours to compare, show or serve.
    assert cli_json("compare", "--metadata", shared)["a"]["artifact"]["properties"]["pushed_version"] == ours
    for ref in ("9999999999", str(other_id)):
        code, _, err = cli("lineage", "--metadata", shared, ref)
        assert code == 2 and "of pipeline 'taxi-big-tipper'" in err
    md = open_metadata(shared, "taxi-big-tipper")
    assert [lineage.pushed_version(a) for a in md.pushed_models()][0] == ours
    assert "9999999999" not in {lineage.pushed_version(a) for a in md.pushed_models()}


@pytest.mark.xdist_group("mariadb")
def test_the_queries_work_on_a_mariadb_store_and_the_password_is_never_printed(mariadb, tmp_path, cli_json):
    """The pipeline against a real MariaDB server, from the CLI with --verbose and the password
    in the environment rather than the URI: the run is recorded, the queries read it back, and
    the password appears in no line of its output (TFX logs its whole connection config)."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    password = mariadb.split(":")[2].split("@")[0]
    bare = mariadb.replace(f":{password}@", "@")
    data = write_span(tmp_path / "data", 1)
    argv = [
        sys.executable,
        str(ROOT / "runner.py"),
        "run",
        "--verbose",
        "--json",
        "--data",
        data,
        "--output",
        str(tmp_path / "out"),
    ]
    argv += ["--metadata", bare, "--train-steps", "50"]
    env = dict(os.environ, PIPELINE_METADATA_PASSWORD=password, TF_USE_LEGACY_KERAS="1")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Using connection config" in done.stderr  # TFX's own line, redacted
    leaked = [line for line in (done.stdout + done.stderr).splitlines() if password in line]
    assert not leaked and 'password: "***"' in done.stderr, leaked
    summary = json.loads(done.stdout)
    assert summary["status"] == "complete" and summary["metadata"] == bare
    [run] = cli_json("runs", "--metadata", mariadb)
    assert run["run_id"] == summary["run_id"] and run["components"] == summary["components"]
    models = cli_json("artifacts", "--metadata", mariadb, "--type", "Model")
    assert [m["component"] for m in models] == [P.TRAINER]
    tree = cli_json("lineage", "--metadata", mariadb, str(models[0]["id"]))
    assert tree["produced_by"]["execution"]["component"] == P.TRAINER
    assert {"examples", "transform_graph", "schema"} <= set(tree["produced_by"]["inputs"])


@pytest.mark.parametrize("command", ["runs", "lineage served", "artifacts", "report", "rollback", "validate --data x.csv", "run"])
@pytest.mark.parametrize(
    "uri, message",
    [
        (
            "mysql://nobody:secret@127.0.0.1:9/mlmd",
            "error: cannot open the metadata store mysql://nobody@127.0.0.1:9/mlmd: cannot reach",
        ),
        (
            "mysql://nobody:secret@127.0.0.1:port/mlmd",
            "error: metadata URI mysql://nobody@127.0.0.1:port/mlmd: the port is not a number",
        ),
    ],
)
def test_an_unreachable_or_malformed_store_is_one_line_and_exit_2_in_every_command(cli, tmp_path, command, uri, message):
    code, out, err = cli(*command.split(), "--metadata", uri, *(["--output", str(tmp_path / "o")] if command == "run" else []))
    assert code == 2 and out == ""
    assert err.strip().startswith(message) and len(err.strip().splitlines()) == 1, err
    assert "secret" not in err
