"""The connection guard: no connection sits idle for long, and no client address holds
more than its share of the server's connections.

granian (hyper) bounds the time headers take only from their first byte, and serves at
most ``max_connections`` connections at once: without this guard, a client that opens
connections and sends nothing holds them forever, and ~130 of them stopped every other
client (issue 11). The guard runs beside the server and, every ``_SWEEP_S`` (further
apart when there are very many connections, see :meth:`ConnectionGuard.run`):

* closes each connection with no request in flight and no byte sent either way for
  ``idle_timeout_s`` (never-used connections included);
* for each address holding more than ``per_address`` connections, closes the excess among
  those with no request in flight, newest first.

A connection with a request in flight (or one that returned less than _FLUSH_GRACE_S ago)
is never closed by the guard: its request is bounded by the body timeout and the handler.
The request path pays a few dict updates (:meth:`ConnectionGuard.enter` and
:meth:`~ConnectionGuard.leave`, which the app calls around each request, inline rather
than as one more ASGI wrapper); the sweeps read the kernel's view of the connections
(:mod:`volumed.edge.tcp`) and never touch a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from volumed.asgi import Scope
from volumed.edge.tcp import Connection, address_key, api_connections

__all__ = ["ConnectionGuard", "Peer", "Sweep"]

log = logging.getLogger("volumed.edge")

_SWEEP_S = 0.2
"""How often connections are checked: how long an address can exceed its share."""
_MAX_LOOP_SHARE = 20
"""Sweeps take at most 1/20 of the event loop's time..."""
_FLUSH_GRACE_S = 1.0
"""How long after its request returned a connection still counts as in flight."""
_MAX_PAUSE_S = 1.0
"""... unless that would leave more than this between sweeps (thousands of connections)."""
_WARN_EVERY_S = 10.0
"""Closing over an address's share is logged at most this often (with the counts since)."""


@dataclass(frozen=True, slots=True)
class Sweep:
    connections: int
    idle_closed: int
    over_cap_closed: dict[str, int]


Peer = tuple[str, str]
"""A connection by its client's address and port (as granian gives them: the port as text)."""


class ConnectionGuard:
    """Which connections have a request in flight (told by :meth:`enter` and
    :meth:`leave`), and the sweeper (:meth:`run`) that closes idle and surplus ones."""

    def __init__(
        self,
        *,
        port: int,
        idle_timeout_s: float,
        per_address: int,
        observe: Callable[[int, int, int], None] | None = None,
    ) -> None:
        """``observe(connections, idle_closed, over_limit_closed)`` hears of every sweep
        (the metrics)."""
        self._observe = observe
        self._port = port
        self._idle_ms = int(idle_timeout_s * 1000)
        self._per_address = per_address
        self._busy: dict[Peer, int] = {}
        self._done_at: dict[Peer, float] = {}
        """When each peer's last request returned: granian writes the response's bytes
        from its own thread after that, so a connection quiet for long (a slow request)
        is spared for _FLUSH_GRACE_S more."""
        self._first_seen: dict[Peer, float] = {}
        self._unreported: dict[str, int] = {}
        self._reported_at = 0.0

    def enter(self, scope: Scope) -> Peer | None:
        """A request of ``scope``'s connection begins; pass what this returns to
        :meth:`leave` once it has been answered (or has failed)."""
        client = scope.get("client")
        if not client:
            return None
        peer = (client[0], str(client[1]))  # granian gives the port as a string
        busy = self._busy
        busy[peer] = busy.get(peer, 0) + 1
        return peer

    def leave(self, peer: Peer | None) -> None:
        if peer is None:
            return
        busy = self._busy
        left = busy[peer] - 1
        if left:
            busy[peer] = left
        else:
            del busy[peer]
        self._done_at[peer] = time.monotonic()

    async def run(self) -> None:
        """Sweep until cancelled. A sweep costs ~10-30 µs per connection, in the event
        loop: with many connections the sweeps space out, to take at most
        1/_MAX_LOOP_SHARE of the loop, but never more than _MAX_PAUSE_S apart."""
        pause = _SWEEP_S
        while True:
            await asyncio.sleep(pause)
            started = time.perf_counter()
            try:
                self.sweep()
            except Exception:
                log.exception("connection sweep failed")
            spent = time.perf_counter() - started
            pause = min(_MAX_PAUSE_S, max(_SWEEP_S, spent * _MAX_LOOP_SHARE))

    def sweep(self) -> Sweep:
        return self._close_surplus(api_connections(self._port))

    def _close_surplus(self, connections: list[Connection]) -> Sweep:
        now = time.monotonic()
        first_seen = {c.peer: self._first_seen.get(c.peer, now) for c in connections}
        self._first_seen = first_seen
        recent = now - _FLUSH_GRACE_S
        self._done_at = {p: t for p, t in self._done_at.items() if t > recent}
        active = self._busy.keys() | self._done_at.keys()
        idle_closed = 0
        by_address: dict[str, list[Connection]] = {}
        for connection in connections:
            if connection.peer not in active and connection.quiet_ms >= self._idle_ms:
                idle_closed += connection.shut()
            else:
                by_address.setdefault(address_key(connection.peer[0]), []).append(connection)
        over_cap: dict[str, int] = {}
        for address, held in by_address.items():
            surplus = len(held) - self._per_address
            if surplus <= 0:
                continue
            closable = [c for c in held if c.peer not in active]  # nothing in flight
            closable.sort(key=lambda c: first_seen[c.peer], reverse=True)  # newest first
            closed = sum(connection.shut() for connection in closable[:surplus])
            if closed:
                over_cap[address] = closed
        if idle_closed:
            log.debug("closed %d idle connection(s)", idle_closed)
        self._report(over_cap, now)
        if self._observe is not None:
            self._observe(len(connections), idle_closed, sum(over_cap.values()))
        return Sweep(len(connections), idle_closed, over_cap)

    def _report(self, over_cap: dict[str, int], now: float) -> None:
        for address, closed in over_cap.items():
            self._unreported[address] = self._unreported.get(address, 0) + closed
        if not self._unreported or now - self._reported_at < _WARN_EVERY_S:
            return
        log.warning(
            "closed %d connection(s) of %d address(es) over max_connections_per_address=%d",
            sum(self._unreported.values()),
            len(self._unreported),
            self._per_address,
            extra={"closed_by_address": dict(self._unreported)},
        )
        self._unreported.clear()
        self._reported_at = now
