"""Canonical JSON bytes (sorted keys, no floats) for everything that gets signed."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS
# RFC 8785 serialises numbers as IEEE doubles; integers beyond 2**53 would lose precision there.
MAX_SAFE_INTEGER = 2**53 - 1


class NotCanonicalError(ValueError):
    """The value cannot be written as canonical JSON (a float, a huge integer, a non-str key)."""


def _check(value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise NotCanonicalError(f"integer {value} is outside the interoperable range")
        return
    if isinstance(value, float):
        raise NotCanonicalError("floats are not allowed in signed data")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonicalError("object keys must be strings")
            _check(item)
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check(item)
        return
    raise NotCanonicalError(f"type {type(value).__name__} is not JSON")


def canonical_json(value: Any) -> bytes:
    """Serialise plain JSON data (dict/list/str/int/bool/None) as sorted-key compact UTF-8."""
    _check(value)
    return orjson.dumps(value, option=_OPTIONS)
