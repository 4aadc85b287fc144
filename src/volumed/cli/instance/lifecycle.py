"""``volumed instance start|stop|rm|wait``."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_instances
from volumed.domain.states import InstanceState

STATES = tuple(s.value for s in InstanceState)


def _run(app: App, method: str, path: str, names: tuple[str, ...], **extra: object) -> None:
    from volumed.cli.instance._common import short_columns
    from volumed.cli.refs import ref
    from volumed.cli.volume._common import report

    refs = [ref(n) for n in names]
    body = [{**r, **extra} for r in refs]
    wait_s = extra.get("timeout_s")
    timeout = float(wait_s) + 30 if isinstance(wait_s, int) else 60.0
    items = app.client().batched(method, path, body, "instances", timeout=timeout)
    report(app, items, short_columns(app), refs=refs, what="instance")
    app.finish()


@click.command(
    epilog="\b\nExamples:\n  volumed instance start web\n  volumed instance start web job\n"
)
@click.argument(
    "instances", nargs=-1, required=True, metavar="NAME|UUID...", shell_complete=complete_instances
)
@client_options
@output_option
@pass_app
def start(app: App, instances: tuple[str, ...]) -> None:
    """Start instances (their volumes become mounted)."""
    _run(app, "PUT", "/v1/instances/start", instances)


@click.command(
    epilog="\b\nExamples:\n  volumed instance stop web\n  volumed instance stop web --force\n"
)
@click.argument(
    "instances", nargs=-1, required=True, metavar="NAME|UUID...", shell_complete=complete_instances
)
@click.option("--force", is_flag=True, help="Stop without draining.")
@client_options
@output_option
@pass_app
def stop(app: App, instances: tuple[str, ...], force: bool) -> None:
    """Stop instances (their volumes go back to idle)."""
    extra = {"force": True} if force else {}
    _run(app, "PUT", "/v1/instances/stop", instances, **extra)


@click.command(
    epilog="""\b
Examples:
  volumed instance rm web
  volumed instance rm web job

Volumes created with an instance are deleted with it; others are detached.
""",
)
@click.argument(
    "instances", nargs=-1, required=True, metavar="NAME|UUID...", shell_complete=complete_instances
)
@client_options
@output_option
@pass_app
def rm(app: App, instances: tuple[str, ...]) -> None:
    """Delete instances."""
    _run(app, "DELETE", "/v1/instances", instances)


@click.command(
    epilog="""\b
Examples:
  volumed instance wait web --state running
  volumed instance wait web job --state stopped --timeout 30
""",
)
@click.argument(
    "instances", nargs=-1, required=True, metavar="NAME|UUID...", shell_complete=complete_instances
)
@click.option(
    "--state",
    type=click.Choice(STATES),
    default=InstanceState.RUNNING.value,
    show_default=True,
)
@click.option("--timeout", type=int, default=60, show_default=True, help="Seconds.")
@client_options
@output_option
@pass_app
def wait(app: App, instances: tuple[str, ...], state: str, timeout: int) -> None:
    """Wait until instances reach a state (exit 1 on timeout)."""
    _run(app, "GET", "/v1/instances/wait", instances, state=state, timeout_s=timeout)
