"""``volumed volume import``: fill a volume with files."""

from __future__ import annotations

from pathlib import Path

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    name="import",
    epilog="""\b
Examples:
  volumed volume import data --source ./site          # a directory
  volumed volume import data --source backup.tar      # a tar archive (.tar.gz too)

The volume's contents are REPLACED by the archive, atomically: if it does not fit
(the error says how much it needs) or the transfer fails half-way, the volume is
left exactly as it was. The volume must be available (not attached). Modes, owners,
symlinks, hard links and directories are kept; device nodes are refused.
""",
)
@click.argument("volume", metavar="NAME|UUID", shell_complete=complete_volumes)
@click.option(
    "--source",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A directory, or a tar archive file.",
)
@client_options
@output_option
@pass_app
def import_(app: App, volume: str, source: Path) -> None:
    """Replace a volume's contents with a directory or a tar archive."""
    from collections.abc import Iterator

    from volumed.cli.output import Progress, human_bytes, volume_columns
    from volumed.cli.volume._archive import read_file, tar_directory, tree_size
    from volumed.cli.volume._common import report

    client = app.client()
    target = client.volume(volume)
    if source.is_dir():
        total, chunks = tree_size(source), tar_directory(source)
    else:
        total, chunks = source.stat().st_size, read_file(source)
    progress = Progress(app, f"import {target.get('name')}", total or None)

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
    report(app, items, volume_columns(app), refs=[{"name": target.get("name")}])
    if not app.failed:
        rate = progress.done_bytes / max(seconds, 1e-6)
        click.echo(
            f"imported {human_bytes(progress.done_bytes)} into '{target.get('name')}' "
            f"in {seconds:.2f} s ({human_bytes(rate)}/s)",
            err=True,
        )
    app.finish()
