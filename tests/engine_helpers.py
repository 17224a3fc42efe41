"""Helpers for engine tests: tiny, fast CLI training calls."""
from __future__ import annotations

import json

from kdengine.cli import main
from tests.conftest import SMALL_SYNTH

FAST = ["--data", SMALL_SYNTH, "--image-size", "32", "--epochs", "2", "--batch-size", "32", "--quiet", "--device", "cpu"]


def train(capsys, *args, expect=0):
    code = main(["train", *FAST, "--json", *args])
    out, err = capsys.readouterr()
    assert code == expect, err
    return (json.loads(out) if code == 0 else None), err
