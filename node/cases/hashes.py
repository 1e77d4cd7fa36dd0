"""Hashes on a case: read from what people and peers give, and attached through one function.

Every path that puts a hash on a case (submit, import, the API, the console, a peer's report)
calls `attach_hashes_txn` inside the transaction that writes the case, so whatever a hash
added to a case sets off (the audit entry, and matching against hash lists) happens on every
path, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from node.errors import N_, InvalidInput, Sentence
from node.hashes.values import PDQ_MIN_QUALITY, HashValue, parse_hash
from node.store import audit, report_hashes
from node.store.db import Tx
from node.store.report_hashes import ReportHash

# What one report record carries at most (protocol.records.Report.hashes): a case holds no
# more, so that it can always travel.
MAX_HASHES = 256


def checked_hashes(given: object) -> tuple[HashValue, ...]:
    """The hashes of a request, an import line or a form: a list of `TYPE:VALUE` texts (or one
    text of them separated by spaces, as a CSV cell or a form field holds them), each read by
    parse_hash. InvalidInput says in one line what is wrong with the first bad one."""
    if given is None:
        return ()
    if isinstance(given, str):
        texts: list[Any] = given.split()
    elif isinstance(given, list | tuple):
        texts = list(given)
    else:
        raise InvalidInput(N_("hashes must be a list of TYPE:VALUE texts"))
    if len(texts) > MAX_HASHES:
        raise InvalidInput(N_("at most {limit} hashes at once"), limit=MAX_HASHES)
    return tuple(parse_hash(text) for text in texts)


class HashMatcher(Protocol):
    """What a case's new hashes are matched against: the hash lists (node.hashes.service)."""

    def match_case_txn(self, conn: Tx, report_id: str, values: Iterable[HashValue], at: str) -> int:
        """Record the list entries `values` match as evidence on the case; how many are new."""


def check_room(report_id: str, values: Sequence[HashValue]) -> None:
    """InvalidInput when `values` (duplicates counted once) are more than a case may hold:
    for hashes gathered for a case before it is stored (an import's lines of one URL)."""
    if len({(value.alg, value.digest) for value in values}) > MAX_HASHES:
        raise _too_many(report_id, MAX_HASHES)


def _too_many(report_id: str, limit: int) -> InvalidInput:
    return InvalidInput(
        N_("a case holds at most {limit} hashes (report {report})"), limit=limit, report=report_id
    )


def attach_hashes_txn(
    conn: Tx,
    report_id: str,
    values: Sequence[HashValue],
    *,
    matcher: HashMatcher,
    source: str,
    at: str,
    actor: str | None = None,
    limit: int | None = MAX_HASHES,
) -> list[HashValue]:
    """Put hashes on a case inside the caller's write transaction; returns those it did not
    hold yet (the same hash twice changes nothing). `source` is where they came from
    (`analyst`, `import`, `peer:<node id>`); `actor` who the audit log names (else `source`).
    The new ones are matched against the hash lists at once (`matcher`), in this transaction.
    A PDQ hash of low quality is kept like any other: it is never matched (HashValue.matchable).
    `limit`: how many hashes the case may hold (InvalidInput beyond); None for a peer's case,
    which holds what its origin sent and is never sent on.
    """
    if not values:
        return []
    added = report_hashes.add_txn(conn, report_id, values, source=source, at=at)
    if not added:
        return []
    if limit is not None and report_hashes.count_txn(conn, report_id) > limit:
        raise _too_many(report_id, limit)
    audit.append_many(
        conn,
        [
            audit.Entry(
                at,
                actor or source,
                "report.hashes_added",
                report_id,
                {"source": source, "hashes": [value.text for value in added]},
            )
        ],
    )
    matcher.match_case_txn(conn, report_id, added, at)
    return added


def unmatched_reason(value: HashValue) -> Sentence | None:
    """Why a hash on a case is never matched (a PDQ hash of low quality), as a sentence."""
    template = value.unmatched_reason
    if template is None:
        return None
    return Sentence(template, quality=value.quality, minimum=PDQ_MIN_QUALITY)


def hashes_view(
    found: Iterable[ReportHash], *, say: Callable[[Sentence], str] = str
) -> list[dict[str, Any]]:
    """A case's hashes as `reports show` and the API give them (`say`: the sentences in
    another language than English, for the console)."""
    shown = []
    for item in found:
        reason = unmatched_reason(item.value)
        shown.append(
            {
                "type": item.value.alg.value,
                "value": item.value.hex,
                "quality": item.value.quality,
                "source": item.source,
                "added_at": item.added_at,
                "matchable": item.value.matchable,
                "unmatched_reason": say(reason) if reason is not None else None,
            }
        )
    return shown
