"""Upgrades: migrations run forward at start, and a database a newer volumed migrated
is refused rather than written to by older code."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import run_cli
from tests.conftest import VOLUMED, LiveServer, new_database_url, wait_for_state
from volumed.store import migrations


def test_refuses_a_database_newer_than_the_code(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server()
    assert live.stop() == 0
    # What a later volumed would leave: a migration this code has no file for.
    live.sql(
        "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (?, ?, ?)",
        (9999, "9999_from_the_future.sql", 0),
    )
    env = {**os.environ, **live.admin_env, "VOLUMED_PORT": str(live.port)}
    env["VOLUMED_METRICS_PORT"] = "0"
    done = subprocess.run(
        [*VOLUMED, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "migration(s) 9999, which this volumed does not know" in done.stderr
    assert "Traceback" not in done.stderr

    status = run_cli("db", "status", server=live)
    assert status.code == 1
    assert "9999  unknown" in status.out
    assert "does not know" in status.err
    migrate = run_cli("db", "migrate", server=live)
    assert migrate.code == 2 and "does not know" in migrate.err, migrate
    # Nothing was applied or removed on the way.
    assert live.sql("SELECT count(*) FROM schema_migrations WHERE version = 9999") == [(1,)]


def apply_first_migration(database_url: str, data_dir: Path) -> None:
    """The schema of the first release: migration 0001 only, recorded as applied."""
    dialect = "postgresql" if database_url else "sqlite"
    first = migrations.all_migrations(dialect)[0]
    statements = [migrations.CREATE_VERSION_TABLE, *first.statements()]
    record = "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (1, 'x', 0)"
    if not database_url:
        data_dir.mkdir(parents=True)
        with sqlite3.connect(data_dir / "volumed.db") as db:
            for statement in [*statements, record]:
                db.execute(statement)
        return
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for statement in [*statements, record]:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


def test_a_server_migrates_an_old_database_forward(tmp_path: Path) -> None:
    live = LiveServer(
        data_dir=tmp_path / "data",
        token="upgrade-" + secrets.token_hex(12),
        env={"VOLUMED_METRICS_PORT": "0"},
        database_url=new_database_url(),
    )
    apply_first_migration(live.database_url, live.data_dir)
    pending = run_cli("db", "status", server=live)
    assert pending.code == 1 and "pending" in pending.out, pending.out + pending.err
    live.start()
    try:
        status = run_cli("db", "status", server=live)
        assert status.code == 0 and "pending" not in status.out, status.out + status.err
        with live.client() as api:
            made = api.post("/v1/volumes", json={"name": "after-upgrade", "size_mb": 8})
            uuid = made.json()["data"]["volumes"][0]["uuid"]
            assert wait_for_state(api, uuid)["state"] == "available"
    finally:
        live.stop()
