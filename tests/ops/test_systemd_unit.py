"""deploy/volumed.service as systemd reads it: ``systemd-analyze verify`` finds nothing
to say (it only warns, exit 0, about unknown keys or bad values, so any output fails),
and ``systemd-analyze security`` rates its exposure at most 3.0 of 10 ("OK"; its
``--threshold`` counts tenths).

Both run offline against a scratch root holding the distribution's units, the unit and a
stand-in for the ExecStart binary (verify insists that it exists), so the host's own
/etc and /opt are neither needed nor touched."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "deploy" / "volumed.service"
SYSUSERS = REPO / "deploy" / "volumed.sysusers"


def unit_settings() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


@pytest.fixture
def root(tmp_path: Path) -> Path:
    service = unit_settings()["Service"]
    executable = tmp_path / service["ExecStart"].split()[0].lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    units = tmp_path / "usr" / "lib" / "systemd"
    units.mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", units / "system", ignore_dangling_symlinks=True)
    (tmp_path / "etc" / "systemd" / "system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc" / "systemd" / "system" / UNIT.name)
    return tmp_path


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    unit = root / "etc" / "systemd" / "system" / UNIT.name
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.sqlite_only
def test_the_unit_verifies_without_a_word(root: Path) -> None:
    done = analyze(root, "verify")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.sqlite_only
def test_the_unit_is_rated_ok_by_systemd_analyze_security(root: Path) -> None:
    done = analyze(root, "security", "--offline=yes", "--threshold=30", "--no-pager")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Overall exposure level for volumed.service" in done.stdout


@pytest.mark.sqlite_only
def test_the_unit_runs_as_its_own_user_on_its_state_directory() -> None:
    service = unit_settings()["Service"]
    user = SYSUSERS.read_text().split("\n")[1].split()
    assert user[:2] == ["u", service["User"]] and service["User"] != "root"
    assert service["Group"] == service["User"]
    assert f"VOLUMED_DATA_DIR=/var/lib/{service['StateDirectory']}" in service["Environment"]
    assert service["WorkingDirectory"] == f"/var/lib/{service['StateDirectory']}"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
