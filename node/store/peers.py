"""Peers and pull cursors: the one module that reads and writes the `peers` table."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite
import orjson

from node.store.db import Database, Row, Tx

ERROR_LIMIT = 500  # a peer's last error is a diagnosis, not a copy of a whole answer


@dataclass(frozen=True)
class PeerRow:
    """A stored peer: its address, policy and pinned keys, and the state of our queue to it."""

    node_id: str
    country: str
    endpoint: str
    fingerprint: str
    status: str
    mode: str
    categories: str  # JSON list
    max_tlp: str
    key_document: bytes | None
    added_at: str
    last_contact_at: str | None
    backoff_until: str | None
    backoff_attempts: int
    last_error: str | None
    revoked_keys: str  # JSON list
    keys_refreshed_at: str | None
    delivered: int
    received: int
    refused: str | None
    share_hashes: bool  # our shared hash lists go to it, and its lists are taken from it
    accepts: str  # JSON list: what its key document announces it reads beyond v1
    # Why it has its status when not the operator's doing ("left the directory"); None otherwise.
    status_reason: str | None = None
    # Its pin came from the member directory (or it was adopted by it): its fingerprint,
    # endpoint and status follow the lists the node accepts (node.federation.directory).
    via_directory: bool = False

    @classmethod
    def of(cls, row: Row | aiosqlite.Row) -> PeerRow:
        return cls(
            node_id=row["node_id"],
            country=row["country"],
            endpoint=row["endpoint"],
            fingerprint=row["fingerprint"],
            status=row["status"],
            mode=row["mode"],
            categories=row["categories"],
            max_tlp=row["max_tlp"],
            key_document=row["key_document"],
            added_at=row["added_at"],
            last_contact_at=row["last_contact_at"],
            backoff_until=row["backoff_until"],
            backoff_attempts=int(row["backoff_attempts"]),
            last_error=row["last_error"],
            revoked_keys=row["revoked_keys"],
            keys_refreshed_at=row["keys_refreshed_at"],
            delivered=int(row["delivered"]),
            received=int(row["received"]),
            refused=row["refused"],
            share_hashes=bool(row["share_hashes"]),
            accepts=row["accepts"],
            status_reason=row["status_reason"],
            via_directory=bool(row["via_directory"]),
        )


@dataclass(frozen=True)
class NewPeer:
    """What `add_txn` writes for a peer pinned by the operator."""

    node_id: str
    country: str
    endpoint: str
    fingerprint: str
    mode: str
    categories: list[str]
    max_tlp: str
    key_document: bytes
    revoked_keys: list[str]
    accepts: tuple[str, ...] = ()  # what its key document announces beyond protocol v1
    via_directory: bool = False  # pinned to the fingerprint the member directory gives


# reads ------------------------------------------------------------------------------------
async def get(db: Database, node_id: str) -> PeerRow | None:
    row = await db.fetch_one("SELECT * FROM peers WHERE node_id = ?", (node_id,))
    return None if row is None else PeerRow.of(row)


async def all_peers(db: Database, *, include_removed: bool = False) -> list[PeerRow]:
    """Every peer by node id; removed ones (kept as history) only when asked."""
    where = "" if include_removed else "WHERE status != 'removed'"
    rows = await db.fetch_all(f"SELECT * FROM peers {where} ORDER BY node_id")  # noqa: S608
    return [PeerRow.of(row) for row in rows]


async def known(db: Database) -> list[PeerRow]:
    """Every peer not removed, by node id."""
    return await all_peers(db)


def get_txn(conn: Tx, node_id: str) -> PeerRow | None:
    row = conn.execute("SELECT * FROM peers WHERE node_id = ?", (node_id,)).fetchone()
    return None if row is None else PeerRow.of(row)


def routable_txn(conn: Tx) -> list[PeerRow]:
    """Peers a case may be routed to (suspended ones too: routing records that a case would
    have gone to one)."""
    rows = conn.execute("SELECT * FROM peers WHERE status IN ('active', 'suspended')")
    return [PeerRow.of(row) for row in rows]


def country_txn(conn: Tx, node_id: str) -> str | None:
    row = conn.execute("SELECT country FROM peers WHERE node_id = ?", (node_id,)).fetchone()
    return None if row is None else str(row[0])


async def pull_cursor(db: Database, peer_id: str) -> int:
    """How far we have applied what `peer_id` serves us to pull (0: nothing yet)."""
    row = await db.fetch_one("SELECT after_seq FROM pull_cursors WHERE peer_id = ?", (peer_id,))
    return int(row["after_seq"]) if row else 0


# writes (inside the caller's transaction) ---------------------------------------------------
def add_txn(conn: Tx, peer: NewPeer, at: str) -> None:
    """Pin a peer, or pin again one that was removed. A peer not removed is refused by the
    caller first (`get_txn`)."""
    conn.execute(
        "INSERT OR REPLACE INTO peers (node_id, country, endpoint, fingerprint, status,"
        " mode, categories, max_tlp, key_document, added_at, keys_refreshed_at,"
        " revoked_keys, accepts, via_directory) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?)",
        (
            peer.node_id,
            peer.country,
            peer.endpoint,
            peer.fingerprint,
            peer.mode,
            orjson.dumps(sorted(peer.categories)).decode(),
            peer.max_tlp,
            peer.key_document,
            at,
            at,
            orjson.dumps(sorted(peer.revoked_keys)).decode(),
            orjson.dumps(sorted(peer.accepts)).decode(),
            int(peer.via_directory),
        ),
    )


def set_status_txn(conn: Tx, node_id: str, status: str, reason: str | None = None) -> None:
    """A new status, and why when it is not the operator's own decision (`reason`)."""
    # Resuming is the operator's word that the peer is reachable: forget old backoff.
    conn.execute(
        "UPDATE peers SET status = ?, status_reason = ?, backoff_until = NULL,"
        " backoff_attempts = 0, refused = NULL WHERE node_id = ?",
        (status, reason, node_id),
    )


def set_via_directory_txn(conn: Tx, node_id: str, via_directory: bool) -> None:
    """Whether the peer's pin, endpoint and status follow the member directory from now on."""
    conn.execute(
        "UPDATE peers SET via_directory = ? WHERE node_id = ?", (int(via_directory), node_id)
    )


def repin_txn(conn: Tx, node_id: str, fingerprint: str) -> None:
    """A new identity fingerprint, given by a threshold-signed member list (and only by one).
    The key document signed by the old identity goes: the next fetch is checked against the
    new pin, and until then the peer has no keys (nothing is sealed to it or accepted from it
    under the old ones)."""
    conn.execute(
        "UPDATE peers SET fingerprint = ?, key_document = NULL, keys_refreshed_at = NULL,"
        " backoff_until = NULL, backoff_attempts = 0, refused = NULL WHERE node_id = ?",
        (fingerprint, node_id),
    )


def set_endpoint_txn(conn: Tx, node_id: str, endpoint: str) -> None:
    """A new address (the member list moved it): the queue is tried there at once."""
    conn.execute(
        "UPDATE peers SET endpoint = ?, backoff_until = NULL, backoff_attempts = 0,"
        " refused = NULL WHERE node_id = ?",
        (endpoint, node_id),
    )


def set_policy_txn(
    conn: Tx,
    node_id: str,
    *,
    categories: list[str],
    max_tlp: str,
    mode: str,
    share_hashes: bool,
) -> None:
    """A new policy (or mode) is the operator's word too: backoff and refusal are forgotten."""
    conn.execute(
        "UPDATE peers SET categories = ?, max_tlp = ?, mode = ?, share_hashes = ?,"
        " backoff_until = NULL, backoff_attempts = 0, refused = NULL WHERE node_id = ?",
        (orjson.dumps(sorted(categories)).decode(), max_tlp, mode, int(share_hashes), node_id),
    )


def set_document_txn(
    conn: Tx, node_id: str, document: bytes, revoked: list[str], accepts: list[str], at: str
) -> None:
    conn.execute(
        "UPDATE peers SET key_document = ?, revoked_keys = ?, accepts = ?, keys_refreshed_at = ?"
        " WHERE node_id = ?",
        (
            document,
            orjson.dumps(sorted(revoked)).decode(),
            orjson.dumps(sorted(accepts)).decode(),
            at,
            node_id,
        ),
    )


def hash_recipients_txn(conn: Tx, feature: str) -> list[str]:
    """Peers our shared hash lists go to: their policy shares hashes and their key document
    announces `feature` (the hashset record). Suspended ones too: their rows wait in their
    queue, as everything else for them does, and go when they are resumed."""
    rows = conn.execute(
        "SELECT node_id, accepts FROM peers WHERE share_hashes = 1"
        " AND status IN ('active', 'suspended') ORDER BY node_id"
    )
    return [str(row[0]) for row in rows if feature in orjson.loads(row[1])]


def heard_from_txn(conn: Tx, node_id: str, *, received: int, at: str) -> None:
    """The peer reached us (a push it sent, or a page we pulled from it): it is up, so its
    backoff and refusal are forgotten and our queue to it moves at once."""
    conn.execute(
        "UPDATE peers SET received = received + ?, last_contact_at = ?, backoff_until = NULL,"
        " backoff_attempts = 0, refused = NULL WHERE node_id = ?",
        (received, at, node_id),
    )


def delivered_txn(conn: Tx, node_id: str, *, count: int, at: str) -> None:
    """The peer answered a push of ours: `count` records taken, backoff and errors forgotten."""
    conn.execute(
        "UPDATE peers SET delivered = delivered + ?, last_contact_at = ?,"
        " backoff_until = NULL, backoff_attempts = 0, last_error = NULL, refused = NULL"
        " WHERE node_id = ?",
        (count, at, node_id),
    )


def collected_txn(conn: Tx, node_id: str, *, count: int) -> None:
    """A pulling peer acknowledged `count` records of ours (its cursor moved past them)."""
    conn.execute("UPDATE peers SET delivered = delivered + ? WHERE node_id = ?", (count, node_id))


def touched_txn(conn: Tx, node_id: str, at: str) -> None:
    """A signed request from the peer (a pull) reached us."""
    conn.execute("UPDATE peers SET last_contact_at = ? WHERE node_id = ?", (at, node_id))


def backoff_attempts_txn(conn: Tx, node_id: str) -> int | None:
    row = conn.execute(
        "SELECT backoff_attempts FROM peers WHERE node_id = ?", (node_id,)
    ).fetchone()
    return None if row is None else int(row[0])


def back_off_txn(conn: Tx, node_id: str, *, attempts: int, until: str, error: str) -> None:
    conn.execute(
        "UPDATE peers SET backoff_attempts = ?, backoff_until = ?, last_error = ?"
        " WHERE node_id = ?",
        (attempts, until, error[:ERROR_LIMIT], node_id),
    )


def refused_txn(conn: Tx, node_id: str, *, error: str, until: str) -> None:
    """The peer refused our push outright: held (not backed off) until `until`."""
    conn.execute(
        "UPDATE peers SET refused = ?, last_error = ?, backoff_until = ? WHERE node_id = ?",
        (error[:ERROR_LIMIT], error[:ERROR_LIMIT], until, node_id),
    )


def move_pull_cursor_txn(conn: Tx, peer_id: str, after_seq: int, at: str) -> None:
    conn.execute(
        "INSERT INTO pull_cursors (peer_id, after_seq, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(peer_id) DO UPDATE SET after_seq = excluded.after_seq,"
        " updated_at = excluded.updated_at",
        (peer_id, after_seq, at),
    )
