"""A Google Cloud Storage emulator on loopback, for running the compiled pipeline offline.

`gcp-storage-emulator` (pure Python) serves the GCS JSON and XML APIs. Every artifact of the
run lives behind HTTP, where `open()` cannot read a byte. Two clients reach it:

* TensorFlow's own `gs://` filesystem (what TFX, TFDV, TFT and Keras use in production) has no
  endpoint setting: it is sent through an HTTPS proxy on loopback (https_proxy) that
  terminates TLS for *.googleapis.com with a test CA (CURL_CA_BUNDLE) and relays to the
  emulator. GOOGLE_AUTH_TOKEN_FOR_TESTING stands in for credentials.
* Beam's gcsio (google-cloud-storage) honours STORAGE_EMULATOR_HOST.

(tensorflow-io-gcs-filesystem's plugin, which does take an emulator endpoint, segfaults unless
its GCS_READ_CACHE_* / GCS_STAT_CACHE_* variables are set, and then aborted with heap corruption
("free(): invalid next size") in 5 of 18 reads of one 400 kB object during development, across
three cache settings; not benchmarked in the repo. So it is not used.)

    python tests/harness/gcs_emulator.py --port 9023 --proxy-port 9024 --certs DIR --bucket my-bucket
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import threading


def _patch() -> None:
    """Fixes for requests the emulator mishandles (checked against what the clients send)."""
    from gcp_storage_emulator import server

    read_data = server._read_data

    def _read_data(request_handler, query):
        # An empty body (TensorFlow's "directory" placeholders, empty files) is read as None,
        # which the upload handlers cannot measure: it is zero bytes.
        data = read_data(request_handler, query)
        return b"" if data is None else data

    server._read_data = _read_data

    read_raw = server._read_raw_data

    def _read_raw_data(request_handler):
        # RFC 7230 3.3.3: Transfer-Encoding wins over Content-Length. TensorFlow's uploads send
        # both (a Content-Length header and a chunked body); the emulator read the framing as data.
        if (request_handler.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            del request_handler.headers["Content-Length"]
        return read_raw(request_handler)

    server._read_raw_data = _read_raw_data

    from urllib.parse import quote

    from gcp_storage_emulator.storage import Storage

    # libcurl (TensorFlow's gs:// client) sends "Expect: 100-continue" before an upload's body
    # and waits up to 1 s for the go-ahead; the emulator's HTTP/1.0 handler never gives it, so
    # every file TensorFlow wrote cost a second (20 s of a Transform task). The go-ahead:
    handler = server.RequestHandler
    parse_request = handler.parse_request

    def parse_request_with_continue(self):
        ok = parse_request(self)
        if ok and (self.headers.get("Expect") or "").lower() == "100-continue" and self.protocol_version < "HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        return ok

    handler.parse_request = parse_request_with_continue

    # In memory, the emulator still serialises every bucket and object to a JSON ".meta" file
    # after each write (for a restart that never comes here): a cost that grows with every
    # object the run writes, quadratic over a pipeline's thousands. The state is in memory.
    Storage._write_config_to_file = lambda self: None

    # The emulator keeps an object's bytes under a path named like the object, so "a/" and
    # "a/b" (a directory placeholder and an object under it, as TensorFlow writes them)
    # collide. GCS names are flat: store each under one quoted name.
    Storage._object_path = lambda self, bucket, name: f"{bucket}/{quote(name, safe='')}"


def environment(endpoint: str, proxy: str, ca_bundle: str, project: str) -> dict[str, str]:
    """What a process needs for TensorFlow, TFX and Beam to use the emulator for gs://."""
    return {
        "https_proxy": proxy,
        "http_proxy": proxy,  # the resumable-upload session URLs the emulator hands out
        "no_proxy": "127.0.0.1,localhost",
        "CURL_CA_BUNDLE": ca_bundle,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "offline-test-token",
        "NO_GCE_CHECK": "true",
        "STORAGE_EMULATOR_HOST": endpoint,
        "GOOGLE_CLOUD_PROJECT": project,
    }


def make_certificates(folder: str) -> str:
    """A test CA and a certificate for *.googleapis.com signed by it; returns the CA bundle."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(folder, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "offline test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = ["*.googleapis.com", "www.googleapis.com", "storage.googleapis.com"]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[1])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(folder, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(folder, "server.pem"), "wb") as f:
        f.write(leaf.public_bytes(pem))
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return os.path.join(folder, "ca.pem")


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copies bytes both ways until either side closes."""

    def pump(src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join()


def _proxy_connection(client: socket.socket, upstream: tuple[str, int], tls: ssl.SSLContext) -> None:
    """One proxied connection: CONNECT (TLS terminated here) or a plain absolute-URI request."""
    with client:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.split(b" ", 2)
        if method == b"CONNECT":
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            stream = tls.wrap_socket(client, server_side=True)
            payload = rest.partition(b"\r\n\r\n")[2]
        else:  # http://host/path: the origin form the emulator expects
            path = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
            stream = client
            payload = b" ".join((method, path, version)) + b"\r\n" + rest
        with socket.create_connection(upstream) as server:
            if payload:
                server.sendall(payload)
            _relay(stream, server)


def serve_proxy(port: int, upstream: tuple[str, int], certificate: str) -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certificate)
    listener = socket.create_server(("127.0.0.1", port))
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_proxy_connection, args=(client, upstream, tls), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--proxy-port", type=int, required=True)
    parser.add_argument("--certs", required=True, help="folder with server.pem (make_certificates)")
    parser.add_argument("--bucket", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _patch()
    from gcp_storage_emulator.handlers import buckets
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", args.port, in_memory=True)
    for name in args.bucket:
        buckets.create_bucket(name, server._storage)
    proxy = (args.proxy_port, ("127.0.0.1", args.port), os.path.join(args.certs, "server.pem"))
    threading.Thread(target=serve_proxy, args=proxy, daemon=True).start()
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
