"""``volumed instance ls`` and ``volumed instance get``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_instances


@click.command(
    epilog="""\b
Examples:
  volumed instance ls
  volumed instance ls -o json
""",
)
@client_options
@output_option
@pass_app
def ls(app: App) -> None:
    """List instances."""
    from volumed.cli.instance._common import instance_columns
    from volumed.cli.volume._common import report

    items = app.client().items("GET", "/v1/instances", "instances")
    report(app, items, instance_columns(app), what="instance", empty="No instances.")
    app.finish()


@click.command(
    epilog="""\b
Examples:
  volumed instance get web
  volumed instance get web job -o yaml
""",
)
@click.argument(
    "instances", nargs=-1, required=True, metavar="NAME|UUID...", shell_complete=complete_instances
)
@client_options
@output_option
@pass_app
def get(app: App, instances: tuple[str, ...]) -> None:
    """Show instances (exit 1 if any is missing)."""
    from volumed.cli.instance._common import instance_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    refs = [ref(i) for i in instances]
    items = app.client().batched("GET", "/v1/instances", refs, "instances")
    report(app, items, instance_columns(app), refs=refs, what="instance")
    app.finish()
