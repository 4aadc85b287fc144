"""The migration files split into the statements each database runs."""

from __future__ import annotations

import sqlite3

import pytest

from volumed.store import migrations


def test_each_dialect_takes_its_own_file_of_a_pair() -> None:
    for dialect in migrations.DIALECTS:
        names = [m.name for m in migrations.all_migrations(dialect)]
        assert "0009_tenant_usage.sql" not in names
        assert f"0009_tenant_usage.{dialect}.sql" in names
        assert len(names) == len({m.version for m in migrations.all_migrations(dialect)})


@pytest.mark.parametrize(
    ("dialect", "kinds"),
    [
        ("sqlite", ["CREATE TABLE", "INSERT INTO", *["CREATE TRIGGER"] * 3]),
        ("postgresql", ["CREATE TABLE", "INSERT INTO", "CREATE FUNCTION", *["CREATE TRIGGER"] * 3]),
    ],
)
def test_trigger_bodies_stay_whole(dialect: str, kinds: list[str]) -> None:
    usage = next(m for m in migrations.all_migrations(dialect) if m.version == 9)
    statements = usage.statements()
    assert len(statements) == len(kinds)
    for statement, kind in zip(statements, kinds, strict=True):
        assert statement.startswith(kind), statement
    assert statements[-1].rstrip().endswith(("END", "volumes_usage()"))


def test_sqlite_keeps_the_counters_through_every_change() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for migration in migrations.all_migrations("sqlite"):
        for statement in migration.statements():
            db.execute(statement)
    db.execute("INSERT INTO users (id, name, created_at_us) VALUES ('u', 'u', 0)")
    insert = (
        "INSERT INTO volumes (uuid, owner_id, name, state, size_mb, persistent, created_at_us,"
        " quota_policy, access_mode) VALUES (?, 'u', ?, 'available', ?, 1, 0, 'dynamic', 'rwo')"
    )
    db.execute(insert, ("a", "a", 10))
    db.execute(insert, ("b", "b", 5))
    db.execute("UPDATE volumes SET pending_size_mb = 20 WHERE uuid = 'a'")
    db.execute("UPDATE volumes SET state = 'busy' WHERE uuid = 'a'")
    assert db.execute("SELECT volumes, total_mb FROM tenant_usage").fetchone() == (2, 25)
    db.execute("UPDATE volumes SET size_mb = 20, pending_size_mb = NULL WHERE uuid = 'a'")
    db.execute("UPDATE volumes SET deleted = 1 WHERE uuid = 'b'")
    assert db.execute("SELECT volumes, total_mb FROM tenant_usage").fetchone() == (1, 20)
    db.execute("DELETE FROM volumes WHERE uuid = 'b'")
    db.execute("DELETE FROM volumes WHERE uuid = 'a'")
    assert db.execute("SELECT volumes, total_mb FROM tenant_usage").fetchone() == (0, 0)
