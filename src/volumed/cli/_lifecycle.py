"""How ``volumed serve`` runs and stops: the API server, the metrics listener and the
worker in one event loop, and a graceful shutdown on SIGTERM or SIGINT.

On the first signal:

1. granian stops accepting connections and waits for the requests it has (a request is
   either answered in full or its connection is refused before it is read); running
   imports are stopped at once and answer error 10, their volumes unchanged;
2. at the same time the worker stops claiming jobs, lets running ones finish, and hands
   back its leases;
3. both get ``shutdown_timeout_s``; what is still running then is abandoned. Nothing is
   half-done on disk or in the store: every store change is one transaction, every job
   is idempotent and is redone after the restart (its lease was handed back or expires).

A second signal skips the wait. The process exits 0 either way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from volumed.metrics_http import MetricsListener

if TYPE_CHECKING:
    from volumed.bootstrap import Services
    from volumed.edge.guard import ConnectionGuard

log = logging.getLogger("volumed")


async def _stop_jobs(services: Services, timeout: float) -> None:
    # An import is redone by its client: a shutdown does not wait for one to finish, only
    # for it to hand its volume back, before the worker hands back its leases.
    if services.transfers is not None:
        await services.transfers.stop_imports(timeout)
    await services.worker.stop(timeout)


async def run_server(
    server: Any,
    services: Services,
    guard: ConnectionGuard,
    metrics_socket: socket.socket | None,
) -> None:
    """Serve until a signal, then shut down as described above. ``server`` is granian's
    embedded ``Server`` (untyped), serving the app that tells ``guard`` of its requests
    (whose sweeps run here); ``metrics_socket`` is the
    bound metrics address, if metrics are on."""
    settings = services.settings
    timeout = settings.shutdown_timeout_s
    loop = asyncio.get_running_loop()
    listener = None
    if services.metrics is not None and metrics_socket is not None:
        listener = MetricsListener(services.metrics, metrics_socket)
        await listener.start()
    worker = asyncio.create_task(services.worker.run())
    node = (
        asyncio.create_task(
            services.instances.run_node(settings.worker_lease_s, settings.worker_poll_s)
        )
        if services.instances is not None
        else None
    )
    sweeper = asyncio.create_task(guard.run())
    serving = asyncio.ensure_future(server.serve())
    stopping: list[asyncio.Task[None]] = []
    signalled_at = 0.0

    def give_up() -> None:
        if not serving.done():
            log.warning(
                "in-flight requests did not finish within %.1f s; exiting without them",
                timeout,
                extra={"timeout_s": timeout},
            )
            serving.cancel()

    def on_signal(name: str) -> None:
        nonlocal signalled_at
        if stopping:
            log.warning("second %s: exiting without waiting", name, extra={"signal": name})
            serving.cancel()
            return
        signalled_at = time.monotonic()
        log.info(
            "%s: shutting down (no new connections; up to %.1f s for requests and jobs)",
            name,
            timeout,
            extra={"signal": name, "timeout_s": timeout},
        )
        server.stop()
        stopping.append(loop.create_task(_stop_jobs(services, timeout)))
        loop.call_later(timeout, give_up)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        # wait() rather than await: a cancelled ``serving`` (timeout, second signal) is
        # how shutdown ends, not an error.
        await asyncio.wait({serving})
        failure = None if serving.cancelled() else serving.exception()
        if failure is not None:
            raise failure
    finally:
        if node is not None:
            node.cancel()
        if not stopping:
            stopping.append(loop.create_task(services.worker.stop(timeout)))
        await stopping[0]
        worker.cancel()
        sweeper.cancel()
        if listener is not None:
            await listener.close()
        if services.http is not None:
            services.http.flush()
        log.info(
            "volumed stopped",
            extra={"shutdown_s": round(time.monotonic() - signalled_at, 3) if signalled_at else 0},
        )
