"""How a pipeline command's process ends (runners/process.py): without the interpreter's
teardown once TensorFlow is loaded, and with everything a normal exit does that can be seen."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT

SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys, threading, time, types

    from runners import process

    out = sys.argv[1]
    if sys.argv[2] == "tf":  # what `process.exit` looks for (importing TensorFlow takes seconds)
        sys.modules["tensorflow"] = types.ModuleType("tensorflow")

    class Collected:  # freed by the interpreter's teardown, not by os._exit
        def __del__(self, fd=os.open(out + ".teardown", os.O_WRONLY | os.O_CREAT), write=os.write):
            write(fd, b"freed")

    kept = Collected()
    atexit.register(lambda: open(out + ".atexit", "w").close())
    if sys.argv[3] == "thread":
        def late():
            time.sleep(0.5)
            open(out + ".thread", "w").close()
        threading.Thread(target=late).start()
    sys.stdout.write("buffered, no newline")
    process.exit(int(sys.argv[4]))
    """
)


def run(tmp_path, tf: str, thread: str, code: int) -> tuple[subprocess.CompletedProcess, set[str]]:
    out = tmp_path / "mark"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), tf, thread, str(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return done, {p.suffix[1:] for p in tmp_path.iterdir() if p.stat().st_size or p.suffix != ".teardown"}


@pytest.mark.parametrize("code", [0, 3])
def test_with_tensorflow_the_teardown_is_skipped_and_the_rest_of_an_exit_happens(tmp_path, code):
    done, marks = run(tmp_path, "tf", "no-thread", code)
    assert done.returncode == code, done.stderr
    assert done.stdout == "buffered, no newline"  # flushed
    assert marks == {"atexit"}  # exit handlers ran; the teardown (a global's __del__) did not


def test_a_thread_that_is_not_a_daemon_is_waited_for(tmp_path):
    done, marks = run(tmp_path, "tf", "thread", 0)
    assert done.returncode == 0, done.stderr
    assert {"thread", "atexit"} <= marks  # a normal exit: the thread finished first


def test_without_tensorflow_the_exit_is_a_normal_one(tmp_path):
    done, marks = run(tmp_path, "no-tf", "no-thread", 2)
    assert (done.returncode, done.stdout) == (2, "buffered, no newline")
    assert marks == {"atexit", "teardown"}
