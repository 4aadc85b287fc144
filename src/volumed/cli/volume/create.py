"""``volumed volume create``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.refs import ref


@click.command(
    epilog="""\b
Examples:
  volumed volume create --size 100                 # 100 MiB, random name
  volumed volume create --name data --size 2Gi --tag prod --wait
  volumed volume create --name scratch --size 512Mi --policy dynamic -o json
  volumed volume create --name copy --template base --wait
  volumed vol create -n data -s 10                 # kraft cloud's short flags
""",
)
@click.option("-n", "--name", help="Volume name (default: vol-xxxxx).")
@click.option("-s", "--size", "size", metavar="SIZE", help="Size: MB, or 512Mi, 2Gi, 1T.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--policy", type=click.Choice(["static", "dynamic"]), help="Quota policy [static].")
@click.option("--access-mode", type=click.Choice(["rwo", "rox"]), help="Access mode [rwo].")
@click.option("--template", metavar="NAME|UUID", help="Create from a template volume.")
@click.option("--wait", is_flag=True, help="Wait until the volume is available.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="--wait limit (s).")
@client_options
@output_option
@pass_app
def create(
    app: App,
    name: str | None,
    size: str | None,
    tags: tuple[str, ...],
    policy: str | None,
    access_mode: str | None,
    template: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Create a volume."""
    from volumed.cli.output import parse_size_mb, result_columns, volume_columns
    from volumed.cli.volume._common import report, report_errors, wait_for

    if size is None and template is None:
        raise click.UsageError("--size is required (unless --template is given)")
    body: dict[str, object] = {}
    if name:
        body["name"] = name
    if size is not None:
        body["size_mb"] = parse_size_mb(size)
    if tags:
        body["tags"] = list(tags)
    if policy:
        body["quota_policy"] = policy
    if access_mode:
        body["access_mode"] = access_mode
    if template:
        body["template"] = ref(template)
    items = app.client().items("POST", "/v1/volumes", json=body)
    if wait:
        report_errors(app, items, [body])
        items = [i for i in items if i.get("status") != "error"]
        report(app, wait_for(app, items, timeout), volume_columns(app))
    else:
        report(app, items, result_columns(app, "created"), refs=[body])
    app.finish()
