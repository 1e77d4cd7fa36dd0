"""A hash list's lines as files give them (CSV or JSON lines), checked into list entries.

Columns: `type`, `value`, `category`, and optionally `quality` (PDQ), `grade`, `use`, `note`,
`source`. The file itself is read by node.importfile, as report imports are.
"""

from __future__ import annotations

from typing import Any

from node.cases.intake import choice, text_field
from node.errors import N_, InvalidInput
from node.hashes.values import HashValue, parse_digest, parse_quality
from node.store.hashlists import ListEntry
from protocol.records import Category, HashAlgorithm

HASH_LIST_FIELDS = frozenset(
    {"type", "value", "category", "quality", "grade", "use", "note", "source"}
)
REQUIRED = ("type", "value", "category")
# Who may act on a match of the entry: other hotlines only, or industry (platforms) too.
USES = ("hotlines", "industry")
MAX_GRADE = 32


def entry_from_row(data: dict[str, Any]) -> ListEntry:
    """One line of a hash list file, or InvalidInput saying in one line what is wrong."""
    unknown = set(data) - HASH_LIST_FIELDS
    if unknown:
        raise InvalidInput(N_("unknown field(s): {fields}"), fields=", ".join(sorted(unknown)))
    fields = {name: value for name, value in data.items() if value not in (None, "")}
    for name in REQUIRED:
        if name not in fields:
            raise InvalidInput(N_("{field} is required"), field=name)
    for name, value in fields.items():
        if name != "quality" and not isinstance(value, str):
            raise InvalidInput(N_("{field} must be a string"), field=name)
    alg = choice(HashAlgorithm, fields["type"].strip().lower(), "type")
    quality = None
    if "quality" in fields:
        if alg is not HashAlgorithm.PDQ:
            raise InvalidInput(N_("only a pdq hash carries a quality (pdq:HEX:QUALITY)"))
        quality = parse_quality(fields["quality"])
    value = HashValue(alg, parse_digest(alg, fields["value"].strip().lower()), quality)
    use = fields.get("use", "hotlines")
    if use not in USES:
        raise InvalidInput(
            N_("{field} must be one of {allowed} (got {value!r})"),
            field="use",
            allowed=", ".join(USES),
            value=use,
        )
    return ListEntry(
        value=value,
        category=choice(Category, fields["category"].strip().lower(), "category").value,
        grade=text_field(fields.get("grade"), "grade", MAX_GRADE),
        use=use,
        note=text_field(fields.get("note"), "note", 1024),
        source=text_field(fields.get("source"), "source", 256),
    )
