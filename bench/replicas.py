"""Create and GET throughput of volumed replicas on PostgreSQL against one SQLite server,
in one run on one machine.

Configurations, in this order: 1 replica on SQLite, then 1, 2 and 3 replicas on one
PostgreSQL database (a throwaway cluster started with ``scripts/pg.sh``) sharing one
data directory. For each, load comes from separate ``wrk`` processes, one per replica,
started together, the connections split evenly between them; their requests/s are
summed:

* ``POST /v1/volumes`` with ``{"size_mb": 4, "quota_policy": "dynamic"}`` (every
  request creates a volume, and a worker formats its image meanwhile);
* ``GET /v1/volumes/{uuid}`` of one volume.

Every measurement follows a discarded warm-up. Prints requests/s and errors; nothing
is asserted. Usage: ``.venv/bin/python bench/replicas.py [--duration 10] [--connections 32]``
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-" + secrets.token_hex(16)
CREATE_LUA = """
wrk.method = "POST"
wrk.body = '{"size_mb": 4, "quota_policy": "dynamic"}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOLUMED_")}
        env |= {
            "VOLUMED_TOKEN": TOKEN,
            "VOLUMED_DATA_DIR": str(data_dir),
            "VOLUMED_PORT": str(self.port),
            "VOLUMED_METRICS_PORT": "0",
            "VOLUMED_LOG_LEVEL": "warning",
            "VOLUMED_QUOTA_MAX_VOLUMES": "100000000",
            "VOLUMED_QUOTA_MAX_TOTAL_MB": "1000000000000",
        }
        if database_url:
            env["VOLUMED_DATABASE_URL"] = database_url
        self.log = open(data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "volumed", "serve"],
            env=env,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"volumed did not come up (log in {self.log.name})")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def wrk(
    urls: list[str], connections: int, duration: float, script: Path | None
) -> tuple[float, int]:
    """Run one wrk per URL at once; the summed requests/s and non-2xx/socket errors."""
    per = max(1, connections // len(urls))
    procs = []
    for url in urls:
        cmd = [
            "wrk",
            "-t1",
            f"-c{per}",
            f"-d{max(1, round(duration))}s",
            "-H",
            f"Authorization: Bearer {TOKEN}",
        ]
        if script is not None:
            cmd += ["-s", str(script)]
        procs.append(subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, text=True))
    total, errors = 0.0, 0
    for proc in procs:
        out, _ = proc.communicate()
        total += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        found = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(found.group(1)) if found else 0
        found = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
        )
        errors += sum(map(int, found.groups())) if found else 0
    return total, errors


def measure(label: str, replicas: list[Replica], args: argparse.Namespace, lua: Path) -> None:
    urls = [r.url for r in replicas]
    create = [u + "/v1/volumes" for u in urls]
    wrk(create, args.connections, args.warmup, lua)
    creates, create_errors = wrk(create, args.connections, args.duration, lua)
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        made = client.post(urls[0] + "/v1/volumes", json={"size_mb": 4, "quota_policy": "dynamic"})
        uuid = made.json()["data"]["volumes"][0]["uuid"]
        for url in urls:
            assert client.get(f"{url}/v1/volumes/{uuid}").status_code == 200
    get = [f"{u}/v1/volumes/{uuid}" for u in urls]
    wrk(get, args.connections, args.warmup, None)
    gets, get_errors = wrk(get, args.connections, args.duration, None)
    print(
        f"{label:24} {creates:10.0f} {create_errors:8d} {gets:10.0f} {get_errors:8d}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="volumed-bench-", dir="/tmp"))
    pg_dir = root / "pg"
    lua = root / "create.lua"
    lua.write_text(CREATE_LUA)
    started: list[Replica] = []
    pg_started = False
    try:
        print(f"cpus {os.cpu_count()}, {args.connections} connections, {args.duration:g} s each")
        print(f"{'configuration':24} {'create/s':>10} {'errors':>8} {'GET/s':>10} {'errors':>8}")
        (root / "sqlite").mkdir()
        started = [Replica(root / "sqlite" / "data", "")]
        measure("1 replica, SQLite", started, args, lua)
        for r in started:
            r.stop()
        url = subprocess.run(
            ["bash", str(REPO / "scripts/pg.sh"), "start", str(pg_dir), str(free_port())],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        pg_started = True
        for count in (1, 2, 3):
            name = f"bench_{count}"
            subprocess.run(
                [sys.executable, "-c", f"import asyncio, asyncpg\nasync def m():\n"
                 f"    c = await asyncpg.connect({url!r})\n"
                 f"    await c.execute('CREATE DATABASE {name}')\n    await c.close()\n"
                 "asyncio.run(m())"],
                check=True,
            )  # fmt: skip
            (root / name).mkdir()
            db_url = url.rsplit("/", 1)[0] + "/" + name
            started = []
            for _ in range(count):  # one after the other: the first migrates
                started.append(Replica(root / name / "data", db_url))
            label = f"{count} replica{'s' if count > 1 else ''}, PostgreSQL"
            measure(label, started, args, lua)
            for r in started:
                r.stop()
            started = []
    finally:
        for r in started:
            r.stop()
        if pg_started:
            subprocess.run(["bash", str(REPO / "scripts/pg.sh"), "stop", str(pg_dir)], check=False)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
