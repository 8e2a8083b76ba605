"""What the benchmark scripts share: a component's wall time from ML Metadata, and writing
the results page."""

from __future__ import annotations


def load_tfx() -> None:
    """Imports what `runners.local.run` imports when it starts (TensorFlow, TFX, the pipeline
    definition: 6-10 s), so that a benchmark's "pipeline only" clock, started after this, times
    the run alone, as the peer's does."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: F401

    from pipeline import pipeline  # noqa: F401


def execution_seconds(md, run, component: str) -> float:
    """Wall time of `component` in `run` (ops.queries RunInfo), from its recorded execution."""
    execution = md.graph.executions[str(run.components[component].execution_id)]
    return round((execution.updated_ms - execution.created_ms) / 1000, 1)


def stamp(command: str) -> str:
    """When, how and where a result was measured: the start of a results paragraph."""
    import datetime as dt
    import os
    import platform

    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, `{command}`, {platform.machine()}, {os.cpu_count()} cores"


def replace_section(path: str, header: str, lines: list[str]) -> None:
    """Replaces the section that starts with `header` (a "## " line) in a results page, or adds
    it at the end, keeping every other section."""
    import os

    text = open(path).read() if os.path.exists(path) else ""
    head, found, rest = text.partition(header + "\n")
    tail = rest.split("\n## ", 1)[1] if found and "\n## " in rest else ""
    body = "\n".join([header, *lines]).rstrip() + "\n"
    with open(path, "w") as f:
        f.write(head.rstrip() + "\n\n" + body + (("\n## " + tail) if tail else ""))


def write_page(path: str, lines: list[str]) -> None:
    """Writes the results page and prints it."""
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
