"""CsvExampleGen, refusing files it would crash on, with the data gate's table instead.

TFX's CsvExampleGen reads a file line by line with the header's columns; a file with another
delimiter, rows of another width, an unterminated quote or bytes that are not UTF-8 ends in a
Beam traceback that names neither the file nor the cause. This executor reads each file of
the span first (a stream, a line at a time) and raises the gate's DataValidationError, one row
per problem naming the file and the first line, before Beam starts: exit 3 with the table,
on every runner, like any rejected span.

What the parser can read but the schema does not allow (a missing column, text in a number
column) is not refused here: TFDV and the data gate name it, as they always have.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from pipeline import beam_speed
from pipeline.errors import DataValidationError

FILE = "(file)"
UNREADABLE_CSV = "UNREADABLE_CSV"
WRONG_DELIMITER = "WRONG_DELIMITER"
RAGGED_ROWS = "RAGGED_ROWS"
NOT_UTF8 = "NOT_UTF8"
EMPTY_FILE = "EMPTY_FILE"
OTHER_DELIMITERS = (";", "\t", "|")


def _row(path: str, kind: str, description: str) -> dict[str, str]:
    return {"split": "-", "feature": FILE, "kind": kind, "description": f"{os.path.basename(path)}: {description}"}


def file_problems(path: str, read=None) -> list[dict[str, str]]:
    """What would stop CsvExampleGen in one file: no bytes, not UTF-8, one column where the
    header is delimited by something else than a comma, rows with another number of fields
    than the header (counted, first one named), a line the CSV reader cannot read."""
    if read is None:

        def read(p: str) -> bytes:
            with fileio.open(p, "rb") as f:
                return f.read()

    data = read(path)
    if not data.strip():
        return [_row(path, EMPTY_FILE, "no bytes, not even a header row")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return [_row(path, NOT_UTF8, f"line {line} is not UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8")]
    lines = io.StringIO(text, newline="")
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except csv.Error as e:
        return [_row(path, UNREADABLE_CSV, f"line 1: {e}")]
    if len(header) == 1:
        others = [d for d in OTHER_DELIMITERS if d in header[0]]
        if others:
            shown = {"\t": "tab"}.get(others[0], others[0])
            return [
                _row(
                    path,
                    WRONG_DELIMITER,
                    f"the header is one column {header[0][:60]!r}: the file looks {shown}-delimited; "
                    "the pipeline reads comma-separated files",
                )
            ]
    width = len(header)
    ragged: dict[int, int] = {}
    first: dict[int, int] = {}
    try:
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) != width:
                ragged[len(row)] = ragged.get(len(row), 0) + 1
                first.setdefault(len(row), reader.line_num)
    except csv.Error as e:
        return [_row(path, UNREADABLE_CSV, f"line {reader.line_num}: {e} (an unterminated quote?)")]
    problems = []
    for fields, count in sorted(ragged.items()):
        problems.append(
            _row(
                path,
                RAGGED_ROWS,
                f"{count} row(s) of {fields} fields, the header has {width} (first at line {first[fields]})",
            )
        )
    return problems


def input_files(exec_properties: dict[str, Any]) -> list[str]:
    """The files this execution reads: the input config's patterns (the span resolved by the
    driver) under input_base."""
    config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties["input_config"], config)
    files: list[str] = []
    for split in config.splits:
        pattern = os.path.join(exec_properties["input_base"], split.pattern)
        files += sorted(p for p in fileio.glob(pattern) if not fileio.isdir(p))
    return files


class Executor(csv_executor.Executor):
    """TFX's CsvExampleGen executor, after a check of the files it is given."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        beam_speed.apply()
        rows = []
        for path in input_files(exec_properties):
            rows += file_problems(path)
        if rows:
            span = json.loads(json.dumps(exec_properties.get("span", 0) or 0))
            raise DataValidationError([{"span": span, **row} for row in rows])
        super().Do(input_dict, output_dict, exec_properties)
