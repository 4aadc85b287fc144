"""``volumed instance logs``: an instance's console output."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, pass_app
from volumed.cli.suggest import complete_instances
from volumed.domain.states import InstanceState

_CHUNK = 1_048_576
_FOLLOW_S = 0.5
"""How often ``--follow`` asks for more, as ``kraft cloud instance logs --follow`` does."""


@click.command(
    epilog="""\b
Examples:
  volumed instance logs web
  volumed instance logs web --tail 4096     # the last 4 KiB
  volumed instance logs web --follow        # until the instance stops

The console keeps the newest output (VOLUMED_GUEST_CONSOLE_KB per instance).
""",
)
@click.argument("instance", metavar="NAME|UUID", shell_complete=complete_instances)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until it stops.")
@click.option("--tail", "-n", type=click.IntRange(min=1), help="Only the last N bytes.")
@client_options
@pass_app
def logs(app: App, instance: str, follow: bool, tail: int | None) -> None:
    """Print an instance's console output."""
    import base64
    import sys
    import time

    from volumed.cli.refs import describe, ref

    client = app.client()
    target = ref(instance)
    offset = -tail if tail else 0
    while True:
        found = client.items(
            "GET",
            "/v1/instances/log",
            "instances",
            json=[{**target, "offset": offset, "limit": _CHUNK}],
        )
        item = found[0] if found else {}
        if item.get("status") != "success":
            app.item_error(f"instance {describe(item, target)}", item)
            app.finish()
        data = base64.b64decode(item.get("output") or "")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        offset = int((item.get("range") or {}).get("end", offset))
        if len(data) == _CHUNK:
            continue
        if not follow or item.get("state") == InstanceState.STOPPED:
            return
        time.sleep(_FOLLOW_S)
