"""``volumed user create|ls|rm``: tenants."""

from __future__ import annotations

import click

from volumed.cli.application import App, admin_options, output_option, pass_app


@click.group(
    epilog="""\b
Examples:
  volumed user create alice          # prints alice's first token, once
  volumed user ls
  volumed user rm alice              # refused while alice owns volumes or instances
""",
)
def user() -> None:
    """Manage users (tenants) in the data directory's database."""


@user.command(
    name="create",
    epilog=(
        "\b\n"
        "Examples:\n"
        "  volumed user create alice\n"
        "  TOKEN=$(volumed user create bob)\n"
        "  volumed user create ci --no-token\n"
    ),
)
@click.argument("name")
@click.option("--no-token", is_flag=True, help="Do not create a first token.")
@admin_options
@pass_app
def create_user(app: App, name: str, no_token: bool) -> None:
    """Create a user and print its first token (shown once, stored hashed)."""
    import secrets

    from volumed.cli.admin._store import open_store, run
    from volumed.domain.model import User
    from volumed.domain.store import NameTaken
    from volumed.domain.tokens import new_token, token_digest

    if not name or len(name) > 63 or not name.replace("-", "").replace("_", "").isalnum():
        app.abort(f"'{name}' is not a user name (letters, digits, - and _; at most 63)", 2)
    store = open_store(app, create=True)
    try:
        new = User(secrets.token_hex(8), name)
        try:
            run(store.create_user(new))
        except NameTaken:
            app.abort(f"a user named '{name}' already exists")
        click.echo(f"Created user '{name}' ({new.id}).", err=True)
        if not no_token:
            token = new_token()
            run(store.add_token(secrets.token_hex(8), new.id, token_digest(token), "initial"))
            click.echo("Its token (shown once; only its SHA-256 is stored):", err=True)
            click.echo(token)
    finally:
        run(store.close())


@user.command(name="ls", epilog="\b\nExamples:\n  volumed user ls\n  volumed user ls -o json\n")
@admin_options
@output_option
@pass_app
def list_users(app: App) -> None:
    """List users with their token and volume counts."""
    from volumed.cli.admin._store import open_store, run
    from volumed.cli.output import print_items

    store = open_store(app)
    try:
        users = run(store.list_users())
        tokens = run(store.list_tokens())
        rows = run(store.fsck_rows())
    finally:
        run(store.close())
    items = [
        {
            "name": u.name,
            "id": u.id,
            "tokens": sum(1 for t in tokens if t["user"] == u.name),
            "volumes": sum(1 for r in rows if r["owner"] == u.name and not r["deleted"]),
        }
        for u in users
    ]
    columns = [
        ("NAME", lambda i: str(i["name"])),
        ("ID", lambda i: str(i["id"])),
        ("TOKENS", lambda i: str(i["tokens"])),
        ("VOLUMES", lambda i: str(i["volumes"])),
    ]
    print_items(app, items, columns, empty="No users.")


@user.command(
    name="rm", epilog="\b\nExamples:\n  volumed user rm alice\n  volumed user rm alice bob\n"
)
@click.argument("names", nargs=-1, required=True)
@admin_options
@pass_app
def delete_users(app: App, names: tuple[str, ...]) -> None:
    """Delete users and their tokens (refused while they own volumes or instances)."""
    from volumed.cli.admin._store import open_store, run

    store = open_store(app)
    try:
        for name in names:
            found = run(store.find_user(name))
            if found is None:
                app.item_error(f"user '{name}'", {"message": "no such user"})
            elif not run(store.delete_user(found.id)):
                app.item_error(
                    f"user '{name}'",
                    {"message": "still owns volumes or instances; delete them first"},
                )
            else:
                click.echo(f"Deleted user '{name}'.", err=True)
    finally:
        run(store.close())
    app.finish()
