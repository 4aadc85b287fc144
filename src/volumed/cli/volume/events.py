"""``volumed volume events``: a volume's audit trail, and ``--follow`` for what comes."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume events data
  volumed volume events data --follow          # then each new event as it happens
  volumed volume events 847fe9ef-ccb1-409c-be9c-abdc02498131 -o json

Works for a deleted volume too, by UUID, while its events are retained. With --follow,
new events are printed one per line (-o json: one JSON object per line) until Ctrl-C.
""",
)
@click.argument("volume", metavar="NAME|UUID", shell_complete=complete_volumes)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="--follow: seconds between two looks at the server.",
)
@client_options
@output_option
@pass_app
def events(app: App, volume: str, follow: bool, interval: float) -> None:
    """Show what happened to a volume, oldest first."""
    from volumed.cli.output import Column, print_items, state
    from volumed.cli.refs import ref

    target = ref(volume)
    uuid = target.get("uuid") or app.client().volume(volume)["uuid"]

    def moved(event: dict[str, Any]) -> str:
        before, after = event.get("state_from"), event.get("state_to")
        if not before and not after:
            return "-"
        return f"{state(app, str(before or '-'))} → {state(app, str(after or '-'))}"

    columns: list[Column] = [
        ("AT", lambda e: str(e.get("at", "-"))),
        ("ACTOR", lambda e: str(e.get("actor", "-"))),
        ("ACTION", lambda e: str(e.get("action", "-"))),
        ("RESULT", lambda e: str(e.get("result", "-"))),
        ("STATE", moved),
        ("MESSAGE", lambda e: str(e.get("message") or "")),
    ]
    found = _fetch(app, uuid, target)
    if not follow:
        print_items(app, found, columns, empty="No events.")
        app.finish()
        return
    seen: set[str] = set()
    try:
        while True:
            for event in found:
                key = json.dumps(event, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                if app.output == "json":
                    click.echo(json.dumps(event))
                else:
                    click.echo("  ".join(render(event) for _, render in columns).rstrip())
            time.sleep(interval)  # the API has no push for events: look again
            found = _fetch(app, uuid, target)
    except KeyboardInterrupt:
        pass


def _fetch(app: App, uuid: str, target: dict[str, Any]) -> list[dict[str, Any]]:
    from volumed.cli.refs import describe

    envelope = app.client().envelope("GET", f"/volumed/v1/volumes/{uuid}/events")
    data = envelope.get("data") or {}
    found = [e for e in data.get("events") or [] if isinstance(e, dict)]
    failed = [i for i in found if i.get("status") == "error"]
    for item in failed:
        app.item_error(f"volume {describe(item, target)}", item)
    if not failed and envelope.get("status") == "error":
        app.item_error(f"volume {describe(target)}", envelope)
    if failed or envelope.get("status") == "error":
        app.finish()
    return [e for e in found if e.get("status") != "error"]
