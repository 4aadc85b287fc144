"""The "bare ASGI ceiling": the smallest useful ASGI app, served exactly like volumed.

It answers every HTTP request with one constant, small JSON body shaped like a volumed
reply. Serving mirrors ``src/volumed/cli/serve.py``: granian's embedded ``Server`` with
``Interfaces.ASGINL``, ``websockets=False``, ``log_access=False``, one process, run with
``uvloop.run``. Whatever requests/s this reaches on a machine is the most any ASGI app
served this way can reach there; ``run_get.py`` compares volumed against it.

Usage: ``.venv/bin/python bench/bare_asgi.py PORT [HOST]``
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'{"status":"success","data":{"volumes":[]},"op_time_us":1}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY, "more_body": False})


async def serve(asgi_app: Any, host: str, port: int) -> None:
    """Serve ``asgi_app`` the way volumed is served (also used by bench/post_ack.py)."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    server = Server(
        asgi_app,
        address=host,
        port=port,
        interface=Interfaces.ASGINL,
        websockets=False,
        log_access=False,
        log_level=LogLevels.info,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    await server.serve()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    port = int(argv[1])
    host = argv[2] if len(argv) == 3 else "127.0.0.1"
    import uvloop

    uvloop.run(serve(app, host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
