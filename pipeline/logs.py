"""Logging for every command: text or one JSON object per line, and the client libraries kept quiet.

``--log-format json`` writes each record as one JSON object (``ts, level, logger, message`` plus ``stage``,
``event`` and ``doc_id`` where the code gave them: ``log.warning("...", extra={"event": "restart"})``), so a
log shipper needs no parsing rules. Kafka clients (kafka-python, aiokafka) and faust/mode log every failed
connection attempt; without ``--verbose`` the clients' records below CRITICAL (faust's and mode's below ERROR)
are dropped, so a command's output is its own messages.
"""

from __future__ import annotations

import logging
import time

import orjson

# library logger → the level it is held at without --verbose (the clients log every failed connection at ERROR;
# faust's own errors, e.g. a crashed agent, still show)
QUIET_LIBRARIES = {"kafka": logging.CRITICAL, "aiokafka": logging.CRITICAL, "faust": logging.ERROR,
                   "mode": logging.ERROR, "urllib3": logging.WARNING}
CONTEXT_FIELDS = ("stage", "event", "doc_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "pid": record.process}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _Context(logging.Filter):
    """Adds process-wide fields (the worker's stage) to every record that does not set them itself."""

    def __init__(self, fields: dict[str, str]):
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self.fields.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def configure_logging(log_format: str = "text", verbose: bool = False, level: str | int = "WARNING",
                      **context: str) -> None:
    """(Re)configure the root logger: one stderr handler in ``log_format``; ``context`` fields on every record."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    if context:
        handler.addFilter(_Context(context))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root.setLevel(min(numeric, logging.INFO) if verbose else numeric)
    for name, quiet in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else quiet)
