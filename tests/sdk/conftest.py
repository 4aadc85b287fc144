"""Fixtures of the SDK tests: the official client, pinned to a live volumed server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer, make_server


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of the module's own: listings and quotas start from an empty account."""
    live = make_server(tmp_path_factory.mktemp("sdk"), VOLUMED_WORKER_LEASE_S=2)
    yield live
    live.stop()
