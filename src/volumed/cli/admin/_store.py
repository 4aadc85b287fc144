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


def open_store(app: App) -> SqliteStore:
    from volumed.bootstrap import open_store as open_configured
    from volumed.settings import SettingsError

    settings = app.settings()
    try:
        return open_configured(settings)
    except SettingsError as exc:
        app.abort(str(exc), 2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def find_user(app: App, store: SqliteStore, name: str) -> User:
    user = run(store.find_user(name))
    if user is None:
        app.abort(f"no user named '{name}'")
    return user
