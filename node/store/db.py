"""The SQLite database: WAL, busy timeout, migrations, one serialised writer and a reader.

Writes run in one dedicated thread on a plain sqlite3 connection. A whole transaction is
handed to that thread as one function (`run`), because a hop between the event loop and a
database thread per statement costs more than the statements themselves on hot paths (a
received batch is thousands of statements). Reads go through aiosqlite on a second
connection, which WAL lets proceed while a write is in progress.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiosqlite

from node.errors import StorageFull, StoreError, is_disk_full
from node.store.disk import DiskSpace
from node.store.migrations import MIGRATIONS

log = logging.getLogger("hotline.store")
BUSY_TIMEOUT_MS = 10_000
# Less than this free, and an I/O error from SQLite is taken for the full disk it most likely is.
NO_ROOM_BYTES = 1024 * 1024
T = TypeVar("T")
P = ParamSpec("P")
Row = sqlite3.Row
Tx = sqlite3.Connection  # what transaction functions receive


# The writer's page cache: what a busy node wants (see `_setup`); a small one, or many nodes on
# one machine, can take less (`[storage] cache_mib`).
DEFAULT_CACHE_MIB = 64


def _setup(conn: sqlite3.Connection, cache_mib: int = DEFAULT_CACHE_MIB) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # FULL: a commit is on disk before we answer. A receiver signs a receipt for what it
    # committed, and the sender then stops sending it; NORMAL could lose the last commits to
    # a power cut after the receipt went out.
    conn.execute("PRAGMA synchronous = FULL")
    # Deleted or purged personal data is overwritten, not left in free pages.
    conn.execute("PRAGMA secure_delete = ON")
    # A received or imported batch rewrites the same index pages many times: a larger cache
    # and a checkpoint every 64 MiB of WAL (not every 4 MiB) write each page back once, which
    # made applying a batch about 15% cheaper. After a checkpoint the WAL file is cut back to
    # at most 64 MiB; `truncate_wal` empties it (after personal data is purged).
    conn.execute(f"PRAGMA cache_size = -{int(cache_mib) * 1024}")
    conn.execute("PRAGMA wal_autocheckpoint = 16384")
    conn.execute("PRAGMA journal_size_limit = 67108864")


def _open_writer(path: Path, cache_mib: int = DEFAULT_CACHE_MIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _setup(conn, cache_mib)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreError(f"{path}: cannot switch the database to WAL mode")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


async def _open_reader(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except BaseException:
        await conn.close()
        raise
    return conn


def disk_full(exc: BaseException, disk: DiskSpace | None = None) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"), the system's ENOSPC itself, or (with
    `disk`) an I/O error on a file system with no space left: SQLite says "disk I/O error" when
    it cannot grow the -shm file or make the -wal one."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(code, int):
            return "disk is full" in str(exc)
        if code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        if code & 0xFF == sqlite3.SQLITE_IOERR and disk is not None:
            free = disk.free_bytes(fresh=True)
            return free is not None and free < NO_ROOM_BYTES
        return False
    return is_disk_full(exc)


class Database:
    """One writer (SQLite allows one) in its own thread, one aiosqlite reader."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        reader: aiosqlite.Connection,
        disk: DiskSpace | None = None,
    ) -> None:
        self.path = path
        self._writer = writer
        self._executor = executor
        self._reader = reader
        self._lock = asyncio.Lock()
        # The file system under the database: told when a write finds it full, and when one
        # succeeds again, so that background work waits instead of failing (node/store/disk.py).
        self.disk = disk or DiskSpace(path.parent)

    @classmethod
    async def open(
        cls, path: Path, disk: DiskSpace | None = None, *, cache_mib: int = DEFAULT_CACHE_MIB
    ) -> Database:
        disk = disk or DiskSpace(path.parent)
        if not path.exists():
            # The database holds personal data; SQLite gives its -wal/-shm files the same mode.
            path.touch(mode=0o600)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()
        try:
            writer = await loop.run_in_executor(executor, _open_writer, path, cache_mib)
        except BaseException as exc:
            executor.shutdown(wait=True)
            if disk_full(exc, disk):
                raise StorageFull() from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {path}: {exc}") from exc
            raise
        try:
            reader = await _open_reader(path)
        except BaseException as exc:
            await loop.run_in_executor(executor, writer.close)
            executor.shutdown(wait=True)
            if disk_full(exc, disk):
                raise StorageFull() from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(path, writer, executor, reader, disk)

    async def close(self) -> None:
        await self._reader.close()
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)

    async def truncate_wal(self) -> None:
        """Copy the WAL into the database and empty it, so that old page images (such as
        personal data just purged) do not linger in the -wal file. Best effort: readers in
        the middle of a read keep their pages until the next time."""
        async with self._lock, self._watching_space():
            await self._in_writer(self._writer.execute, "PRAGMA wal_checkpoint(TRUNCATE)")

    def _in_writer(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    @asynccontextmanager
    async def _watching_space(self) -> AsyncIterator[None]:
        """A write that finds the disk full raises StorageFull (and tells `disk`); one that
        succeeds tells `disk` that writes work."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if not disk_full(exc, self.disk):
                raise
            self.disk.found_full()
            raise StorageFull() from exc
        except StorageFull:
            self.disk.found_full()
            raise
        self.disk.wrote()

    async def run(self, transaction: Callable[[Tx], T]) -> T:
        """Run `transaction(conn)` in the writer thread: it commits whole, or not at all."""
        async with self._lock, self._watching_space():
            return await self._in_writer(_run_transaction, self._writer, transaction)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[WriteTransaction]:
        """A transaction driven statement by statement from async code (low-volume paths)."""
        async with self._lock, self._watching_space():
            await self._in_writer(self._writer.execute, "BEGIN IMMEDIATE")
            try:
                yield WriteTransaction(self)
                await self._in_writer(self._writer.execute, "COMMIT")
            except BaseException:
                await self._in_writer(_roll_back, self._writer)
                raise

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        # Executed and fetched in one call on the reader's thread. Executed in one call and
        # fetched in the next, a statement stays open in between, and with it the reader's
        # read transaction: every query other requests queue meanwhile reads its snapshot,
        # and under load a chain of them kept showing a case just created as absent.
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def fetch_in(self, sql: str, values: list[Any], *before: Any) -> list[aiosqlite.Row]:
        """`select_in` on the reader: `sql` holds one `IN ({marks})`, run in chunks."""
        rows: list[aiosqlite.Row] = []
        for statement, params in _in_chunks(sql, values, before):
            rows.extend(await self.fetch_all(statement, params))
        return rows

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        """The first row of a query of one row (a key, a count, LIMIT 1): it reads them all,
        in one call for the reason `fetch_all` gives."""
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None


# Well below SQLite's limit on bound parameters per statement.
IN_CHUNK = 500


def select_in(conn: Tx, sql: str, values: list[Any], *before: Any) -> list[Row]:
    """Run `sql` (which holds one `IN ({marks})`) over `values` in chunks; `before` are the
    parameters that come ahead of the list. Batches look up hundreds of keys at once."""
    rows: list[Row] = []
    for statement, params in _in_chunks(sql, values, before):
        rows.extend(conn.execute(statement, params))
    return rows


def _in_chunks(
    sql: str, values: list[Any], before: tuple[Any, ...]
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        yield sql.format(marks=", ".join("?" for _ in chunk)), (*before, *chunk)


def run_offline(path: Path, transaction: Callable[[Tx], T]) -> T:
    """One transaction on a database file no node serves (a restore marking what it wrote),
    its schema brought up to date first."""
    conn = _open_writer(path)
    try:
        return _run_transaction(conn, transaction)
    finally:
        conn.close()


def _run_transaction(conn: sqlite3.Connection, transaction: Callable[[Tx], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = transaction(conn)
        # Inside the try: a COMMIT that fails (SQLITE_FULL while writing the WAL) can leave
        # the transaction open, and the next BEGIN on this one writer would fail for good.
        conn.execute("COMMIT")
    except BaseException:
        _roll_back(conn)
        raise
    return result


def _roll_back(conn: sqlite3.Connection) -> None:
    """End a failed transaction. SQLite may have rolled it back itself already (it does on
    SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM): then there is nothing to do, and a ROLLBACK
    would fail and hide the first error."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback after a failed transaction failed")


class _Result:
    """What `WriteTransaction.execute` returns: awaitable, or usable with `async with`."""

    def __init__(self, pending: asyncio.Future[sqlite3.Cursor]) -> None:
        self._pending = pending

    def __await__(self) -> Any:
        return self._pending.__await__()

    async def __aenter__(self) -> _AsyncCursor:
        return _AsyncCursor(await self._pending)

    async def __aexit__(self, *exc: object) -> None:
        return None


class _AsyncCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def fetchone(self) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._cursor.fetchone()
        return row

    async def fetchall(self) -> list[sqlite3.Row]:
        return list(self._cursor.fetchall())


class WriteTransaction:
    """Async statements inside `Database.write()`; `call` runs a transaction function in it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def execute(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> _Result:
        args = params if isinstance(params, dict) else tuple(params)
        return _Result(self._db._in_writer(_fetching_execute, self._db._writer, sql, args))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> sqlite3.Cursor:
        return await self._db._in_writer(self._db._writer.executemany, sql, list(rows))

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._db._in_writer(partial(fn, self._db._writer, *args, **kwargs))


def _fetching_execute(conn: sqlite3.Connection, sql: str, params: Any) -> sqlite3.Cursor:
    return conn.execute(sql, params)


def _migrate(conn: sqlite3.Connection) -> None:
    row = conn.execute("PRAGMA user_version").fetchone()
    current = int(row[0]) if row else 0
    if current > len(MIGRATIONS):
        raise StoreError(
            f"database schema version {current} is newer than this program "
            f"({len(MIGRATIONS)}); upgrade hotline-node"
        )
    if 0 < current < len(MIGRATIONS):
        # An upgrade may rebuild a large table before the node serves: say so, not silence.
        log.warning(
            "upgrading the database schema from version %d to %d; on a large store this can"
            " take minutes",
            current,
            len(MIGRATIONS),
        )
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        # executescript commits on its own; the version bump is inside the same script.
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
