"""``volumed serve``: run the HTTP API and the background worker in one process."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from volumed import logs
from volumed.domain.fencing import sweep_unborn
from volumed.domain.storage import StorageError
from volumed.domain.store import StoreUnavailable
from volumed.settings import Settings, SettingsError

if TYPE_CHECKING:
    from volumed.bootstrap import Services


@click.command(
    epilog="""\b
Examples:
  volumed serve
  volumed serve --host 0.0.0.0 --port 8080 --data-dir /var/lib/volumed
  VOLUMED_TOKEN=my-long-secret-token volumed serve

Every flag can also be set as VOLUMED_<FLAG> (e.g. VOLUMED_PORT=9000); flags win.
""",
)
@click.option("--host", help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [8080].")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory [./.volumed].")
@click.option(
    "--database-url",
    help="sqlite:///path (default <data-dir>/volumed.db) or postgresql://user@host/db.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    database_url: str | None,
    log_level: str | None,
) -> None:
    """Run the volumed API server."""
    overrides = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "database_url": database_url,
        "log_level": log_level,
    }
    try:
        settings = Settings.load(overrides, os.environ)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    logs.configure(settings.log_level, settings.log_format)
    try:
        import uvloop

        uvloop.run(_serve(settings))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    except StoreUnavailable as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from None


async def _serve(settings: Settings) -> None:
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from volumed.bootstrap import bootstrap, ensure_default_user
    from volumed.cli._lifecycle import run_server
    from volumed.edge import listener
    from volumed.edge.guard import ConnectionGuard

    connections = listener.fit_open_files(settings.max_connections)
    if connections < settings.max_connections:
        logging.getLogger("volumed").warning(
            "serving %d connections at once, not max_connections=%d: the open-files limit "
            "leaves no room for more (raise it, e.g. systemd LimitNOFILE=)",
            connections,
            settings.max_connections,
        )
    # Both addresses first: a second server must stop here, before it touches the store.
    try:
        api_socket = listener.bind(settings.host, settings.port, connections, setting="--port")
        metrics_socket = None
        if settings.metrics_port:
            metrics_socket = listener.bind(
                settings.metrics_host,
                settings.metrics_port,
                16,
                setting="VOLUMED_METRICS_PORT (0 turns metrics off)",
            )
    except listener.AddressInUse as exc:
        raise click.ClickException(exc.strerror or str(exc)) from None
    services = await bootstrap(settings)
    logging.getLogger("volumed").info("instance runtime: %s", services.runtime_note)
    token = await ensure_default_user(services.store, settings)
    if token is not None and sys.stderr.isatty():
        click.echo(
            f"Created user 'default'. Its token (shown once, also in {settings.token_file}):\n"
            f"  {token}",
            err=True,
        )
    elif token is not None:
        # Not a terminal: stderr is a log, and a token has no business in a log.
        logging.getLogger("volumed").info(
            "created user 'default'; its token is in %s", settings.token_file
        )
    released = await _take_back_after_crash(services) if settings.is_sqlite else 0
    if released:
        logging.getLogger("volumed").info("resuming %d unfinished job(s)", released)
    # Likewise instances a crash left starting or stopping: finish before serving. With
    # replicas, one may be in the middle of such a start or stop: every step is a
    # compare-and-set, so at most one of us completes each (the runtime only records).
    if services.instances is not None:
        finished = await services.instances.recover()
        if finished:
            logging.getLogger("volumed").info("finished %d interrupted start/stop(s)", finished)
    guard = ConnectionGuard(
        port=api_socket.getsockname()[1],
        idle_timeout_s=settings.idle_timeout_s,
        per_address=settings.max_connections_per_address,
        observe=services.metrics.connections_swept if services.metrics is not None else None,
    )
    app = services.http or services.app
    app.guard_connections(guard)
    server = listener.granian_server(
        api_socket,
        target=app,
        address=settings.host,
        port=settings.port,
        backlog=connections,
        backpressure=connections,
        interface=Interfaces.ASGINL,
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.header_timeout_s * 1000)),
        log_access=False,
        log_level=LogLevels(settings.log_level.lower()),
    )
    logs.configure(settings.log_level, settings.log_format)  # granian just set up its own
    logging.getLogger("volumed").info(
        "volumed listening on http://%s:%d (data in %s)",
        settings.host,
        settings.port,
        settings.data_dir,
    )
    try:
        await run_server(server, services, guard, metrics_socket)
    finally:
        await services.close()


async def _take_back_after_crash(services: Services) -> int:
    """What a lone SQLite server's crash left: its leases (returns how many it held),
    interrupted transfers, staged images of creates whose inserts never committed."""
    log = logging.getLogger("volumed")
    # A lone SQLite server holds every lease there is: after a crash, take them back
    # now instead of waiting for them to expire. Replicas on PostgreSQL must not:
    # the others hold some; a dead replica's leases expire and are taken over.
    released = await services.store.release_leases()
    # No transfer runs before we serve: what .transfer/ holds was left by a crash.
    # (Replicas share the data directory: there, another's transfer may be running.)
    # Leftovers that cannot go now must not keep the server down: `fsck` reports them.
    try:
        await services.storage.discard_transfers()
    except StorageError as exc:
        log.warning("transfer leftovers kept: %s", exc)
    # Likewise an image a create began while its insert committed (format_ahead).
    try:
        unborn = await sweep_unborn(services.store, services.storage)
    except StorageError as exc:
        log.warning("staged images of volumes never inserted kept: %s", exc)
    else:
        if unborn:
            log.info("removed the staged images of %d volume(s) never inserted", len(unborn))
    return released
