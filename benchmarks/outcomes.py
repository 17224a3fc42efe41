"""A pytest plugin for ``make gpu-verify`` (``-p benchmarks.outcomes``): each test's outcome written the moment it is
known, one JSON line each, to the file named by $KDSTUDY_TEST_OUTCOMES, after the list of the tests collected with
the fast-path flags each one gates (``@pytest.mark.gates(...)``). A pytest killed at its limit keeps every result
it had reported (JUnit XML is written only at the session's end, so a killed run lost them all); a test collected
and never reported reads "not run".
"""
from __future__ import annotations

import json
import os
from pathlib import Path

PATH_ENV = "KDSTUDY_TEST_OUTCOMES"


def _write(record: dict) -> None:
    path = os.environ.get(PATH_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def pytest_collection_finish(session) -> None:
    for item in session.items:
        _write({"collected": item.nodeid, "gates": [f for m in item.iter_markers("gates") for f in m.args]})


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" or report.outcome != "passed":  # a setup or teardown that failed or skipped counts too
        outcome = "error" if report.failed and report.when != "call" else report.outcome
        _write({"test": report.nodeid, "when": report.when, "outcome": outcome, "seconds": round(report.duration, 3)})


def read(path: Path) -> dict[str, dict]:
    """nodeid -> {"gates": [...], "outcome": passed | failed | error | skipped | not run, "seconds": ...}."""
    tests: dict[str, dict] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return tests
    rank = {"not run": 0, "passed": 1, "skipped": 2, "failed": 3, "error": 3}
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut off by the kill
            continue
        if "collected" in rec:
            tests[rec["collected"]] = {"gates": rec.get("gates", []), "outcome": "not run", "seconds": 0.0}
        elif "test" in rec:
            t = tests.setdefault(rec["test"], {"gates": [], "outcome": "not run", "seconds": 0.0})
            t["seconds"] += rec.get("seconds", 0.0)
            if rank[rec["outcome"]] > rank[t["outcome"]]:
                t["outcome"] = rec["outcome"]
    return tests
