"""The access log's JSON lines are made of parts encoded once per kind of request
(logs.py): byte for byte the lines that encoding each record whole gives, whatever the
path, tenant or id hold."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import msgspec

from volumed.logs import AccessLine, AccessLog, _milliseconds, _timestamp_ms

_Entry = tuple[int, str | None, str | None, str, str, str, int, list[int], int]

PATHS = [
    "/v1/volumes/1b9c3f4e-0000-4000-8000-000000000000",
    '/v1/volumes/a"b\\c',
    "/v1/volumes/\u00e9\u6f22\U0001f600",
    "/v1/volumes/tab\there\x01\x1f",
    "/v1/volumes/" + "x" * 300,
    '/v1/volumes/,"request_id":null,',
]


def entries() -> list[_Entry]:
    found: list[_Entry] = []
    for n, path in enumerate(PATHS):
        for level in (logging.INFO, logging.DEBUG, logging.WARNING):
            for tenant in ("default", None, 'te"nant'):
                found.append((level, f"ab12cd-{n}", tenant, "GET", "/v1/volumes/{uuid}", path,
                              200, [], 12_345))  # fmt: skip
        found.append((logging.INFO, None, "default", "DELETE", "unmatched", path, 404, [], 0))
        found.append((logging.INFO, "x-1", "default", "GET", "/v1/volumes", path, 200, [8, 8], 499))
    # The same kind again, with other ids, times and durations.
    for ns in (0, 499, 500, 1_500_000, 987_654_321_012, 10**17):
        found.append((logging.INFO, f"id-{ns}", "default", "GET", "/v1/volumes/{uuid}", PATHS[0],
                      200, [], ns))  # fmt: skip
    return found


def test_lines_equal_the_records_encoded_whole(tmp_path: Path) -> None:
    sink = tmp_path / "access.log"
    expected: list[AccessLine] = []
    with open(sink, "w") as stream:
        log = AccessLog("json", stream)
        ms = 1_764_684_000_000
        for n, (level, request_id, tenant, method, route, path, status, errors, ns) in enumerate(
            entries()
        ):
            ms += n % 3  # lines of the same and of successive milliseconds
            log._queue.append(
                (ms, level, request_id, tenant, method, route, path, status, errors, ns)
            )
            name = {logging.INFO: "info", logging.DEBUG: "debug", logging.WARNING: "warning"}
            expected.append(
                AccessLine(
                    _timestamp_ms(ms),
                    name[level],
                    AccessLog.NAME,
                    f"{method} {path[:200]} {status}",
                    request_id,
                    tenant,
                    method,
                    route,
                    path[:200],
                    status,
                    errors,
                    _milliseconds(ns),
                )
            )
        log.flush()
    written = sink.read_bytes()
    assert written == msgspec.json.Encoder().encode_lines(expected)
    assert [json.loads(line)["path"] for line in written.splitlines()][:1] == [PATHS[0]]
