"""Database adapters: the few calls the store makes, for SQLite and for PostgreSQL.

The store's SQL is written once with ``?`` placeholders in the dialect both databases
share; an adapter translates placeholders, runs statements, and turns its driver's
exceptions into :class:`UniqueViolation` and
:class:`~volumed.domain.store.StoreUnavailable`.

The SQLite adapter runs ``sqlite3`` on the event loop: a transaction block runs to its
end without another request's statements in between. Its COMMIT is shared with the
other blocks of the same loop turn (group commit, :class:`_Batch`); the caller waits
for it, so a block's end is the one place where the adapter suspends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from volumed.domain.store import StoreFull, StoreUnavailable
from volumed.store._wal_index import WalIndexHeader

Row = Mapping[str, Any]
Params = Sequence[Any]


class UniqueViolation(Exception):
    """A unique index refused the row."""


class Queries(Protocol):
    dialect: str
    """``sqlite`` or ``postgresql``: for the few statements that must differ."""

    async def fetchone(self, sql: str, params: Params = ()) -> Any: ...
    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]: ...
    async def fetchall_reused(self, sql: str, params: Params = ()) -> list[Any]:
        """:meth:`fetchall`, whose result the adapter may reuse while the database is
        provably unchanged. Only for reads whose result depends on the stored data alone
        (no clock, no randomness): the hottest ones, such as GET one volume."""
        ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...


class Database(Queries, Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Queries]:
        """``async with db.transaction() as tx``: tx runs statements in one transaction,
        committed at the end of the block and rolled back if it raises."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        ...

    async def probe_write(self) -> None:
        """Raise StoreFull unless the database can take a new page now; nothing is kept."""
        ...

    async def close(self) -> None: ...

    def stamp(self) -> bytes | None:
        """A value that stays the same exactly while nothing is committed to the database,
        for reusing what was computed from stored data alone; None when that cannot be
        told (PostgreSQL: replicas write to it; SQLite inside a transaction block)."""
        ...


# ---------------------------------------------------------------------------- SQLite


class SqliteDatabase:
    """One writing connection, whose transactions commit in groups (see :class:`_Batch`),
    and a read-only one for the reads made while a group waits for its COMMIT."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._reader: sqlite3.Connection | None = None
        self._in_block = False
        self._batch: _Batch | None = None
        self._file_id = _file_id(path)
        self._wal = WalIndexHeader(path)
        self._reused: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
        self._reused_at: bytes | None = None
        self._reused_rows = 0
        self._writes: dict[str, bool] = {}

    def _connect(self, *, query_only: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
        if query_only:
            db.execute("PRAGMA query_only=ON")
        return db

    # ------------------------------------------------------------------ statements

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        if self._in_block:
            return self._run(sql, params).fetchone()
        if self._is_write(sql):
            async with self.transaction():
                return self._run(sql, params).fetchone()
        return self._read(sql, params).fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        if self._in_block:
            return self._run(sql, params).fetchall()
        if self._is_write(sql):
            async with self.transaction():
                return self._run(sql, params).fetchall()
        return self._read(sql, params).fetchall()

    async def fetchall_reused(self, sql: str, params: Params = ()) -> list[Any]:
        """Rows read since the last commit to the database (by any connection, any
        process: see store/_wal_index.py) are reused, not read again. sqlite3 releases
        the GIL around each step of a statement, and under load granian's threads take
        it every time: a GET one paid those hand-offs (bench/README.md, issue 15).
        The stamp is of the committed state, which is what a read outside a
        transaction block sees (a group waiting for its COMMIT is not seen)."""
        stamp = self.stamp()
        if stamp is None:
            # Inside a block this connection sees its own uncommitted rows.
            read: list[Any] = (
                self._run(sql, params) if self._in_block else self._read(sql, params)
            ).fetchall()
            self._wal.open()  # once this connection has used the WAL index
            return read
        if stamp != self._reused_at:
            self._reused.clear()
            self._reused_rows = 0
            self._reused_at = stamp
        key = (sql, tuple(params))
        kept = self._reused.get(key)
        if kept is None:
            # Read after the stamp: if anything commits meanwhile, the next stamp differs.
            kept = self._read(sql, params).fetchall()
            if len(self._reused) >= _REUSED_MAX or self._reused_rows + len(kept) > _REUSED_ROWS:
                self._reused.clear()
                self._reused_rows = 0
            self._reused[key] = kept
            self._reused_rows += len(kept)
        return list(kept)

    def stamp(self) -> bytes | None:
        """The committed state's stamp (store/_wal_index.py), which a read outside a
        transaction block sees; None inside one or while the WAL index is unmapped."""
        return None if self._in_block else self._wal.stamp()

    async def execute(self, sql: str, params: Params = ()) -> int:
        if self._in_block:
            return self._run(sql, params).rowcount
        async with self.transaction():
            return self._run(sql, params).rowcount

    def _is_write(self, sql: str) -> bool:
        """Whether a statement may change the database: all but plain SELECTs are taken
        to (an UPDATE ... RETURNING is read with fetchone)."""
        write = self._writes.get(sql)
        if write is None:
            if len(self._writes) >= _REUSED_MAX:
                self._writes.clear()
            write = self._writes[sql] = not sql.lstrip()[:7].upper().startswith("SELECT")
        return write

    def _read(self, sql: str, params: Params) -> sqlite3.Cursor:
        """A read outside a transaction block sees the committed state only: on the
        writing connection when it has no group waiting for its COMMIT, else on the
        read-only one (the writer's open transaction would show rows that are not
        durable yet, and that a failed COMMIT would take back)."""
        if self._batch is None:
            return self._run(sql, params)
        if self._reader is None:
            self._reader = self._connect(query_only=True)
        return _run(self._reader, sql, params)

    def _run(self, sql: str, params: Params) -> sqlite3.Cursor:
        return _run(self._db, sql, params)

    # ------------------------------------------------------------------ transactions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteDatabase]:
        """A block of statements that commits with the other blocks ending in the same
        turn of the event loop (:class:`_Batch`): the block runs in a SAVEPOINT of the
        group's transaction, so a block that raises is rolled back alone, and the caller
        goes on only once the group's COMMIT returned (durable under synchronous=FULL).
        A failed COMMIT fails every block of the group."""
        if self._in_block:
            raise RuntimeError("nested transaction")
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is not None and (batch.loop is not loop or not self._db.in_transaction):
            # Left by a loop that ended before its COMMIT (asyncio.run in the CLI and
            # tests), or rolled back by SQLite under a block that caught the error.
            self._commit(batch)
            batch = None
        first = batch is None
        if batch is None:
            self._run("BEGIN IMMEDIATE", ())
            batch = self._batch = _Batch(loop)
            loop.call_soon(self._commit, batch)
        else:
            self._run("SAVEPOINT block", ())
        self._in_block = True
        try:
            yield self
        except Exception as exc:
            self._in_block = False
            if self._roll_back_block(batch, first):
                # What the block saw (and raised about: a compare-and-set lost to an
                # earlier block of the group) is not durable before the COMMIT either.
                try:
                    await batch.wait()
                except Exception as failed:
                    raise failed from exc
            raise
        except BaseException:
            self._in_block = False
            self._roll_back_block(batch, first)
            raise
        self._in_block = False
        if not first:
            self._run("RELEASE block", ())
        await batch.wait()

    def _roll_back_block(self, batch: _Batch, first: bool) -> bool:
        """Undo the block that raised, and only it; if SQLite ended the whole
        transaction meanwhile (some I/O errors do), the group's other blocks are lost
        with it and fail. True: the group is still to commit."""
        try:
            if first:
                # Nothing else in the group yet: what it saw was committed.
                self._db.execute("ROLLBACK")
                if self._batch is batch:
                    self._batch = None
                return False
            self._db.execute("ROLLBACK TO block")
            self._db.execute("RELEASE block")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._fail(batch, exc)
            return False
        return True

    def _commit(self, batch: _Batch) -> None:
        """The group's COMMIT (a call_soon of the loop turn that opened it)."""
        if self._batch is not batch:
            return  # rolled back with its only block, or failed
        self._batch = None
        if not self._db.in_transaction:
            batch.settle(StoreUnavailable("The transaction was rolled back by SQLite"))
            return
        try:
            self._run("COMMIT", ())
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            batch.settle(exc)
            if not isinstance(exc, Exception):
                raise
            return
        batch.settle(None)

    def _fail(self, batch: _Batch, exc: BaseException) -> None:
        if self._batch is batch:
            self._batch = None
        batch.settle(exc)

    def _flush(self) -> None:
        """Commit a waiting group now (before closing, or from a loop that ended)."""
        if self._batch is not None:
            self._commit(self._batch)

    # ------------------------------------------------------------------ health

    async def ping(self) -> None:
        """Also checks that the database is still the file at ``path``: SQLite keeps
        writing to a file renamed or deleted under it, and those writes would be lost
        at the next start."""
        try:
            found = _file_id(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"The database file {self.path} is gone") from exc
        if found != self._file_id:
            raise StoreUnavailable(f"The database file {self.path} was replaced")
        self._wal.check()
        try:
            self._read("SELECT count(*) FROM schema_migrations", ()).fetchone()
        except (sqlite3.Error, StoreUnavailable) as exc:
            raise StoreUnavailable(f"The database does not answer: {exc}") from exc

    async def probe_write(self) -> None:
        """SQLite writes its pages at commit, into the WAL beside the file: probe that
        directory with an unnamed file, as /readyz probes the data directory."""
        try:
            fd = os.open(self.path.parent, os.O_TMPFILE | os.O_WRONLY, 0o600)
        except OSError:
            return  # no O_TMPFILE here: the data directory check covers it
        try:
            os.write(fd, b"\0" * _PAGE)
            os.fsync(fd)
        except OSError as exc:
            raise StoreFull(f"The database has no space left: {exc.strerror}") from exc
        finally:
            os.close(fd)

    async def close(self) -> None:
        self._flush()
        if self._reader is not None:
            self._reader.close()
        self._db.close()
        self._wal.close()  # after the connections: see store/_wal_index.py


class _Batch:
    """Transaction blocks that share one COMMIT: group commit.

    sqlite3 runs on the event loop, so under synchronous=FULL every COMMIT stopped the
    loop for an fsync, and each create paid its own. The first block of a loop turn
    opens a transaction (BEGIN IMMEDIATE) and schedules its COMMIT with ``call_soon``:
    the blocks that run before it (the tasks already ready in that turn) join it, each
    in a SAVEPOINT, and wait; the COMMIT then answers all of them at once. A block
    never waits between its statements, so blocks never interleave.
    """

    __slots__ = ("loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: list[asyncio.Future[None]] = []

    def wait(self) -> asyncio.Future[None]:
        """A future of the group's COMMIT for one block's caller."""
        done = self.loop.create_future()
        self.waiters.append(done)
        return done

    def settle(self, failure: BaseException | None) -> None:
        """Answer every waiting block: committed (None), or failed."""
        if self.loop.is_closed():
            return  # nobody is waiting any more
        for done in self.waiters:
            if done.done():
                continue  # its caller was cancelled
            if failure is None:
                done.set_result(None)
            else:
                done.set_exception(_failure(failure))


def _run(db: sqlite3.Connection, sql: str, params: Params) -> sqlite3.Cursor:
    try:
        return db.execute(sql, params)
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            raise UniqueViolation(str(exc)) from None
        raise
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
            raise StoreFull(f"The database has no space left: {exc}") from exc
        if "disk" in str(exc) or "locked" in str(exc):
            raise StoreUnavailable(str(exc)) from exc
        raise


def _failure(exc: BaseException) -> Exception:
    """A fresh exception for each block of a failed group (one instance raised in many
    tasks would collect all their tracebacks)."""
    if isinstance(exc, (StoreFull, StoreUnavailable)):
        return type(exc)(str(exc))
    if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
        return StoreFull(f"The database has no space left: {exc}")
    return StoreUnavailable(f"The group commit failed: {exc}")


_REUSED_MAX = 4096
"""Results kept at most between two commits (then all are forgotten at once)."""
_REUSED_ROWS = 20_000
"""Rows kept at most between two commits (~15 MB of volume rows): listing pages are
reused too, and their results are not one row each."""


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


# ---------------------------------------------------------------------------- PostgreSQL

_PLACEHOLDER = re.compile(r"\?")


def to_postgres(sql: str) -> str:
    """``?`` placeholders to ``$1, $2, …`` (our SQL has no ``?`` inside literals)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class _PgQueries:
    dialect = "postgresql"

    def __init__(self, target: Any) -> None:
        self._target = target
        self._sql_cache: dict[str, str] = {}

    def _sql(self, sql: str) -> str:
        translated = self._sql_cache.get(sql)
        if translated is None:
            translated = self._sql_cache[sql] = to_postgres(sql)
        return translated

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        with _pg_errors():
            return await self._target.fetchrow(self._sql(sql), *_no_nul(params))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        with _pg_errors():
            return list(await self._target.fetch(self._sql(sql), *_no_nul(params)))

    async def fetchall_reused(self, sql: str, params: Params = ()) -> list[Any]:
        # Replicas write to the same database: nothing here can tell a result is current.
        return await self.fetchall(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        with _pg_errors():
            status: str = await self._target.execute(self._sql(sql), *_no_nul(params))
        # asyncpg answers the command tag, e.g. "UPDATE 1", "DELETE 0", "INSERT 0 1".
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


def _no_nul(params: Params) -> Params:
    """PostgreSQL text cannot hold NUL (SQLite can): a lookup by a name with one would
    fail with an encoding error. U+FFFD matches nothing a validated name contains."""
    if any(isinstance(p, str) and "\x00" in p for p in params):
        return [p.replace("\x00", "\ufffd") if isinstance(p, str) else p for p in params]
    return params


class PostgresDatabase(_PgQueries):
    """An asyncpg pool. Connections lost while PostgreSQL restarts are replaced by the
    pool on the next acquire; meanwhile callers get StoreUnavailable (HTTP 503)."""

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self._pool = pool

    def stamp(self) -> None:
        # Replicas write to the same database: nothing here can tell it is unchanged.
        return None

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        try:
            import asyncpg
        except ImportError:
            # asyncpg is the optional extra `volumed[postgres]`.
            raise StoreUnavailable(
                "PostgreSQL support is not installed: pip install 'volumed[postgres]'"
            ) from None

        with _pg_errors():
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                command_timeout=30,
                server_settings={
                    "idle_in_transaction_session_timeout": str(_IDLE_IN_TRANSACTION_MS)
                },
            )
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgQueries]:
        with _pg_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                queries = _PgQueries(conn)
                queries._sql_cache = self._sql_cache
                yield queries

    async def ping(self) -> None:
        with _pg_errors():
            await self._pool.fetchval("SELECT 1", timeout=_PING_TIMEOUT_S)

    async def probe_write(self) -> None:
        """A new temporary table with one row, rolled back: PostgreSQL extends the table's
        file on disk at once (to fail now rather than at a checkpoint), so a full disk
        answers DiskFullError, while a probe into an existing table may find room in a
        page and say nothing. Temporary: no WAL, no CREATE right on a schema needed, and
        each session has its own, so probes at once never meet."""
        with _pg_errors():
            async with self._pool.acquire(timeout=_PING_TIMEOUT_S) as conn:
                probe = conn.transaction()
                await probe.start()
                try:
                    await conn.execute(
                        "CREATE TEMP TABLE volumed_write_probe (b bytea)",
                        timeout=_PING_TIMEOUT_S,
                    )
                    await conn.execute(
                        "INSERT INTO volumed_write_probe VALUES ('\\x00')",
                        timeout=_PING_TIMEOUT_S,
                    )
                finally:
                    await probe.rollback()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), _CLOSE_TIMEOUT_S)
        except (TimeoutError, OSError):
            self._pool.terminate()


_IDLE_IN_TRANSACTION_MS = 5_000
"""PostgreSQL ends a session that sits inside a transaction this long between two
statements. Ours take milliseconds; a replica frozen (SIGSTOP, a paused VM) between the
statements of a claim kept its row locks, and every other replica skipped or waited for
that volume until the frozen one came back. Its lease is fenced; its locks now are too."""
_PING_TIMEOUT_S = 3.0
_PAGE = 8192
_CLOSE_TIMEOUT_S = 5.0


class _pg_errors:  # noqa: N801 - used as a context manager, reads like one
    """Translate asyncpg's exceptions at the adapter's edge."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if exc is None:
            return False
        import asyncpg

        if isinstance(exc, asyncpg.UniqueViolationError):
            raise UniqueViolation(str(exc)) from None
        if isinstance(exc, asyncpg.DiskFullError):
            raise StoreFull(f"The database has no space left: {exc}") from exc
        unavailable = (
            OSError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            asyncpg.TooManyConnectionsError,
            # A connection cut mid-reply (PostgreSQL restarting) confuses the protocol.
            asyncpg.exceptions.InternalClientError,
            # Rare with rows taken in a fixed order; the client retries after the 503.
            asyncpg.DeadlockDetectedError,
            asyncpg.SerializationError,
            TimeoutError,
        )
        if isinstance(exc, unavailable):
            raise StoreUnavailable(str(exc)) from exc
        return False
