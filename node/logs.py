"""Log output for `serve`: text for people, or one JSON object per line for log collectors."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
REDACTED = "[redacted]"
# Extra fields whose name says they hold a credential or key material are never written out.
SENSITIVE_NAME = re.compile(
    r"authorization|cookie|token|secret|password|passphrase|private|signature|api_?key",
    re.IGNORECASE,
)
# And inside any text: bearer credentials and our API tokens (a log call might quote a header).
SENSITIVE_TEXT = re.compile(r"(?i:bearer)\s+[A-Za-z0-9._~+/-]+=*|hln_[A-Za-z0-9_-]+")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def scrub(text: str) -> str:
    return SENSITIVE_TEXT.sub(REDACTED, text)


def redact(value: Any, name: str = "") -> Any:
    """A JSON-able copy of `value` without credentials, by field name and by content."""
    if name and SENSITIVE_NAME.search(name):
        return REDACTED
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in document:
                document[key] = redact(value, key)
        if record.exc_info:
            document["exception"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            document["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The usual one-line text, with the same scrubbing of credentials as the JSON form."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def formatter(kind: str) -> logging.Formatter:
    if kind not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)} (got {kind!r})")
    return JsonFormatter() if kind == "json" else TextFormatter()


@contextmanager
def configured(kind: str, level: str = "warning", stream: TextIO | None = None) -> Iterator[None]:
    """Send the root logger to `stream` (stderr) in this format while the block runs.

    What was there before comes back afterwards, so an in-process caller (a test) keeps its
    own logging set-up.
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(kind))
    # basicConfig's plain stderr handler would print every line a second time, in text.
    plain = [h for h in root.handlers if type(h) is logging.StreamHandler]
    previous_level = root.level
    for old in plain:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # The scheduler says "Running job …" and "executed successfully" at info, twice a second
    # with the delivery sweep: that is debugging detail, shown only at --log-level debug.
    scheduler = logging.getLogger("apscheduler")
    previous_scheduler = scheduler.level
    scheduler.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for old in plain:
            root.addHandler(old)
        root.setLevel(previous_level)
        scheduler.setLevel(previous_scheduler)


def announce(kind: str, message: str, stream: TextIO | None = None, **extra: Any) -> None:
    """A line for whoever started the node (stdout), in the format its logs are in."""
    out = stream or sys.stdout
    if kind == "json":
        record = logging.LogRecord("hotline.node", logging.INFO, "", 0, message, None, None)
        record.__dict__.update(extra)
        out.write(JsonFormatter().format(record) + "\n")
    else:
        out.write(message + "\n")
    out.flush()
