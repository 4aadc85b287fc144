"""``volumed volume rm``."""

from __future__ import annotations

import sys

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.exits import EXIT_USAGE
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume rm data
  volumed volume rm data logs scratch
  volumed volume rm --all            # asks first on a terminal
  volumed volume rm --all --yes      # in scripts

A volume that is attached or has a delete lock is not deleted (exit code 1).
""",
)
@click.argument("volumes", nargs=-1, metavar="NAME|UUID...", shell_complete=complete_volumes)
@click.option("--all", "all_", is_flag=True, help="Delete every volume of this tenant.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before --all.")
@client_options
@output_option
@pass_app
def rm(app: App, volumes: tuple[str, ...], all_: bool, yes: bool) -> None:
    """Delete volumes."""
    from volumed.cli.output import result_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    client = app.client()
    if all_ == bool(volumes):
        raise click.UsageError("name the volumes to delete, or pass --all (not both)")
    if all_:
        every = client.items("GET", "/v1/volumes", params={"details": "false"})
        if not every:
            click.echo("No volumes.", err=True)
            return
        if not yes:
            if not sys.stdin.isatty():
                app.abort(f"--all would delete {len(every)} volume(s); add --yes", EXIT_USAGE)
            click.confirm(f"Delete all {len(every)} volume(s)?", abort=True, err=True)
        refs = [{"uuid": i["uuid"]} for i in every]
    else:
        refs = [ref(v) for v in volumes]
    items = client.batched("DELETE", "/v1/volumes", refs)
    report(app, items, result_columns(app, "deleted"), refs=refs)
    app.finish()
