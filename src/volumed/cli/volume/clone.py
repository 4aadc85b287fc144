"""``volumed volume clone``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume clone data --name data-copy --wait
  volumed volume clone base-template --name app1 --tag app
""",
)
@click.argument("source", metavar="NAME|UUID", shell_complete=complete_volumes)
@click.option("--name", help="Name of the new volume (default: vol-xxxxx).")
@click.option("--tag", "tags", multiple=True, help="A tag of the new volume (repeatable).")
@click.option("--policy", type=click.Choice(["static", "dynamic"]), help="Quota policy.")
@click.option("--wait", is_flag=True, help="Wait until the clone is available.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="--wait limit (s).")
@client_options
@output_option
@pass_app
def clone(
    app: App,
    source: str,
    name: str | None,
    tags: tuple[str, ...],
    policy: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Copy a volume (or a template) into a new volume."""
    from volumed.cli.output import result_columns, volume_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report, report_errors, wait_for

    body: dict[str, object] = dict(ref(source))
    if name:
        body["vol_name"] = name
    if tags:
        body["tags"] = list(tags)
    if policy:
        body["quota_policy"] = policy
    items = app.client().items("POST", "/v1/volumes/clone", json=[body])
    if wait:
        report_errors(app, items, [ref(source)])
        ok = [i for i in items if i.get("status") != "error"]
        report(app, wait_for(app, ok, timeout), volume_columns(app))
    else:
        report(app, items, result_columns(app, "cloned"), refs=[ref(source)])
    app.finish()
