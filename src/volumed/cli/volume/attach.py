"""``volumed volume attach`` and ``volumed volume detach``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume attach data --to web --at /data
  volumed volume attach data --to web --at /data --read-only
  volumed vol attach data --to web --at /data -r

The instance must be stopped and the volume available.
""",
)
@click.argument("volume", metavar="NAME|UUID", shell_complete=complete_volumes)
@click.option("--to", "instance", required=True, metavar="INSTANCE", help="Instance name or UUID.")
@click.option("--at", "at", required=True, metavar="PATH", help="Mount path in the instance.")
@click.option("-r", "--read-only", "--readonly", "read_only", is_flag=True, help="Mount read-only.")
@client_options
@output_option
@pass_app
def attach(app: App, volume: str, instance: str, at: str, read_only: bool) -> None:
    """Attach a volume to a stopped instance."""
    from volumed.cli.output import result_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    body = {**ref(volume), "attach_to": ref(instance), "at": at}
    if read_only:
        body["readonly"] = True
    items = app.client().items("PUT", "/v1/volumes/attach", json=[body])
    done = f"attached to {instance} at {at}" + (" (read-only)" if read_only else "")
    report(app, items, result_columns(app, done), refs=[ref(volume)])
    app.finish()


@click.command(
    epilog="""\b
Examples:
  volumed volume detach data
  volumed volume detach data --from web
""",
)
@click.argument("volume", metavar="NAME|UUID", shell_complete=complete_volumes)
@click.option("--from", "instance", metavar="INSTANCE", help="Only from this instance.")
@client_options
@output_option
@pass_app
def detach(app: App, volume: str, instance: str | None) -> None:
    """Detach a volume from its (stopped) instances."""
    from volumed.cli.output import result_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    body = ref(volume)
    if instance:
        body["from"] = ref(instance)
    items = app.client().items("PUT", "/v1/volumes/detach", json=[body])
    done = f"detached from {instance}" if instance else "detached"
    report(app, items, result_columns(app, done), refs=[ref(volume)])
    app.finish()
