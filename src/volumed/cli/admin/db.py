"""``volumed db status|migrate``: the metadata schema."""

from __future__ import annotations

import click

from volumed.cli.application import App, admin_options, pass_app


@click.group(
    epilog="""\b
Examples:
  volumed db status          # applied and pending migrations
  volumed db migrate         # apply the pending ones (the server also does at start)
""",
)
def db() -> None:
    """Inspect and migrate the metadata database."""


@db.command(
    epilog="\b\nExamples:\n  volumed db status\n  volumed db status --data-dir /srv/volumed\n"
)
@admin_options
@pass_app
def status(app: App) -> None:
    """Show the schema version and pending migrations (exit 1 if any is pending)."""
    from volumed.cli.admin._store import open_store, run
    from volumed.store import migrations

    store = open_store(app, migrate=False)
    try:
        applied = run(store.applied_migrations())
    finally:
        run(store.close())
    known = migrations.all_migrations(store.dialect)
    pending = [m.version for m in known if m.version not in applied]
    for migration in known:
        mark = "pending" if migration.version in pending else "applied"
        click.echo(f"{migration.version:04d}  {mark:8}  {migration.name}")
    try:
        migrations.check_known(applied, store.dialect)
    except migrations.SchemaTooNew as exc:
        for version in exc.unknown:
            click.echo(f"{version:04d}  {'unknown':8}  (applied by a newer volumed)")
        app.abort(str(exc))
    if pending:
        app.abort(f"{len(pending)} migration(s) pending: run `volumed db migrate`")


@db.command(
    epilog="\b\nExamples:\n  volumed db migrate\n  volumed db migrate --data-dir /srv/volumed\n"
)
@admin_options
@pass_app
def migrate(app: App) -> None:
    """Apply pending migrations (safe while a server runs: one transaction)."""
    from volumed.cli.admin._store import open_store, run
    from volumed.domain.store import StoreUnavailable

    store = open_store(app, create=True, migrate=False)
    try:
        applied = run(store.migrate())
    except StoreUnavailable as exc:  # among them SchemaTooNew: a newer volumed's database
        app.abort(f"cannot migrate: {exc}", 2)
    finally:
        run(store.close())
    if applied:
        click.echo(f"Applied migration(s) {', '.join(f'{v:04d}' for v in applied)}.")
    else:
        click.echo("The schema is up to date.")
