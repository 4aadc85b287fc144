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
    """Show volumes in detail (exit 1 if any is missing)."""
    from volumed.cli.client import describe
    from volumed.cli.output import print_details, print_items, volume_columns
    from volumed.cli.refs import ref

    refs = [ref(v) for v in volumes]
    items = app.client().volumes(refs)
    for index, item in enumerate(items):
        if item.get("status") == "error":
            app.item_error(
                f"volume {describe(item, refs[index] if index < len(refs) else None)}", item
            )
    if app.output == "table":
        print_details(app, items)  # a detail view; `volume ls` is the table
    else:
        print_items(app, items, volume_columns(app))
    app.finish()
