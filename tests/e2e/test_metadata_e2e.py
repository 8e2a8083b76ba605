"""runner.py's metadata commands on stores written by real pipeline runs: SQLite (three runs)
and a real MariaDB server (two runs)."""

from __future__ import annotations

import json

import pytest

import runner
from pipeline import metadata
from pipeline import pipeline as P

pytestmark = pytest.mark.e2e


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = runner.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_json(capsys, *argv):
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(params=["sqlite", "mariadb"])
def history(request):
    """(store URI, run summaries in run order) for each kind of store."""
    if request.param == "sqlite":
        cfg, summaries = request.getfixturevalue("sqlite_history")
    else:
        cfg, summaries = request.getfixturevalue("mariadb_history")
    return cfg.metadata_uri, summaries


def test_runs_newest_first_with_states_and_pushes(history, capsys):
    uri, summaries = history
    runs = cli_json(capsys, "runs", "--metadata", uri)
    assert [r["run_id"] for r in runs] == [s["run_id"] for s in reversed(summaries)]
    for r, s in zip(runs, reversed(summaries)):
        assert r["components"] == s["components"]
        assert r["status"] == "complete"
        pushed = s["pushed_model"]
        assert r["pushed_version"] == (pushed.rsplit("/", 1)[-1] if pushed else None)


def test_runs_table_matches_json(history, capsys):
    uri, _ = history
    runs = cli_json(capsys, "runs", "--metadata", uri)
    code, table, _ = cli(capsys, "runs", "--metadata", uri)
    assert code == 0
    lines = table.splitlines()[2:]
    assert len(lines) == len(runs)
    for line, r in zip(lines, runs):
        assert line.startswith(r["run_id"])
        assert r["status"] in line and (r["pushed_version"] or "-") in line


def test_unchanged_rerun_shows_cached_components(sqlite_history, capsys):
    cfg, summaries = sqlite_history
    rerun = next(r for r in cli_json(capsys, "runs", "--metadata", cfg.metadata_uri) if r["run_id"] == summaries[1]["run_id"])
    for component in (P.EXAMPLE_GEN, P.STATISTICS_GEN, P.TRANSFORM, P.TRAINER):
        assert rerun["components"][component] == "cached"
    code, table, _ = cli(capsys, "runs", "--metadata", cfg.metadata_uri)
    assert "cached: " in next(line for line in table.splitlines() if line.startswith(summaries[1]["run_id"]))


def test_artifacts_filters(history, capsys):
    uri, summaries = history
    models = cli_json(capsys, "artifacts", "--metadata", uri, "--type", "Model")
    assert models and all(a["type"] == "Model" and a["component"] == P.TRAINER for a in models)
    first_run = summaries[0]["run_id"]
    in_run = cli_json(capsys, "artifacts", "--metadata", uri, "--run", first_run)
    assert {a["run_id"] for a in in_run} == {first_run}
    assert {"Examples", "Schema", "TransformGraph", "Model", "ModelBlessing", "PushedModel"} <= {a["type"] for a in in_run}
    examples = cli_json(capsys, "artifacts", "--metadata", uri, "--component", P.EXAMPLE_GEN)
    assert examples[0]["properties"]["span"] == 0
    assert examples[0]["properties"]["split_names"] == ["train", "eval"]


def test_lineage_from_the_pushed_model_reaches_its_examples_and_schema(history, capsys):
    uri, summaries = history
    version = summaries[0]["pushed_model"].rsplit("/", 1)[-1]
    tree = cli_json(capsys, "lineage", "--metadata", uri, version)
    store = metadata.open_store(uri)
    md = metadata.Metadata(store, "taxi-big-tipper")
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
    code, text, _ = cli(capsys, "lineage", "--metadata", uri, version)
    assert code == 0 and f"Examples #{examples.id}" in text and "hyperparameters:" in text


def test_lineage_downstream_of_examples(history, capsys):
    uri, summaries = history
    md = metadata.Metadata(metadata.open_store(uri), "taxi-big-tipper")
    examples = md.run(summaries[0]["run_id"]).output(P.EXAMPLE_GEN, "examples")
    tree = cli_json(capsys, "lineage", "--metadata", uri, str(examples.id), "--downstream")
    consumers = {c["execution"]["component"] for c in tree["consumed_by"]}
    assert {P.STATISTICS_GEN, P.TRANSFORM, P.EVALUATOR} <= consumers


def test_compare_defaults_to_serving_model_and_predecessor(history, capsys):
    uri, summaries = history
    result = cli_json(capsys, "compare", "--metadata", uri)
    pushed = cli_json(capsys, "artifacts", "--metadata", uri, "--type", "PushedModel")  # newest first
    assert result["a"]["artifact"]["id"] == pushed[0]["id"]
    assert result["b"]["artifact"]["id"] == pushed[1]["id"]
    assert result["a"]["artifact"]["properties"]["pushed_destination"] == summaries[-1]["pushed_model"]
    # B is the first run's model (on SQLite re-pushed by the unchanged re-run, whose baseline
    # was that same model): same model, same data, same evaluation.
    md = metadata.Metadata(metadata.open_store(uri), "taxi-big-tipper")
    assert result["b"]["model_id"] == md.run(summaries[0]["run_id"]).output(P.TRAINER, "model").id
    assert result["a"]["metrics"]["overall"]["auc"] == pytest.approx(summaries[-1]["metrics"]["auc"])
    assert result["b"]["metrics"]["overall"]["auc"] == pytest.approx(summaries[0]["metrics"]["auc"])
    assert "payment_type=Credit Card" in result["a"]["metrics"]
    # Same data and schema; other hyperparameters, hence another model and evaluation.
    assert result["differences"]["hparams.learning_rate"] == [0.001, 0.002]
    assert "example_gen.examples" not in result["differences"]
    code, text, _ = cli(capsys, "compare", "--metadata", uri)
    assert code == 0 and "hparams.learning_rate" in text and "payment_type=Credit Card" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["lineage", "999999"], "error: no artifact or pushed model version '999999'"),
        (["compare", "424242", "1"], "error: no artifact or pushed model version '424242'"),
        (["artifacts", "--run", "no-such-run"], "error: no run 'no-such-run'"),
        (["runs", "--pipeline-name", "other"], "error: no runs of pipeline 'other'"),
    ],
)
def test_bad_ids_fail_cleanly(sqlite_history, capsys, argv, message):
    cfg, _ = sqlite_history
    code, out, err = cli(capsys, *argv, "--metadata", cfg.metadata_uri)
    assert code == 2 and out == ""
    assert err.strip().startswith(message) and len(err.strip().splitlines()) == 1


def test_missing_store_and_unreachable_server_fail_cleanly(tmp_path, capsys):
    code, _, err = cli(capsys, "runs", "--metadata", str(tmp_path / "none.sqlite"))
    assert code == 2 and err.strip() == f"error: no metadata store at {tmp_path / 'none.sqlite'} (run the pipeline first)"
    assert not (tmp_path / "none.sqlite").exists()
    code, _, err = cli(capsys, "runs", "--metadata", "mysql://nobody:secret@127.0.0.1:9/mlmd")
    assert code == 2
    assert err.startswith("error: cannot open the metadata store mysql://nobody:***@127.0.0.1:9/mlmd")
    assert "secret" not in err and len(err.strip().splitlines()) == 1
