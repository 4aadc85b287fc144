"""``volumed volume export``: get a volume's files back out."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from volumed.cli.application import App, client_options, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume export data --output ./data-copy     # unpack into a directory
  volumed volume export data --output data.tar        # keep the archive
  volumed volume export data --output - | tar -tv     # archive on stdout

The volume must not be mounted by a running instance. A directory must be empty or
not exist yet. Modes, owners (as root), symlinks and hard links are kept.
""",
)
@click.argument("volume", metavar="NAME|UUID", shell_complete=complete_volumes)
@click.option(
    "--output",
    "-O",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="A directory, a FILE.tar, or - for stdout.",
)
@client_options
@pass_app
def export(app: App, volume: str, output: Path) -> None:
    """Copy a volume's files out, as a directory or a tar archive."""
    import httpx

    from volumed.cli.output import Progress, human_bytes

    client = app.client()
    target = client.volume(volume)
    name = target.get("name")
    if _is_dir_target(output) and output.exists():
        if not output.is_dir() or any(output.iterdir()):
            app.abort(f"{output} exists and is not an empty directory")
    response, stream = client.download(f"/volumed/v1/volumes/{target['uuid']}/export")
    try:
        if not response.headers.get("content-type", "").startswith("application/x-tar"):
            envelope = client.decode_streamed(response)
            for item in (envelope.get("data") or {}).get("volumes", []):
                if isinstance(item, dict) and item.get("status") == "error":
                    app.item_error(f"volume '{name}'", item)
            app.finish()
            app.abort("the server answered without an archive")
        used = (target.get("size_mb", 0) - target.get("free_mb", 0)) * 2**20
        progress = Progress(app, f"export {name}", used or None)

        def chunks() -> Iterator[bytes]:
            for chunk in response.iter_raw(1 << 20):
                progress.add(len(chunk))
                yield chunk

        try:
            _write(chunks(), output)
        except (OSError, ValueError, httpx.HTTPError) as exc:
            progress.close()
            app.abort(f"export of volume '{name}' failed: {exc}")
        seconds = progress.close()
    finally:
        stream.__exit__(None, None, None)
    rate = progress.done_bytes / max(seconds, 1e-6)
    where = "stdout" if str(output) == "-" else str(output)
    click.echo(
        f"exported {human_bytes(progress.done_bytes)} of '{name}' to {where} "
        f"in {seconds:.2f} s ({human_bytes(rate)}/s)",
        err=True,
    )


def _is_dir_target(output: Path) -> bool:
    return str(output) != "-" and output.suffix != ".tar"


def _write(chunks: Iterator[bytes], output: Path) -> None:
    """To stdout, to a FILE.tar (renamed into place when complete), or unpacked."""
    import tarfile

    from volumed.cli.volume._archive import untar_into

    if str(output) == "-":
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    elif not _is_dir_target(output):
        partial = output.with_name(output.name + ".part")
        with open(partial, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        partial.replace(output)
    else:
        try:
            untar_into(chunks, output)
        except tarfile.TarError as exc:
            raise ValueError(f"the archive is damaged or cut short: {exc}") from exc
