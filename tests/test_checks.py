"""api.Store.check: the one set of checks before queueing, for the CLI and kdtui alike; what needs torch runs in a child
process where the caller has none (kdtui), so the TUI never imports it (issue 25's launch pipeline)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kdengine import api
from kdengine.data.config import DataConfig
from kdengine.errors import UsageError
from kdengine.runspec import KDConfig, TrainConfig, build_specs


def _spec(student="test_resnet", size=32, **train):
    return build_specs("normal", student, ["resnet10t"], DataConfig(source="synthetic", image_size=size),
                       TrainConfig(**train), KDConfig(), 0)


def test_known_models_need_no_child(monkeypatch):
    def no_child(*a, **k):
        raise AssertionError("a child process for specs of known models")

    monkeypatch.setattr(subprocess, "run", no_child)
    api.Store.check([_spec()], data=False, isolate=True)


def test_a_mistyped_name_is_refused_at_once_without_a_child(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("child")))
    with pytest.raises(UsageError, match="resnet1"):
        api.Store.check([_spec(student="resnet1")], data=False, isolate=True)


def test_what_needs_torch_runs_in_a_child_and_comes_back_as_one_line():
    """A timm model outside the known architectures, at an image size it cannot take: proved by timm in a child
    process, refused here in one line, exactly as the CLI's in-process check refuses it."""
    spec = _spec(student="resnet26", size=8)
    with pytest.raises(UsageError) as child:
        api.Store.check([spec], data=False, isolate=True)
    with pytest.raises(UsageError) as here:
        api.Store.check([spec], data=False, isolate=False)
    assert str(child.value) == str(here.value) and "\n" not in str(child.value)


def test_the_child_entry_refuses_garbage_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "kdengine.preflight"], input="{not json", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "JSON list of run specs" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "kdengine.preflight"], input=json.dumps([_spec().to_dict()]),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stderr == ""


def test_the_preflight_subcommand_is_gone(capsys):
    from kdengine.cli import main

    assert main(["preflight"]) == 2
    assert "invalid choice: 'preflight'" in capsys.readouterr().err
