"""The reconciler driven directly: services built by ``bootstrap`` on a real store and
real images under the test's directory; a test calls the worker's ``drain`` and looks at
the rows and the images."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.store.harness import empty, pytest_pyfunc_call, runner, settings
from volumed.bootstrap import Services, bootstrap
from volumed.settings import Settings

__all__ = ["pytest_pyfunc_call", "runner", "services", "settings"]


@pytest.fixture
def services(runner: asyncio.Runner, settings: Settings) -> Iterator[Services]:
    runner.run(empty(settings))
    built = runner.run(bootstrap(settings))
    yield built
    runner.run(built.close())
