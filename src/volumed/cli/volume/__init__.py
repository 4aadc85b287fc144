"""``volumed volume …``: the client commands for volumes, one module per command."""

from __future__ import annotations

import click

from volumed.cli.aliases import AliasGroup
from volumed.cli.volume.attach import attach, detach
from volumed.cli.volume.clone import clone
from volumed.cli.volume.create import create
from volumed.cli.volume.events import events
from volumed.cli.volume.export import export
from volumed.cli.volume.get import get
from volumed.cli.volume.import_ import import_
from volumed.cli.volume.ls import ls
from volumed.cli.volume.rm import rm
from volumed.cli.volume.template import template
from volumed.cli.volume.update import update

__all__ = ["volume"]


@click.group(
    cls=AliasGroup,
    epilog="""\b
Examples:
  volumed volume create --name data --size 1Gi --wait
  volumed volume ls
  volumed volume import data --source ./site
  volumed volume attach data --to web --at /data
  volumed volume export data --output ./backup
  volumed volume rm data

Talks HTTP to a server: --url/$VOLUMED_URL/$UKC_METRO, --token/$VOLUMED_TOKEN/$UKC_TOKEN,
else the local server's <data-dir>/token.
""",
)
def volume() -> None:
    """Manage volumes (like `kraft cloud volume`)."""


for command in (
    create,
    ls,
    get,
    rm,
    attach,
    detach,
    clone,
    update,
    template,
    import_,
    export,
    events,
):
    volume.add_command(command)
