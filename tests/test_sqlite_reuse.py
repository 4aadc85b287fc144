"""The SQLite adapter reuses a hot read's rows while nothing was committed since, by any
connection of any process (store/_wal_index.py), and reads again after any commit.

Whether the database was asked is seen through sqlite3's own statement trace on the
adapter's connection."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from volumed.store.db import _REUSED_ROWS, SqliteDatabase

# The adapter of the one-file database; PostgreSQL's reads every time.
pytestmark = pytest.mark.sqlite_only

READ = "SELECT name FROM t WHERE kind = ? ORDER BY name"


class Traced:
    """A fresh database behind the adapter, and the statements its connection ran."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = SqliteDatabase(path)
        self.statements: list[str] = []
        self.db._db.set_trace_callback(self.statements.append)
        self.run("CREATE TABLE schema_migrations (version INTEGER)")  # for ping()
        self.run("CREATE TABLE t (name TEXT, kind TEXT)")
        self.run("INSERT INTO t VALUES ('a', 'x')")
        # The first read maps the WAL index (store/_wal_index.py): from the next one on,
        # rows are kept.
        self.read("none")

    def run(self, sql: str) -> None:
        asyncio.run(self.db.execute(sql))

    def read(self, kind: str = "x") -> list[str]:
        self.statements.clear()
        rows = asyncio.run(self.db.fetchall_reused(READ, (kind,)))
        return [row[0] for row in rows]

    def asked(self) -> bool:
        return any(s.startswith("SELECT name FROM t") for s in self.statements)


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Traced]:
    traced = Traced(tmp_path / "volumed.db")
    yield traced
    asyncio.run(traced.db.close())


def test_rows_are_reused_until_a_commit_of_this_connection(traced: Traced) -> None:
    assert traced.read() == ["a"]
    assert traced.asked()
    assert traced.read() == ["a"]
    assert not traced.asked()
    traced.run("INSERT INTO t VALUES ('b', 'x')")
    assert traced.read() == ["a", "b"]
    assert traced.asked()
    assert traced.read() == ["a", "b"]
    assert not traced.asked()


def test_each_statement_and_parameters_have_their_own_rows(traced: Traced) -> None:
    traced.run("INSERT INTO t VALUES ('c', 'y')")
    assert traced.read("x") == ["a"]
    assert traced.read("y") == ["c"]
    assert traced.read("x") == ["a"]
    assert not traced.asked()


def test_the_rows_kept_are_bounded(traced: Traced) -> None:
    """Listing pages are reused too: past ``_REUSED_ROWS`` rows, what was kept is
    forgotten (and read again when asked) rather than held until the next commit."""
    half = _REUSED_ROWS // 2 + 1
    with sqlite3.connect(traced.path, isolation_level=None) as other:
        other.executemany("INSERT INTO t VALUES (?, 'x')", ((f"x{n}",) for n in range(half)))
        other.executemany("INSERT INTO t VALUES (?, 'y')", ((f"y{n}",) for n in range(half)))
    other.close()
    assert len(traced.read("x")) == half + 1  # and 'a'
    assert len(traced.read("x")) == half + 1
    assert not traced.asked()
    assert len(traced.read("y")) == half  # kept, once the x rows are forgotten
    assert len(traced.read("y")) == half
    assert not traced.asked()
    assert len(traced.read("x")) == half + 1
    assert traced.asked()


def test_a_commit_of_another_connection_is_seen(traced: Traced) -> None:
    traced.read()
    with sqlite3.connect(traced.path, isolation_level=None) as other:
        other.execute("INSERT INTO t VALUES ('b', 'x')")
    assert traced.read() == ["a", "b"]
    other.close()


def test_a_commit_of_another_process_is_seen(traced: Traced) -> None:
    """As when ``volumed job retry`` or a token command writes while the server runs."""
    traced.read()
    script = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute(\"UPDATE t SET name = 'z' WHERE name = 'a'\")\n"
    )
    subprocess.run([sys.executable, "-c", script, str(traced.path)], check=True)
    assert traced.read() == ["z"]
    assert traced.asked()


def test_a_rolled_back_write_is_never_kept(traced: Traced) -> None:
    traced.read()

    async def scenario() -> list[str]:
        try:
            async with traced.db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES ('b', 'x')")
                # Inside the transaction the connection sees its own row.
                inside = await traced.db.fetchall_reused(READ, ("x",))
                assert [row[0] for row in inside] == ["a", "b"]
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        return [row[0] for row in await traced.db.fetchall_reused(READ, ("x",))]

    assert asyncio.run(scenario()) == ["a"]


def test_a_caller_changing_its_rows_list_changes_no_one_elses(traced: Traced) -> None:
    async def scenario() -> list[str]:
        first = await traced.db.fetchall_reused(READ, ("x",))
        first.clear()
        return [row[0] for row in await traced.db.fetchall_reused(READ, ("x",))]

    assert asyncio.run(scenario()) == ["a"]


def test_sqlites_locks_on_the_wal_index_stay_held(traced: Traced) -> None:
    """Another process must find the ``-shm`` file locked by this connection (its "dead
    man switch" byte, 128): had the mapping's descriptor been closed, the process's POSIX
    locks would be gone, and the next connection would reset the file under us."""
    traced.read()
    traced.read()
    assert not traced.asked()  # the header is mapped
    script = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)\n"
    )
    shm = f"{traced.path}-shm"
    done = subprocess.run([sys.executable, "-c", script, shm], capture_output=True, text=True)
    assert done.returncode != 0
    assert "BlockingIOError" in done.stderr or "PermissionError" in done.stderr, done.stderr


def test_a_replaced_wal_index_is_not_trusted_after_a_health_check(traced: Traced) -> None:
    """Never expected while the connection is open (SQLite keeps the file), but if the
    ``-shm`` file were replaced, ping stops the reuse: reads go to the database."""
    traced.read()
    shm = Path(f"{traced.path}-shm")
    copy = shm.with_name("copy")
    copy.write_bytes(shm.read_bytes())
    copy.replace(shm)
    asyncio.run(traced.db.ping())
    assert traced.read() == ["a"]
    assert traced.asked()
