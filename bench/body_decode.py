"""Ways to decode a request body into its msgspec struct while refusing a key named
twice (msgspec alone keeps the last of two equal keys silently), on the same bodies;
µs per body, the least of ``--rounds``:

* ``two parses``: msgspec decodes into the struct, then ``json.loads`` with an
  ``object_pairs_hook`` parses the same bytes again only to see the keys (before);
* ``json + convert``: one ``json.loads`` whose hook refuses a repeated key and builds
  the dicts, then ``msgspec.convert`` of those into the struct;
* ``msgspec + convert``: what api/bodies.py does: msgspec parses once into plain
  values, the ``:`` of the body and of those values re-encoded are counted (equal: no
  key was dropped), then ``msgspec.convert`` into the struct;
* ``msgspec only``: the typed decode alone, refusing no repeated key (the floor).

Usage: ``.venv/bin/python bench/body_decode.py [--number 20000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from volumed.api import bodies


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    built = dict(pairs)
    if len(built) != len(pairs):
        raise ValueError("duplicate key")
    return built


def _refuse(literal: str) -> Any:
    raise ValueError(literal)


CASES: list[tuple[str, bytes, type[bodies.Body]]] = [
    (
        "create volume",
        b'{"name": "v1", "size_mb": 100, "quota_policy": "dynamic"}',
        bodies.CreateVolumeBody,
    ),
    ("update", b'{"name": "v1", "prop": "tags", "op": "add", "value": ["a"]}', bodies.UpdateBody),
    ("attach", b'{"name": "v1", "attach_to": {"name": "i1"}, "at": "/data"}', bodies.AttachBody),
    (
        "create instance",
        json.dumps(
            {
                "name": "i1",
                "image": "busybox:latest",
                "memory_mb": 64,
                "args": ["sh", "-c", "echo hi"],
                "volumes": [{"name": "v1", "at": "/data"}, {"size_mb": 8, "at": "/tmp"}],
            }
        ).encode(),
        bodies.CreateInstanceBody,
    ),
    (
        "100 creates",
        json.dumps([{"name": f"v{n}", "size_mb": 1, "tags": ["a"]} for n in range(100)]).encode(),
        bodies.CreateVolumeBody,
    ),
]


def ways(kind: type[bodies.Body]) -> dict[str, Callable[[bytes], object]]:
    typed = msgspec.json.Decoder(kind | list[kind])  # type: ignore[valid-type]

    def two_parses(body: bytes) -> object:
        value = typed.decode(body)
        json.loads(body, object_pairs_hook=_unique_keys)
        return value

    def json_convert(body: bytes) -> object:
        value = json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_refuse)
        return msgspec.convert(value, list[kind] if isinstance(value, list) else kind)  # type: ignore[valid-type]

    def msgspec_convert(body: bytes) -> object:
        return bodies.parse_items(body, kind)

    return {
        "two parses": two_parses,
        "json + convert": json_convert,
        "msgspec + convert": msgspec_convert,
        "msgspec only": typed.decode,
    }


def per_body_us(way: Callable[[bytes], object], body: bytes, number: int, rounds: int) -> float:
    # CPU time of this process: other load on the machine does not count.
    timings = timeit.repeat(
        lambda: way(body), number=number, repeat=rounds, timer=time.process_time
    )
    best = min(timings)
    return best / number * 1e6


def main(args: argparse.Namespace) -> None:
    names = list(ways(bodies.RefBody))
    print(f"{'body':16} {'bytes':>6}" + "".join(f"{n:>19}" for n in names) + "   (us per body)")
    for label, body, kind in CASES:
        number = max(1, args.number // (50 if len(body) > 2000 else 1))
        figures = [per_body_us(w, body, number, args.rounds) for w in ways(kind).values()]
        print(f"{label:16} {len(body):6}" + "".join(f"{f:19.2f}" for f in figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="decodes per round [20000]")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the least is kept [5]")
    main(parser.parse_args())
