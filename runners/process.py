"""How a pipeline command's process ends.

Once TensorFlow, TFX and Beam are loaded, a normal interpreter exit spends ~2 s after the work
is done tearing the interpreter down: freeing ~9,000 modules and running TensorFlow's C++
destructors (3.0 s, against 0.08 s without the teardown: `bench/exit_bench.py`,
bench/EXIT.md). `exit` ends such a process without that teardown, after
doing what a normal exit does that anyone can observe: waiting for the threads that are not
daemons, running the exit handlers (logging's flush, temporary folders) and flushing stdout
and stderr. A process that never loaded TensorFlow exits normally (it has nothing to save).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit(code: int | None) -> NoReturn:  # noqa: A001 - sys.exit's counterpart
    """`sys.exit(code)`, without the interpreter's teardown when TensorFlow is loaded."""
    code = 0 if code is None else code
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if "tensorflow" not in sys.modules or others:  # a thread a normal exit would wait for
        sys.exit(code)
    try:
        atexit._run_exitfuncs()  # what a normal exit runs
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken pipe: as a normal exit ignores it
                pass
    os._exit(code)
