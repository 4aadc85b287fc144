"""A short chaos run: 20 ``kill -9`` at random moments under four clients (see chaos.py;
the long run is ``.venv/bin/python -m tests.hardening.chaos --kills 200``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.conftest import LiveServer
from tests.hardening.chaos import run_chaos

KILLS = int(os.environ.get("VOLUMED_CHAOS_KILLS", "20"))
SEED = int(os.environ.get("VOLUMED_CHAOS_SEED", "7"))


# chaos.py reads the SQLite file to check its invariants (issue 6: SQLite pass only).
@pytest.mark.sqlite_only
def test_chaos_kill_9_keeps_every_invariant(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server()
    stats = run_chaos(live, KILLS, SEED)
    print(f"chaos: {stats}")
    assert stats.kills == KILLS
    assert stats.answered > KILLS * 5, "the clients hardly got to do anything"
    assert stats.violations == []
