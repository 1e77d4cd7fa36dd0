"""Hash lists shared between hotlines: ours go to peers as `hashset` records, theirs come in.

Our shared lists' changes go through the peer outbox; a peer's records are applied into the
list named after it.

Sending. Every change of one of our lists marked shared is queued, in the transaction of the
change, for every peer whose policy shares hashes and whose key document announces the hashset
record (protocol.md §9.10, §11); a peer that starts receiving our lists, and every peer when a
list becomes shared, is sent it whole: the hashes that left it, then those in it. Each record
is one change of the list, numbered by the list's `seq`. Delivery, receipts, backoff, the pull
cursor and dead letters are the peer outbox's, as for reports.

Receiving. A peer writes only its own lists: `<peer>/<name>` here, whatever the record says.
A change whose `seq` is not above the last one applied for that list changes nothing. A list
received is never sent on: only lists whose owner is this node are ever queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from typing import TypeVar

from pydantic import ValidationError

from node.clock import iso, parse_iso
from node.errors import InvalidInput
from node.hashes.values import HashValue, parse_digest
from node.store import audit, hashlists, peer_outbox
from node.store import peers as peer_store
from node.store.db import Tx
from node.store.hashlists import Applied, HashList, ListEntry
from node.store.peer_outbox import Queued
from protocol.features import HASHSET
from protocol.ids import new_id
from protocol.records import (
    MAX_HASH_SET_ENTRIES,
    Category,
    HashAddition,
    HashRemoval,
    HashSet,
    HashUse,
    record_bytes,
)

log = logging.getLogger("hotline.hashes")
RECORD_TYPE = "hashset"

# Called with (conn, list, what changed, at) inside the transaction that applied a peer's
# change: the matching index takes the entries, and open cases are matched against them.
OnChange = Callable[[Tx, HashList, Applied, str], object]


class HashSetRefused(Exception):
    """A well-signed hashset record that this node does not take (the item is rejected)."""


class HashSharing:
    def __init__(
        self,
        *,
        node_id: str,
        wake: Callable[[list[str]], None],
        on_change: OnChange | None = None,
        chunk: int = MAX_HASH_SET_ENTRIES,
    ) -> None:
        self.node_id = node_id
        # Pushes to peers, asked for after the commit that queued for them (`kick`).
        self.wake = wake
        self.on_change = on_change
        self.chunk = min(chunk, MAX_HASH_SET_ENTRIES)

    def kick(self, peers: list[str]) -> None:
        """Push now to the peers a `*_txn` call queued for (call it after the commit)."""
        self.wake(peers)

    # sending --------------------------------------------------------------------------------
    def queue_txn(self, conn: Tx, hash_list: HashList, applied: Applied, at: str) -> list[str]:
        """A change of one of our lists, in its transaction: queued for the peers that receive
        our lists when the list is shared. Returns those peers (to `kick` after the commit).

        Removals go before additions, each side in records of at most `chunk` entries, each
        record under the next `seq` of the list. A list we do not own is never queued."""
        if hash_list.owner != self.node_id or not applied.changed:
            return []
        current = hashlists.list_of_owner_txn(conn, self.node_id, hash_list.origin_name)
        if current is None or not current.shared:
            return []
        peers = peer_store.hash_recipients_txn(conn, HASHSET)
        if peers:
            self._queue(
                conn,
                current,
                peers,
                (value for _, value in applied.removed),
                (entry for _, entry in applied.added),
                at,
            )
        return peers

    def share_list_txn(self, conn: Tx, hash_list: HashList, at: str) -> list[str]:
        """One of our lists has just been marked shared: it goes whole to every peer that
        receives our lists. Returns those peers."""
        if hash_list.owner != self.node_id:
            return []
        peers = peer_store.hash_recipients_txn(conn, HASHSET)
        if peers:
            self._queue_whole(conn, hash_list, peers, at)
        return peers

    def share_all_txn(self, conn: Tx, peer_id: str, at: str) -> list[str]:
        """A peer has just started to receive our lists (its policy, or its key document):
        every list of ours marked shared goes to it whole. Returns [peer_id] when anything was
        queued."""
        lists = hashlists.shared_lists_txn(conn, self.node_id)
        records = sum(self._queue_whole(conn, shared, [peer_id], at) for shared in lists)
        if lists:
            audit.append(
                conn,
                at=parse_iso(at),
                actor="hashes",
                event="hashes.shared_whole",
                subject=peer_id,
                details={"lists": [shared.name for shared in lists], "records": records},
            )
        return [peer_id] if records else []

    def _queue_whole(self, conn: Tx, hash_list: HashList, peers: list[str], at: str) -> int:
        # The hashes that left the list first: a peer may hold some from an earlier time when
        # it was sent the list (a removal made while the list was not shared, or the peer not
        # allowed, reached nobody). Removing what a peer does not hold changes nothing there.
        current = hashlists.list_of_owner_txn(conn, self.node_id, hash_list.origin_name)
        if current is None:
            return 0
        return self._queue(
            conn,
            current,
            peers,
            hashlists.removed_values_txn(conn, current.id),
            (entry for _, entry in hashlists.active_entries_txn(conn, current.id)),
            at,
        )

    def _queue(
        self,
        conn: Tx,
        hash_list: HashList,
        peers: list[str],
        removals: Iterable[HashValue],
        additions: Iterable[ListEntry],
        at: str,
    ) -> int:
        """Records of at most `chunk` entries, streamed (a list may hold millions), each under
        the list's next seq and queued for every peer; returns how many."""
        now = parse_iso(at)
        seq = hash_list.seq
        chunks: Iterator[tuple[tuple[HashRemoval, ...], tuple[HashAddition, ...]]] = chain(
            ((chunk, ()) for chunk in _chunks(map(_removal, removals), self.chunk)),
            (((), chunk) for chunk in _chunks(_additions(additions, at), self.chunk)),
        )
        count = 0
        for remove, add in chunks:
            seq += 1
            record = HashSet(
                id=new_id(now),
                origin=self.node_id,
                name=hash_list.origin_name,
                seq=seq,
                at=now,
                add=add,
                remove=remove,
            )
            item = Queued(RECORD_TYPE, str(record.id), "", record_bytes(record), at)
            for peer in peers:
                peer_outbox.enqueue_txn(conn, peer, [item])
            count += 1
        if count:
            hashlists.set_seq_txn(conn, hash_list.id, seq, at)
        return count

    # receiving ------------------------------------------------------------------------------
    def apply_txn(self, conn: Tx, sender: str, record: HashSet, at: str) -> bool:
        """Apply a peer's change to its list, inside the inbox's transaction. False when it
        changes nothing (its seq is not above the last applied: a copy, or an older change);
        HashSetRefused when this node does not take it."""
        peer = peer_store.get_txn(conn, sender)
        if peer is None or not peer.share_hashes:
            raise HashSetRefused(
                f"{self.node_id} does not take hash lists from {sender}:"
                " its policy for that peer does not share hashes"
            )
        if record.origin != sender:  # checked when the frame opened (author = sender) too
            raise HashSetRefused(f"hashset of {record.origin} sent by {sender}")
        hash_list = self._list_of(conn, sender, record.name, at)
        if record.seq <= hash_list.seq:
            return False
        try:
            removals = [_value(entry) for entry in record.remove]
            additions = [
                ListEntry(
                    value=_value(entry),
                    category=entry.category.value,
                    grade=entry.grade,
                    use=entry.use.value,
                    # "known to DE since ...": when the origin added it, else when it said so.
                    added_at=iso(entry.added_at or record.at),
                )
                for entry in record.add
            ]
        except InvalidInput as exc:  # the record's own rules already hold these; kept whole
            raise HashSetRefused(f"hashset {record.id}: {exc}") from exc
        removed = hashlists.remove_entries_txn(conn, hash_list.id, removals, at)
        added = hashlists.upsert_entries_txn(conn, hash_list.id, additions, at)
        hashlists.set_seq_txn(conn, hash_list.id, record.seq, at)
        applied = Applied(added=added.added, removed=removed.removed)
        audit.append(
            conn,
            at=parse_iso(at),
            actor=f"peer:{sender}",
            event="hashes.received",
            subject=hash_list.name,
            details={
                "seq": record.seq,
                "added": len(applied.added),
                "removed": len(applied.removed),
            },
        )
        if applied.changed and self.on_change is not None:
            changed = hashlists.list_of_owner_txn(conn, sender, record.name)
            assert changed is not None  # found or made above, in this transaction
            self.on_change(conn, changed, applied, at)
        return True

    def _list_of(self, conn: Tx, sender: str, name: str, at: str) -> HashList:
        """The peer's list here, made on its first record: `<peer>/<name>`, owned by the peer
        (so no record of a peer can reach a list of ours or of another peer)."""
        found = hashlists.list_of_owner_txn(conn, sender, name)
        if found is not None:
            return found
        local_name = f"{sender}/{name}"
        if hashlists.list_named_txn(conn, local_name) is not None:
            raise HashSetRefused(f"a list named {local_name} that {sender} does not own exists")
        return hashlists.create_list_txn(
            conn, name=local_name, owner=sender, origin_name=name, shared=False, at=at
        )


def _value(entry: HashRemoval) -> HashValue:
    quality = entry.quality if isinstance(entry, HashAddition) else None
    return HashValue(entry.alg, parse_digest(entry.alg, entry.value), quality)


def _removal(value: HashValue) -> HashRemoval:
    return HashRemoval(alg=value.alg, value=value.hex)


def _additions(entries: Iterable[ListEntry], at: str) -> Iterator[HashAddition]:
    """Our entries as the wire carries them. An entry the wire cannot carry is not sent: a
    grade outside the wire's form goes without its grade, a category or use outside the
    vocabularies goes not at all (and the log says so)."""
    for entry in entries:
        fields = {
            "alg": entry.value.alg,
            "value": entry.value.hex,
            "quality": entry.value.quality,
            "category": entry.category,
            "use": entry.use,
            "added_at": parse_iso(entry.added_at or at),
        }
        try:
            yield HashAddition(**fields, grade=entry.grade)
            continue
        except ValidationError:
            pass
        try:
            Category(entry.category)
            HashUse(entry.use)
            yield HashAddition(**fields)
        except (ValueError, ValidationError):
            log.warning(
                "hash %s not shared: category %r or use %r is not one the protocol carries",
                entry.value.text,
                entry.category,
                entry.use,
            )


_T = TypeVar("_T")


def _chunks(items: Iterable[_T], size: int) -> Iterator[tuple[_T, ...]]:
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk
