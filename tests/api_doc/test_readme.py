"""The README's examples, run from the README's own text against a live server, so they
cannot drift from what volumed does: the curl commands and the SDK script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED_URL = "http://127.0.0.1:8080"


def fenced(language: str, containing: str) -> str:
    """The one ``language`` block of the README that contains ``containing``."""
    blocks: list[str] = re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), re.M | re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"expected one {language} block with {containing!r}"
    return found[0]


def home(tmp_path: Path, live: LiveServer) -> Path:
    """A directory laid out as after ``./scripts/serve``: ``.volumed/token``."""
    (tmp_path / ".volumed").mkdir()
    (tmp_path / ".volumed" / "token").write_text(live.token + "\n")
    return tmp_path


def test_the_curl_examples(fresh_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    live = fresh_server()
    commands = fenced("sh", "curl").replace("\\\n", " ").splitlines()
    assert commands[0].startswith("export UKC_TOKEN=")
    # Each command's answer on a line of its own (curl -s prints no newline).
    script = "set -eu\n" + "".join(f"{c}\necho\n" for c in commands if c.strip())
    done = subprocess.run(
        ["bash", "-c", script.replace(DOCUMENTED_URL, live.url)],
        cwd=home(tmp_path, live),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    created, listed, deleted = [json.loads(line) for line in done.stdout.splitlines() if line]
    assert created["status"] == "success"
    assert _one(created) | {"uuid": None} == {
        "status": "success",
        "uuid": None,
        "name": "data",
        "state": "available",
    }
    assert [(v["name"], v["state"], v["size_mb"]) for v in listed["data"]["volumes"]] == [
        ("data", "available", 100)
    ]
    assert _one(deleted)["uuid"] == _one(created)["uuid"]


def test_the_sdk_example(fresh_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    live = fresh_server()
    script = fenced("python", "UnikraftCloud").replace(DOCUMENTED_URL, live.url)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=home(tmp_path, live),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    name, state, free_mb = done.stdout.split()
    assert (name, state) == ("data", "available") and 0 < int(free_mb) < 1024
    printed = re.search(r"# (.+)$", script, re.M)
    assert printed is not None and printed[1] == done.stdout.strip()
    with live.client() as api:
        assert api.get("/v1/volumes").json()["data"]["volumes"] == []


def _one(envelope: dict[str, Any]) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = envelope["data"]["volumes"]
    assert len(volumes) == 1, envelope
    return volumes[0]
