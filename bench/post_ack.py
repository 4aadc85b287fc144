"""POST acknowledgement throughput of volumed against a bare ASGI app doing one durable insert.

1. **bare**: the smallest useful app for the job, served exactly like ``bare_asgi.py``
   (granian embed, ``Interfaces.ASGINL``, uvloop): on each POST it reads the JSON body,
   decodes it, runs ``BEGIN IMMEDIATE; INSERT ...; COMMIT`` on one SQLite connection in
   WAL mode with ``synchronous=FULL`` (an fsync per commit, on the event loop, as the
   sqlite3 module does) and answers a small JSON.
2. **volumed**: ``volumed serve`` with ``VOLUMED_JOB_WAIT_S=0`` (a create is answered
   once its row and format job are committed: the acknowledgement) and
   ``VOLUMED_QUOTA_MAX_VOLUMES=1000000``; ``POST /v1/volumes
   {"size_mb":1,"quota_policy":"dynamic"}``. The background worker formats every
   accepted volume meanwhile (``worker_concurrency`` 4 by default: up to four
   ``mke2fs`` on the machine's cores beside the server): that is the issue's figure.
3. **volumed, one format at a time**: the same with ``VOLUMED_WORKER_CONCURRENCY=1``,
   to see the API path with less of the data plane competing for the cores (the
   worker cannot be switched off; one mke2fs at a time is the least there is).

Every server starts on a fresh data directory, gets a discarded warm-up load, then the
measured ``wrk -t1 -c16 -d5s --latency`` with the Lua script of ``run_create.py`` (an
answer saying ``"status":"error"`` counts as failed). Rounds alternate bare and volumed;
medians over the rounds are printed. ``srv CPU us/req`` is the server process's own CPU
time (user + system, all threads) per answer; ``child CPU us/req`` the CPU of its finished
children (volumed's mke2fs), from ``/proc``. Nothing is asserted.

Usage: ``.venv/bin/python bench/post_ack.py [--rounds 3] [--duration 5] [--connections 16]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from bare_asgi import Message, Receive, Scope, Send, serve  # noqa: E402
from run_create import POST_LUA  # noqa: E402
from run_get import Server, environment, free_port, parse_wrk  # noqa: E402

VOLUMED = [sys.executable, "-m", "volumed", "serve"]
TARGET_RATIO = 0.5

# ----------------------------------------------------------------------------- bare app


class BareInsert:
    """The bare app: one synchronous=FULL insert per POST, answered with a small JSON."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS volumes "
            "(uuid TEXT PRIMARY KEY, size_mb INTEGER, body TEXT, created_at_us INTEGER)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 200, b'{"status":"success"}')
            return
        body = b""
        while True:
            message: Message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        item = json.loads(body)
        new = str(uuid.uuid4())
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "INSERT INTO volumes VALUES (?, ?, ?, ?)",
                (new, item.get("size_mb"), body.decode(), 0),
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        answer = '{"status":"success","data":{"volumes":[{"status":"success","uuid":"%s"}]}}'
        await _answer(send, 200, (answer % new).encode())


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def serve_bare(port: int, path: Path) -> int:
    import uvloop

    uvloop.run(serve(BareInsert(path), "127.0.0.1", port))
    return 0


# ----------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Result:
    rps: float
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float
    cpu_us: float
    """Server process CPU (user + system) per answer."""
    child_us: float
    """CPU of the server's finished children (mke2fs) per answer."""
    load1: float
    errors: str


def cpu_times(pid: int) -> tuple[float, float]:
    """(own, children's) user + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def wrk(
    url: str, args: argparse.Namespace, script: Path, headers: list[str], seconds: float
) -> str:
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    cmd += ["--timeout", "30s", "-s", str(script)]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 90)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return done.stdout


def measure(server: Server, args: argparse.Namespace, script: Path, headers: list[str]) -> Result:
    url = server.url + "/v1/volumes"
    if args.warmup > 0:
        wrk(url, args, script, headers, args.warmup)
    load1 = os.getloadavg()[0]
    own0, child0 = cpu_times(server.pid)
    out = wrk(url, args, script, headers, args.duration)
    own1, child1 = cpu_times(server.pid)
    parsed = parse_wrk(out)
    ok = int(_find(r"^creates ok: (\d+)", out))
    failed = int(_find(r"^creates failed: (\d+)", out))
    first = _find(r"^first failure: (.*)$", out, default="")
    errors = [parsed.errors] if parsed.errors != "-" else []
    if failed:
        errors.append(f"{failed} failed (first: {first[:120]})")
    answers = max(parsed.requests, 1)
    return Result(
        rps=ok / args.duration,
        ok=ok,
        failed=failed,
        p50_ms=parsed.p50_ms,
        p99_ms=parsed.p99_ms,
        cpu_us=(own1 - own0) / answers * 1e6,
        child_us=(child1 - child0) / answers * 1e6,
        load1=load1,
        errors="; ".join(errors) or "-",
    )


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        if default is not None:
            return default
        raise RuntimeError(f"wrk output has no {pattern!r}:\n{text}")
    return match[1]


# ----------------------------------------------------------------------------- runs


class Bench:
    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp = tmp
        self.args = args
        self.token = "bench-" + secrets.token_hex(16)
        self.script = tmp / "post.lua"
        self.script.write_text(POST_LUA)
        self.servers: list[Server] = []
        self.runs = 0

    def _start(self, name: str, cmd: list[str], port: int, env: dict[str, str]) -> Server:
        self.runs += 1
        server = Server(name, cmd, env, self.tmp / f"{name}-{self.runs}.log", port)
        self.servers.append(server)
        server.start()
        return server

    def bare(self) -> Result:
        port = free_port()
        path = self.tmp / f"bare-{self.runs}.db"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port), str(path)]
        server = self._start("bare", cmd, port, {})
        try:
            return measure(server, self.args, self.script, [])
        finally:
            server.stop()

    def volumed(self, extra_env: dict[str, str]) -> Result:
        port = free_port()
        data = self.tmp / f"data-{self.runs}"
        cmd = [*VOLUMED, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
        env = {
            "VOLUMED_JOB_WAIT_S": "0",
            "VOLUMED_QUOTA_MAX_VOLUMES": "1000000",
            "VOLUMED_TOKEN": self.token,
            "VOLUMED_METRICS_PORT": str(free_port()),
            **extra_env,
        }
        server = self._start("volumed", cmd, port, env)
        try:
            return measure(server, self.args, self.script, [f"Authorization: Bearer {self.token}"])
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)


def median(results: list[Result]) -> Result:
    return Result(
        rps=statistics.median(r.rps for r in results),
        ok=round(statistics.median(r.ok for r in results)),
        failed=sum(r.failed for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        cpu_us=statistics.median(r.cpu_us for r in results),
        child_us=statistics.median(r.child_us for r in results),
        load1=statistics.median(r.load1 for r in results),
        errors="; ".join(r.errors for r in results if r.errors != "-") or "-",
    )


def print_table(rows: list[tuple[str, Result]], bare_rps: float) -> None:
    header = (
        f"{'':<40} {'acks/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>7} "
        f"{'srv CPU us/req':>14} {'child CPU us/req':>16} {'load1':>5}  errors"
    )
    print(header)
    print("-" * len(header))
    for label, r in rows:
        print(
            f"{label:<40} {r.rps:>8.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{r.rps / bare_rps:>7.2f} {r.cpu_us:>14.0f} {r.child_us:>16.0f} {r.load1:>5.2f}  "
            f"{r.errors}"
        )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def report(bare: list[Result], found: dict[str, list[Result]]) -> None:
    print()
    bare_rps = statistics.median(r.rps for r in bare)
    if len(bare) > 1:
        rows = [(f"round {n}: bare insert", bare[n - 1]) for n in range(1, len(bare) + 1)]
        for label, results in found.items():
            rows += [(f"round {n}: {label}", r) for n, r in enumerate(results, 1)]
        print_table(rows, bare_rps)
        print(f"\nmedians over {len(bare)} rounds (each column on its own):")
    medians = [("bare ASGI, one synchronous=FULL insert", median(bare))]
    medians += [(label, median(results)) for label, results in found.items()]
    print_table(medians, bare_rps)
    issue = medians[1][1]
    per_round = ", ".join(
        f"{v.rps / b.rps:.2f}" for b, v in zip(bare, next(iter(found.values())), strict=True)
    )
    verdict = "met" if issue.rps / bare_rps >= TARGET_RATIO else "NOT met"
    print(
        f"\nratio volumed (default) / bare = {issue.rps / bare_rps:.3f} (the issue's figure; "
        f"goal >= {TARGET_RATIO}: {verdict}; per round: {per_round})"
    )


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "--serve-bare":
        return serve_bare(int(argv[2]), Path(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, medians printed [3]")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds [5]")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds [2]")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections [16]")
    parser.add_argument(
        "--no-single-worker", action="store_true", help="skip the one-format-at-a-time runs"
    )
    args = parser.parse_args(argv[1:])
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for tool in ("wrk", "mke2fs"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="volumed-bench-ack-"))
    bench = Bench(tmp, args)
    try:
        print(environment())
        print(f"uptime: {uptime()}")
        print(
            f"wrk -t1 -c{args.connections} -d{args.duration:g}s --latency -s post.lua "
            f"(warm-up {args.warmup:g} s discarded), {args.rounds} round(s)\n",
            flush=True,
        )
        variants: list[tuple[str, dict[str, str]]] = [("volumed (default: 4 formats)", {})]
        if not args.no_single_worker:
            variants.append(("volumed, 1 format at a time", {"VOLUMED_WORKER_CONCURRENCY": "1"}))
        bare: list[Result] = []
        found: dict[str, list[Result]] = {label: [] for label, _ in variants}
        for n in range(1, args.rounds + 1):
            print(f"round {n}/{args.rounds}: bare", flush=True)
            bare.append(bench.bare())
            for label, env in variants:
                print(f"round {n}/{args.rounds}: {label}", flush=True)
                found[label].append(bench.volumed(env))
        report(bare, found)
        print(f"uptime: {uptime()}")
        return 0
    except BaseException:
        for server in bench.servers:
            tail = server.log()[-3000:]
            if tail:
                print(f"--- {server.log_path.name} (tail) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        for server in bench.servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
