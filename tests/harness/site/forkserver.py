"""Runs the image's `python -m MODULE ARGS` commands in forks of one warm interpreter.

Every task of a compiled spec (and every replica of a CustomJob) is `python -m` one of TFX's
entry points, and each spends ~9 s of its life importing TensorFlow, TFX, TFMA and Beam
before it does anything. This server imports them once, in the image's Python with the tasks'
environment, and runs each command in a fork: the same module run as `__main__`, the same
arguments, environment and working directory, its own process and exit status, its output in
files. Nothing runs in the server itself, which holds one thread (TensorFlow's import starts
none), so the forks are safe; a command that is not `python -m MODULE` runs as a plain
subprocess (see `run`).

  server:  python forkserver.py SOCKET MODULE...    (started by the tests, see `start`)
  client:  run(argv, cwd, env, stdout_path, stderr_path) -> exit status
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback

SOCKET_ENV = "HARNESS_FORKSERVER"


def _recv(conn: socket.socket) -> bytes:
    (size,) = struct.unpack("!I", _exactly(conn, 4))
    return _exactly(conn, size)


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("forkserver connection closed")
        data += chunk
    return data


def _send(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(struct.pack("!I", len(payload)) + payload)


def _child(request: dict) -> int:
    """In the fork: become the command's process and run it."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    module, args = request["module"], request["args"]
    sys.argv = [module, *args]
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to a process
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # what a normal exit runs
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def serve(path: str, modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        request = json.loads(_recv(conn))
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:  # the waiter: forks the command's process, reports its status
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            pid = os.fork()
            if pid == 0:
                conn.close()
                os._exit(_child(request))
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            _send(conn, json.dumps({"returncode": code, "pid": pid}).encode())
            conn.close()
            os._exit(0)
        conn.close()


def start(python: str, socket_path: str, env: dict[str, str], cwd: str, modules: list[str], log: str) -> subprocess.Popen:
    """Starts the server in the image's Python; returns once it has imported `modules`."""
    out = open(log, "w")
    proc = subprocess.Popen(
        [python, __file__, socket_path, *modules], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"forkserver did not start: {open(log).read()[-3000:]}")
    return proc


def module_of(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, args) of a `python -m MODULE ARGS` command, else None."""
    if len(argv) >= 3 and os.path.basename(argv[0]).startswith("python") and argv[1] == "-m":
        return argv[2], argv[3:]
    return None


def run(socket_path: str, argv: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str) -> int:
    """Runs a `python -m MODULE ARGS` command in a fork of the server; its exit status."""
    parsed = module_of(argv)
    if parsed is None:
        with open(stdout, "w") as out, open(stderr, "w") as err:
            return subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=err).returncode
    module, args = parsed
    request = {"module": module, "args": args, "cwd": cwd, "env": dict(env), "stdout": stdout, "stderr": stderr}
    with socket.socket(socket.AF_UNIX) as conn:
        for attempt in range(50):
            try:
                conn.connect(socket_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.1 * (attempt + 1))
        _send(conn, json.dumps(request).encode())
        return int(json.loads(_recv(conn))["returncode"])


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
