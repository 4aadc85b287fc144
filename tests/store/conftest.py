"""The store's contract, on SQLite and on PostgreSQL (``VOLUMED_TEST_STORE``)."""

from tests.store.harness import pytest_pyfunc_call, runner, settings, store

__all__ = ["pytest_pyfunc_call", "runner", "settings", "store"]
