"""Logs a machine can read: one JSON object per line.

`runner.py serve` installs `JsonFormatter` on its handler, so Cloud Logging (which reads the
`severity` and `message` keys) or any log shipper ingests the lines as they are. An access-log
record carries its fields in `record.fields`; they become top-level keys.
"""

from __future__ import annotations

import datetime
import json
import logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "severity": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
