"""Reading import files as people have them: encodings, CSV or JSON lines, line numbers."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.errors import InvalidInput

FORMATS = ("csv", "jsonl")
DELIMITERS = (",", ";", "\t")
# A record is a flat object of texts; a line nested deeper than this is a bad line, not a crash.
MAX_DEPTH = 16
# The byte-order marks that name their encoding; UTF-32 first, its LE mark starts like UTF-16's.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass
class ImportFile:
    """The records of one file, each with the line it starts on, or why that line was refused."""

    path: Path
    digest: str
    encoding: str
    format: str
    delimiter: str | None
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def read_import_file(
    path: Path,
    columns: frozenset[str],
    *,
    encoding: str | None = None,
    fmt: str | None = None,
    required: tuple[str, ...] = ("url",),
) -> ImportFile:
    """Decode and split `path`; a file that cannot be read at all raises InvalidInput. A CSV
    file's header must name the `required` columns (a report's url; a hash's type and value)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, not a file") from None
    digest = hashlib.sha256(raw).hexdigest()
    text, used = _decode(path, raw, encoding)
    chosen = fmt or _sniff_format(text)
    result = ImportFile(path, digest, used, chosen, None)
    if chosen == "jsonl":
        for number, line in enumerate(_lines(text), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                result.errors.append((number, f"not JSON: {exc.msg} (column {exc.colno})"))
                continue
            except RecursionError:  # json's own guard against a stack overflow
                result.errors.append((number, f"not JSON we read: nested deeper than {MAX_DEPTH}"))
                continue
            if _depth(data) > MAX_DEPTH:
                # Parsed, but a value this deep breaks whatever walks it recursively later
                # (repr in an error message, a serialiser): refused here, as a bad line.
                result.errors.append((number, f"not JSON we read: nested deeper than {MAX_DEPTH}"))
                continue
            if isinstance(data, dict):
                result.rows.append((number, data))
            else:
                result.errors.append((number, "not a JSON object"))
        return result
    result.delimiter = _sniff_delimiter(text)
    _read_csv(text, result, columns, required)
    if not result.rows and not result.errors:
        result.errors.append((1, "no records: a header line, then one line per record"))
    return result


def _depth(value: Any) -> int:
    """How deep containers nest in a parsed JSON value (1: a flat object), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:  # deeper is refused anyway: no need to walk it all
            stack.extend((child, level + 1) for child in item)
    return deepest


def _decode(path: Path, raw: bytes, encoding: str | None) -> tuple[str, str]:
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InvalidInput(
                f"--encoding: unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252, utf-16)"
            ) from None
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{path}:{_line_of(raw, exc.start)}: not valid {encoding} (byte"
                f" 0x{raw[exc.start]:02x}); check --encoding"
            ) from None
    for bom, name in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(name), name
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"{path}: starts with a {name} byte-order mark but is not {name}"
                ) from None
    if b"\x00" in raw:
        raise InvalidInput(
            f"{path}: binary data (NUL bytes) and no UTF-16 byte-order mark: not a CSV or JSON"
            " lines file; if it is UTF-16 without a mark, give --encoding utf-16-le"
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path}:{_line_of(raw, exc.start)}: not UTF-8 (byte 0x{raw[exc.start]:02x}); give"
            " the file's encoding, e.g. --encoding cp1252 (Excel on Windows) or --encoding latin-1"
        ) from None


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _lines(text: str) -> list[str]:
    """Lines as editors count them: str.splitlines() would also split at U+2028 and other
    characters a JSON string may hold unescaped."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _sniff_format(text: str) -> str:
    """By content, never by file name: a JSON lines file starts with an object."""
    for line in _lines(text):
        if line.strip():
            return "jsonl" if line.lstrip().startswith("{") else "csv"
    return "csv"


def _sniff_delimiter(text: str) -> str:
    """The header names fields, and none has a comma, semicolon or tab: count them there."""
    header = next((line for line in _lines(text) if line.strip()), "")
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(
    text: str, result: ImportFile, columns: frozenset[str], required: tuple[str, ...]
) -> None:
    assert result.delimiter is not None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=result.delimiter, strict=True)
    header: list[str] | None = None
    try:
        for line, cells in _with_lines(reader):
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                unknown = [name for name in header if name and name not in columns]
                if unknown or any(name not in header for name in required):
                    result.errors.append(
                        (
                            line,
                            (f"unknown column(s): {', '.join(unknown)}; " if unknown else "")
                            + "the first line names the columns: "
                            + ", ".join(sorted(columns)),
                        )
                    )
                    return
                continue
            if not any(cell.strip() for cell in cells):
                continue  # blank lines, and lines of empty cells Excel writes at the end
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
                result.errors.append(
                    (line, f"{len(cells)} values for {len(header)} columns (check the delimiter)")
                )
                continue
            row = {
                name: value.strip()
                for name, value in zip(header, cells, strict=False)
                if value.strip() != "" and name
            }
            unnamed = [
                i + 1
                for i, name in enumerate(header)
                if not name and i < len(cells) and cells[i].strip()
            ]
            if unnamed:
                result.errors.append((line, f"a value in column {unnamed[0]}, which has no name"))
                continue
            result.rows.append((line, row))
    except csv.Error as exc:
        result.errors.append((reader.line_num, f"not CSV: {exc}"))


def _with_lines(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Each record with the line it starts on (a quoted value may span lines)."""
    previous = 0
    for cells in reader:
        yield previous + 1, cells
        previous = reader.line_num
