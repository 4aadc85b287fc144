"""Create-to-available latency and create throughput of volumed, next to the bare data plane.

1. Latency: N (default 20) sequential iterations of ``POST /v1/volumes {"size_mb":100}``
   (default quota policy: static); the clock runs from just before the POST to the first
   reply that says ``available``. Since issue 12 the POST answers once the volume is
   formatted, so that is normally the POST's own reply; an answer that is not yet
   ``available`` (the wait's bound ran out) is followed by ``GET /v1/volumes/{uuid}``
   every 2 ms until it is.
2. Bare data plane, on the same file system in the same run, interleaved with (1):
   ``truncate -s 100M x.img && mke2fs -q -F -t ext4 -m 0 -E
   lazy_itable_init=1,lazy_journal_init=1 x.img``, the same plus ``fallocate -l 100M
   x.img`` (the static policy reserves the whole size), and the latter plus an fsync of
   the image and of its directory (what the worker also does before it reports the
   volume available), each timed with ``time.perf_counter`` around the subprocess calls.
3. Throughput: 16 concurrent clients (wrk with a Lua script) ``POST /v1/volumes
   {"size_mb":1,"quota_policy":"dynamic"}`` for a few seconds; prints creates/s and how
   long the background worker then needs to format the backlog.

Prints min/median/p90/max in ms, and the ratio of the medians of create-to-available and
of the bare data plane as issue 15 defines it (variant 3: truncate + mke2fs + fallocate +
fsync of the file and its directory); the ratio against variant 2 (without the fsyncs) is
printed too, as earlier results used it. Nothing is asserted.

Usage: ``.venv/bin/python bench/run_create.py [-n 20] [--throughput-duration 5]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
VOLUMED = [sys.executable, "-m", "volumed", "serve"]
POLL_S = 0.002
MKE2FS = ["mke2fs", "-q", "-F", "-t", "ext4", "-m", "0"]
MKE2FS += ["-E", "lazy_itable_init=1,lazy_journal_init=1"]
# wrk counts only non-2xx answers as errors, but volumed, like KraftCloud, can answer 200
# with {"status":"error", ...} (a failed item, e.g. a quota); count those separately.
POST_LUA = """\
wrk.method = "POST"
wrk.body = '{"size_mb":1,"quota_policy":"dynamic"}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  failed = 0
  first_error = ""
end

function response(status, headers, body)
  if status >= 200 and status < 300 and not string.find(body, '"status":"error"', 1, true) then
    ok = ok + 1
  else
    failed = failed + 1
    if first_error == "" then
      first_error = status .. " " .. string.sub(body, 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_failed, sample = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_failed = total_failed + thread:get("failed")
    if sample == "" then sample = thread:get("first_error") end
  end
  io.write(string.format("creates ok: %d\\ncreates failed: %d\\n", total_ok, total_failed))
  if sample ~= "" then io.write("first failure: " .. sample .. "\\n") end
end
"""

# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``volumed serve`` in its own session, so the whole group can be killed."""

    def __init__(self, data_dir: Path, token: str, log_path: Path) -> None:
        self.port = free_port()
        self.cmd = [*VOLUMED, "--host", "127.0.0.1", "--port", str(self.port)]
        self.cmd += ["--data-dir", str(data_dir)]
        # The throughput run creates thousands of volumes: lift the per-tenant volume
        # quota (default 1024) unless the caller's environment sets it.
        self.env = {"VOLUMED_QUOTA_MAX_VOLUMES": "1000000", **os.environ, "VOLUMED_TOKEN": token}
        self.env["VOLUMED_METRICS_PORT"] = str(free_port())  # a busy one refuses to start
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.cmd,
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("volumed exited early (its log follows)")
            try:
                reply = httpx.get(self.url + "/healthz", timeout=1)
                if reply.status_code == 200:
                    return
                last = f"GET /healthz -> {reply.status_code} {reply.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"GET /healthz: {exc!r}"
            time.sleep(0.05)
        raise RuntimeError(f"volumed did not come up in {timeout} s ({last})")

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        self.process = None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stats:
    n: int
    min: float
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        ordered = sorted(samples)
        # Nearest-rank p90: the smallest sample with at least 90 % of samples at or below it.
        rank = max(1, -(-9 * len(ordered) // 10))
        return cls(
            len(ordered), ordered[0], statistics.median(ordered), ordered[rank - 1], ordered[-1]
        )


def print_stats(rows: list[tuple[str, Stats]]) -> None:
    header = f"{'ms':<58} {'n':>3} {'min':>7} {'median':>7} {'p90':>7} {'max':>7}"
    print(header)
    print("-" * len(header))
    for label, s in rows:
        print(f"{label:<58} {s.n:>3} {s.min:>7.1f} {s.median:>7.1f} {s.p90:>7.1f} {s.max:>7.1f}")


# ----------------------------------------------------------------------------- volumed


def post_volume(client: httpx.Client, body: dict[str, object]) -> tuple[str, str | None]:
    """POST one volume; returns its uuid and the state the answer gives (None: none)."""
    reply = client.post("/v1/volumes", json=body)
    if reply.status_code not in (200, 201, 202):
        raise RuntimeError(f"POST /v1/volumes -> {reply.status_code}: {reply.text}")
    item = reply.json()["data"]["volumes"][0]
    if item.get("status") != "success":
        raise RuntimeError(f"POST /v1/volumes item failed: {reply.text}")
    state = item.get("state")
    return str(item["uuid"]), None if state is None else str(state)


def create_to_available(
    client: httpx.Client, size_mb: int, timeout: float = 60.0
) -> tuple[str, float, float, bool]:
    """One create; returns (uuid, POST reply ms, create-to-available ms, whether it took
    GETs: the POST's answer was not ``available`` yet)."""
    start = time.perf_counter()
    uuid, state = post_volume(client, {"size_mb": size_mb})
    posted = time.perf_counter()
    if state == "available":  # the POST answers once the volume is formatted (issue 12)
        return uuid, (posted - start) * 1e3, (posted - start) * 1e3, False
    while True:
        reply = client.get(f"/v1/volumes/{uuid}")
        if reply.status_code != 200:
            raise RuntimeError(f"GET /v1/volumes/{uuid} -> {reply.status_code}: {reply.text}")
        state = reply.json()["data"]["volumes"][0].get("state")
        if state == "available":
            done = time.perf_counter()
            return uuid, (posted - start) * 1e3, (done - start) * 1e3, True
        if state == "error" or time.perf_counter() - start > timeout:
            raise RuntimeError(f"volume {uuid} did not become available: {reply.text}")
        time.sleep(POLL_S)


# The worker's "format job finished" log line, in the formats it has had: plain text
# "job format on <uuid> done in 0.017 s", or "job format on <uuid> ended: ok" with a
# duration_ms field (JSON lines, or text with key=value pairs).
_JOB_DONE = re.compile(r"job format on (\S+) (?:done in ([\d.]+) s|ended: ok)")
_DURATION = re.compile(r"duration_ms=([\d.]+)")


def settled_jobs(log: str) -> set[str]:
    """Volumes whose format job has ended, whatever the outcome."""
    return set(re.findall(r"job format on (\S+) (?:done in|ended:)", log))


def format_jobs(log: str) -> dict[str, float | None]:
    """uuid -> duration in ms (None if not logged) of every finished format job."""
    jobs: dict[str, float | None] = {}
    for line in log.splitlines():
        if "job format on" not in line:
            continue
        msg, duration = line, None
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            msg, duration = str(record.get("msg", "")), record.get("duration_ms")
        match = _JOB_DONE.search(msg)
        if match is None:
            continue
        if match[2] is not None:
            duration = float(match[2]) * 1e3
        elif duration is None and (found := _DURATION.search(line)):
            duration = float(found[1])
        jobs[match[1]] = float(duration) if duration is not None else None
    return jobs


# ----------------------------------------------------------------------------- bare data plane


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, capture_output=True)


def bare_format(directory: Path, name: str, size_mb: int, *, reserve: bool, sync: bool) -> float:
    image = directory / name
    start = time.perf_counter()
    _run(["truncate", "-s", f"{size_mb}M", str(image)])
    _run([*MKE2FS, str(image)])
    if reserve:
        _run(["fallocate", "-l", f"{size_mb}M", str(image)])
    if sync:
        fd = os.open(image, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return (time.perf_counter() - start) * 1e3


# ----------------------------------------------------------------------------- throughput


def _time_ms(text: str) -> float:
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match[1]) * units[match[2]] if match else float("nan")


def state_counts(client: httpx.Client) -> dict[str, str]:
    """uuid -> state of every volume."""
    reply = client.get("/v1/volumes", timeout=120)
    reply.raise_for_status()
    return {v["uuid"]: v.get("state", "?") for v in reply.json()["data"]["volumes"]}


def create_throughput(
    server: Server, client: httpx.Client, token: str, tmp: Path, duration: float, clients: int
) -> None:
    before = len(state_counts(client))
    script = tmp / "post.lua"
    script.write_text(POST_LUA)
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s", "--latency"]
    cmd += ["--timeout", "30s", "-s", str(script), "-H", f"Authorization: Bearer {token}"]
    cmd.append(server.url + "/v1/volumes")
    print(f"  {' '.join(cmd[:-3])} -H 'Authorization: Bearer …' {cmd[-1]}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=duration + 90)
    load_end = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    out = done.stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", out, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors:\s+(.*)$", out, re.MULTILINE)
    ok = re.search(r"^creates ok: (\d+)", out, re.MULTILINE)
    failed = re.search(r"^creates failed: (\d+)", out, re.MULTILINE)
    first_failure = re.search(r"^first failure: (.*)$", out, re.MULTILINE)
    if rps is None or total is None or p50 is None or p99 is None or ok is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")

    # Wait for the background worker to format everything that was accepted. Listing
    # thousands of volumes costs the server real CPU, so progress is read from the
    # worker's "job format on ... ended" log lines (free) and the list is only fetched to
    # confirm, or every 5 s if the log says nothing.
    items = state_counts(client)
    deadline = load_end + 900
    checked = time.monotonic()
    while time.monotonic() < deadline:
        if len(settled_jobs(server.log())) < len(items) and time.monotonic() - checked < 5:
            time.sleep(0.1)
            continue
        # The log says all is done (or 5 s passed): check with the list, which also
        # picks up POSTs still in flight when wrk stopped.
        items = state_counts(client)
        checked = time.monotonic()
        if all(state in ("available", "error") for state in items.values()):
            break
        time.sleep(0.5)
    drained_s = time.monotonic() - load_end
    states: dict[str, int] = {}
    for state in items.values():
        states[state] = states.get(state, 0) + 1
    created = len(items) - before

    print(
        f"\ncreate throughput, {clients} concurrent clients, "
        f"POST {{size_mb:1, quota_policy:dynamic}}:"
    )
    elapsed_s = _time_ms(total[2]) / 1e3
    print(f"  creates/s (successful)     {int(ok[1]) / elapsed_s:10.1f}")
    print(f"  responses/s (wrk)          {float(rps[1]):10.1f}")
    print(f"  responses in {total[2]:<13} {int(total[1]):10d}")
    print(f"  successful creates         {int(ok[1]):10d}")
    print(f"  volumes actually created   {created:10d}  (includes POSTs in flight at the end)")
    print(f"  POST latency p50 / p99     {_time_ms(p50[1]):7.1f} / {_time_ms(p99[1]):.1f} ms")
    errors = []
    if failed is not None and int(failed[1]):
        errors.append(
            f"{failed[1]} failed creates (first: {first_failure[1] if first_failure else '?'})"
        )
    if non_2xx:
        errors.append(f"{non_2xx[1]} non-2xx")
    if sock:
        errors.append(f"socket errors: {sock[1].strip()}")
    print(f"  errors                     {'; '.join(errors) or '-':>10}")
    print(
        f"  formatting backlog drained {drained_s:10.1f} s after the load stopped "
        f"(states: {', '.join(f'{k} {v}' for k, v in sorted(states.items()))})"
    )
    formatted_s = duration + drained_s
    print(
        f"  formats/s end to end       {created / formatted_s:10.1f} "
        f"({created} formats in {formatted_s:.1f} s from the first POST)"
    )


# ----------------------------------------------------------------------------- report


def environment() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mke2fs = subprocess.run(["mke2fs", "-V"], capture_output=True, text=True).stderr.split("\n")[0]
    load1, load5, _ = os.getloadavg()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = " + uncommitted changes in src/" if dirty else ""
    return (
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
        f"host: {os.cpu_count()} cpu(s), {cpu}; {platform.system()} {platform.release()}; "
        f"load avg {load1:.2f}/{load5:.2f}\n"
        f"python {platform.python_version()}; {mke2fs}; git {commit}{dirty}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--iterations", type=int, default=20, help="creates to time [20]")
    parser.add_argument("--size-mb", type=int, default=100, help="volume size [100]")
    parser.add_argument("--warmup", type=int, default=2, help="discarded iterations first [2]")
    parser.add_argument("--clients", type=int, default=16, help="concurrent POSTers [16]")
    parser.add_argument("--throughput-duration", type=float, default=5.0, help="seconds [5]")
    args = parser.parse_args()
    # A plain `kill` should clean up too: turn SIGTERM into SystemExit so `finally` runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for tool in ("wrk", "mke2fs", "truncate", "fallocate"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2

    tmp = Path(tempfile.mkdtemp(prefix="volumed-bench-create-"))
    bare_dir = tmp / "bare"
    bare_dir.mkdir()
    token = "bench-" + secrets.token_hex(16)
    server = Server(tmp / "data", token, tmp / "volumed.log")
    try:
        print(environment())
        df = subprocess.run(["df", "-T", str(tmp)], capture_output=True, text=True).stdout
        print(f"file system: {df.splitlines()[-1].split()[1]} ({tmp})\n")
        server.start()
        headers = {"Authorization": f"Bearer {token}"}
        size = args.size_mb
        variants: list[tuple[str, bool, bool]] = [
            (f"bare truncate -s {size}M + mke2fs", False, False),
            ("bare truncate + mke2fs + fallocate", True, False),
            ("bare truncate + mke2fs + fallocate + fsync file & dir", True, True),
        ]
        post_ms: list[float] = []
        avail_ms: list[float] = []
        bare_ms: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            print(
                f"create-to-available, {size} MB static, {args.iterations} iterations "
                f"(+{args.warmup} warm-up), interleaved with the bare data plane ...",
                flush=True,
            )
            uuids: list[str] = []
            polled = 0
            for i in range(args.warmup + args.iterations):
                measured = i >= args.warmup
                uuid, posted, available, needed_get = create_to_available(client, size)
                if measured:
                    uuids.append(uuid)
                    post_ms.append(posted)
                    avail_ms.append(available)
                    polled += needed_get
                for j, (label, reserve, sync) in enumerate(variants):
                    elapsed = bare_format(
                        bare_dir, f"x{i}-{j}.img", size, reserve=reserve, sync=sync
                    )
                    if measured:
                        bare_ms[label].append(elapsed)
            time.sleep(0.2)  # let the last "job ... done" log line land
            logged = format_jobs(server.log())
            jobs = [t for t in (logged.get(u) for u in uuids) if t is not None]

            print()
            rows = [
                (f"volumed POST /v1/volumes {size} MB (reply only)", Stats.of(post_ms)),
                (f"volumed create-to-available {size} MB", Stats.of(avail_ms)),
            ]
            if jobs:
                rows.append(("  of which format job (server log)", Stats.of(jobs)))
            rows += [(label, Stats.of(samples)) for label, samples in bare_ms.items()]
            print_stats(rows)
            print(
                f"\n{args.iterations - polled} of {args.iterations} POST answers said "
                f"available already; {polled} needed GETs (every {POLL_S * 1e3:g} ms) after it"
            )
            available = statistics.median(avail_ms)
            issue = available / statistics.median(bare_ms[variants[2][0]])
            no_fsync = available / statistics.median(bare_ms[variants[1][0]])
            print(
                f"median create-to-available / median bare (mke2fs + fallocate + fsync) "
                f"= {issue:.2f}   <- issue 15's ratio (goal <= 1.3)"
            )
            print(
                f"median create-to-available / median bare (mke2fs + fallocate, no fsync) "
                f"= {no_fsync:.2f}"
            )

            create_throughput(server, client, token, tmp, args.throughput_duration, args.clients)
        return 0
    except BaseException:
        print(f"--- volumed log (tail) ---\n{server.log()[-4000:]}", file=sys.stderr)
        raise
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
