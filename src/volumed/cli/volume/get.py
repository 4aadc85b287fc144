"""``volumed volume get``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume get data
  volumed volume get data logs 847fe9ef-ccb1-409c-be9c-abdc02498131 -o yaml

NAME|UUID: an argument that parses as a UUID is sent as one, else as a name.
""",
)
@click.argument(
    "volumes", nargs=-1, required=True, metavar="NAME|UUID...", shell_complete=complete_volumes
)
@client_options
@output_option
@pass_app
def get(app: App, volumes: tuple[str, ...]) -> None:
    """Show volumes (exit 1 if any is missing)."""
    from volumed.cli.output import volume_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    refs = [ref(v) for v in volumes]
    report(app, app.client().volumes(refs), volume_columns(app), refs=refs)
    app.finish()
