"""``volumed quota set|show``: per-user limits (overrides of the configured defaults)."""

from __future__ import annotations

import click

from volumed.cli.application import App, admin_options, output_option, pass_app


@click.group(
    epilog="""\b
Examples:
  volumed quota set alice --max-volumes 10 --max-total 50Gi
  volumed quota set alice --max-volume-size 4Gi
  volumed quota show alice
  volumed quota set alice --reset          # back to the defaults
""",
)
def quota() -> None:
    """Per-user quotas (VOLUMED_QUOTA_* are the defaults)."""


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
    from volumed.domain.ports import QuotaOverrides

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
