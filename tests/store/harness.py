"""What the layer tests (tests/store, tests/worker) share: ``async def`` tests run on one
event loop per test, and the store built as ``volumed serve`` builds it
(:func:`volumed.bootstrap.open_store`) on the database ``VOLUMED_TEST_STORE`` names: a
SQLite file under the test's directory, or a database of the throwaway PostgreSQL,
emptied before each test.

A conftest takes these in with ``from tests.store.harness import ...``: the hook and
the fixtures then apply to its directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from tests.conftest import TEST_STORE, new_database_url
from volumed.bootstrap import open_store
from volumed.domain.model import Instance, User, Volume
from volumed.domain.states import InstanceState, QuotaPolicy, VolumeState
from volumed.domain.transitions import Step
from volumed.domain.values import QuotaLimits
from volumed.settings import Settings
from volumed.store.sql import SqlStore

__all__ = [
    "ROOMY",
    "database_url",
    "empty",
    "instance",
    "open_empty",
    "pytest_pyfunc_call",
    "runner",
    "settings",
    "store",
    "tenant",
    "volume",
]

ROOMY = QuotaLimits(
    max_volumes=1000, max_total_volume_mb=1_000_000, min_volume_mb=1, max_volume_mb=100_000
)
"""Limits no test reaches unless it means to."""


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test on the test's loop (the one its store was opened on:
    a PostgreSQL pool belongs to one loop)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    loop = pyfuncitem.funcargs["runner"]
    assert isinstance(loop, asyncio.Runner)
    wanted = inspect.signature(pyfuncitem.obj).parameters
    loop.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in wanted}))
    return True


@pytest.fixture(autouse=True)
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


_shared = ""
"""The PostgreSQL database of this test process's layer tests (migrated by the first)."""


def database_url() -> str:
    """The database a test's store opens (call it outside the test's loop): for SQLite
    a new file in the data directory; on PostgreSQL one database for the whole process,
    emptied by :func:`open_empty` before each test (a new database per test costs a
    copy of the template, several times the test itself on a busy disk)."""
    global _shared
    if TEST_STORE != "postgresql":
        return new_database_url()
    if not _shared:
        _shared = new_database_url()
    return _shared


async def open_empty(settings: Settings) -> SqlStore:
    """The store of ``settings`` as bootstrap opens it, holding no row."""
    await empty(settings)
    return await open_store(settings)


async def empty(settings: Settings) -> None:
    """Remove every row a previous test left in the shared PostgreSQL database."""
    if settings.is_sqlite:
        return
    import asyncpg

    conn = await asyncpg.connect(settings.store_url)
    try:
        async with conn.transaction():
            # As a replica applies changes: foreign keys and triggers are not checked,
            # so the tables can be emptied in any order.
            await conn.execute("SET LOCAL session_replication_role = replica")
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'schema_migrations'"
            ):
                await conn.execute(f'DELETE FROM "{row[0]}"')
    finally:
        await conn.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A data directory of the test's own and a database holding no row."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url(), runtime="record")


@pytest.fixture
def store(runner: asyncio.Runner, settings: Settings) -> Iterator[SqlStore]:
    opened = runner.run(open_empty(settings))
    yield opened
    runner.run(opened.close())


_clock = itertools.count()


def _created_at_us() -> int:
    """Now, and later than every earlier call: rows made one after the other list in
    that order."""
    return time.time_ns() // 1000 + next(_clock)


async def tenant(store: SqlStore, name: str | None = None) -> User:
    user = User(secrets.token_hex(8), name or "t-" + secrets.token_hex(4))
    await store.create_user(user)
    return user


_S = TypeVar("_S", VolumeState, InstanceState)


def to(target: _S, *expected: _S) -> Step[_S]:
    """A compare-and-set from each of ``expected`` to ``target`` (written out here, not
    taken from the table: the store must do what it is told)."""
    return Step(tuple((state, target) for state in expected))


def volume(
    owner: User,
    name: str | None = None,
    *,
    state: VolumeState = VolumeState.AVAILABLE,
    size_mb: int = 16,
    persistent: bool = True,
    quota_policy: QuotaPolicy = QuotaPolicy.DYNAMIC,
    **fields: Any,
) -> Volume:
    """A volume row of ``owner`` (not inserted); ``fields`` are other Volume fields."""
    row = Volume(str(uuid4()), owner.id, name or "v-" + secrets.token_hex(4), state, size_mb,
                 persistent, _created_at_us(), quota_policy)  # fmt: skip
    return dataclasses.replace(row, **fields)


def instance(
    owner: User, name: str | None = None, *, state: InstanceState = InstanceState.STOPPED
) -> Instance:
    """An instance row of ``owner`` (not inserted)."""
    return Instance(
        uuid=str(uuid4()),
        owner_id=owner.id,
        name=name or "i-" + secrets.token_hex(4),
        state=state,
        created_at_us=_created_at_us(),
        image="test:latest",
    )
