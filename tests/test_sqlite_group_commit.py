"""The SQLite adapter's group commit (store/db.py): transaction blocks ending in the same
turn of the event loop share one COMMIT, each rolls back alone, none is answered before
the COMMIT returned, and reads outside a block never see a group still waiting for it.

The statements are seen through sqlite3's trace of the writing connection."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from volumed.domain.store import StoreUnavailable
from volumed.store.db import SqliteDatabase

pytestmark = pytest.mark.sqlite_only


class Traced:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = SqliteDatabase(path)
        self.statements: list[str] = []
        self.db._db.set_trace_callback(self.statements.append)
        asyncio.run(self._schema())
        self.statements.clear()

    async def _schema(self) -> None:
        await self.db.execute("CREATE TABLE schema_migrations (version INTEGER)")
        await self.db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await self.db.execute(
            "CREATE TABLE t (name TEXT PRIMARY KEY, parent INTEGER "
            "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        await self.db.execute("INSERT INTO parent VALUES (1)")

    def commits(self) -> int:
        return self.statements.count("COMMIT")

    def names(self) -> list[str]:
        """What another connection finds committed."""
        with sqlite3.connect(self.path) as other:
            rows = other.execute("SELECT name FROM t ORDER BY name").fetchall()
        other.close()
        return [row[0] for row in rows]


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Traced]:
    traced = Traced(tmp_path / "volumed.db")
    yield traced
    asyncio.run(traced.db.close())


async def insert(db: SqliteDatabase, name: str, parent: int = 1) -> str:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (?, ?)", (name, parent))
    return name


def test_blocks_of_one_loop_turn_share_one_commit(traced: Traced) -> None:
    async def scenario() -> list[str]:
        return await asyncio.gather(*(insert(traced.db, f"v{i}") for i in range(8)))

    assert asyncio.run(scenario()) == [f"v{i}" for i in range(8)]
    assert traced.commits() == 1
    assert traced.names() == [f"v{i}" for i in range(8)]


def test_writes_outside_a_block_join_the_group(traced: Traced) -> None:
    async def scenario() -> list[int]:
        return await asyncio.gather(
            *(traced.db.execute("INSERT INTO t VALUES (?, 1)", (f"w{i}",)) for i in range(5))
        )

    assert asyncio.run(scenario()) == [1] * 5
    assert traced.commits() == 1
    assert traced.names() == [f"w{i}" for i in range(5)]


def test_a_block_that_raises_is_rolled_back_alone(traced: Traced) -> None:
    """And its caller hears of it only once the group is committed: it may have lost a
    compare-and-set to an earlier block of the group, which is not durable before that."""

    async def failing() -> list[str]:
        try:
            async with traced.db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES ('bad', 1)")
                raise RuntimeError("this block only")
        except RuntimeError:
            return traced.names()  # what another connection finds committed now
        raise AssertionError("not raised")

    async def scenario() -> tuple[str, list[str], str]:
        return await asyncio.gather(insert(traced.db, "a"), failing(), insert(traced.db, "c"))

    a, seen, c = asyncio.run(scenario())
    assert (a, c) == ("a", "c")
    assert seen == ["a", "c"]
    assert traced.commits() == 1
    assert traced.names() == ["a", "c"]


def test_the_first_block_of_a_group_may_fail_alone_too(traced: Traced) -> None:
    async def failing() -> str:
        async with traced.db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES ('bad', 1)")
            await tx.execute("INSERT INTO t VALUES ('bad', 1)")  # UNIQUE
        return "bad"

    async def scenario() -> list[str | BaseException]:
        return list(await asyncio.gather(failing(), insert(traced.db, "b"), return_exceptions=True))

    results = asyncio.run(scenario())
    assert type(results[0]).__name__ == "UniqueViolation"
    assert results[1] == "b"
    assert traced.names() == ["b"]


def test_a_failed_commit_fails_every_block_of_the_group(traced: Traced) -> None:
    """A deferred foreign key is checked at COMMIT: one bad row fails the group's COMMIT,
    and no block of it may say it was stored."""

    async def failing() -> str:
        async with traced.db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES ('bad', 1)")
            raise RuntimeError("decided on rows that were then lost")

    async def scenario() -> list[str | BaseException]:
        return list(
            await asyncio.gather(
                insert(traced.db, "a"),
                insert(traced.db, "orphan", parent=99),
                failing(),
                insert(traced.db, "c"),
                return_exceptions=True,
            )
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert isinstance(results[2], BaseException)
    assert isinstance(results[2].__cause__, RuntimeError)
    assert traced.names() == []
    # The connection is usable again, in a new group.
    assert asyncio.run(insert(traced.db, "d")) == "d"
    assert traced.names() == ["d"]


def test_reads_outside_a_block_do_not_see_a_group_waiting_for_its_commit(
    traced: Traced,
) -> None:
    seen: dict[str, list[str]] = {}

    async def reader() -> None:
        rows = await traced.db.fetchall("SELECT name FROM t ORDER BY name")
        seen["fetchall"] = [row[0] for row in rows]
        rows = await traced.db.fetchall_reused("SELECT name FROM t ORDER BY name")
        seen["reused"] = [row[0] for row in rows]
        row = await traced.db.fetchone("SELECT count(*) FROM t")
        seen["count"] = [str(row[0])]

    async def scenario() -> None:
        await insert(traced.db, "old")
        # The insert's block runs first and waits for its COMMIT; the reader runs in
        # the same turn, before that COMMIT.
        await asyncio.gather(insert(traced.db, "new"), reader())
        rows = await traced.db.fetchall_reused("SELECT name FROM t ORDER BY name")
        seen["after"] = [row[0] for row in rows]

    asyncio.run(scenario())
    assert seen == {
        "fetchall": ["old"],
        "reused": ["old"],
        "count": ["1"],
        "after": ["new", "old"],
    }


def test_inside_a_block_the_groups_rows_are_seen(traced: Traced) -> None:
    async def counting() -> int:
        async with traced.db.transaction() as tx:
            row = await tx.fetchone("SELECT count(*) FROM t")
        return int(row[0])

    async def scenario() -> tuple[str, int]:
        return await asyncio.gather(insert(traced.db, "a"), counting())

    assert tuple(asyncio.run(scenario())) == ("a", 1)


def test_nested_blocks_are_refused(traced: Traced) -> None:
    async def scenario() -> None:
        async with traced.db.transaction():
            async with traced.db.transaction():
                pass

    with pytest.raises(RuntimeError, match="nested"):
        asyncio.run(scenario())
    assert asyncio.run(insert(traced.db, "after")) == "after"


_WRITER = """
import asyncio, sys
from pathlib import Path
from volumed.store.db import SqliteDatabase

async def main():
    db = SqliteDatabase(Path(sys.argv[1]))
    await db.execute("CREATE TABLE IF NOT EXISTS t (name TEXT PRIMARY KEY)")
    n = 0
    while True:
        async def one(name):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (?)", (name,))
            # Acknowledged: the block returned, so its group's COMMIT did.
            sys.stdout.write(name + "\\n")
            sys.stdout.flush()
        await asyncio.gather(*(one(f"n{n + i}") for i in range(8)))
        n += 8

asyncio.run(main())
"""


def test_nothing_acknowledged_is_lost_at_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert writer.stdout is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < 400:
            line = writer.stdout.readline()
            assert line, "the writer ended early"
            acknowledged.append(line.strip())
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    acknowledged += [line.strip() for line in writer.stdout.read().splitlines()]
    writer.stdout.close()
    with sqlite3.connect(path) as db:
        stored = {row[0] for row in db.execute("SELECT name FROM t")}
    db.close()
    missing = [name for name in acknowledged if name not in stored]
    assert not missing
