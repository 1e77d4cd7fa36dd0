"""Terminal output for the CLI: one JSON document with --json, aligned tables otherwise."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# Stored times are UTC ISO 8601 ("…Z"); people read them in their own time zone.
_UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z$")
# Columns whose integers are Unix times (key documents carry them so).
EPOCH_COLUMNS = frozenset({"not_before", "not_after", "issued_at"})
# Words that say something went wrong, waits, or is well: red, yellow, green on a terminal.
_COLOURS = {
    "31": {"dead", "failed", "broken", "suspended", "removed", "no channel", "rejected"},
    "33": {"held", "pending", "backoff", "manual", "future", "expired"},
    "32": {"delivered", "active", "valid", "ok", "sent", "closed"},
}
_COLOUR_OF = {word: code for code, words in _COLOURS.items() for word in words}


def emit_json(data: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def colour_enabled(out: TextIO | None = None) -> bool:
    """Only on a terminal, and never when NO_COLOR is set to anything (no-color.org)."""
    return not os.environ.get("NO_COLOR") and (out or sys.stdout).isatty()


def paint(text: str, word: str, enabled: bool) -> str:
    code = _COLOUR_OF.get(word)
    return f"\033[{code}m{text}\033[0m" if enabled and code else text


def local_time(value: str | int) -> str:
    """A stored UTC time (ISO text or Unix seconds) in the local time zone, to the second."""
    moment = (
        datetime.fromtimestamp(value, UTC)
        if isinstance(value, int)
        else datetime.fromisoformat(value.replace("Z", "+00:00"))
    )
    local = moment.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or local.strftime("%z"))


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], colour: bool | None = None
) -> str:
    """Aligned columns; `colour` None means: if this process's stdout takes colour."""
    if not rows:
        return "(none)"
    colour = colour_enabled() if colour is None else colour
    cells = [[_cell(row.get(col), col) for col in columns] for row in rows]
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(columns)]
    header = "  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True))
    # Padded first, painted after: escape codes take no room on the screen.
    body = [
        "  ".join(paint(v.ljust(w), v, colour) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    return "\n".join([header.rstrip(), *body])


def fields(
    data: dict[str, Any], keys: Sequence[str] | None = None, colour: bool | None = None
) -> str:
    """One `name  value` line per field, the names aligned, values as in tables."""
    names = [k for k in (keys or list(data)) if k in data]
    width = max((len(k) for k in names), default=0)
    colour = colour_enabled() if colour is None else colour
    lines = []
    for key in names:
        value = _cell(data[key], key)
        lines.append(f"{key.replace('_', ' ').ljust(width)}  {paint(value, value, colour)}")
    return "\n".join(lines)


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and column in EPOCH_COLUMNS:
        return local_time(value)
    if isinstance(value, str) and _UTC_STAMP.match(value):
        return local_time(value)
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    return str(value)
