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
import itertools
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


class _NotUtf8(Exception):
    def __init__(self, line: int, byte: int):
        self.line, self.byte = line, byte


def _text_lines(raw_lines):
    """The file's lines as text (UTF-8, a byte-order mark dropped), one at a time; _NotUtf8 with
    the line number at the first line that is not UTF-8. A line ends at a newline byte, which
    no multi-byte UTF-8 character contains."""
    for number, raw in enumerate(raw_lines, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise _NotUtf8(number, raw[e.start]) from None


def file_problems(path: str, read_lines=None) -> list[dict[str, str]]:
    """What would stop CsvExampleGen in one file: no bytes, not UTF-8, one column where the
    header is delimited by something else than a comma, rows with another number of fields
    than the header (counted, first one named), a line the CSV reader cannot read. The file
    is read as a stream, a line at a time: no copy of the file in memory."""
    if read_lines is None:
        with fileio.open(path, "rb") as f:
            return _problems(path, f)
    return _problems(path, read_lines(path))


def _problems(path: str, raw_lines) -> list[dict[str, str]]:
    lines = _text_lines(raw_lines)
    try:
        # Blank lines before the header are skipped (a file of blank lines has no bytes that
        # count); line numbers count them.
        skipped, first = 0, None
        for line in lines:
            if line.strip():
                first = line
                break
            skipped += 1
        if first is None:
            return [_row(path, EMPTY_FILE, "no bytes, not even a header row")]
        reader = csv.reader(itertools.chain([first], lines), strict=True)
        try:
            header = next(reader)
        except csv.Error as e:
            return [_row(path, UNREADABLE_CSV, f"line {skipped + 1}: {e}")]
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
        first_at: dict[int, int] = {}
        try:
            for row in reader:
                if not row:
                    continue  # a blank line
                if len(row) != width:
                    ragged[len(row)] = ragged.get(len(row), 0) + 1
                    first_at.setdefault(len(row), skipped + reader.line_num)
        except csv.Error as e:
            return [_row(path, UNREADABLE_CSV, f"line {skipped + reader.line_num}: {e} (an unterminated quote?)")]
    except _NotUtf8 as e:
        return [_row(path, NOT_UTF8, f"line {e.line} is not UTF-8 (byte 0x{e.byte:02x}); save the file as UTF-8")]
    return [
        _row(path, RAGGED_ROWS, f"{count} row(s) of {fields} fields, the header has {width} (first at line {first_at[fields]})")
        for fields, count in sorted(ragged.items())
    ]


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
