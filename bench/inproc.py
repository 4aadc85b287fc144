"""CPU per request of volumed's own code, in process: no sockets, no HTTP parser, no wrk.

The app is built by ``bootstrap`` exactly as ``volumed serve`` builds it (metrics on,
access log on, written to /dev/null) on a fresh SQLite data directory. Requests are fed
to the ASGI callable one after another and the process CPU time is divided by their
number, so the figure is what volumed itself costs per request, free of the machine's
noise that skews req/s. ``--profile`` prints the top functions by cumulative time.

The listing is measured twice: as a first page (reused until the next commit, as a
console polling it gets it) and read from the database every time. After them, their
floor: msgspec encoding the same 100 answer structs (``api/wire.py`` ``VolumeItem``),
ready-made, into one array, and each listing's cost as a multiple of it (issue 15: "~60x
msgspec's encoding floor").

Usage: ``.venv/bin/python bench/inproc.py [--requests 20000] [--volumes 100] [--rounds 3]
[--only TEXT] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from volumed.api.wire import VolumeItem
from volumed.bootstrap import bootstrap, ensure_default_user
from volumed.settings import Settings


class Call:
    """One in-process request: the ASGI scope, a body, and what the app sent back."""

    def __init__(self, method: str, path: str, token: str, body: bytes = b"") -> None:
        path, _, query = path.partition("?")
        headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", b"bench")]
        if body:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 5000),
        }
        self.body = body
        self.status = 0
        self.chunks: list[bytes] = []

    async def run(self, app: Any) -> Call:
        self.chunks = []
        scope = dict(self.scope)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            else:
                self.chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return self

    def json(self) -> Any:
        return json.loads(b"".join(self.chunks))


async def per_request_us(app: Any, call: Call, count: int, rounds: int) -> float:
    """The least CPU per request over ``rounds``: other processes only ever add to it."""
    for _ in range(min(200, count)):  # warm caches (auth, statement cache)
        await call.run(app)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            await call.run(app)
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


def encoding_floor_us(listing: Call, count: int, rounds: int) -> float:
    """CPU to encode the listing's items as ready-made answer structs: what is left when
    reading, routing and building the structs cost nothing."""
    data = json.loads(b"".join(listing.chunks))["data"]["volumes"]
    items = msgspec.convert(data, list[VolumeItem])
    encode = msgspec.json.Encoder().encode
    count *= 10
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            encode(items)
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


async def main(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="volumed-inproc-"))
    logging.basicConfig(stream=open("/dev/null", "w"), level=logging.INFO)  # noqa: SIM115
    # No worker runs here: creates must not wait for their formats (job_wait_s).
    settings = Settings.load({"data_dir": data, "metrics_port": 9, "job_wait_s": 0}, {})
    services = await bootstrap(settings)
    token = await ensure_default_user(services.store, settings)
    assert token is not None
    app = services.http
    uuids = []
    for n in range(args.volumes):
        body = json.dumps({"name": f"v{n}", "size_mb": 1, "quota_policy": "dynamic"}).encode()
        answer = (await Call("POST", "/v1/volumes", token, body).run(app)).json()
        uuids.append(answer["data"]["volumes"][0]["uuid"])
    one = Call("GET", f"/v1/volumes/{uuids[0]}", token)
    listing = Call("GET", "/v1/volumes", token)
    # The same listing from a time: not a first page, so read from the database every
    # time (a first page is reused until the next commit, like GET one).
    cold = Call("GET", "/v1/volumes?from=1970-01-01T00:00:00Z", token)
    cases = [
        ("GET /v1/volumes/{uuid}", one, args.requests),
        (f"GET /v1/volumes ({args.volumes})", listing, max(1, args.requests // 40)),
        ("  the same, read every time", cold, max(1, args.requests // 40)),
    ]
    profile = cProfile.Profile() if args.profile else None
    costs: dict[str, float] = {}
    print(f"{'request':32} {'CPU us/req':>10} {'status':>6} {'bytes':>7} {'us/volume':>9}")
    for label, call, count in cases:
        if profile is not None:
            profile.enable()
        if args.only and args.only not in label:
            continue
        cost = await per_request_us(app, call, count, args.rounds)
        if profile is not None:
            profile.disable()
        size = len(b"".join(call.chunks))
        per = "" if call is one else f"{cost / args.volumes:9.2f}"
        print(f"{label:32} {cost:10.1f} {call.status:6} {size:7} {per}")
        if call is not one:
            costs[label] = cost
    if listing.chunks:
        floor = encoding_floor_us(listing, max(1, args.requests // 40), args.rounds)
        ratios = ", ".join(f"{cost / floor:.1f}x" for cost in costs.values())
        print(
            f"{'  msgspec floor (encode structs)':32} {floor:10.1f} {'':6} {'':7} "
            f"{floor / args.volumes:9.2f}   listings = {ratios} floor"
        )
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    await services.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="GET one requests [20000]")
    parser.add_argument("--volumes", type=int, default=100, help="volumes listed [100]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the least is kept [3]")
    parser.add_argument("--only", default="", help="only the requests whose label has this")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    asyncio.run(main(parser.parse_args()))
