"""What a new user tripped over (issue 18): each defect reproduced, each failed before its fix."""
from __future__ import annotations

import csv
import json
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from kdengine.store.lifecycle import FINISHED
from kdengine.store.status import RunStatus
from tests.conftest import SMALL_SYNTH
from tests.engine_helpers import FAST

TINY = f"""name = "tiny"
seeds = [0]
[data]
source = "{SMALL_SYNTH}"
image_size = 32
[train]
epochs = 1
batch_size = 32
[[experiments]]
strategy = "baseline"
students = ["test_resnet"]
"""


def test_a_set_adds_to_a_study_and_never_makes_finished_runs_vanish(tmp_path, capsys):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    assert main(["study", "run", str(study), "--quiet", "--device", "cpu"]) == 0
    assert main(["study", "run", str(study), "--set", "seeds=[4]", "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["study", "status", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "seeds [0, 4]" in out and "2 finished" in out
    assert main(["study", "table", "tiny", "--out", str(tmp_path / "t")]) == 0
    with open(tmp_path / "t" / "runs.csv", newline="") as f:
        seeds = {row["seed"] for row in csv.DictReader(f)}
    assert seeds == {"0", "4"}  # both seeds' runs


def _run_in_a_terminal(argv: list[str], env: dict, interrupt_when) -> tuple[int, str]:
    """Run a command on a pseudo-terminal (rich draws its bar), press ctrl-c once ``interrupt_when()``.

    The command gets ctrl-c as a shell's foreground command does, whatever this process inherited: a test suite
    started in the background (``make test &``, nohup, a CI runner) runs with SIGINT ignored, exec keeps an ignored
    signal ignored, and Python installs no KeyboardInterrupt over it, so the interrupt would arrive not at all and
    the command would train to its end (issue 38: "assert 0 == 130" once in a while)."""
    pid, fd = pty.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execve(sys.executable, [sys.executable, "-m", "kdengine", *argv], env)
    out, sent, end = b"", False, time.time() + 300
    while time.time() < end:  # read until the command ends (a command never read from blocks on its terminal)
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not sent and interrupt_when():
            os.kill(pid, signal.SIGINT)
            sent = True
    else:  # past the deadline: the command is killed, never waited for to the end of its training
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert sent, "the moment to interrupt never came (the command ended or the deadline passed first)"
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_ctrl_c_stops_resumably_and_the_student_waits_for_its_teacher(tmp_path):
    env = {**os.environ, "KDSTUDY_HOME": str(runs_dir()), "COLUMNS": "100", "TERM": "xterm"}
    store = RunStore(runs_dir())

    def teacher_epoch_done() -> bool:
        return any('"type":"epoch"' in p.read_text() for p in store.root.glob("ce-*/events.jsonl"))

    code, out = _run_in_a_terminal(["train", "--strategy", "normal", "--teacher", "resnet10t", "--student",
                                    "test_resnet", "--data", SMALL_SYNTH, "--image-size", "32", "--epochs", "40",
                                    "--batch-size", "32", "--device", "cpu"], env, teacher_epoch_done)
    assert code == 130
    teacher = next(r for r in store.list_ids() if r.startswith("ce-resnet10t"))
    student = next(r for r in store.list_ids() if r.startswith("normal-"))
    status = store.read_status(teacher)
    assert status.state == "stopped" and "interrupted (ctrl-c)" in status.reason  # not failed
    assert f"kdengine runs retry {teacher}" in status.reason
    waiting = store.read_status(student)
    assert waiting.state == "queued" and waiting.reason.startswith(f"waiting: teacher {teacher} is stopped")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    message = next(line for line in text.splitlines() if line.startswith("interrupted: "))
    assert "resume" in message.lower() and "kdengine train --strategy normal --teacher resnet10t" in message
    # the bar is taken off the screen before the message: it is not left drawn twice beside it
    tail = out[out.rindex("interrupted: ") - 40:out.rindex("interrupted: ")]
    assert "\x1b[2K" in tail
    assert len(store.events(teacher)) and not any(e.extra.get("state") == "failed" for e in store.events(teacher))


def test_robustness_tables_do_not_split_over_settings_that_do_not_apply():
    """A cross-entropy run has no KD settings, a normal teacher no defect threshold: no difference. Runs that
    differ where both have a setting still part."""
    from kdengine.data.config import DataConfig
    from kdengine.store.records import RunRecord
    from kdengine.reports.groups import settings_groups, severity_text
    from kdengine.runspec import KDConfig, TrainConfig, build_specs

    data, train = DataConfig(source="synthetic", image_size=32), TrainConfig(epochs=1)
    specs = [build_specs("baseline", "test_resnet", [], data, train, KDConfig(), 0),
             build_specs("normal", "test_resnet", ["resnet10t"], data, train, KDConfig(), 0),
             build_specs("defective", "test_resnet", ["resnet10t"], data, train, KDConfig(), 0)]
    records = [RunRecord(s.run_id, s, RunStatus(FINISHED), {}) for s in specs]
    groups, notes = settings_groups(records)
    assert set(groups.values()) == {""} and notes == []
    other = build_specs("normal", "test_resnet", ["resnet10t"], data, train, KDConfig(temperature=2.0), 0)
    groups, notes = settings_groups(records + [RunRecord(other.run_id, other, RunStatus(FINISHED), {})])
    assert groups[other.run_id] != groups[specs[1].run_id] and any("kd.temperature=2.0" in n for n in notes)
    assert severity_text([1, 3, 5]) == "1, 3, 5" and severity_text([1, 2, 3, 4, 5]) == "1..5"


def test_doctor_knows_kdstudys_own_files(capsys):
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    for folder in (".archive", "reports", "screenshots", "mlartifacts"):
        (root / folder).mkdir()
    (root / "mlflow.db").write_bytes(b"SQLite format 3\x00")
    assert main(["runs", "doctor"]) == 0
    out = capsys.readouterr().out
    for name in (".archive", "reports", "screenshots", "mlartifacts", "mlflow.db"):
        assert name not in out


def test_runs_list_and_show_say_synthetic_and_name_the_data_settings_teacher_and_baseline(capsys):
    assert main(["train", *FAST, "--strategy", "normal", "--teacher", "resnet10t", "--student", "test_resnet",
                 "--epochs", "1"]) == 0
    capsys.readouterr()
    store = RunStore(runs_dir())
    student = next(r for r in store.list_ids() if r.startswith("normal-"))
    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "synthetic" in listing and "gain" in listing and "teacher+baseline" not in listing.split(student)[1][:60]
    assert main(["runs", "list", "--state", "finished", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and all(r["synthetic"] for r in rows)
    kd = next(r for r in rows if r["run_id"] == student)
    assert kd["baseline_run_id"].startswith("ce-test_resnet-") and kd["gain"] is not None
    assert main(["runs", "show", student]) == 0
    shown = capsys.readouterr().out
    assert f"data: {SMALL_SYNTH}" in shown and "SYNTHETIC" in shown and "settings: " in shown
    assert "teacher: ce-resnet10t-" in shown and "baseline: ce-test_resnet-" in shown and "gain" in shown


def test_queue_names_every_run_it_queued_and_retry_only_asks_for_a_worker_when_none_runs(capsys, monkeypatch):
    assert main(["train", *FAST, "--strategy", "normal", "--teacher", "resnet10t", "--student", "test_resnet",
                 "--queue", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "queued 3 run(s)" in out and "ce-resnet10t" in out and "ce-test_resnet" in out and "normal-" in out
    assert main(["train", *FAST, "--strategy", "normal", "--teacher", "resnet10t", "--student", "test_resnet",
                 "--queue"]) == 0
    assert "training teacher" not in capsys.readouterr().err  # it only queues
    store = RunStore(runs_dir())
    rid = store.list_ids()[0]
    store.request_stop(rid)
    monkeypatch.setattr(RunStore, "live_workers", lambda self: [{"pid": 1}])
    assert main(["runs", "retry", rid]) == 0
    assert "start one" not in capsys.readouterr().out


def test_table_prints_to_the_terminal_without_out(capsys):
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["table"]) == 0
    assert "| model" in capsys.readouterr().out


def test_the_data_folder_lives_under_kdstudy_home(monkeypatch, tmp_path):
    from kdengine.paths import data_dir

    monkeypatch.delenv("KDSTUDY_DATA")
    monkeypatch.setenv("KDSTUDY_HOME", str(tmp_path / "home"))
    assert data_dir() == (tmp_path / "home" / "data").resolve()
    assert Path(os.getcwd()) / "data" != data_dir()
