"""The SQL store's own life: migrations, health probes, close."""

from __future__ import annotations

from volumed.store import migrations
from volumed.store._base import SqlBase, now_us

__all__ = ["SqlSchema"]


_MIGRATION_LOCK = 0x766F6C756D6564
"""The advisory lock key PostgreSQL replicas take while migrating ("volumed")."""


class SqlSchema(SqlBase):
    """Migrations and health."""

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet applied, in one transaction; returns the versions
        applied now. On PostgreSQL an advisory lock makes replicas starting together
        take turns: the second finds the work done."""
        applied_now = []
        async with self._db.transaction() as db:
            if db.dialect == "postgresql":
                await db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            await db.execute(migrations.CREATE_VERSION_TABLE)
            done = {r[0] for r in await db.fetchall("SELECT version FROM schema_migrations")}
            migrations.check_known(done, self.dialect)
            for migration in migrations.all_migrations(self.dialect):
                if migration.version in done:
                    continue
                for statement in migration.statements():
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (?,?,?)",
                    (migration.version, migration.name, now_us()),
                )
                applied_now.append(migration.version)
        return applied_now

    async def pending_migrations(self) -> list[int]:
        done = await self.applied_migrations()
        return [m.version for m in migrations.all_migrations(self.dialect) if m.version not in done]

    async def applied_migrations(self) -> set[int]:
        """The versions recorded in the database (none before the first migration)."""
        found = await self._db.fetchone(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
            if self.dialect == "postgresql"
            else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            ("schema_migrations",),
        )
        if not found[0]:
            return set()
        return {r[0] for r in await self._db.fetchall("SELECT version FROM schema_migrations")}

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (and, for SQLite, is still
        the file it was opened as)."""
        await self._db.ping()

    async def probe_write(self) -> None:
        """Raise StoreFull unless the database has room for a write now."""
        await self._db.probe_write()

    async def close(self) -> None:
        await self._db.close()
