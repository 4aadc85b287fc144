"""Upgrades: migrations run forward at start, and a database a newer volumed migrated
is refused rather than written to by older code."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from tests.cli.conftest import run_cli
from tests.conftest import VOLUMED, LiveServer


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
