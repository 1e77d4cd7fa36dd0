"""The SQLite database: WAL, busy timeout, migrations, one serialised writer and a reader."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from node.errors import StoreError
from node.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        await conn.close()
        raise
    return conn


class Database:
    """One writer connection behind a lock (SQLite allows one writer) and one reader (WAL)."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        if not path.exists():
            # The database holds personal data; SQLite gives its -wal/-shm files the same mode.
            path.touch(mode=0o600)
        opened: list[aiosqlite.Connection] = []
        try:
            writer = await _connect(path)
            opened.append(writer)
            mode = await (await writer.execute("PRAGMA journal_mode = WAL")).fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreError(f"{path}: cannot switch the database to WAL mode")
            await _migrate(writer)
            reader = await _connect(path)
        except BaseException as exc:
            # A connection left open keeps its (non-daemon) worker thread alive: close it.
            for conn in opened:
                await conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: everything inside commits together or not at all."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._reader.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._reader.execute(sql, tuple(params)) as cursor:
            row: aiosqlite.Row | None = await cursor.fetchone()
            return row


async def _migrate(conn: aiosqlite.Connection) -> None:
    row = await (await conn.execute("PRAGMA user_version")).fetchone()
    current = int(row[0]) if row else 0
    if current > len(MIGRATIONS):
        raise StoreError(
            f"database schema version {current} is newer than this program "
            f"({len(MIGRATIONS)}); upgrade hotline-node"
        )
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        # executescript commits on its own; the version bump is inside the same script.
        await conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
