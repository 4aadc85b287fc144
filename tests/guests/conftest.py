"""Fixtures of the guest tests: a server whose instances are real QEMU guests.

The guest assets must be installed (``scripts/_env.sh`` does it: QEMU, busybox-static
and the kernel package unpacked under ``.cache/guest``); without them the server does
not start and these tests fail, as they should on a machine that claims to run guests.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, kill_guests
from tests.guests.guest_helpers import qemu_server


@pytest.fixture(scope="module")
def guest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = qemu_server(tmp_path_factory.mktemp("guests"))
    yield live
    live.stop()
    kill_guests(live.data_dir)


@pytest.fixture
def gapi(guest_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=guest_server.url,
        headers={"Authorization": f"Bearer {guest_server.token}"},
        timeout=300,
    ) as client:
        yield client
