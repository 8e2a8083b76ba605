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
