"""``volumed instance …``: the client commands for instances."""

from __future__ import annotations

import click

from volumed.cli.aliases import AliasGroup
from volumed.cli.instance.create import create
from volumed.cli.instance.lifecycle import rm, start, stop, wait
from volumed.cli.instance.logs import logs
from volumed.cli.instance.ls import get, ls

__all__ = ["instance"]


@click.group(
    cls=AliasGroup,
    epilog="""\b
Examples:
  volumed instance create --name web --image nginx --volume data:/data
  volumed instance start web && volumed instance wait web --state running
  volumed instance logs web --follow
  volumed instance stop web
  volumed instance rm web
""",
)
def instance() -> None:
    """Manage instances (the volumes' users)."""


for command in (create, ls, get, start, stop, rm, wait, logs):
    instance.add_command(command)
