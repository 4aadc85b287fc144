"""Schemathesis, driven by volumed's own ``/openapi.json``, against a live server: every
operation, in the coverage, fuzzing and stateful phases (links inferred from the responses),
positive and negative data.

Checks: ``not_a_server_error`` (no 5xx), ``status_code_conformance`` (only documented
codes), ``content_type_conformance``, ``response_schema_conformance`` (every response is a
valid envelope of the documented schema) and ``positive_data_accepted``
(``st_hooks.py``: a request the schema calls valid is not refused with 400).

``negative_data_rejection`` is not run, on purpose: the request schemas state the contract
(enums, ranges, name rules) while the server answers a well-typed but invalid value with a
per-item error inside HTTP 200 (api-reference §3.3, docs/api.md), so that check would
contradict the wire contract rather than find bugs.

CI runs a bounded run; the long run is one command::

    VOLUMED_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/hardening/test_fuzz.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LiveServer

# Runs in the SQLite pass only: input validation answers before any store query; both stores'
# SQL is covered by the API tests.
pytestmark = pytest.mark.store_independent

EXAMPLES = int(os.environ.get("VOLUMED_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("VOLUMED_FUZZ_SEED", "20261128")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "positive_data_accepted",
)


def test_schemathesis_finds_nothing(
    fresh_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    live = fresh_server(VOLUMED_METRICS_PORT=0, VOLUMED_AUTH_FAILURES_BURST=0)
    st = Path(sys.executable).with_name("st")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.hardening.st_hooks"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{live.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {live.token}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--no-color",
            "--output-sanitize",
            "true",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = result.stdout + result.stderr
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated", output)
    print(f"schemathesis: {tested and tested[1]} operations, {cases and cases[1]} cases")
    assert result.returncode == 0, output[-20000:]
    assert tested is not None and int(tested[1]) >= 40, output[-5000:]
    assert "Traceback" not in live.log(), live.log()[-5000:]
