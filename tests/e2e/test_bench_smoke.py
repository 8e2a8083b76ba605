"""The benchmarks at their smallest, so they cannot rot.

Asserts what the benchmark reports, not how fast: timing claims live in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT
from pipeline import pipeline as P

pytestmark = pytest.mark.e2e


def test_the_benchmarks_run_and_report(tmp_path):
    """bench/pipeline_bench.py --smoke (3,000 rows, no peer, 100 steps), then
    bench/transform_bench.py on the run it kept: both write what they measure."""
    output, work = tmp_path / "RESULTS.md", tmp_path / "work"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline_bench.py"), "--smoke", "--output", str(output), "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "RESULTS.json").read_text())
    runs = results["reruns"]
    full, unchanged, changed = runs["full"], runs["unchanged"], runs["hparams changed"]
    assert {c["state"] for c in full["components"].values()} == {"ran"}
    assert full["peak_rss_mb"] > 100 and full["pipeline_seconds"] < full["wall_seconds"]
    # What each re-run re-executed, as the report's table shows it (the cache behaviour itself
    # is asserted once, in test_pipeline_e2e).
    assert unchanged["components"][P.TRAINER]["state"] == "cached"
    assert changed["components"][P.TRAINER]["state"] == "ran"
    # The re-run's baseline (the full run's model) was evaluated on the same span: its
    # figures are read from its own evaluation, not computed again.
    assert (full["baseline"], changed["baseline"]) == ("none", "recorded")
    report = output.read_text()
    assert "## Re-runs (ours)" in report and "| unchanged |" in report and "| trainer |" in report
    assert "| hparams changed |" in report and "| recorded |" in report

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "transform_bench.py"), "--run-output", str(work / "ours"), "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| tf")]
    assert [r[0].strip() for r in rows] == ["tf2", "tf1_compat"]
    assert all(float(r[1]) > 0 for r in rows)
    # The pipeline's mode (TF1 graph) transforms as the TF2 mode does: the bench compares them.
    assert "outputs of tf2 and tf1_compat, every split and feature: the same" in done.stdout, done.stdout
