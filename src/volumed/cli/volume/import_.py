"""``volumed volume import``: fill a volume with files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes

_STDIN_CHUNK = 1 << 20


@click.command(
    name="import",
    epilog="""\b
Examples:
  volumed volume import data --source ./site          # a directory
  volumed volume import data --source backup.tar      # a tar archive (.tar.gz too)
  volumed volume import --volume data -s ./site       # as kraft cloud volume import
  tar -C ./site -c . | volumed volume import data --source - --yes

The volume's contents are REPLACED by the archive, atomically: if it does not fit
(the error says how much it needs) or the transfer fails half-way, the volume is
left exactly as it was. A volume that already holds files is replaced only after
you confirm, or with --yes (needed when stdin is not a terminal). The volume must be
available (not attached). Modes, owners, symlinks, hard links and directories are
kept; device nodes are refused.
""",
)
@click.argument("volume", metavar="NAME|UUID", required=False, shell_complete=complete_volumes)
@click.option(
    "-v",
    "--volume",
    "volume_option",
    metavar="NAME|UUID",
    shell_complete=complete_volumes,
    help="The volume (instead of the argument, as kraft spells it).",
)
@click.option(
    "-s",
    "--source",
    required=True,
    type=click.Path(exists=True, path_type=Path, allow_dash=True),
    help="A directory, a tar archive file, or - for a tar archive on stdin.",
)
@click.option(
    "-y",
    "--yes",
    "-f",
    "--force",
    "yes",
    is_flag=True,
    help="Replace the contents of a volume that holds files without asking.",
)
@client_options
@output_option
@pass_app
def import_(
    app: App, volume: str | None, volume_option: str | None, source: Path, yes: bool
) -> None:
    """Replace a volume's contents with a directory or a tar archive."""
    from volumed.cli.output import Progress, human_bytes, volume_columns
    from volumed.cli.volume._archive import holds_files, read_file, tar_directory, tree_size
    from volumed.cli.volume._common import report

    if volume and volume_option and volume != volume_option:
        raise click.UsageError("name the volume once: as the argument or with --volume")
    name_or_uuid = volume or volume_option
    if not name_or_uuid:
        raise click.UsageError("which volume? Give NAME|UUID or --volume NAME|UUID")
    client = app.client()
    target = client.volume(name_or_uuid)
    name = target.get("name")
    if not yes and holds_files(client, str(target["uuid"])):
        _confirm_replace(app, str(name), stdin_is_source=str(source) == "-")
    if str(source) == "-":
        total, chunks = 0, _stdin_chunks()
    elif source.is_dir():
        total, chunks = tree_size(source), tar_directory(source)
    else:
        total, chunks = source.stat().st_size, read_file(source)
    progress = Progress(app, f"import {name}", total or None)

    def counted() -> Iterator[bytes]:
        for chunk in chunks:
            progress.add(len(chunk))
            yield chunk
        progress.note("the server is building the new file system…")

    try:
        envelope = client.upload(f"/volumed/v1/volumes/{target['uuid']}/import", counted())
    finally:
        seconds = progress.close()
    items = [i for i in (envelope.get("data") or {}).get("volumes", []) if isinstance(i, dict)]
    report(app, items, volume_columns(app), refs=[{"name": name}])
    if not app.failed:
        rate = progress.done_bytes / max(seconds, 1e-6)
        click.echo(
            f"imported {human_bytes(progress.done_bytes)} into '{name}' "
            f"in {seconds:.2f} s ({human_bytes(rate)}/s)",
            err=True,
        )
    app.finish()


def _confirm_replace(app: App, name: str, *, stdin_is_source: bool) -> None:
    """Ask on a terminal; elsewhere (scripts, CI, an archive on stdin) require --yes."""
    question = f"Volume '{name}' holds files; the import replaces all of them. Continue?"
    if stdin_is_source or not sys.stdin.isatty():
        app.abort(
            f"volume '{name}' holds files and the import would replace them: add --yes to confirm",
            2,
        )
    if not click.confirm(question, default=False, err=True):
        app.abort("nothing imported", 1)


def _stdin_chunks() -> Iterator[bytes]:
    stream = sys.stdin.buffer
    while chunk := stream.read(_STDIN_CHUNK):
        yield chunk
