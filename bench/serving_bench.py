#!/usr/bin/env python3
"""Serving benchmark: online latency/throughput and batch scoring, side by side in one run.

  .venv/bin/python bench/serving_bench.py [--model-dir outputs/serving] [--requests 2000]

Online: `runner.py serve` in its own process on a loopback port, once with server-side
batching and once without; an asyncio client sends single-instance requests from 1, 8 and 32
concurrent clients and records each request's latency. Batch: the model on 10,000-row batches
(the RunInference path's model call) against a naive loop calling it one row at a time, and
`runner.py predict` end to end (Beam DirectRunner, CSV in and out). Results are printed and
written to bench/SERVING.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402

DATA = os.path.join(ROOT, "data", "taxi.csv")


def load_instances(n: int) -> list[dict]:
    import csv

    from serving.batch import _parse_value

    out = []
    with open(DATA) as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i == n:
                break
            out.append(row)
    return out, _parse_value


def to_instances(rows, parse, dtypes) -> list[dict]:
    return [{k: parse(k, r[k], dtypes[k]) for k in dtypes} for r in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, instances: list[dict], concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    counter = iter(range(total))

    async def client(session):
        for i in counter:
            body = json.dumps({"instances": [instances[i % len(instances)]]})
            start = time.perf_counter()
            async with session.post(url, data=body) as r:
                await r.read()
                assert r.status == 200, await r.text()
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(min(50, total)):  # warm-up
            async with session.post(url, data=json.dumps({"instances": [instances[i]]})) as r:
                await r.read()
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "rps": total / wall}


def online(model_dir: str, instances: list[dict], total: int) -> list[dict]:
    results = []
    for batching in (True, False):
        port = free_port()
        args = [sys.executable, os.path.join(ROOT, "runner.py"), "serve", "--model-dir", model_dir, "--port", str(port)]
        if not batching:
            args.append("--no-batching")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import requests

            for _ in range(240):
                try:
                    if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.5)
            url = f"http://127.0.0.1:{port}/v1/models/taxi:predict"
            for concurrency in (1, 8, 32):
                r = asyncio.run(load(url, instances, concurrency, total))
                results.append({"batching": batching, "clients": concurrency, **r})
                print(
                    f"  online batching={batching!s:5} clients={concurrency:2}: p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms, {r['rps']:.0f} req/s",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return results


def batch(model_dir: str, rows, parse) -> dict:
    from serving.model_store import LoadedModel

    model = LoadedModel.load(model_dir, 0)
    insts = to_instances(rows, parse, model.input_dtypes)
    columns = model.columns(insts)
    model.predict_columns(columns)  # warm-up at this shape
    reps = 5
    start = time.perf_counter()
    for _ in range(reps):
        model.predict_columns(columns)
    batched = reps * len(insts) / (time.perf_counter() - start)
    naive_n = 500
    singles = [model.columns([i]) for i in insts[:naive_n]]
    model.predict_columns(singles[0])
    start = time.perf_counter()
    for c in singles:
        model.predict_columns(c)
    naive = naive_n / (time.perf_counter() - start)

    from serving import batch as batch_mod

    # predict end to end on the data and on 10 copies of it (fixed start-up costs amortised).
    work = tempfile.mkdtemp(prefix="bench-predict-")
    big = os.path.join(work, "taxi_x10.csv")
    with open(DATA) as f:
        header, *body = f.read().splitlines()
    with open(big, "w") as f:
        f.write("\n".join([header, *(body * 10)]) + "\n")
    rates = {}
    for name, path, n in (("x1", DATA, len(body)), ("x10", big, 10 * len(body))):
        start = time.perf_counter()
        batch_mod.predict(model_dir, path, os.path.join(work, name))
        rates[name] = n / (time.perf_counter() - start)
    shutil.rmtree(work, ignore_errors=True)
    result = {
        "batched_rows_per_s": batched,
        "naive_rows_per_s": naive,
        "ratio": batched / naive,
        "predict_x1_rows_per_s": rates["x1"],
        "predict_x10_rows_per_s": rates["x10"],
        "batch_rows": len(insts),
    }
    print(
        f"  batch: model on {len(insts)}-row batches {batched:,.0f} rows/s; naive one-row loop {naive:,.0f} rows/s "
        f"(x{batched / naive:.0f}); predict (Beam, CSV->CSV) {rates['x1']:,.0f} rows/s on 15,002 rows, "
        f"{rates['x10']:,.0f} rows/s on 150,020",
        flush=True,
    )
    return result


def write_report(path: str, online_results: list[dict], batch_result: dict, model_dir: str, command: str) -> None:
    lines = [
        "# Serving benchmark",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- model: {model_dir}",
        f"- command: `{command}`",
        "",
        "## Online (single-instance requests over loopback; client and server share the 2 cores)",
        "",
        "| server-side batching | clients | p50 ms | p99 ms | requests/s |",
        "|---|---|---|---|---|",
    ]
    for r in online_results:
        lines.append(
            f"| {'on' if r['batching'] else 'off'} | {r['clients']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} |"
        )
    b = batch_result
    lines += [
        "",
        "## Batch",
        "",
        "| path | rows/s |",
        "|---|---|",
        f"| the model on {b['batch_rows']:,}-row batches (what each RunInference batch does) | {b['batched_rows_per_s']:,.0f} |",
        f"| naive loop, one row per model call | {b['naive_rows_per_s']:,.0f} |",
        f"| ratio batched / naive | x{b['ratio']:.0f} |",
        "| `runner.py predict` end to end (Beam DirectRunner: read, parse, score, write), 15,002 rows "
        f"| {b['predict_x1_rows_per_s']:,.0f} |",
        f"| the same, 150,020 rows (the data 10 times) | {b['predict_x10_rows_per_s']:,.0f} |",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=os.path.join(ROOT, "outputs", "serving"))
    parser.add_argument("--requests", type=int, default=2000, help="requests per load level")
    parser.add_argument("--report", default=os.path.join(ROOT, "bench", "SERVING.md"))
    args = parser.parse_args(argv)
    from serving.model_store import list_versions

    versions = list_versions(args.model_dir)
    if not versions:
        print(f"error: no pushed model under {args.model_dir} (run `make run` first)", file=sys.stderr)
        return 2
    model_dir = os.path.join(args.model_dir, str(versions[-1]))
    rows, parse = load_instances(10000)
    from serving.model_store import LoadedModel

    dtypes = LoadedModel.load(model_dir, 0).input_dtypes
    instances = to_instances(rows[:1000], parse, dtypes)
    print("online:", flush=True)
    online_results = online(args.model_dir, instances, args.requests)
    print("batch:", flush=True)
    batch_result = batch(model_dir, rows, parse)
    command = "python bench/serving_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(args.report, online_results, batch_result, model_dir, command.strip())
    print(f"written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
