"""SIGKILL a worker at random moments and inside checkpoint writes, across a teacher and its student; every resume
loses no finished epoch, leaves no temp file, and ends bitwise equal to an uninterrupted run.
(The long version with 20 kills: `make faults`.)"""
from __future__ import annotations

from benchmarks.faults import RUN, compare, run_with_kills
from kdengine.cli import main


def test_kills_mid_run_and_mid_write_lose_nothing(tmp_path, capsys):
    assert main(["train", *RUN, "--epochs", "3", "--runs-dir", str(tmp_path / "reference")]) == 0  # uninterrupted
    capsys.readouterr()
    report = run_with_kills(tmp_path / "killed", kills=4, epochs=3, seed=2, log=print)
    result = compare(tmp_path / "killed", tmp_path / "reference", report)
    assert report["kills"] == 4 and report["mid_write_kills"] == 2, report
    assert result.pop("lost") == []
    assert all(result.values()), result
    resumed = [k for k in report["checkpoints_at_kill"] if any(k["safe"][r] > 0 for r in k["running"])]
    assert resumed, "no kill landed after a finished epoch: the resume path was not exercised"
