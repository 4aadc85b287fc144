"""``volumed job list|retry``: background jobs that failed too often and were parked."""

from __future__ import annotations

import click

from volumed.cli.application import App, admin_options, output_option, pass_app


@click.group(
    epilog="""\b
Examples:
  volumed job list                                   # parked jobs and why
  volumed job retry 6f1c2a9e-1b7d-4c1e-9a52-0d4f3b2c8e11
""",
)
def job() -> None:
    """Parked background jobs: a job that failed max_attempts times (an image that
    cannot be removed, say) waits for an operator instead of being retried for ever."""


@job.command(
    name="list",
    epilog="\b\nExamples:\n  volumed job list\n  volumed job list -o json\n",
)
@admin_options
@output_option
@pass_app
def list_jobs(app: App) -> None:
    """Show the parked jobs: volume, job, attempts, and the last error."""
    from volumed.cli.admin._store import open_store, run
    from volumed.cli.output import print_items

    store = open_store(app)
    try:
        rows = run(store.parked_jobs())
    finally:
        run(store.close())
    items = [{**row, "deleted": bool(row["deleted"])} for row in rows]
    columns = [
        ("VOLUME", lambda r: str(r["uuid"])),
        ("JOB", lambda r: f"{r['job']}{' (deleted)' if r['deleted'] else ''}"),
        ("ATTEMPTS", lambda r: str(r["attempts"])),
        ("LAST ERROR", lambda r: str(r["reason"] or "")),
    ]
    print_items(app, items, columns, empty="no parked jobs")


@job.command(
    name="retry",
    epilog="\b\nExamples:\n  volumed job retry 6f1c2a9e-1b7d-4c1e-9a52-0d4f3b2c8e11\n",
)
@click.argument("uuid")
@admin_options
@pass_app
def retry(app: App, uuid: str) -> None:
    """Run a parked job again (attempts counted from zero), once its cause is fixed."""
    from volumed.cli.admin._store import open_store, run

    store = open_store(app)
    try:
        retried = run(store.unpark_job(uuid))
    finally:
        run(store.close())
    if not retried:
        app.abort(f"volume {uuid} has no parked job")
    click.echo(f"job on volume {uuid} will be retried")
