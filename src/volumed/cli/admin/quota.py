"""``volumed quota``: the caller's usage and limits (a client command); ``volumed quota
set|show USER``: per-user limits, overrides of the configured defaults (admin)."""

from __future__ import annotations

import click

from volumed.cli.application import (
    App,
    admin_options,
    app_of,
    client_options,
    output_option,
    pass_app,
)


@click.group(
    invoke_without_command=True,
    epilog="""\b
Examples:
  volumed quota                            # your own usage and limits (a client command)
  volumed quota -o json
  volumed quota set alice --max-volumes 10 --max-total 50Gi     # admin, on the data dir
  volumed quota set alice --max-volume-size 4Gi
  volumed quota show alice
  volumed quota set alice --reset          # back to the defaults
""",
)
@client_options
@output_option
@click.pass_context
def quota(ctx: click.Context) -> None:
    """Your usage and limits; `set` and `show USER` manage users' limits (admin)."""
    if ctx.invoked_subcommand is None:
        _show_own(app_of(ctx))


def _show_own(app: App) -> None:
    """``GET /v1/users/quotas`` for the caller, as one row of used / limit pairs."""
    from volumed.cli.output import human_mb, print_items

    items = app.client().items("GET", "/v1/users/quotas", key="quotas")
    for item in items:
        if item.get("status") == "error":
            app.item_error("quota", item)
    app.finish()
    rows = []
    for item in items:
        used, hard, limits = item.get("used", {}), item.get("hard", {}), item.get("limits", {})
        rows.append(
            {
                **item,
                "volumes": f"{used.get('volumes', 0)} / {hard.get('volumes', '-')}",
                "total": f"{human_mb(used.get('total_volume_mb', 0))} / "
                f"{human_mb(hard.get('total_volume_mb', 0))}",
                "sizes": f"{human_mb(limits.get('min_volume_mb', 0))} – "
                f"{human_mb(limits.get('max_volume_mb', 0))}",
                "instances": str(used.get("instances", 0)),
            }
        )
    if app.output in ("json", "yaml"):
        print_items(app, items, [])
        return
    columns = [
        ("VOLUMES", lambda r: str(r["volumes"])),
        ("TOTAL SIZE", lambda r: str(r["total"])),
        ("VOLUME SIZE", lambda r: str(r["sizes"])),
        ("INSTANCES", lambda r: str(r["instances"])),
    ]
    print_items(app, rows, columns)


@quota.command(
    name="set",
    epilog=(
        "\b\n"
        "Examples:\n"
        "  volumed quota set alice --max-volumes 10 --max-total 50Gi\n"
        "  volumed quota set alice --reset\n"
    ),
)
@click.argument("user_name", metavar="USER")
@click.option("--max-volumes", type=click.IntRange(min=0), help="Volumes and templates.")
@click.option("--max-total", metavar="SIZE", help="Total size of all volumes.")
@click.option("--min-volume-size", metavar="SIZE", help="Smallest volume.")
@click.option("--max-volume-size", metavar="SIZE", help="Largest volume.")
@click.option("--reset", is_flag=True, help="Drop every override of this user first.")
@admin_options
@pass_app
def set_quota(
    app: App,
    user_name: str,
    max_volumes: int | None,
    max_total: str | None,
    min_volume_size: str | None,
    max_volume_size: str | None,
    reset: bool,
) -> None:
    """Set a user's limits; options not given keep their current value."""
    from dataclasses import replace

    from volumed.cli.admin._store import find_user, open_store, run
    from volumed.cli.output import parse_size_mb
    from volumed.domain.values import QuotaOverrides

    changes: dict[str, int] = {}
    if max_volumes is not None:
        changes["max_volumes"] = max_volumes
    for key, text in (
        ("max_total_volume_mb", max_total),
        ("min_volume_mb", min_volume_size),
        ("max_volume_mb", max_volume_size),
    ):
        if text is not None:
            changes[key] = parse_size_mb(text)
    if not changes and not reset:
        raise click.UsageError("nothing to set: give --max-volumes, --max-total, ... or --reset")
    store = open_store(app)
    try:
        owner = find_user(app, store, user_name)
        current = None if reset else run(store.quota_overrides(owner.id))
        updated = replace(current or QuotaOverrides(), **changes)
        if (
            updated.min_volume_mb is not None
            and updated.max_volume_mb is not None
            and updated.min_volume_mb > updated.max_volume_mb
        ):
            app.abort("the smallest volume size would exceed the largest", 2)
        run(store.set_quota_overrides(owner.id, updated))
    finally:
        run(store.close())
    shown = ", ".join(f"{k}={v}" for k, v in vars_of(updated).items() if v is not None)
    click.echo(f"Quota of '{user_name}': {shown or 'defaults'}", err=True)


@quota.command(
    name="show",
    epilog="\b\nExamples:\n  volumed quota show alice\n  volumed quota show alice -o json\n",
)
@click.argument("user_name", metavar="USER")
@admin_options
@output_option
@pass_app
def show_quota(app: App, user_name: str) -> None:
    """Show a user's overrides (empty = the configured defaults apply)."""
    from volumed.cli.admin._store import find_user, open_store, run
    from volumed.cli.output import print_items

    store = open_store(app)
    try:
        owner = find_user(app, store, user_name)
        overrides = run(store.quota_overrides(owner.id))
    finally:
        run(store.close())
    item = {"user": user_name, **(vars_of(overrides) if overrides else {})}
    columns = [(k.upper(), lambda i, k=k: "-" if i.get(k) is None else str(i[k])) for k in item]
    print_items(app, [item], columns)


def vars_of(overrides: object) -> dict[str, int | None]:
    from dataclasses import asdict, is_dataclass

    assert is_dataclass(overrides) and not isinstance(overrides, type)
    return dict(asdict(overrides))
