"""Online predictions over HTTP, in TF Serving's and Vertex AI's REST format.

  POST /v1/models/<name>[/versions/<v>]:predict
        {"instances": [{feature: value, ...}]} -> {"predictions": [p]}   (row format)
        {"inputs": {feature: [values]}}       -> {"outputs": [p]}       (columnar format)
  POST /predict, or AIP_PREDICT_ROUTE       the same bodies (Vertex AI custom container)
  GET  /v1/models/<name>[/versions/<v>]     version status (TF Serving)
  GET  /v1/models/<name>[/versions/<v>]/metadata   the signature, as TF Serving describes it
  GET  /healthz                    the process is up
  GET  /readyz                     a model is loaded (503 until then)

Concurrent requests are grouped into one model call (server-side batching): a batch is cut
when it reaches `max_batch_size` instances or its first request has waited `batch_timeout_ms`.
No client can stall the others: a big request is checked off the event loop (vectorised, by
the one validator of modules/contract.py) and scored in chunks of at most `max_batch_size`
instances, queued one after the other, so single-row requests are batched in between.
A poller loads newly pushed versions and swaps them in; requests already running finish on
the version they started with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from modules.contract import PREDICTION_KEY, SERVING_RAW_SIGNATURE, shown
from serving.model_store import LoadedModel, ModelStore, NoModelError, RequestError, Rows, request_instances, validate_instances

logger = logging.getLogger(__name__)
access_log = logging.getLogger("serving.access")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    model_dir: str
    model_name: str = "taxi"
    host: str = "127.0.0.1"
    port: int = 8501
    pinned_version: int | None = None
    batching: bool = True
    max_batch_size: int = 256
    batch_timeout_ms: float = 2.0
    max_instances: int = 1000
    poll_seconds: float = 5.0
    # Append each valid request's instances here as a JSON line ({"instances": [...]}), the
    # input `runner.py validate --data` checks for training/serving skew.
    request_log: str | None = None
    # Vertex AI's custom-container conventions (serving/vertex.py): model_dir is one SavedModel
    # served as this version, and the routes Vertex forwards to.
    single_model_version: int | None = None
    predict_route: str | None = None
    health_route: str | None = None


class Batcher:
    """Groups concurrent predict calls into batched model calls on one worker thread."""

    def __init__(self, store: ModelStore, executor: ThreadPoolExecutor, max_batch_size: int, timeout_ms: float):
        self.store = store
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.timeout = timeout_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def predict(self, rows: Rows) -> tuple[list[float], int]:
        """Scores `rows` in chunks of at most max_batch_size, each queued after the one before
        has been scored: other requests are batched in between, not behind all of it."""
        predictions: list[float] = []
        version = -1
        for start in range(0, len(rows), self.max_batch_size):
            future = asyncio.get_running_loop().create_future()
            await self.queue.put((rows.slice(start, start + self.max_batch_size), future))
            chunk, version = await future
            predictions.extend(chunk)
        return predictions, version

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self.timeout
            while size < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                batch.append(item)
                size += len(item[0])
            try:
                model = self.store.current
                flat = Rows.concat([rows for rows, _ in batch])
                predictions = (await loop.run_in_executor(self.executor, model.predict_rows, flat)).tolist()
            except NoModelError as e:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            except Exception:  # noqa: BLE001 - one request's problem must not fail the others
                logger.warning("a batched model call failed; answering its %d requests one by one", len(batch))
                for rows, future in batch:
                    try:
                        alone = (await loop.run_in_executor(self.executor, model.predict_rows, rows)).tolist()
                    except Exception as e:  # noqa: BLE001 - this request's own error, to its own client
                        if not future.done():
                            future.set_exception(e)
                    else:
                        if not future.done():
                            future.set_result((alone, model.version))
                continue
            start = 0
            for rows, future in batch:
                if not future.done():
                    future.set_result((predictions[start : start + len(rows)], model.version))
                start += len(rows)


# Bodies above this size are parsed and checked on a thread, not on the event loop.
INLINE_BODY_BYTES = 16 * 1024
# An error message is at most this long (names and values in it are shortened already).
MAX_ERROR_CHARS = 1000


def _error(status: int, message: str) -> web.Response:
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return web.json_response({"error": message}, status=status)


def _parse(body: bytes, model: LoadedModel, max_instances: int) -> tuple[Any, str, Rows]:
    """A request body -> (payload, response key, validated rows). RequestError on any problem."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"malformed JSON: {e}") from None
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python parses
        raise RequestError(f"malformed JSON: {shown(str(e))}") from None
    payload, answer_key = request_instances(payload)
    return payload, answer_key, validate_instances(payload, model, max_instances)


def create_app(cfg: ServerConfig, model_store: ModelStore | None = None) -> web.Application:
    """The aiohttp application. `model_store` defaults to the newest version under cfg.model_dir."""
    store = model_store if model_store is not None else ModelStore(cfg.model_dir, cfg.pinned_version, cfg.single_model_version)
    # TF releases the GIL in its kernels; one thread keeps model calls in order and batched.
    executor = ThreadPoolExecutor(max_workers=1 if cfg.batching else 2, thread_name_prefix="model")
    app = web.Application(middlewares=[_access_log_middleware], client_max_size=32 * 1024 * 1024)
    app["cfg"], app["store"], app["executor"] = cfg, store, executor
    request_log = open(cfg.request_log, "a") if cfg.request_log else None

    # Parsing and checking big bodies: off the event loop, which keeps answering other clients.
    parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    async def predict_direct(rows: Rows) -> tuple[list[float], int]:
        model: LoadedModel = store.current
        return (await asyncio.get_running_loop().run_in_executor(executor, model.predict_rows, rows)).tolist(), model.version

    async def predict(request: web.Request) -> web.Response:
        name = request.match_info.get("model")
        if name is not None and name != cfg.model_name:
            return _error(404, f"no model named {name!r} (this server serves {cfg.model_name!r})")
        try:
            model = store.current
        except NoModelError as e:
            return _error(503, str(e))
        wrong_version = _wrong_version(request, model)
        if wrong_version:
            return wrong_version
        body = await request.read()
        try:
            if len(body) <= INLINE_BODY_BYTES:
                payload, answer_key, rows = _parse(body, model, cfg.max_instances)
            else:
                parsed = asyncio.get_running_loop().run_in_executor(parser, _parse, body, model, cfg.max_instances)
                payload, answer_key, rows = await parsed
        except RequestError as e:
            return _error(400, str(e))
        request["instances"] = len(rows)
        if request_log is not None:
            request_log.write(json.dumps({"instances": payload["instances"]}) + "\n")
            request_log.flush()
        run = app["batcher"].predict if cfg.batching else predict_direct
        try:
            predictions, version = await run(rows)
        except NoModelError as e:
            return _error(503, str(e))
        except Exception as e:  # noqa: BLE001 - this request alone failed in the model; say why
            logger.exception("prediction failed")
            return _error(500, f"prediction failed: {type(e).__name__}: {e}")
        request["model_version"] = version
        return web.json_response({answer_key: predictions, "model_version": str(version)})

    async def status(request: web.Request) -> web.Response:
        if request.match_info["model"] != cfg.model_name:
            return _error(404, f"no model named {request.match_info['model']!r}")
        if not store.ready:
            return web.json_response({"model_version_status": []}, status=503)
        wrong_version = _wrong_version(request, store.current)
        if wrong_version:
            return wrong_version
        return web.json_response(
            {
                "model_version_status": [
                    {
                        "version": str(store.current.version),
                        "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""},
                    }
                ]
            }
        )

    async def metadata(request: web.Request) -> web.Response:
        if request.match_info["model"] != cfg.model_name:
            return _error(404, f"no model named {request.match_info['model']!r}")
        if not store.ready:
            return _error(503, "no model loaded")
        model = store.current
        wrong_version = _wrong_version(request, model)
        if wrong_version:
            return wrong_version
        return web.json_response(
            {
                "model_spec": {"name": cfg.model_name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": {"signature_def": {SERVING_RAW_SIGNATURE: _signature_def(model)}}},
            }
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if store.ready:
            return web.json_response({"status": "ready", "model_version": str(store.current.version)})
        return web.json_response({"status": "no model loaded"}, status=503)

    async def poll(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(None, store.refresh)
            await asyncio.sleep(cfg.poll_seconds)

    async def on_startup(app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, store.refresh)
        app["batcher"] = Batcher(store, executor, cfg.max_batch_size, cfg.batch_timeout_ms)
        app["batcher"].start()
        app["poller"] = asyncio.get_running_loop().create_task(poll(app))

    async def on_cleanup(app: web.Application) -> None:
        for key in ("poller",):
            app[key].cancel()
        if app["batcher"].task:
            app["batcher"].task.cancel()
        executor.shutdown(wait=False)
        parser.shutdown(wait=False)
        if request_log is not None:
            request_log.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_post("/v1/models/{model:[^/:]+}:predict", predict)
    app.router.add_post("/v1/models/{model:[^/:]+}/versions/{version:[0-9]+}:predict", predict)
    app.router.add_get("/v1/models/{model:[^/:]+}/versions/{version:[0-9]+}/metadata", metadata)
    app.router.add_post("/predict", predict)
    app.router.add_get("/v1/models/{model:[^/:]+}", status)
    app.router.add_get("/v1/models/{model:[^/:]+}/versions/{version:[0-9]+}", status)
    app.router.add_get("/v1/models/{model:[^/:]+}/metadata", metadata)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if cfg.predict_route and cfg.predict_route != "/predict":
        app.router.add_post(cfg.predict_route, predict)
    if cfg.health_route:
        app.router.add_get(cfg.health_route, readyz)  # Vertex routes traffic once it answers 200
    return app


@web.middleware
async def _access_log_middleware(request: web.Request, handler) -> web.StreamResponse:
    start = time.perf_counter()
    status: int = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        if e.status >= 400:  # aiohttp's own 404 and 405 are plain text; clients expect JSON
            return _error(e.status, f"{e.reason}: {request.method} {request.path}")
        raise
    except Exception as e:  # noqa: BLE001 - a JSON error, never a plain-text 500
        logger.exception("unhandled error")
        status = 500
        return _error(500, f"internal error: {type(e).__name__}")
    finally:
        entry: dict[str, Any] = {
            "request_id": request.headers.get("X-Request-Id") or uuid.uuid4().hex,
            "method": request.method,
            "path": request.path,
            "status": status,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
        }
        for key in ("instances", "model_version"):
            if key in request:
                entry[key] = request[key]
        access_log.info("%s %s %s", request.method, request.path, status, extra={"fields": entry})


def serve(cfg: ServerConfig) -> None:
    """Runs the server until interrupted."""
    web.run_app(create_app(cfg), host=cfg.host, port=cfg.port, access_log=None, print=None)


def _tensor_info(name: str, dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}, "name": name}


def _signature_def(model: LoadedModel) -> dict[str, Any]:
    """The served signature as TF Serving's metadata API describes one (a SignatureDef as JSON)."""
    from tensorflow.core.framework import types_pb2

    inputs = {
        name: _tensor_info(f"{SERVING_RAW_SIGNATURE}_{name}:0", types_pb2.DataType.Name(dtype.as_datatype_enum))
        for name, dtype in model.input_dtypes.items()
    }
    return {
        "inputs": inputs,
        "outputs": {PREDICTION_KEY: _tensor_info("StatefulPartitionedCall:0", "DT_FLOAT")},
        "method_name": "tensorflow/serving/predict",
    }


def _wrong_version(request: web.Request, model: LoadedModel) -> web.Response | None:
    """A 404 for /versions/<v>/... when <v> is not the loaded version (one is served at a time)."""
    version = request.match_info.get("version")
    if version is not None and version != str(model.version):
        return _error(404, f"version {version} is not loaded; this server serves version {model.version}")
    return None
