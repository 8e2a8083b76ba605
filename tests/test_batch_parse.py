"""Batch prediction's CSV chunk parser (serving/batch.py): the fast path (pandas' C parser
for plain chunks) and the line-by-line path give the same rows, keys and dead letters, with
the file's line numbers."""

import csv
import io

import numpy as np
import pytest
import tensorflow as tf

from modules.contract import RowContract
from serving import batch

HEADER = ["company", "fare", "trip_start_hour", "tips"]
DTYPES = {"company": tf.string, "fare": tf.float32, "trip_start_hour": tf.int64}
CONTRACT = RowContract.for_model(DTYPES, {"trip_start_hour": (0, 23)})
KEYS = ["company", "fare", "trip_start_hour"]


def parse(text: str, first_line: int = 2):
    lines = io.StringIO(text).readlines()
    return batch.parse_csv_lines(lines, first_line, HEADER, CONTRACT, DTYPES, KEYS, "in.csv")


def dead_letters(dead) -> list[tuple[int, str]]:
    return [(d.value["line"], d.value["reason"]) for d in dead]


@pytest.mark.parametrize("quoted", [False, True], ids=["plain chunk (C parser)", "a quoted line (line by line)"])
def test_rows_keys_and_line_numbers(quoted):
    first = '"Taxi, Inc.",12.5,3,1\n' if quoted else "Taxi Inc.,12.5,3,1\n"
    text = first + "\nFlash Cab,,23,0\r\nFlash Cab,7,24,0\n"
    rows, dead = parse(text, first_line=10)
    assert dead_letters(dead) == [(13, "feature 'trip_start_hour' is 24, outside the schema's domain [0, 23]")]
    assert rows.file == "in.csv" and len(rows) == 2
    company = "Taxi, Inc." if quoted else "Taxi Inc."
    # Keys are CSV: a comma inside a value keeps its quotes.
    assert [next(csv.reader([k])) for k in rows.keys] == [[company, "12.5", "3"], ["Flash Cab", "", "23"]]
    np.testing.assert_array_equal(rows.rows.columns["trip_start_hour"], [3, 23])
    assert rows.rows.columns["company"].tolist() == [company, "Flash Cab"]
    fare = rows.rows.columns["fare"]
    assert fare.dtype == np.float32 and fare[0] == 12.5 and np.isnan(fare[1])  # empty: missing


def test_a_ragged_or_unreadable_line_is_a_dead_letter_and_the_rest_is_scored():
    rows, dead = parse('Flash Cab,7,2,0\nFlash Cab,7,2\n"open quote,7,2,0\nFlash Cab,n/a,2,0\n')
    assert dead_letters(dead) == [
        (3, "expected 4 columns, got 3"),
        (4, "expected 4 columns, got 1"),
        (5, "feature 'fare' must be a number or null, got 'n/a'"),
    ]
    assert rows.keys == ["Flash Cab,7,2"]


def test_blank_chunk_and_all_refused_chunk():
    assert parse("\n\n") == (None, [])
    rows, dead = parse("Flash Cab,7,99,0\n")
    assert rows is None and dead_letters(dead) == [(2, "feature 'trip_start_hour' is 99, outside the schema's domain [0, 23]")]


CHUNKS = {
    "plain numbers": "Flash Cab,7,2,0\nTaxi Inc.,,23,1\nFlash Cab,1e3,0,0\n",
    "text in a number": "Flash Cab,7,2,0\nFlash Cab,n/a,2,0\n",
    "nan and inf": "Flash Cab,nan,2,0\nFlash Cab,inf,2,0\nFlash Cab,7,-inf,0\n",
    "a space": "Flash Cab, ,2,0\nFlash Cab,7, 3,0\n",
    "beyond 2**53": "Flash Cab,7,9223372036854775807,0\nFlash Cab,7,9223372036854775808,0\n",
    "a fraction in an integer": "Flash Cab,7,2.5,0\n",
}


@pytest.mark.parametrize("text", CHUNKS.values(), ids=CHUNKS.keys())
def test_numbers_parsed_straight_to_floats_are_checked_as_text_would_be(text, monkeypatch):
    """Plain chunks' numbers go straight to float64 (pandas' C parser); a chunk it refuses, or
    with values beyond 2**53, is read as text. Either way: the same rows and messages."""
    fast_rows, fast_dead = parse(text)
    monkeypatch.setattr(batch, "_plain_numbers", lambda *args: None)
    text_rows, text_dead = parse(text)
    assert dead_letters(fast_dead) == dead_letters(text_dead)
    assert (fast_rows is None) == (text_rows is None)
    if fast_rows is not None:
        assert fast_rows.keys == text_rows.keys
        for name, column in text_rows.rows.columns.items():
            np.testing.assert_array_equal(fast_rows.rows.columns[name], column)


def test_the_first_problem_named_does_not_depend_on_the_signatures_order():
    """A row with several problems names the same one whichever order the model's inputs came
    in (REST reads them from the loaded signature, batch from saved_model.pb)."""
    forward = RowContract.for_model(DTYPES, {"trip_start_hour": (0, 23)})
    backward = RowContract.for_model(dict(reversed(DTYPES.items())), {"trip_start_hour": (0, 23)})
    line = ["Flash Cab,twelve,99,0\n"]
    messages = [dead_letters(batch.parse_csv_lines(line, 2, HEADER, c, DTYPES, KEYS, "in.csv")[1]) for c in (forward, backward)]
    assert messages[0] == messages[1] == [(2, "feature 'fare' must be a number or null, got 'twelve'")]


@pytest.mark.parametrize("keys", [HEADER, HEADER[:3], HEADER[:2], HEADER[1:3], []], ids=str)
def test_keys_cut_from_the_line_equal_keys_joined_from_the_cells(keys):
    """Keys that are the header's first columns are the start of each plain line; any other
    choice is joined from the parsed cells; quoted lines go through the csv module."""
    text = "Taxi Inc.,12.5,3,1\nFlash Cab,,23,0\nFlash Cab,7,99,0\n"
    rows, _ = batch.parse_csv_lines(io.StringIO(text).readlines(), 2, HEADER, CONTRACT, DTYPES, keys, "in.csv")
    quoted, _ = batch.parse_csv_lines(io.StringIO(text + '"x",1,1,1\n').readlines(), 2, HEADER, CONTRACT, DTYPES, keys, "in.csv")
    want = [",".join(line.split(",")[HEADER.index(k)] for k in keys) for line in text.splitlines()[:2]]
    assert rows.keys == want and quoted.keys[:2] == want
