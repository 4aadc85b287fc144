"""The Prometheus alert rules and the Grafana dashboard in deploy/: the rules pass
``promtool check rules`` and their own ``promtool test rules`` cases (one per alert), and
every volumed metric that a rule or a panel names is one a running server exports, so a
renamed metric cannot leave an alert or a panel silently empty."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.ops.conftest import Ops

RULES = REPO / "deploy" / "prometheus" / "volumed-alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "volumed-alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "volumed-dashboard.json"
_METRIC = re.compile(r"\bvolumed_[a-z_]+")
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def promtool() -> str:
    """scripts/_env.sh puts promtool in the venv when the machine has none."""
    found = shutil.which("promtool") or str(Path(sys.executable).parent / "promtool")
    assert Path(found).is_file(), "promtool is missing: run scripts/_env.sh"
    return found


@pytest.mark.sqlite_only
def test_rules_check_and_each_alert_has_a_passing_case() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)", RULES.read_text(), re.MULTILINE))
    cased = set(re.findall(r"^\s+alertname: (\w+)", RULE_TESTS.read_text(), re.MULTILINE))
    assert len(alerts) == 5 and alerts == cased


@pytest.mark.sqlite_only
def test_rules_and_panels_name_only_exported_metrics(ops_server: Callable[..., Ops]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = set(_METRIC.findall(RULES.read_text())) | set(_METRIC.findall(" ".join(exprs)))
    named |= set(_METRIC.findall(dashboard["templating"]["list"][1]["query"]))
    assert named
    ops = ops_server()
    with ops.live.client() as api:  # one failed item, so that its counter exists
        assert api.get(f"/v1/volumes/{UNKNOWN}").json()["data"]["volumes"][0]["error"] == 8
    exported = {name for name, _ in ops.scrape()}
    missing = sorted(named - exported)
    assert missing == [], f"not exported by volumed: {missing}"
