"""Settings: flags over environment over defaults, and clear messages on bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from volumed.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.load({}, {})
    assert (settings.host, settings.port, settings.data_dir) == (
        "127.0.0.1",
        8080,
        Path(".volumed"),
    )
    assert settings.sqlite_synchronous == "FULL"


def test_flags_win_over_environment() -> None:
    env = {"VOLUMED_PORT": "9000", "VOLUMED_HOST": "0.0.0.0"}
    settings = Settings.load({"port": 9100, "host": None}, env)
    assert settings.port == 9100 and settings.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"VOLUMED_PORT": "eighty"}, "VOLUMED_PORT='eighty' is not a valid value for port"),
        ({"VOLUMED_PORT": "70000"}, "port must be between 1 and 65535"),
        ({"VOLUMED_MAX_VOLUME_MB": "0"}, "max_volume_mb must be at least 1"),
        ({"VOLUMED_DATABASE_URL": "mysql://x"}, "database_url must start with"),
        ({"VOLUMED_TOKEN": "short"}, "token must be at least 16 characters"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(")):
        Settings.load({}, env)


def test_serve_refuses_a_bad_setting_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "volumed", "serve", "--data-dir", str(tmp_path)],
        env={"VOLUMED_PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "VOLUMED_PORT='not-a-port' is not a valid value for port" in result.stderr
