"""What the layer tests (tests/store, tests/worker) share: ``async def`` tests run on one
event loop per test, and the store built as ``volumed serve`` builds it
(:func:`volumed.bootstrap.open_store`) on the database ``VOLUMED_TEST_STORE`` names: a
SQLite file under the test's directory, or a fresh database of the throwaway PostgreSQL.

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
from typing import Any
from uuid import uuid4

import pytest

from tests.conftest import new_database_url
from volumed.bootstrap import open_store
from volumed.domain.model import Instance, User, Volume
from volumed.domain.ports import QuotaLimits
from volumed.domain.states import InstanceState, QuotaPolicy, VolumeState
from volumed.settings import Settings
from volumed.store.sql import SqlStore

__all__ = [
    "ROOMY",
    "instance",
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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A data directory of the test's own and a fresh database."""
    return Settings(data_dir=tmp_path / "data", database_url=new_database_url(), runtime="record")


@pytest.fixture
def store(runner: asyncio.Runner, settings: Settings) -> Iterator[SqlStore]:
    opened = runner.run(open_store(settings))
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
