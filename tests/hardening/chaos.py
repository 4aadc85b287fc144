"""Chaos: several clients run random valid operations while the server is killed with
``kill -9`` at random moments and restarted; after each restart every invariant is checked.

What is checked after each round (``check_round``):

* every *acknowledged* create, delete, attach, detach, start and stop is reflected; an
  operation in flight when the kill landed may or may not have been applied, and either
  outcome is accepted (the model adopts what the server shows);
* no volume or instance exists that no client asked for;
* no transitional state (``uninitialized``, ``initializing``, ``busy``, ``starting``,
  ``stopping``) is left once the worker has run;
* volume and instance rows agree on every attachment;
* no image without its row and no row without its image (the rows read from the database
  file itself, hidden deletes included);
* ``e2fsck -fn`` is clean on every image.

Long run (one command)::

    .venv/bin/python -m tests.hardening.chaos --kills 200

The test (``tests/hardening/test_chaos.py``) runs a short one.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer, make_server

TRANSITIONAL = {"uninitialized", "initializing", "busy"}
CLIENTS = 4
UNKNOWN: Any = "?"
"""A model value an interrupted request left undecided: either outcome is accepted."""


class InFlight(Exception):
    """The request did not get an answer: the server went away."""


@dataclass
class Model:
    """What the clients were told. ``None``/``UNKNOWN`` mean "either way"."""

    volumes: dict[str, bool | None] = field(default_factory=dict)
    """Volume name → present (True), gone (False), undecided (None)."""
    instances: dict[str, bool | None] = field(default_factory=dict)
    running: dict[str, bool | None] = field(default_factory=dict)
    attached: dict[str, Any] = field(default_factory=dict)
    """Volume name → the name of its instance, None, or UNKNOWN."""
    uuids: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: int = 0


@dataclass
class Stats:
    rounds: int = 0
    kills: int = 0
    answered: int = 0
    in_flight: int = 0
    violations: list[str] = field(default_factory=list)


def _call(
    client: httpx.Client, method: str, url: str, key: str, body: Any = None
) -> dict[str, Any]:
    try:
        response = client.request(method, url, json=body)
    except httpx.HTTPError as exc:
        raise InFlight(str(exc)) from None
    if response.status_code == 503:
        raise InFlight("store unavailable")
    assert response.status_code == 200, (method, url, response.status_code, response.text)
    item: dict[str, Any] = response.json()["data"][key][0]
    return item


class Client:
    """One client thread: it only touches objects it created, so that what it was told
    is the whole truth about them."""

    def __init__(self, number: int, model: Model, rng: random.Random) -> None:
        self.prefix = f"c{number}"
        self.model = model
        self.rng = rng
        self.counter = 0

    def _mine(self, table: dict[str, Any], want: Any = True) -> list[str]:
        with self.model.lock:
            return [n for n, v in table.items() if n.startswith(self.prefix + "-") and v is want]

    def _set(self, table: dict[str, Any], name: str, value: Any) -> None:
        with self.model.lock:
            table[name] = value

    def step(self, client: httpx.Client) -> None:
        m = self.model
        volumes = self._mine(m.volumes)
        free = [v for v in volumes if m.attached.get(v) is None]
        instances = self._mine(m.instances)
        stopped = [i for i in instances if m.running.get(i) is False]
        roll = self.rng.random()
        if roll < 0.25 or not volumes:
            self.create_volume(client)
        elif roll < 0.35 or not instances:
            self.create_instance(client)
        elif roll < 0.5 and free:
            self.delete_volume(client, self.rng.choice(free))
        elif roll < 0.65 and free and stopped:
            self.attach(client, self.rng.choice(free), self.rng.choice(stopped))
        elif roll < 0.75:
            held = [v for v in volumes if m.attached.get(v) in stopped]
            if held:
                self.detach(client, self.rng.choice(held))
        elif roll < 0.9:
            self.start_or_stop(client, self.rng.choice(instances))
        else:
            holders = {m.attached.get(v) for v in self._mine(m.volumes, None)} | {
                m.attached.get(v) for v in volumes
            }
            idle = [i for i in stopped if i not in holders]
            if idle:
                self.delete_instance(client, self.rng.choice(idle))

    def _name(self, kind: str) -> str:
        self.counter += 1
        return f"{self.prefix}-{kind}{self.counter}-{self.rng.randrange(1 << 30):x}"

    def create_volume(self, client: httpx.Client) -> None:
        name = self._name("v")
        self._set(self.model.volumes, name, None)
        self._set(self.model.attached, name, None)
        policy = self.rng.choice(["dynamic", "static"])
        body = {"name": name, "size_mb": self.rng.randint(4, 12), "quota_policy": policy}
        item = _call(client, "POST", "/v1/volumes", "volumes", body)
        with self.model.lock:
            self.model.volumes[name] = item["status"] == "success"
            if item["status"] == "success":
                self.model.uuids[name] = item["uuid"]

    def delete_volume(self, client: httpx.Client, name: str) -> None:
        self._set(self.model.volumes, name, None)
        item = _call(client, "DELETE", f"/v1/volumes/{self.model.uuids[name]}", "volumes")
        self._set(self.model.volumes, name, item["status"] != "success")

    def create_instance(self, client: httpx.Client) -> None:
        name = self._name("i")
        self._set(self.model.instances, name, None)
        self._set(self.model.running, name, False)
        item = _call(client, "POST", "/v1/instances", "instances", {"name": name, "image": "x"})
        with self.model.lock:
            self.model.instances[name] = item["status"] == "success"
            if item["status"] == "success":
                self.model.uuids[name] = item["uuid"]

    def delete_instance(self, client: httpx.Client, name: str) -> None:
        self._set(self.model.instances, name, None)
        item = _call(client, "DELETE", f"/v1/instances/{self.model.uuids[name]}", "instances")
        self._set(self.model.instances, name, item["status"] != "success")

    def attach(self, client: httpx.Client, volume: str, instance: str) -> None:
        self._set(self.model.attached, volume, UNKNOWN)
        body = {"attach_to": {"uuid": self.model.uuids[instance]}, "at": "/data"}
        url = f"/v1/volumes/{self.model.uuids[volume]}/attach"
        item = _call(client, "PUT", url, "volumes", body)
        self._set(self.model.attached, volume, instance if item["status"] == "success" else None)

    def detach(self, client: httpx.Client, volume: str) -> None:
        before = self.model.attached[volume]
        self._set(self.model.attached, volume, UNKNOWN)
        item = _call(client, "PUT", f"/v1/volumes/{self.model.uuids[volume]}/detach", "volumes")
        self._set(self.model.attached, volume, None if item["status"] == "success" else before)

    def start_or_stop(self, client: httpx.Client, instance: str) -> None:
        before = self.model.running[instance]
        verb = "stop" if before else "start"
        self._set(self.model.running, instance, None)
        url = f"/v1/instances/{self.model.uuids[instance]}/{verb}"
        item = _call(client, "PUT", url, "instances")
        ok = item["status"] == "success"
        self._set(self.model.running, instance, (not before) if ok else before)

    def run(self, live: LiveServer, stop: threading.Event) -> None:
        headers = {"Authorization": f"Bearer {live.token}"}
        with httpx.Client(base_url=live.url, headers=headers, timeout=10) as client:
            while not stop.is_set():
                try:
                    self.step(client)
                except InFlight:
                    return
                with self.model.lock:
                    self.model.answered += 1


def _items(api: httpx.Client, path: str, key: str) -> list[dict[str, Any]]:
    response = api.get(path)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"][key]
    return found


def _settle(api: httpx.Client, timeout: float = 30) -> tuple[dict[str, Any], dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        volumes = {v["name"]: v for v in _items(api, "/v1/volumes", "volumes")}
        instances = {i["name"]: i for i in _items(api, "/v1/instances", "instances")}
        busy = {v["state"] for v in volumes.values()} & TRANSITIONAL
        busy |= {i["state"] for i in instances.values()} - {"stopped", "running"}
        if not busy or time.monotonic() > deadline:
            return volumes, instances
        time.sleep(0.05)


def _decide(
    violations: list[str], what: str, table: dict[str, Any], name: str, actual: Any
) -> None:
    expected = table.get(name, "never asked for")
    if expected is None or expected is UNKNOWN:
        table[name] = actual
    elif expected != actual:
        violations.append(f"{what} {name}: acknowledged {expected!r}, found {actual!r}")
        table[name] = actual


def _rows_and_images(live: LiveServer) -> tuple[set[str], set[str]]:
    db = sqlite3.connect(f"file:{live.data_dir / 'volumed.db'}?mode=ro", uri=True)
    try:
        rows = {r[0] for r in db.execute("SELECT uuid FROM volumes")}
        pending = {r[0] for r in db.execute("SELECT uuid FROM volumes WHERE job IS NOT NULL")}
    finally:
        db.close()
    images = {p.name for p in (live.data_dir / "images").iterdir()}
    return rows - pending, images


def check_round(live: LiveServer, model: Model) -> list[str]:
    """Every invariant after a restart; returns the violations (empty: all hold)."""
    from tests.api.attach_helpers import check_invariants

    violations: list[str] = []
    with live.client() as api:
        volumes, instances = _settle(api)
        for state in {v["state"] for v in volumes.values()} & TRANSITIONAL:
            violations.append(f"a volume is still {state} after the worker ran")
        for inst in instances.values():
            if inst["state"] not in ("stopped", "running"):
                violations.append(f"instance {inst['name']} left {inst['state']}")
        with model.lock:
            _check_model(model, volumes, instances, violations)
        try:
            check_invariants(api)
        except AssertionError as exc:
            violations.append(f"volume and instance rows disagree: {exc}")
    _check_images(live, violations)
    return violations


def _check_model(
    model: Model, volumes: dict[str, Any], instances: dict[str, Any], violations: list[str]
) -> None:
    """What the clients were told against what the server shows."""
    for name in set(model.volumes) | set(volumes):
        _decide(violations, "volume", model.volumes, name, name in volumes)
        if name in volumes:
            model.uuids[name] = volumes[name]["uuid"]
            holders = [a["name"] for a in volumes[name]["attached_to"]]
            _decide(violations, "attachment of", model.attached, name, (holders or [None])[0])
    for name in set(model.instances) | set(instances):
        _decide(violations, "instance", model.instances, name, name in instances)
        if name in instances:
            model.uuids[name] = instances[name]["uuid"]
            running = instances[name]["state"] == "running"
            _decide(violations, "running state of", model.running, name, running)


def _check_images(live: LiveServer, violations: list[str]) -> None:
    """Rows (hidden deletes included) and images agree once the owed jobs have run, and
    every image is a clean ext4 file system."""
    deadline = time.monotonic() + 20
    while True:
        rows, images = _rows_and_images(live)
        expected = {f"{uuid}.img" for uuid in rows}
        if images == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for extra in sorted(images - expected):
        violations.append(f"image without a row: {extra}")
    for missing in sorted(expected - images):
        violations.append(f"row without an image: {missing}")
    for image in sorted(images & expected):
        fsck = subprocess.run(
            ["e2fsck", "-fn", str(live.data_dir / "images" / image)], capture_output=True
        )
        if fsck.returncode != 0:
            violations.append(f"e2fsck -fn {image}: {fsck.stdout.decode(errors='replace')}")


def run_chaos(live: LiveServer, kills: int, seed: int, *, verbose: bool = False) -> Stats:
    """``kills`` rounds: clients run, the server is killed at a random moment, restarted,
    and the invariants are checked."""
    rng = random.Random(seed)
    model = Model()
    clients = [Client(n, model, random.Random(rng.random())) for n in range(CLIENTS)]
    stats = Stats()
    for round_number in range(kills):
        stop = threading.Event()
        model.answered = 0
        threads = [threading.Thread(target=c.run, args=(live, stop)) for c in clients]
        for thread in threads:
            thread.start()
        # A random moment: after a random number of answers or a random time, whichever
        # comes first (the machine may be slow).
        wanted = rng.randint(1, 80)
        deadline = time.monotonic() + rng.uniform(0.2, 1.5)
        while model.answered < wanted and time.monotonic() < deadline:
            time.sleep(0.002)
        live.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        stats.kills += 1
        stats.rounds += 1
        stats.answered += model.answered
        with model.lock:
            stats.in_flight += sum(1 for v in model.volumes.values() if v is None)
            stats.in_flight += sum(1 for v in model.instances.values() if v is None)
        live.restart()
        found = check_round(live, model)
        stats.violations.extend(f"round {round_number}: {v}" for v in found)
        if verbose:
            print(
                f"round {round_number + 1}/{kills}: {model.answered} answered, "
                f"{len(found)} violation(s)",
                flush=True,
            )
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"chaos: {args.kills} kills, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="volumed-chaos-") as tmp:
        live = make_server(Path(tmp))
        try:
            stats = run_chaos(live, args.kills, seed, verbose=True)
        finally:
            live.kill()
    print(
        f"rounds {stats.rounds}, kills {stats.kills}, requests answered {stats.answered}, "
        f"in flight at a kill {stats.in_flight}, invariant violations {len(stats.violations)}"
    )
    for violation in stats.violations:
        print("  " + violation)
    raise SystemExit(1 if stats.violations else 0)


if __name__ == "__main__":
    main()
