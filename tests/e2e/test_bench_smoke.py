"""The pipeline benchmark at its smallest (1x, no peer, short training), so it cannot rot.

Asserts what the benchmark reports, not how fast: timing claims live in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT
from pipeline import pipeline as P

pytestmark = pytest.mark.e2e

RESOLVERS = {P.BASELINE_RESOLVER, P.WARM_START_RESOLVER, P.SPAN_WINDOW_RESOLVER, P.DRIFT_REFERENCE_RESOLVER}


def test_smoke_benchmark_runs_and_reports_cache_behaviour(tmp_path):
    output = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pipeline_bench.py"), "--smoke", "--output", str(output)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "RESULTS.json").read_text())
    runs = results["reruns"]
    full, unchanged, changed = runs["full"], runs["unchanged"], runs["hparams changed"]
    assert {c["state"] for c in full["components"].values()} == {"ran"}
    assert full["peak_rss_mb"] > 100 and full["pipeline_seconds"] < full["wall_seconds"]
    # Unchanged: every component is a cache hit (resolvers always run; they only query MLMD).
    for name, c in unchanged["components"].items():
        assert c["state"] == ("ran" if name in RESOLVERS else "cached"), name
    # Only the learning rate changed: everything before the Trainer is reused.
    before_trainer = {P.EXAMPLE_GEN, P.STATISTICS_GEN, P.SCHEMA_GEN, P.SCHEMA_IMPORTER, P.EXAMPLE_VALIDATOR, P.DATA_GATE, P.TRANSFORM}
    for name in before_trainer:
        assert changed["components"][name]["state"] == "cached", name
    for name in (P.TRAINER, P.EVALUATOR):
        assert changed["components"][name]["state"] == "ran", name
    report = output.read_text()
    assert "## Re-runs (ours)" in report and "| unchanged |" in report and "| trainer |" in report


def test_transform_bench_reruns_the_runs_transform_in_both_modes(sample_run):
    cfg, _ = sample_run
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "transform_bench.py"), "--run-output", os.path.dirname(cfg.metadata_uri), "--repeat", "1"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| tf")]
    assert [r[0].strip() for r in rows] == ["tf2", "tf1_compat"]
    assert all(float(r[1]) > 0 for r in rows)
