"""``volumed volume events``: a volume's audit trail."""

from __future__ import annotations

import click

from volumed.cli.application import App, client_options, output_option, pass_app
from volumed.cli.suggest import complete_volumes


@click.command(
    epilog="""\b
Examples:
  volumed volume events data
  volumed volume events 847fe9ef-ccb1-409c-be9c-abdc02498131 -o json

Works for a deleted volume too, by UUID, while its events are retained.
""",
)
@click.argument("volume", metavar="NAME|UUID", shell_complete=complete_volumes)
@client_options
@output_option
@pass_app
def events(app: App, volume: str) -> None:
    """Show what happened to a volume, oldest first."""
    from volumed.cli.output import print_items, state
    from volumed.cli.refs import describe, ref

    target = ref(volume)
    uuid = target.get("uuid") or app.client().volume(volume)["uuid"]
    envelope = app.client().envelope("GET", f"/volumed/v1/volumes/{uuid}/events")
    data = envelope.get("data") or {}
    found = data.get("events") or []
    failed = [i for i in found if isinstance(i, dict) and i.get("status") == "error"]
    for item in failed:
        app.item_error(f"volume {describe(item, target)}", item)
    if not failed and envelope.get("status") == "error":
        app.item_error(f"volume {describe(target)}", envelope)

    def moved(event: dict[str, object]) -> str:
        before, after = event.get("state_from"), event.get("state_to")
        if not before and not after:
            return "-"
        return f"{state(app, str(before or '-'))} → {state(app, str(after or '-'))}"

    columns = [
        ("AT", lambda e: str(e.get("at", "-"))),
        ("ACTOR", lambda e: str(e.get("actor", "-"))),
        ("ACTION", lambda e: str(e.get("action", "-"))),
        ("RESULT", lambda e: str(e.get("result", "-"))),
        ("STATE", moved),
        ("MESSAGE", lambda e: str(e.get("message") or "")),
    ]
    print_items(app, [e for e in found if isinstance(e, dict)], columns, empty="No events.")
    app.finish()
