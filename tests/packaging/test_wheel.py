"""The wheel as a user gets it: built from the tree, installed into a clean venv from the
lock file, and run from an empty directory.

This catches what the editable install of the other tests hides: files missing from the
wheel (migrations, assets), dependencies missing from ``[project].dependencies`` or from
the lock files, and a PostgreSQL extra that does not bring what PostgreSQL needs.

The SQLite pass installs the plain package (``requirements/runtime.txt``), the PostgreSQL
pass ``volumed[postgres]`` (``requirements/postgres.txt``). Packages come from pip's
cache after the first run; the wheel is built once per test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port, pg_cluster

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([*PIP, "wheel", "--no-deps", "-w", str(out), str(REPO)], check=True)
    (built,) = out.glob("volumed-*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "src/volumed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {name.removeprefix("src/") for name in tracked}
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if name.startswith("volumed/")}
    assert expected - packed == set(), "add them to [tool.setuptools.package-data]"
    assert any(name.startswith("volumed/store/migrations/0001") for name in packed)


def install(wheel: Path, venv: Path, lock: str) -> Path:
    """A venv without pip of its own, filled by ours: the lock's exact files (hashes
    checked), then the wheel, whose dependencies must all be in the lock."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = ["--python", str(python), "install", "--no-input"]
    lock_file = REPO / "requirements" / f"{lock}.txt"
    subprocess.run([*PIP, *target, "--require-hashes", "-r", str(lock_file)], check=True)
    subprocess.run([*PIP, *target, "--no-deps", str(wheel)], check=True)
    subprocess.run([*PIP, "--python", str(python), "check"], check=True)
    return venv / "bin" / "volumed"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLUMED_", "UKC_"))}
    return {**env, "VOLUMED_METRICS_PORT": "0", "NO_COLOR": "1", **extra}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        process.wait(timeout=20)


def serve_and_create(
    volumed: Path, workdir: Path, env: dict[str, str], served: list[subprocess.Popen[bytes]]
) -> None:
    """``volumed serve`` from an empty directory, then ``volumed volume create --wait``
    with the token the first start wrote: the volume is formatted by the installed code."""
    workdir.mkdir()
    port = free_port()
    log = workdir.parent / "serve.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [str(volumed), "serve", "--port", str(port)], cwd=workdir, env=env, stderr=sink
        )
    served.append(process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    # The console's and the docs' assets ship in the wheel and its dependencies.
    for asset in ("/console/", "/console/volumes.js", "/docs", "/docs/swagger-ui-bundle.js"):
        assert httpx.get(url + asset, timeout=5).status_code == 200, asset
    token = (workdir / ".volumed" / "token").read_text().strip()
    client_env = {**env, "VOLUMED_URL": url, "VOLUMED_TOKEN": token}
    created = subprocess.run(
        [str(volumed), "volume", "create", "--name", "first", "--size", "16Mi", "--wait"],
        cwd=workdir,
        env=client_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    listed = subprocess.run(
        [str(volumed), "volume", "ls", "-o", "json"],
        env=client_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"available"' in listed.stdout, listed.stdout


@pytest.mark.sqlite_only
def test_plain_install_serves_from_an_empty_directory(
    wheel: Path, tmp_path: Path, served: list[subprocess.Popen[bytes]]
) -> None:
    volumed = install(wheel, tmp_path / "venv", "runtime")
    python = tmp_path / "venv" / "bin" / "python"
    absent = subprocess.run([str(python), "-c", "import asyncpg"], capture_output=True, check=False)
    assert absent.returncode != 0, "asyncpg belongs to the postgres extra only"
    serve_and_create(volumed, tmp_path / "empty", clean_env(), served)
    # Asking the plain install for PostgreSQL says what to install, not a traceback.
    refused = subprocess.run(
        # A port of its own: the API address is bound before the store is opened.
        [str(volumed), "serve", "--port", str(free_port())]
        + ["--database-url", "postgresql://nobody@127.0.0.1:1/none"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert "pip install 'volumed[postgres]'" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.postgresql_only
def test_postgres_extra_serves_from_an_empty_directory(
    wheel: Path, tmp_path: Path, served: list[subprocess.Popen[bytes]]
) -> None:
    volumed = install(wheel, tmp_path / "venv", "postgres")
    env = clean_env(VOLUMED_DATABASE_URL=pg_cluster().new_database())
    serve_and_create(volumed, tmp_path / "empty", env, served)
