"""What the benchmark scripts share: a component's wall time from ML Metadata, and writing
the results page."""

from __future__ import annotations


def execution_seconds(md, run, component: str) -> float:
    """Wall time of `component` in `run` (ops.queries RunInfo), from its MLMD execution."""
    execution = md.store.get_executions_by_id([run.components[component].execution_id])[0]
    return round((execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000, 1)


def write_page(path: str, lines: list[str]) -> None:
    """Writes the results page and prints it."""
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
