"""GET throughput and latency of volumed against the bare ASGI ceiling, in one run.

1. ``bench/bare_asgi.py`` (a constant JSON reply, served the way volumed is served) is
   started, loaded with wrk and stopped.
2. ``volumed serve`` is started on a fresh temporary data directory; one 100 MB volume is
   created and awaited until ``available``; ``GET /v1/volumes/{uuid}`` is loaded with wrk
   (bearer token in ``-H``).
3. 99 more volumes are created (1 MB, dynamic) and ``GET /v1/volumes`` (a list of 100) is
   loaded with wrk once, as an extra line.

Every wrk measurement is preceded by a discarded warm-up run. Prints requests/s, p50, p99
and the ratio volumed/bare (issue 15's goal: >= 0.5), also as server CPU per request
(bare / volumed: the same ratio, less sensitive to other load). Nothing is asserted.

Usage: ``.venv/bin/python bench/run_get.py [--duration 10] [--connections 32] [--warmup 3]``
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
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
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BARE_APP = BENCH_DIR / "bare_asgi.py"
VOLUMED = [sys.executable, "-m", "volumed", "serve"]
TARGET_RATIO = 0.5

# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess in its own session, so the whole group can be killed."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], log_path: Path, port: int
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.cmd,
                env={**os.environ, **self.env},
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
                raise RuntimeError(f"{self.name} exited early (its log follows)")
            try:
                reply = httpx.get(self.url + "/healthz", timeout=1)
                if reply.status_code == 200:
                    return
                last = f"GET /healthz -> {reply.status_code} {reply.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"GET /healthz: {exc!r}"
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not come up in {timeout} s ({last})")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        self.process = None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        # Whatever is left in the group (children, a stuck server) goes now.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ----------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str
    server_cpu_s: float = float("nan")
    """CPU time (user + system) the server process used during the measured run."""

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def errors(self) -> str:
        parts = []
        if self.non_2xx:
            parts.append(f"{self.non_2xx} non-2xx")
        if self.socket_errors:
            parts.append(f"socket errors: {self.socket_errors}")
        return "; ".join(parts) or "-"


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _time_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"cannot read wrk time {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output has no {pattern!r}:\n{output}")
        return match

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors:\s+(.*)$", output, re.MULTILINE)
    return WrkResult(
        requests=int(find(r"^\s*(\d+) requests in")[1]),
        rps=float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=_time_ms(find(r"^\s+50%\s+(\S+)")[1]),
        p99_ms=_time_ms(find(r"^\s+99%\s+(\S+)")[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sock[1].strip() if sock else "",
    )


def run_wrk(
    url: str, *, duration: float, connections: int, threads: int, headers: list[str]
) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    cmd += ["--latency", "--timeout", "10s"]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return parse_wrk(done.stdout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    label: str,
    url: str,
    args: argparse.Namespace,
    headers: list[str],
    pid: int,
) -> WrkResult:
    if args.warmup > 0:
        print(f"  warm-up {label} ({args.warmup:g} s) ...", flush=True)
        run_wrk(
            url,
            duration=args.warmup,
            connections=args.connections,
            threads=args.threads,
            headers=headers,
        )
    print(f"  measuring {label} ({args.duration:g} s) ...", flush=True)
    cpu_before = cpu_seconds(pid)
    result = run_wrk(
        url,
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        headers=headers,
    )
    return dataclasses.replace(result, server_cpu_s=cpu_seconds(pid) - cpu_before)


# ----------------------------------------------------------------------------- volumed


def wait_available(client: httpx.Client, uuids: list[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(uuids)
    while pending:
        for uuid in list(pending):
            reply = client.get(f"/v1/volumes/{uuid}")
            reply.raise_for_status()
            state = reply.json()["data"]["volumes"][0].get("state")
            if state == "available":
                pending.discard(uuid)
            elif state == "error":
                raise RuntimeError(f"volume {uuid} went to error: {reply.text}")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} volume(s) not available after {timeout} s")
        if pending:
            time.sleep(0.02)


def create_volume(client: httpx.Client, body: dict[str, object]) -> str:
    reply = client.post("/v1/volumes", json=body)
    if reply.status_code not in (200, 201, 202):
        raise RuntimeError(f"POST /v1/volumes -> {reply.status_code}: {reply.text}")
    item = reply.json()["data"]["volumes"][0]
    if item.get("status") != "success":
        raise RuntimeError(f"POST /v1/volumes item failed: {reply.text}")
    return str(item["uuid"])


def check_get(client: httpx.Client, path: str) -> int:
    """One request before the load: fail loudly on a non-200, return the body size."""
    reply = client.get(path)
    if reply.status_code != 200:
        raise RuntimeError(f"GET {path} -> {reply.status_code}: {reply.text}")
    return len(reply.content)


# ----------------------------------------------------------------------------- report


def environment() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).splitlines()[0].split(" Copyright")[0]
    from importlib.metadata import version

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
        f"python {platform.python_version()}, granian {version('granian')}, "
        f"uvloop {version('uvloop')}; {wrk_version}; git {commit}{dirty}"
    )


def print_table(rows: list[tuple[str, WrkResult, int]], bare_rps: float, duration: float) -> None:
    header = (
        f"{'endpoint':<34} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'body B':>7} "
        f"{'vs bare':>8} {'srv CPU':>8} {'CPU us/req':>10}  errors"
    )
    print(header)
    print("-" * len(header))
    for label, result, body in rows:
        print(
            f"{label:<34} {result.rps:>10.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f} "
            f"{body:>7} {result.rps / bare_rps:>8.2f} "
            f"{result.server_cpu_s / duration:>8.0%} {result.cpu_us_per_request:>10.0f}  "
            f"{result.errors}"
        )


def median_result(results: list[WrkResult]) -> WrkResult:
    """Per-column medians over rounds (requests/s, p50, p99 each on their own)."""
    return WrkResult(
        requests=round(statistics.median(r.requests for r in results)),
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors="; ".join(r.socket_errors for r in results if r.socket_errors),
        server_cpu_s=statistics.median(r.server_cpu_s for r in results),
    )


class Bench:
    """The servers of one run and what they have measured so far."""

    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp = tmp
        self.args = args
        self.token = "bench-" + secrets.token_hex(16)
        self.servers: list[Server] = []
        self.uuid: str | None = None
        self.bodies: dict[str, int] = {}

    def _server(self, name: str, cmd: list[str], port: int, env: dict[str, str]) -> Server:
        server = Server(name, cmd, env, self.tmp / f"{name}.log", port)
        self.servers.append(server)
        server.start()
        return server

    def bare(self) -> WrkResult:
        """Start the bare app, load it, stop it."""
        port = free_port()
        server = self._server("bare_asgi", [sys.executable, str(BARE_APP), str(port)], port, {})
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                self.bodies["bare"] = check_get(client, "/v1/volumes")
            return load("bare", server.url + "/v1/volumes", self.args, [], server.pid)
        finally:
            server.stop()

    def volumed(self, *, with_list: bool) -> tuple[WrkResult, WrkResult | None]:
        """Start volumed (same data dir every round), load GET one [and the list], stop it."""
        port = free_port()
        cmd = [*VOLUMED, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--data-dir", str(self.tmp / "data")]
        # Metrics stay on (they are part of the request path), on a port of their own:
        # a busy metrics port makes volumed refuse to start.
        env = {"VOLUMED_TOKEN": self.token, "VOLUMED_METRICS_PORT": str(free_port())}
        server = self._server("volumed", cmd, port, env)
        auth = f"Authorization: Bearer {self.token}"
        listed: WrkResult | None = None
        try:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
            ) as client:
                if self.uuid is None:
                    self.uuid = create_volume(client, {"size_mb": 100})
                    wait_available(client, [self.uuid])
                path = f"/v1/volumes/{self.uuid}"
                self.bodies["one"] = check_get(client, path)
                one = load("GET one", server.url + path, self.args, [auth], server.pid)
                if with_list:
                    listed = self._list(client, server, auth)
            return one, listed
        finally:
            server.stop()

    def _list(self, client: httpx.Client, server: Server, auth: str) -> WrkResult:
        size = self.args.list_size
        have = len(client.get("/v1/volumes").json()["data"]["volumes"])
        print(f"  creating {size - have} more volumes ...", flush=True)
        more = [
            create_volume(client, {"size_mb": 1, "quota_policy": "dynamic"})
            for _ in range(size - have)
        ]
        wait_available(client, more)
        listed = client.get("/v1/volumes").json()["data"]["volumes"]
        if len(listed) != size:
            raise RuntimeError(f"list returned {len(listed)} volumes, not {size}")
        self.bodies["list"] = check_get(client, "/v1/volumes")
        return load("GET list", server.url + "/v1/volumes", self.args, [auth], server.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run [10]")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections [32]")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads [1]")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded warm-up s [3]")
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare/volumed rounds, medians reported [3]"
    )
    parser.add_argument("--list-size", type=int, default=100, help="volumes in the list [100]")
    args = parser.parse_args()
    # A plain `kill` should clean up too: turn SIGTERM into SystemExit so `finally` runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="volumed-bench-get-"))
    bench = Bench(tmp, args)
    try:
        print(environment())
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency "
            f"(warm-up {args.warmup:g} s discarded), {args.rounds} round(s)\n"
        )
        bare: list[WrkResult] = []
        one: list[WrkResult] = []
        listed: WrkResult | None = None
        for n in range(1, args.rounds + 1):
            print(f"round {n}/{args.rounds}: bare ASGI app", flush=True)
            bare.append(bench.bare())
            print(f"round {n}/{args.rounds}: volumed", flush=True)
            result, maybe_list = bench.volumed(with_list=n == args.rounds)
            one.append(result)
            listed = maybe_list or listed
        assert listed is not None

        print()
        if args.rounds > 1:
            rows = [
                (f"  round {n}: {name}", result, bench.bodies[key])
                for n in range(1, args.rounds + 1)
                for name, key, result in (
                    ("bare", "bare", bare[n - 1]),
                    ("volumed GET one", "one", one[n - 1]),
                )
            ]
            print_table(rows, statistics.median(r.rps for r in bare), args.duration)
            print(f"\nmedians over {args.rounds} rounds (each column on its own):")
        bare_med, one_med = median_result(bare), median_result(one)
        print_table(
            [
                ("bare ASGI (constant JSON)", bare_med, bench.bodies["bare"]),
                ("volumed GET /v1/volumes/{uuid}", one_med, bench.bodies["one"]),
                (f"volumed GET /v1/volumes ({args.list_size})", listed, bench.bodies["list"]),
            ],
            bare_med.rps,
            args.duration,
        )
        ratio = one_med.rps / bare_med.rps
        per_round = ", ".join(f"{o.rps / b.rps:.2f}" for b, o in zip(bare, one, strict=True))
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(
            f"\nratio volumed GET one / bare = {ratio:.3f} "
            f"(issue target >= {TARGET_RATIO}: {verdict}; per round: {per_round})"
        )
        by_cpu = ", ".join(
            f"{b.cpu_us_per_request / o.cpu_us_per_request:.2f}"
            for b, o in zip(bare, one, strict=True)
        )
        print(
            f"server CPU per request: bare {bare_med.cpu_us_per_request:.1f} us, GET one "
            f"{one_med.cpu_us_per_request:.1f} us; bare/GET one per round: {by_cpu}"
        )
        return 0
    except BaseException:
        for log in dict.fromkeys(server.log_path for server in bench.servers):
            if log.exists():
                tail = log.read_text(errors="replace")[-4000:]
                print(f"--- {log.name} (tail) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        for server in bench.servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
