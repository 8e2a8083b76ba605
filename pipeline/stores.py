"""Metadata store URIs: SQLite locally, MySQL/MariaDB shared, Vertex ML Metadata in production.

Every command, the local runner and the components that resolve their inputs open a store
here, so a store that cannot be reached, or a URI that is malformed, fails the same way, in
one line, everywhere.

  /path/metadata.sqlite, sqlite:///path     SQLite
  mysql://user[:password]@host[:port]/db    MySQL/MariaDB; without a password in the URI, from
                                            $PIPELINE_METADATA_PASSWORD or the file named by
                                            $PIPELINE_METADATA_PASSWORD_FILE
  vertex://PROJECT/REGION                   Vertex ML Metadata (the region's default store)

A password never leaves this module: what is recorded, logged or passed to a component is
`redact(uri)`, and a URI seen with its password is remembered (in this process) under its
redacted form, so a component running in the same process reconnects without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
import urllib.parse

from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2


class MetadataError(Exception):
    """The store cannot be reached or does not hold what was asked for. One line."""


PASSWORD_ENV = "PIPELINE_METADATA_PASSWORD"
PASSWORD_FILE_ENV = "PIPELINE_METADATA_PASSWORD_FILE"
VERTEX_SCHEME = "vertex"

# Redacted URI -> password, for the URIs this process was given with one.
_passwords: dict[str, str] = {}


def is_vertex(uri: str | None) -> bool:
    return bool(uri) and urllib.parse.urlparse(str(uri)).scheme == VERTEX_SCHEME


def vertex_location(uri: str) -> tuple[str, str]:
    """(project, region) of a vertex://PROJECT/REGION URI."""
    parsed = urllib.parse.urlparse(uri)
    project, region = parsed.netloc, parsed.path.strip("/")
    if not project or not region or "/" in region:
        raise MetadataError(f"metadata URI {uri!r}: expected vertex://PROJECT/REGION")
    return project, region


def _parse(uri: str) -> urllib.parse.ParseResult:
    parsed = urllib.parse.urlparse(uri)
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise MetadataError(f"metadata URI {redact(uri)}: the port is not a number") from None
    return parsed


def _password(uri: str, parsed: urllib.parse.ParseResult) -> str | None:
    if parsed.password:
        password = urllib.parse.unquote(parsed.password)
        _passwords[redact(uri) or ""] = password
        return password
    if uri in _passwords:
        return _passwords[uri]
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if os.environ.get(PASSWORD_FILE_ENV):
        path = os.environ[PASSWORD_FILE_ENV]
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            raise MetadataError(f"${PASSWORD_FILE_ENV}: cannot read {path} ({e.strerror})") from None
    return None


def connection_config(uri: str, read_only: bool = False) -> metadata_store_pb2.ConnectionConfig:
    """A ConnectionConfig from a store URI.

    Accepted: a SQLite file path (or sqlite:///path), mysql://user[:pw]@host[:port]/db, and
    postgresql://user[:pw]@host[:port]/db (readable, but ml-metadata 1.16 cannot store TFX
    runs there: its PostgreSQL backend mis-quotes strings containing a backslash).
    """
    if not uri:
        raise MetadataError("no metadata store given")
    config = metadata_store_pb2.ConnectionConfig()
    parsed = _parse(uri)
    if parsed.scheme == VERTEX_SCHEME:
        raise MetadataError(f"{uri} is Vertex ML Metadata, not an ML Metadata connection")
    if parsed.scheme in ("postgresql", "postgres", "mysql"):
        if not parsed.hostname or not parsed.path.strip("/"):
            raise MetadataError(f"metadata URI needs a host and a database: {redact(uri)}")
        if parsed.scheme == "mysql":
            db = config.mysql
            db.host, db.database = parsed.hostname, parsed.path.strip("/")
            db.port = parsed.port or 3306
        else:
            db = config.postgresql
            db.host, db.dbname = parsed.hostname, parsed.path.strip("/")
            db.port = str(parsed.port or 5432)
        db.user = urllib.parse.unquote(parsed.username or "")
        password = _password(uri, parsed)
        if password:
            db.password = password
        return config
    if parsed.scheme not in ("", "sqlite"):
        raise MetadataError(f"unsupported metadata store {parsed.scheme!r}: use a SQLite path, mysql:// or vertex://")
    path = parsed.path if parsed.scheme == "sqlite" else uri
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        if read_only
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return config


def redact(uri: str | None) -> str | None:
    """The URI without its password, for messages and summaries."""
    if not uri:
        return uri
    parsed = urllib.parse.urlparse(uri)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", "@")
        return parsed._replace(netloc=netloc).geturl()
    return uri


def check_reachable(uri: str, config: metadata_store_pb2.ConnectionConfig | None = None) -> None:
    """A database server's port answers; else MetadataError, one line. (A server that is not
    there is the common mistake, and MLMD's own error for it is empty for MySQL, "errno: ,
    error:", after ten lines of C++ logs.)"""
    config = config or connection_config(uri)
    if config.HasField("postgresql") or config.HasField("mysql"):
        db = config.mysql if config.HasField("mysql") else config.postgresql
        try:
            socket.create_connection((db.host, int(db.port)), timeout=5).close()
        except OSError as e:
            raise MetadataError(
                f"cannot open the metadata store {redact(uri)}: cannot reach {db.host}:{db.port} ({e.strerror or e})"
            ) from e


def open_store(uri: str, read_only: bool = True) -> metadata_store.MetadataStore:
    """Opens an existing store (for reading, by default). A missing SQLite file is an error,
    not a new store."""
    config = connection_config(uri, read_only=read_only)
    if config.HasField("sqlite") and not os.path.isfile(config.sqlite.filename_uri):
        raise MetadataError(f"no metadata store at {config.sqlite.filename_uri} (run the pipeline first)")
    if config.HasField("postgresql") or config.HasField("mysql"):
        check_reachable(uri, config)
        config.retry_options.max_num_retries = 1  # checked above: do not retry for minutes
    with _captured_fd2() as native_log:
        try:
            return metadata_store.MetadataStore(config)
        except (mlmd_errors.StatusError, RuntimeError) as e:
            error = e
    # The database client library explains a failed connection on fd 2 ("Connection
    # refused", "password authentication failed"); that is the useful part.
    reasons = [
        line.split("] ", 1)[-1].strip()
        for line in native_log
        if "could not connect" in line or "FATAL" in line or "refused" in line
    ]
    reason = reasons[0] if reasons else (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise MetadataError(f"cannot open the metadata store {redact(uri)}: {reason}") from error


# File descriptor 2 is the process's: while one thread has it redirected, another thread's
# redirect would save the temporary file as "the original" and leave stderr there for good, and
# a line printed meanwhile would land in the capture. Threads that open stores (the progress
# reporter, the pipeline's executors) or print progress hold this lock.
STDERR_LOCK = threading.RLock()


@contextlib.contextmanager
def _captured_fd2():
    """Redirects file descriptor 2 (where MLMD's C++ code and libpq log) to a temporary file;
    yields a list that holds the captured lines once the block has exited."""
    with STDERR_LOCK, tempfile.TemporaryFile(mode="w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        lines: list[str] = []
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().splitlines())


class RedactSecrets(logging.Filter):
    """Replaces every metadata store password this process knows (from a URI, or the
    environment) with *** in log records, TFX's and ML Metadata's own lines included (TFX
    logs its whole deployment config, the connection config in it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [p for p in (*_passwords.values(), os.environ.get(PASSWORD_ENV)) if p]
        if secrets:
            message = record.getMessage()
            if any(secret in message for secret in secrets):
                for secret in secrets:
                    message = message.replace(secret, "***")
                record.msg, record.args = message, ()
        return True


def redact_logs() -> None:
    """Installs RedactSecrets on the root logger's handlers and absl's (idempotent). absl's
    handler passes records to its Python handler without applying its own filters, so that
    one gets the filter too. Call again once libraries that install handlers are imported."""
    handlers = list(logging.getLogger().handlers)
    try:
        from absl import logging as absl_logging

        absl_handler = absl_logging.get_absl_handler()
        handlers += [absl_handler, absl_handler.python_handler]
    except ImportError:
        pass
    for handler in handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
