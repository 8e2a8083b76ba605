"""A Google Cloud Storage emulator on loopback, for running the compiled pipeline offline.

`gcp-storage-emulator` (pure Python) serves the GCS JSON and XML APIs. TensorFlow's `gs://`
filesystem (the modular one in tensorflow-io-gcs-filesystem, selected with
TF_USE_MODULAR_FILESYSTEM=1) reaches it through CLOUD_STORAGE_EMULATOR_ENDPOINT, and Beam's
gcsio (google-cloud-storage) through STORAGE_EMULATOR_HOST: every artifact of the run lives
behind HTTP, where `open()` cannot read it.

    python tests/harness/gcs_emulator.py --port 9023 --data-dir /tmp/gcs --bucket my-bucket
"""

from __future__ import annotations

import argparse
import json
import logging


def _replace_handler(old, new) -> None:
    from gcp_storage_emulator import server

    server.HANDLERS = tuple((regex, {m: new if f is old else f for m, f in methods.items()}) for regex, methods in server.HANDLERS)


def _patch() -> None:
    """Fixes for requests the emulator mishandles (checked against what the clients send)."""
    from gcp_storage_emulator.handlers import objects

    upload = objects.xml_upload

    def xml_upload(request, response, storage, *args, **kwargs):
        # google-cloud-cpp creates "directory" placeholders with an empty PUT body, which the
        # emulator reads as None.
        if request.data is None:
            request._data = b""
        return upload(request, response, storage, *args, **kwargs)

    _replace_handler(upload, xml_upload)

    list_objects = objects.ls

    def ls(request, response, storage, *args, **kwargs):
        # The modular gs:// plugin lacks TensorFlow's own GCS glob and falls back to matching
        # listdir() names, which it takes from the listed prefixes, trailing "/" included, so
        # no directory would ever match `gs://b/data/span-*`. TensorFlow's built-in GCS
        # filesystem (what production runs) globs directories; listing prefixes without the
        # slash makes the fallback behave the same.
        list_objects(request, response, storage, *args, **kwargs)
        if response.status == 200 and response._content:
            data = json.loads(response._content)
            data["prefixes"] = [p.rstrip("/") for p in data.get("prefixes") or []]
            response.json(data)

    _replace_handler(list_objects, ls)

    from urllib.parse import quote

    from gcp_storage_emulator.storage import Storage

    # The emulator keeps an object's bytes under a path named like the object, so "a/" and
    # "a/b" (a directory placeholder and an object under it, as TensorFlow writes them)
    # collide. GCS names are flat: store each under one quoted name.
    Storage._object_path = lambda self, bucket, name: f"{bucket}/{quote(name, safe='')}"


def environment(endpoint: str, project: str) -> dict[str, str]:
    """What a process needs for TensorFlow, TFX and Beam to use the emulator for gs://."""
    return {
        "TF_USE_MODULAR_FILESYSTEM": "1",
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": endpoint,
        "STORAGE_EMULATOR_HOST": endpoint,
        "GOOGLE_CLOUD_PROJECT": project,
        # tensorflow-io-gcs-filesystem 0.37 dereferences these unset (a segfault); caching off
        # so that one task's writes are seen by the next process at once.
        "GCS_READ_CACHE_BLOCK_SIZE_MB": "16",
        "GCS_READ_CACHE_MAX_SIZE_MB": "0",
        "GCS_READ_CACHE_MAX_STALENESS": "0",
        "GCS_STAT_CACHE_MAX_AGE": "0",
        "GCS_STAT_CACHE_MAX_ENTRIES": "0",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--bucket", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _patch()
    from gcp_storage_emulator.handlers import buckets
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", args.port, in_memory=True, data_dir=args.data_dir)
    for name in args.bucket:
        buckets.create_bucket(name, server._storage)
    server.run()


if __name__ == "__main__":
    main()


def read(endpoint: str, uri: str) -> bytes:
    """An object's bytes, over the JSON API (what the harness itself reads)."""
    import urllib.parse
    import urllib.request

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    url = f"{endpoint}/download/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media"
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def write(endpoint: str, uri: str, data: bytes) -> None:
    import urllib.parse
    import urllib.request

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    url = f"{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
