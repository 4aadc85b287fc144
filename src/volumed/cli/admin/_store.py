"""Opening the store for an admin command, and running its coroutines."""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from volumed.cli.application import App

if TYPE_CHECKING:
    from volumed.domain.model import User
    from volumed.store.sql import SqlStore

T = TypeVar("T")

_runner: asyncio.Runner | None = None


def open_store(app: App, *, create: bool = False, migrate: bool = True) -> SqlStore:
    """The store named by the settings (SQLite or PostgreSQL), brought up to date (as the
    server does at start; a migration is one transaction, safe beside running servers).
    Built by bootstrap's factory, as the server builds it, but without the services
    around it (no worker, no HTTP app). A missing SQLite database is an error unless
    ``create``."""
    from volumed.bootstrap import open_store as open_configured
    from volumed.bootstrap import sqlite_path
    from volumed.domain.store import StoreUnavailable

    settings = app.settings()
    if settings.is_sqlite:
        path = sqlite_path(settings.store_url)
        if not create and not path.exists():
            app.abort(f"no database at {path} (start the server once, or check --data-dir)")
    try:
        return run(open_configured(settings, migrate=migrate))
    except StoreUnavailable as exc:
        app.abort(f"cannot open the database: {exc}", 2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the command's one event loop (a PostgreSQL pool lives in one)."""
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()
        atexit.register(_runner.close)
    return _runner.run(coro)


def find_user(app: App, store: SqlStore, name: str) -> User:
    user = run(store.find_user(name))
    if user is None:
        app.abort(f"no user named '{name}'")
    return user
