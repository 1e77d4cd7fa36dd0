"""API tokens: stored as a SHA-256 hash of the secret, revoked rows kept for the audit."""

from __future__ import annotations

from dataclasses import dataclass

from node.store.db import Database, Tx


@dataclass(frozen=True)
class TokenRow:
    id: str
    role: str
    name: str
    created_at: str
    revoked_at: str | None
    person: str | None  # the console account it belongs to (None: a token of no one, of old)


async def list_all(db: Database) -> list[TokenRow]:
    rows = await db.fetch_all(
        "SELECT id, role, name, created_at, revoked_at, person FROM tokens ORDER BY created_at, id"
    )
    return [TokenRow(*row) for row in rows]


async def get(db: Database, token_id: str) -> TokenRow | None:
    row = await db.fetch_one(
        "SELECT id, role, name, created_at, revoked_at, person FROM tokens WHERE id = ?",
        (token_id,),
    )
    return None if row is None else TokenRow(*row)


async def live_by_hash(db: Database, token_hash: str) -> TokenRow | None:
    """The token with this hash, unless it was revoked or its person's account is disabled."""
    row = await db.fetch_one(
        "SELECT t.id, t.role, t.name, t.created_at, t.revoked_at, t.person FROM tokens t"
        " WHERE t.token_hash = ? AND t.revoked_at IS NULL AND (t.person IS NULL OR EXISTS"
        " (SELECT 1 FROM users u WHERE u.name = t.person AND u.disabled_at IS NULL))",
        (token_hash,),
    )
    return None if row is None else TokenRow(*row)


def insert_txn(
    conn: Tx,
    *,
    token_id: str,
    role: str,
    name: str,
    token_hash: str,
    at: str,
    person: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO tokens (id, role, name, token_hash, created_at, person)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (token_id, role, name, token_hash, at, person),
    )


def revoke_txn(conn: Tx, token_id: str, at: str) -> None:
    conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (at, token_id))
