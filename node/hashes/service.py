"""Known content: hash lists kept, matched at once, and what they match on cases.

Every change of a list (an import, a removal, a peer's change) goes through `changed_txn`,
inside the writer transaction that made it: the in-memory index learns it there, so that the
next case submitted (in a later writer transaction) is matched against it, and the open cases
are matched against the new entries in the same transaction. A match is evidence: it pre-fills
a case's category and brings it first in the triage queue; it never assesses or routes a case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from node.cases.lifecycle import OPEN_STATUSES
from node.clock import Clock, iso
from node.errors import N_, Conflict, InvalidInput, NotFound
from node.hashes.index import KnownHashIndex
from node.hashes.values import PDQ_MIN_QUALITY, HashValue
from node.store import audit, hashlists
from node.store.db import Database, Tx
from node.store.hashlists import Applied, HashList, ListEntry
from node.store.reports import ReportStore
from protocol.records import HashAlgorithm

log = logging.getLogger("hotline.hashes")

# Our lists' names: they travel to peers as `<node>/<name>`, so no slash of their own.
LIST_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
# What a changed list hands to the peers that receive it (node.hashes.sharing), in the same
# transaction: (conn, list, what changed, at) -> the peers it queued records for.
ShareHook = Callable[[Tx, HashList, Applied, str], list[str]]
# What a list of ours newly marked shared hands to the peers, in the same transaction: the list
# goes whole (node.hashes.sharing): (conn, list, at) -> the peers it queued records for.
ShareListHook = Callable[[Tx, HashList, str], list[str]]


@dataclass(frozen=True, slots=True)
class Found:
    """One entry a hash matched: `hashes match` and the API show these."""

    list_name: str
    list_owner: str
    entry_id: int
    value: HashValue
    category: str
    grade: str | None
    distance: int
    since: str


@dataclass
class ChangeResult:
    """What one batch of a list's change did."""

    added: int = 0
    removed: int = 0
    unchanged: int = 0
    cases_matched: set[str] = field(default_factory=set)
    peers: set[str] = field(default_factory=set)  # the peers that got records of it to send


class KnownContent:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        pdq_max_distance: int,
        share: ShareHook | None = None,
        share_list: ShareListHook | None = None,
        kick: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.node_id = node_id
        self.index = KnownHashIndex(pdq_max_distance=pdq_max_distance)
        self.share = share
        self.share_list = share_list
        # Pushes, after the commit, to the peers a change queued records for: a list change
        # reaches them at once, not at the next check of the queues.
        self.kick = kick

    async def load(self) -> int:
        """Every active, matchable entry into the index: what a node does at start."""

        def read(conn: Tx) -> int:
            self.index.add_many(hashlists.matchable_keys_txn(conn))
            return len(self.index)

        count = await self.db.run(read)
        log.info("hash lists: %d entries matchable", count)
        return count

    # lists ------------------------------------------------------------------------------
    async def lists(self) -> list[HashList]:
        return await hashlists.all_lists(self.db)

    async def add_entries(
        self, name: str, entries: Sequence[ListEntry], *, share: bool | None, actor: str
    ) -> ChangeResult:
        """Add one batch of entries to our list `name` (created on first use). `share` marks
        the list shared with peers (True), private (False) or leaves it as it is (None)."""
        check_list_name(name)

        def add_txn(conn: Tx) -> ChangeResult:
            at = iso(self.clock.now())
            hash_list, peers = self._our_list_txn(conn, name, share=share, at=at)
            applied = hashlists.upsert_entries_txn(conn, hash_list.id, entries, at)
            result = self.changed_txn(conn, hash_list, applied, at)
            result.peers.update(peers)
            result.unchanged = len(entries) - result.added
            if applied.changed:
                audit.append(
                    conn,
                    at=self.clock.now(),
                    actor=actor,
                    event="hashes.added",
                    subject=name,
                    details={"added": result.added, "cases_matched": len(result.cases_matched)},
                )
            return result

        return await self._run_changing(add_txn)

    async def remove_entries(
        self, name: str, values: Sequence[HashValue], *, actor: str
    ) -> ChangeResult:
        def remove_txn(conn: Tx) -> ChangeResult:
            at = iso(self.clock.now())
            hash_list = hashlists.list_named_txn(conn, name)
            if hash_list is None:
                raise NotFound(N_("no hash list named {name}"), name=name)
            if hash_list.owner != self.node_id:
                raise Conflict(
                    N_("{name} is {owner}'s list: only its owner changes it"),
                    name=name,
                    owner=hash_list.owner,
                )
            applied = hashlists.remove_entries_txn(conn, hash_list.id, values, at)
            result = self.changed_txn(conn, hash_list, applied, at)
            result.unchanged = len(values) - result.removed
            if applied.changed:
                audit.append(
                    conn,
                    at=self.clock.now(),
                    actor=actor,
                    event="hashes.removed",
                    subject=name,
                    details={"removed": result.removed},
                )
            return result

        return await self._run_changing(remove_txn)

    async def _run_changing(self, change: Callable[[Tx], ChangeResult]) -> ChangeResult:
        """Run a change; if its transaction fails after the index learnt part of it, the
        index is read again from what the database holds (rare: a full disk, a crash)."""
        try:
            result = await self.db.run(change)
        except Exception:
            self.index = KnownHashIndex(pdq_max_distance=self.index.pdq_max_distance)
            await self.load()
            raise
        if result.peers and self.kick is not None:
            self.kick(sorted(result.peers))
        return result

    def _our_list_txn(
        self, conn: Tx, name: str, *, share: bool | None, at: str
    ) -> tuple[HashList, list[str]]:
        """Our list `name` (made if new, its sharing set as asked), and the peers that were
        queued its whole content because it has just been marked shared."""
        hash_list = hashlists.list_named_txn(conn, name)
        if hash_list is None:
            created = hashlists.create_list_txn(
                conn, name=name, owner=self.node_id, origin_name=name, shared=bool(share), at=at
            )
            return created, []
        if hash_list.owner != self.node_id:
            raise Conflict(
                N_("{name} is {owner}'s list: only its owner changes it"),
                name=name,
                owner=hash_list.owner,
            )
        if share is not None and share != hash_list.shared:
            hashlists.set_shared_txn(conn, hash_list.id, share, at)
            hash_list = hashlists.list_named_txn(conn, name) or hash_list
            if share and self.share_list is not None:
                # What it held before goes whole; this change follows as its own records.
                return hash_list, self.share_list(conn, hash_list, at)
        return hash_list, []

    def changed_txn(self, conn: Tx, hash_list: HashList, applied: Applied, at: str) -> ChangeResult:
        """The one place a list's change takes effect: the index, the open cases it matches,
        the peers it is shared with. Called inside the writer transaction of the change."""
        for entry_id, value in applied.removed:
            self.index.remove(entry_id, value.alg, value.digest)
        added = [(i, e.value.alg, e.value.digest) for i, e in applied.added if e.value.matchable]
        self.index.add_many(added)
        result = ChangeResult(added=len(applied.added), removed=len(applied.removed))
        result.cases_matched = self._match_open_cases_txn(conn, applied.added, at)
        if self.share is not None and hash_list.owner == self.node_id and applied.changed:
            # A received list is never passed on.
            result.peers.update(self.share(conn, hash_list, applied, at))
        return result

    def _match_open_cases_txn(
        self, conn: Tx, added: list[tuple[int, ListEntry]], at: str
    ) -> set[str]:
        """New entries against the hashes of the cases still open."""
        matchable = [(i, e) for i, e in added if e.value.matchable]
        if not matchable:
            return set()
        found: dict[str, list[tuple[int, HashAlgorithm, int, str]]] = {}
        exact: dict[tuple[HashAlgorithm, bytes], list[tuple[int, ListEntry]]] = {}
        pdq: list[tuple[int, ListEntry]] = []
        for entry_id, entry in matchable:
            if entry.value.alg is HashAlgorithm.PDQ:
                pdq.append((entry_id, entry))
            else:
                exact.setdefault((entry.value.alg, entry.value.digest), []).append(
                    (entry_id, entry)
                )
        for alg in {alg for alg, _ in exact}:
            digests = [digest for a, digest in exact if a is alg]
            for report_id, digest in hashlists.open_case_hashes_txn(
                conn, alg, digests, OPEN_STATUSES
            ):
                for entry_id, entry in exact[(alg, digest)]:
                    found.setdefault(report_id, []).append((entry_id, alg, 0, entry.category))
        if pdq:
            # The new entries in a small index of their own, queried with each open case's
            # PDQ hash: a batch's worth of entries, and the open cases read once.
            fresh = KnownHashIndex(pdq_max_distance=self.index.pdq_max_distance)
            fresh.add_many((i, HashAlgorithm.PDQ, e.value.digest) for i, e in pdq)
            categories = {i: e.category for i, e in pdq}
            for report_id, value in hashlists.open_case_pdq_txn(conn, OPEN_STATUSES):
                if not value.matchable:
                    continue
                for entry_id, distance in fresh.match(HashAlgorithm.PDQ, value.digest):
                    found.setdefault(report_id, []).append(
                        (entry_id, HashAlgorithm.PDQ, distance, categories[entry_id])
                    )
        for report_id, matches in found.items():
            self._record_txn(conn, report_id, matches, at)
        return set(found)

    # cases ------------------------------------------------------------------------------
    def match_case_txn(self, conn: Tx, report_id: str, values: Iterable[HashValue], at: str) -> int:
        """A case's hashes against every list, as they are given to it: returns how many
        entries they matched that had not matched this case before."""
        matches: list[tuple[int, HashAlgorithm, int, str]] = []
        for value in values:
            if not value.matchable:
                continue
            for entry_id, distance in self.index.match(value.alg, value.digest):
                matches.append((entry_id, value.alg, distance, ""))
        if not matches:
            return 0
        categories = hashlists.entry_categories_txn(conn, [m[0] for m in matches])
        # An entry the index holds but the database does not (an interrupted change the
        # index has not forgotten yet) is not evidence.
        kept = [(i, alg, d, categories[i]) for i, alg, d, _ in matches if i in categories]
        return self._record_txn(conn, report_id, kept, at)

    def _record_txn(
        self,
        conn: Tx,
        report_id: str,
        matches: list[tuple[int, HashAlgorithm, int, str]],
        at: str,
    ) -> int:
        new = hashlists.add_matches_txn(conn, report_id, [(i, a, d) for i, a, d, _ in matches], at)
        if new:
            closest = min(matches, key=lambda m: (m[2], m[0]))
            ReportStore.mark_known_txn(conn, report_id, category=closest[3], at=at)
        return new

    async def match(self, value: HashValue, *, max_distance: int | None = None) -> list[Found]:
        """Every entry `value` matches, on every list (`hashes match`)."""
        if not value.matchable:
            raise InvalidInput(
                value.unmatched_reason or "", quality=value.quality, minimum=PDQ_MIN_QUALITY
            )
        hits = self.index.match(value.alg, value.digest, max_distance=max_distance)
        entries = await hashlists.entries_by_id(self.db, [entry_id for entry_id, _ in hits])
        found = []
        for entry_id, distance in hits:
            row = entries.get(entry_id)
            if row is None:
                continue
            list_name, owner, entry = row
            found.append(
                Found(
                    list_name=list_name,
                    list_owner=owner,
                    entry_id=entry_id,
                    value=entry.value,
                    category=entry.category,
                    grade=entry.grade,
                    distance=distance,
                    since=entry.added_at or "",
                )
            )
        return found


def check_list_name(name: str) -> str:
    if not re.fullmatch(LIST_NAME_PATTERN, name):
        raise InvalidInput(
            N_(
                "a list name is 1-64 lower-case letters, digits, dots, dashes or underscores,"
                " starting with a letter or digit (got {name!r:.70})"
            ),
            name=name,
        )
    return name
