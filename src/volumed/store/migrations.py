"""Schema migrations: numbered SQL files shared by every store backend.

A migration is ``NNNN_name.sql``, written in the SQL both databases share. Where they
cannot share it (triggers), the migration is a pair ``NNNN_name.sqlite.sql`` and
``NNNN_name.postgresql.sql`` instead, and each store applies its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from volumed.domain.store import StoreUnavailable

DIALECTS = ("sqlite", "postgresql")

_TRIGGER_BODY = re.compile(r"\bCREATE\s+TRIGGER\b[\s\S]*\bBEGIN\b", re.IGNORECASE)
_BODY_END = re.compile(r"\bEND$", re.IGNORECASE)


@dataclass(slots=True, frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file split into statements at ``;``. Our migrations keep ``;`` out of
        literals; the two places a ``;`` may sit inside a statement are PostgreSQL's
        ``$$``-quoted function bodies and SQLite's ``CREATE TRIGGER … BEGIN … END``."""
        body = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        statements: list[str] = []
        current = ""
        for piece in body.split(";"):
            current = f"{current};{piece}" if current else piece
            if current.count("$$") % 2:
                continue  # inside a dollar-quoted body
            in_trigger = "$$" not in current and _TRIGGER_BODY.search(current)
            if in_trigger and not _BODY_END.search(current.strip()):
                continue  # inside a SQLite trigger body
            if current.strip():
                statements.append(current.strip())
            current = ""
        if current.strip():
            statements.append(current.strip())
        return statements


def all_migrations(dialect: str) -> list[Migration]:
    """Every migration, in order, in the form ``dialect`` applies."""
    folder = resources.files("volumed.store") / "migrations"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        stem = name.removesuffix(".sql")
        variant = stem.rsplit(".", 1)[1] if "." in stem else None
        if variant is not None and variant != dialect:
            continue
        version = int(name.split("_", 1)[0])
        if version in found and variant is None:
            continue  # the dialect's own file wins over a shared one
        found[version] = Migration(version, name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


class SchemaTooNew(StoreUnavailable):
    """The database holds migrations this code does not know: a newer volumed upgraded it.
    Running older code on it could write rows the newer schema forbids, so volumed
    refuses to start (a StoreUnavailable: every entry point reports it as it reports a
    store it cannot use)."""

    def __init__(self, unknown: list[int]) -> None:
        listed = ", ".join(f"{v:04d}" for v in unknown)
        super().__init__(
            f"the database has migration(s) {listed}, which this volumed does not know: a "
            "newer version upgraded it. Run that version, or restore a backup taken before "
            "the upgrade (docs/deployment.md, Upgrade)"
        )
        self.unknown = unknown


def check_known(applied: set[int], dialect: str) -> None:
    """Raise SchemaTooNew if ``applied`` holds a version no migration file of the code has."""
    known = {m.version for m in all_migrations(dialect)}
    unknown = sorted(applied - known)
    if unknown:
        raise SchemaTooNew(unknown)


CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_us BIGINT NOT NULL)"
)
