"""Consistent copies of the metadata database, for ``volumed backup`` and ``restore``.

A snapshot is the whole database as of one instant, written to a file, together with the
volume rows of that same instant (what the backup needs to know which images belong to
it). SQLite: the online backup API, in one step, so the copy is one read transaction
of the live database (WAL: writers carry on meanwhile). PostgreSQL: ``pg_dump`` run on a
snapshot exported by a ``REPEATABLE READ`` transaction that also reads the rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from volumed.domain.store import StoreUnavailable

__all__ = [
    "PG_DUMP_FILE",
    "SQLITE_FILE",
    "SnapshotRow",
    "postgres_restore",
    "postgres_snapshot",
    "sqlite_snapshot",
]

SQLITE_FILE = "volumed.db"
PG_DUMP_FILE = "volumed.pgdump"

_ROWS = "SELECT uuid, deleted, job, quota_policy FROM volumes"


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    uuid: str
    deleted: bool
    job: str | None
    static: bool
    """The quota policy reserves the whole image on the host."""


def _rows(found: list[tuple[object, ...]]) -> list[SnapshotRow]:
    return [
        SnapshotRow(str(uuid), bool(deleted), None if job is None else str(job), policy == "static")
        for uuid, deleted, job, policy in found
    ]


def sqlite_snapshot(live: Path, dest: Path) -> list[SnapshotRow]:
    """Copy the database at ``live`` into ``dest`` (replaced) and return its rows."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    source = sqlite3.connect(live, timeout=30.0)
    try:
        copy = sqlite3.connect(tmp)
        try:
            source.backup(copy)  # pages=-1: every page in one step, one read transaction
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            rows = _rows(copy.execute(_ROWS).fetchall())
        finally:
            copy.close()
    finally:
        source.close()
    _fsync(tmp)
    os.replace(tmp, dest)
    return rows


async def postgres_snapshot(url: str, dest: Path) -> list[SnapshotRow]:
    """``pg_dump --format=custom`` of the database into ``dest``, on the snapshot of a
    transaction that reads the rows returned: dump and rows are the same instant."""
    import asyncpg

    pg_dump = _client_tool("pg_dump")
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            rows = _rows([tuple(r) for r in await conn.fetch(_ROWS)])
            await _run_client(
                [pg_dump, "--format=custom", "--no-owner", f"--snapshot={snapshot}"],
                url,
                ["--file", str(tmp)],
            )
    finally:
        await conn.close()
    _fsync(tmp)
    os.replace(tmp, dest)
    return rows


async def postgres_restore(url: str, dump: Path) -> None:
    """Load a dump made by :func:`postgres_snapshot` into the (empty) database at
    ``url``, in one transaction: on any error nothing is left behind."""
    pg_restore = _client_tool("pg_restore")
    await _run_client(
        [pg_restore, "--no-owner", "--exit-on-error", "--single-transaction"], url, [str(dump)]
    )


def _client_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/lib/postgresql/bin")
    if found is None:
        raise StoreUnavailable(
            f"{name} is not installed: install the PostgreSQL client tools (Debian: "
            "postgresql-client), of the server's major version or newer"
        )
    return found


async def _run_client(command: list[str], url: str, args: list[str]) -> None:
    """Run a libpq client tool on ``url``, the password passed in the environment rather
    than on the command line (where any local user could read it)."""
    parts = urlsplit(url)
    env = dict(os.environ)
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    dbname = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    process = await asyncio.create_subprocess_exec(
        *command,
        f"--dbname={dbname}",
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        name = Path(command[0]).name
        detail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise StoreUnavailable(f"{name} failed: {' / '.join(detail)}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
