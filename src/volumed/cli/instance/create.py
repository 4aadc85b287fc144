"""``volumed instance create``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app


@click.command(
    epilog="""\b
Examples:
  volumed instance create --name web --image nginx:latest --volume data:/data
  volumed instance create --name job --image alpine --volume 64Mi:/scratch --start
  volumed instance create --name ro --image app --volume shared:/shared:ro

--volume NAME:/path attaches an existing volume (it must be available);
--volume SIZE:/path creates a new volume with the instance, deleted with it.
""",
)
@click.option("--name", help="Instance name (default: generated).")
@click.option("--image", required=True, help="Image reference.")
@click.option("--memory", "memory", metavar="SIZE", help="Memory: MB, or 256Mi, 1Gi.")
@click.option("--vcpus", type=int, help="Virtual CPUs.")
@click.option(
    "--volume", "volumes", multiple=True, metavar="SPEC", help="NAME:/path or SIZE:/path."
)
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--start", is_flag=True, help="Start it right away (autostart).")
@client_options
@output_option
@pass_app
def create(
    app: App,
    name: str | None,
    image: str,
    memory: str | None,
    vcpus: int | None,
    volumes: tuple[str, ...],
    env: tuple[str, ...],
    tags: tuple[str, ...],
    start: bool,
) -> None:
    """Create an instance, with volumes attached."""
    from volumed.cli.instance._common import short_columns, volume_spec
    from volumed.cli.output import parse_size_mb
    from volumed.cli.volume._common import report

    body: dict[str, object] = {"image": image}
    if name:
        body["name"] = name
    if memory:
        body["memory_mb"] = parse_size_mb(memory)
    if vcpus is not None:
        body["vcpus"] = vcpus
    if volumes:
        body["volumes"] = [volume_spec(v) for v in volumes]
    if env:
        pairs = [e.partition("=") for e in env]
        if any(not sep for _, sep, _ in pairs):
            raise click.BadParameter("--env takes KEY=VALUE")
        body["env"] = {k: v for k, _, v in pairs}
    if tags:
        body["tags"] = list(tags)
    if start:
        body["autostart"] = True
    items = app.client().items("POST", "/v1/instances", "instances", json=body)
    report(app, items, short_columns(app), refs=[{"name": name}], what="instance")
    app.finish()
