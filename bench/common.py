"""What the benchmark scripts share: a component's wall time from ML Metadata, and writing
the results page."""

from __future__ import annotations


def execution_seconds(md, run, component: str) -> float:
    """Wall time of `component` in `run` (ops.queries RunInfo), from its recorded execution."""
    execution = md.graph.executions[str(run.components[component].execution_id)]
    return round((execution.updated_ms - execution.created_ms) / 1000, 1)


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
