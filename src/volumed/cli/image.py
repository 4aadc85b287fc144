"""``volumed image …``: the images instances run (an admin command: it writes the data
directory, as the server's host user)."""

from __future__ import annotations

from pathlib import Path

import click

from volumed.cli.application import App, admin_options, pass_app
from volumed.cli.exits import EXIT_USAGE

__all__ = ["image"]


@click.group(
    epilog="""\b
Examples:
  docker save alpine:3.20 -o alpine.tar && volumed image import alpine:3.20 alpine.tar
  skopeo copy docker://redis:7 oci-archive:redis.tar && volumed image import redis:7 redis.tar
  volumed image ls
""",
)
def image() -> None:
    """Manage the images instances run (busybox is built in)."""


@image.command(
    name="import",
    epilog="""\b
Examples:
  docker save alpine:3.20 -o alpine.tar && volumed image import alpine:3.20 alpine.tar
  volumed image import redis:7 redis-oci.tar
""",
)
@click.argument("name")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@admin_options
@pass_app
def import_(app: App, name: str, archive: Path) -> None:
    """Import ARCHIVE (docker save, or an OCI image layout as a tar) as image NAME."""
    from volumed.runtime.image_import import ImageImportError, import_image

    settings = app.settings()
    try:
        made = import_image(settings.guest_images_dir, name, archive)
    except ValueError as exc:
        app.abort(str(exc), EXIT_USAGE)
    except ImageImportError as exc:
        app.abort(str(exc))
    click.echo(f"imported {made.name} ({made.size_bytes // 1_048_576} MiB root file system)")


@image.command(name="ls", epilog="\b\nExamples:\n  volumed image ls\n")
@admin_options
@pass_app
def ls(app: App) -> None:
    """List the images instances may name."""
    from volumed.runtime.images import ImageCatalog

    for found in ImageCatalog(app.settings().guest_images_dir).all():
        command = " ".join([*found.entrypoint, *found.cmd])
        click.echo(f"{found.name}\t{found.size_bytes // 1_048_576} MiB\t{command}")
