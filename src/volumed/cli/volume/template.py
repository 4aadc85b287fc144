"""``volumed volume template create|ls|rm``: immutable volumes to clone from."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app


@click.group(
    epilog="""\b
Examples:
  volumed volume template create base          # irreversible: base becomes a template
  volumed volume template ls
  volumed volume clone base --name app1 --wait
  volumed volume template rm base
""",
)
def template() -> None:
    """Template volumes: made from an available volume, cloned into new ones."""


@template.command(
    name="create",
    epilog=(
        "\b\n"
        "Examples:\n"
        "  volumed volume template create base\n"
        "  volumed volume template create base other -o json\n"
    ),
)
@click.argument("volumes", nargs=-1, required=True, metavar="NAME|UUID...")
@client_options
@output_option
@pass_app
def create_template(app: App, volumes: tuple[str, ...]) -> None:
    """Turn volumes into templates (they must be available and unattached)."""
    from volumed.cli.output import result_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    refs = [ref(v) for v in volumes]
    items = app.client().batched("POST", "/v1/volumes/templates", refs)
    report(app, items, result_columns(app, "made a template"), refs=refs)
    app.finish()


@template.command(
    name="ls",
    epilog=("\b\nExamples:\n  volumed volume template ls\n  volumed volume template ls -o yaml\n"),
)
@client_options
@output_option
@pass_app
def list_templates(app: App) -> None:
    """List templates."""
    from volumed.cli.output import volume_columns
    from volumed.cli.volume._common import report

    items = app.client().items("GET", "/v1/volumes/templates")
    report(app, items, volume_columns(app), empty="No templates.")
    app.finish()


@template.command(name="rm", epilog="\b\nExamples:\n  volumed volume template rm base\n")
@click.argument("templates", nargs=-1, required=True, metavar="NAME|UUID...")
@client_options
@output_option
@pass_app
def delete_templates(app: App, templates: tuple[str, ...]) -> None:
    """Delete templates."""
    from volumed.cli.output import result_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    refs = [ref(t) for t in templates]
    items = app.client().batched("DELETE", "/v1/volumes/templates", refs)
    report(app, items, result_columns(app, "deleted"), refs=refs, what="template")
    app.finish()
