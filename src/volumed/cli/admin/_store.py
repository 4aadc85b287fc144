"""Opening the store for an admin command, and running its coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from volumed.cli.application import App

if TYPE_CHECKING:
    from volumed.domain.model import User
    from volumed.store.sqlite import SqliteStore

T = TypeVar("T")


def open_store(app: App, *, create: bool = False, migrate: bool = True) -> SqliteStore:
    """The SQLite store named by the settings, brought up to date (as the server does at
    start; a migration is one transaction, safe beside a running server). Opened
    directly rather than through ``bootstrap`` so that admin commands start fast. A
    missing database is an error unless ``create``."""
    from pathlib import Path

    from volumed.store.sqlite import SqliteStore

    settings = app.settings()
    url = settings.store_url
    if not url.startswith("sqlite:///"):
        scheme = url.split(":", 1)[0]
        app.abort(f"database_url {scheme}:… is not supported by the admin commands yet", 2)
    raw = url.removeprefix("sqlite:///")
    path = Path(raw) if raw.startswith("/") else Path(url.removeprefix("sqlite://"))
    if not create and not path.exists():
        app.abort(f"no database at {path} (start the server once, or check --data-dir)")
    path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(path, synchronous=settings.sqlite_synchronous.upper())
    if migrate:
        store.migrate()
    return store


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def find_user(app: App, store: SqliteStore, name: str) -> User:
    user = run(store.find_user(name))
    if user is None:
        app.abort(f"no user named '{name}'")
    return user
