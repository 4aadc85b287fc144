"""``volumed volume update``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume update data --size 2Gi --wait      # grow (never shrinks)
  volumed volume update data --tag prod --tag eu    # replace the tags
  volumed volume update data --add-tag backup --remove-tag tmp
  volumed volume update data --delete-lock          # refuse deletes until --no-delete-lock
""",
)
@click.argument("volume", metavar="NAME|UUID", shell_complete=complete_volumes)
@click.option("--size", metavar="SIZE", help="New size (grow only): MB, or 512Mi, 2Gi.")
@click.option("--tag", "tags", multiple=True, help="Set the tags to exactly these.")
@click.option("--clear-tags", is_flag=True, help="Remove every tag.")
@click.option("--add-tag", "add_tags", multiple=True, help="Add a tag.")
@click.option("--remove-tag", "remove_tags", multiple=True, help="Remove a tag.")
@click.option("--delete-lock/--no-delete-lock", default=None, help="Set or clear the lock.")
@click.option("--policy", type=click.Choice(["static", "dynamic"]), help="Quota policy.")
@click.option("--wait", is_flag=True, help="Wait until the volume leaves busy.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="--wait limit (s).")
@client_options
@output_option
@pass_app
def update(
    app: App,
    volume: str,
    size: str | None,
    tags: tuple[str, ...],
    clear_tags: bool,
    add_tags: tuple[str, ...],
    remove_tags: tuple[str, ...],
    delete_lock: bool | None,
    policy: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Change a volume: grow it, tag it, lock it against deletion."""
    from volumed.cli.output import parse_size_mb, result_columns, volume_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report, report_errors, wait_for

    target = ref(volume)
    changes: list[dict[str, object]] = []
    if size is not None:
        changes.append({"prop": "size_mb", "op": "set", "value": parse_size_mb(size)})
    if tags:
        changes.append({"prop": "tags", "op": "set", "value": list(tags)})
    elif clear_tags:
        changes.append({"prop": "tags", "op": "set"})
    if add_tags:
        changes.append({"prop": "tags", "op": "add", "value": list(add_tags)})
    if remove_tags:
        changes.append({"prop": "tags", "op": "del", "value": list(remove_tags)})
    if delete_lock is not None:
        changes.append({"prop": "delete_lock", "op": "set", "value": delete_lock})
    if policy:
        changes.append({"prop": "quota_policy", "op": "set", "value": policy})
    if not changes:
        raise click.UsageError("nothing to change: give --size, --tag, --delete-lock, ...")
    body = [{**target, **change, "id": str(n)} for n, change in enumerate(changes)]
    items = app.client().items("PATCH", "/v1/volumes", json=body)
    failed = [i for i in items if i.get("status") == "error"]
    report_errors(app, failed, [target] * len(failed))
    if failed:
        app.finish()
    if wait:
        report(app, wait_for(app, items[:1], timeout), volume_columns(app))
    elif app.output == "table":
        report(app, app.client().volumes([target]), volume_columns(app))
    else:
        report(app, items, result_columns(app, "updated"))
    app.finish()
