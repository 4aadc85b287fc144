"""``volumed backup DEST`` and ``volumed restore SOURCE``: a consistent copy of a running
server (database and images) and its return into a new data directory. How the copy is
kept consistent: :mod:`volumed.cli.admin._backup`; the procedure: docs/deployment.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from volumed.cli.application import App, admin_options, pass_app


@click.command(
    epilog="""\b
Examples:
  volumed backup /srv/backups/volumed-2026-12-02
  volumed backup --data-dir /var/lib/volumed /mnt/backup/today --wait 300

\b
DEST must not exist or be empty. The server may keep running: the database is
copied as of one instant (SQLite's online backup; on PostgreSQL pg_dump on an
exported snapshot) and each image exactly as it was then, as a sparse copy.
""",
)
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for busy volumes to settle before giving up.",
)
@admin_options
@pass_app
def backup(app: App, dest: Path, wait_s: float) -> None:
    """Copy the database and every volume's image into DEST, consistently."""
    from volumed import __version__
    from volumed.cli.admin._backup import BackupError, take_backup
    from volumed.cli.admin._store import run
    from volumed.domain.store import StoreUnavailable
    from volumed.store import snapshot as snap

    settings = app.settings()
    if not settings.images_dir.is_dir():
        app.abort(f"no image directory at {settings.images_dir} (check --data-dir)", 2)

    def take(target: Path) -> list[snap.SnapshotRow]:
        if settings.is_sqlite:
            from volumed.bootstrap import sqlite_path

            return snap.sqlite_snapshot(sqlite_path(settings.store_url), target / snap.SQLITE_FILE)
        return run(snap.postgres_snapshot(settings.store_url, target / snap.PG_DUMP_FILE))

    try:
        report = take_backup(
            settings.images_dir,
            dest,
            take,
            store="sqlite" if settings.is_sqlite else "postgresql",
            version=__version__,
            wait_s=wait_s,
            guest_images=settings.guest_images_dir,
        )
    except (BackupError, StoreUnavailable) as exc:
        app.abort(f"backup failed: {exc}")
    if settings.token_file.exists():
        shutil.copy2(settings.token_file, dest / "token")
    click.echo(
        f"Backed up the database, {len(report.images)} volume image(s) "
        f"and {report.guest_images} imported guest image(s) "
        f"({report.bytes_allocated / 2**20:.1f} MiB on disk) into {dest} "
        f"in {report.seconds:.1f} s ({report.rounds} round(s))."
    )


@click.command(
    epilog="""\b
Examples:
  volumed restore /srv/backups/volumed-2026-12-02 --data-dir /var/lib/volumed
  VOLUMED_DATABASE_URL=postgresql://volumed@db/volumed_new volumed restore ./backup

\b
The data directory must hold no database and no image, and no server may run on it
(PostgreSQL: the database must be empty). Start the server afterwards: it resumes the
jobs the backup caught in flight. Then `volumed fsck` finds nothing to report.
""",
)
@click.argument("source", type=click.Path(path_type=Path, file_okay=False, exists=True))
@admin_options
@pass_app
def restore(app: App, source: Path) -> None:
    """Bring a backup made by `volumed backup` into an empty data directory."""
    from volumed.cli.admin._backup import BackupError, read_manifest
    from volumed.cli.admin._restore import restore_backup
    from volumed.domain.storage import StorageError
    from volumed.domain.store import StoreUnavailable

    settings = app.settings()
    try:
        manifest = read_manifest(source)
        restored = restore_backup(settings, source, manifest)
    except (BackupError, StoreUnavailable, StorageError) as exc:
        app.abort(f"restore failed: {exc}")
    click.echo(
        f"Restored the database and {restored} image(s) into {settings.data_dir}. "
        "Start the server; then `volumed fsck` should report nothing."
    )
