"""``volumed volume ls``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.domain.states import VolumeState

# Templates are listed by ``volumed volume template ls``.
STATES = tuple(s.value for s in VolumeState if s is not VolumeState.TEMPLATE)


@click.command(
    epilog="""\b
Examples:
  volumed volume ls
  volumed volume ls --tag prod --state available
  volumed volume ls -o json | jq -r '.[].name'
""",
)
@click.option("--tag", "tags", multiple=True, help="Only volumes with this tag (all must match).")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Only in state.")
@click.option("-q", "--quiet", is_flag=True, help="Print names only.")
@client_options
@output_option
@pass_app
def ls(app: App, tags: tuple[str, ...], states: tuple[str, ...], quiet: bool) -> None:
    """List volumes."""
    from volumed.cli.output import volume_columns
    from volumed.cli.volume._common import report

    params = {"tags": ",".join(tags)} if tags else None
    items = app.client().items("GET", "/v1/volumes", params=params)
    if states:
        items = [i for i in items if i.get("state") in states]
    if quiet:
        for item in items:
            click.echo(item.get("name"))
        return
    report(app, items, volume_columns(app), empty="No volumes.")
    app.finish()
