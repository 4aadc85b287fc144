"""``volumed token create|ls|revoke``: bearer tokens, stored as SHA-256 digests."""

from __future__ import annotations

import click

from volumed.cli.application import App, admin_options, output_option, pass_app


@click.group(
    epilog="""\b
Examples:
  volumed token create --user alice --label laptop    # printed once
  volumed token ls --user alice
  volumed token revoke 3f2a9c0d1e4b5a67               # an id from `token ls`

A revoked token stops working within 2 seconds (the server's auth cache).
""",
)
def token() -> None:
    """Manage API tokens."""


@token.command(
    name="create",
    epilog=(
        "\b\n"
        "Examples:\n"
        "  volumed token create --user alice --label laptop\n"
        "  export VOLUMED_TOKEN=$(volumed token create)\n"
    ),
)
@click.option("--user", "user_name", default="default", show_default=True, help="Owner.")
@click.option("--label", default="", help="A note to tell tokens apart.")
@admin_options
@pass_app
def create_token(app: App, user_name: str, label: str) -> None:
    """Create a token; it is printed once and only its digest is stored."""
    import secrets

    from volumed.cli.admin._store import find_user, open_store, run
    from volumed.domain.tokens import new_token, token_digest

    store = open_store(app)
    try:
        owner = find_user(app, store, user_name)
        value = new_token()
        token_id = secrets.token_hex(8)
        run(store.add_token(token_id, owner.id, token_digest(value), label))
    finally:
        run(store.close())
    click.echo(f"Created token {token_id} for '{user_name}' (shown once):", err=True)
    click.echo(value)


@token.command(
    name="ls", epilog="\b\nExamples:\n  volumed token ls\n  volumed token ls --user alice -o json\n"
)
@click.option("--user", "user_name", help="Only this user's tokens.")
@admin_options
@output_option
@pass_app
def list_tokens(app: App, user_name: str | None) -> None:
    """List tokens (ids and labels; the tokens themselves are not stored)."""
    from datetime import UTC, datetime

    from volumed.cli.admin._store import find_user, open_store, run
    from volumed.cli.output import print_items

    store = open_store(app)
    try:
        owner = find_user(app, store, user_name).id if user_name else None
        rows = run(store.list_tokens(owner))
    finally:
        run(store.close())
    items = [
        {
            "id": r["id"],
            "user": r["user"],
            "label": r["label"],
            "created_at": datetime.fromtimestamp(r["created_at_us"] / 1e6, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
        for r in rows
    ]
    columns = [
        ("ID", lambda i: str(i["id"])),
        ("USER", lambda i: str(i["user"])),
        ("LABEL", lambda i: str(i["label"]) or "-"),
        ("CREATED", lambda i: str(i["created_at"])),
    ]
    print_items(app, items, columns, empty="No tokens.")


@token.command(name="revoke", epilog="\b\nExamples:\n  volumed token revoke 3f2a9c0d1e4b5a67\n")
@click.argument("ids", nargs=-1, required=True)
@admin_options
@pass_app
def revoke_token(app: App, ids: tuple[str, ...]) -> None:
    """Revoke tokens by id."""
    from volumed.cli.admin._store import open_store, run

    store = open_store(app)
    try:
        for token_id in ids:
            if run(store.revoke_token(token_id)):
                click.echo(f"Revoked token {token_id}.", err=True)
            else:
                app.item_error(f"token {token_id}", {"message": "no such token"})
    finally:
        run(store.close())
    app.finish()
