"""Console people and their sessions: the users and sessions tables (written here only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.store.db import Database, Tx


@dataclass(frozen=True)
class User:
    """An account as stored (its password hash and TOTP secret never leave users.py)."""

    name: str
    role: str
    password_hash: str
    totp_secret: str | None
    language: str | None
    created_at: str
    disabled_at: str | None
    password_set_at: str
    password_temporary: int


@dataclass(frozen=True)
class UserSummary:
    """An account as listed: no secrets, only whether a second factor is set."""

    name: str
    role: str
    language: str | None
    created_at: str
    disabled_at: str | None
    password_set_at: str
    totp: bool


@dataclass(frozen=True)
class LiveSession:
    """A session that has not expired, of a user who is still enabled."""

    id_hash: str
    csrf: str
    expires_at: str
    name: str
    role: str
    language: str | None
    password_temporary: int


class UserStore:
    """Named accounts (hashed passwords, optional TOTP secret) and server-side sessions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, name: str) -> User | None:
        row = await self.db.fetch_one(
            "SELECT name, role, password_hash, totp_secret, language, created_at, disabled_at,"
            " password_set_at, password_temporary FROM users WHERE name = ?",
            (name,),
        )
        return None if row is None else User(**dict(row))

    async def all(self) -> list[UserSummary]:
        rows = await self.db.fetch_all(
            "SELECT name, role, language, created_at, disabled_at, password_set_at,"
            " totp_secret IS NOT NULL AS totp FROM users ORDER BY name"
        )
        return [UserSummary(**{**dict(row), "totp": bool(row["totp"])}) for row in rows]

    @staticmethod
    def insert(conn: Tx, values: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO users (name, role, password_hash, totp_secret, language, created_at,"
            " password_set_at, password_temporary) VALUES (:name, :role, :password_hash,"
            " :totp_secret, :language, :created_at, :password_set_at, :password_temporary)",
            values,
        )

    @staticmethod
    def update(conn: Tx, name: str, values: dict[str, Any]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        conn.execute(
            f"UPDATE users SET {assignments} WHERE name = ?",  # noqa: S608 - our own keys
            (*values.values(), name),
        )

    # sessions ------------------------------------------------------------------------------
    async def session(self, id_hash: str, now: str) -> LiveSession | None:
        """A live session with its user, if the user is still enabled."""
        row = await self.db.fetch_one(
            "SELECT s.id_hash, s.csrf, s.expires_at, u.name, u.role, u.language,"
            " u.password_temporary"
            " FROM sessions s JOIN users u ON u.name = s.user_name"
            " WHERE s.id_hash = ? AND s.expires_at > ? AND u.disabled_at IS NULL",
            (id_hash, now),
        )
        return None if row is None else LiveSession(**dict(row))

    @staticmethod
    def insert_session(
        conn: Tx, *, id_hash: str, user: str, csrf: str, created_at: str, expires_at: str
    ) -> None:
        conn.execute(
            "INSERT INTO sessions (id_hash, user_name, csrf, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (id_hash, user, csrf, created_at, expires_at),
        )

    @staticmethod
    def delete_session(conn: Tx, id_hash: str) -> None:
        conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    @staticmethod
    def delete_sessions_of(conn: Tx, user: str) -> int:
        return conn.execute("DELETE FROM sessions WHERE user_name = ?", (user,)).rowcount

    @staticmethod
    def delete_expired(conn: Tx, now: str) -> int:
        return conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)).rowcount
