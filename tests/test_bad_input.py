"""The bad-input corpus: what a careless or hostile user can bring, through the real CLI entry point.

Every case must end in exactly one line on stderr that names the problem, exit code 2, no traceback, and
nothing half-written: no temp file anywhere, and no run queued for input that could be checked first.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from tests.conftest import SMALL_SYNTH

BASE = ["--data", SMALL_SYNTH, "--image-size", "32", "--epochs", "1", "--quiet", "--device", "cpu"]
TRAIN = ["train", *BASE, "--strategy", "baseline", "--student", "test_resnet"]
KD = ["train", *BASE, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet"]


# -- hostile files -------------------------------------------------------------------------------------------------
def png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid PNG header (IHDR) that claims a size, followed by no real image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def folder_with(tmp: Path, bad_name: str, make_bad) -> Path:
    """A three-class folder tree of valid PNGs, plus one bad file in class 'a'."""
    from tests.conftest import make_png_folder

    root = make_png_folder(tmp / "imgs")
    make_bad(root / "a" / bad_name)
    return root


def npz_with(tmp: Path, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 9), ("test", 9)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(-1, 1)
    for k, v in override.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    path = tmp / "bad.npz"
    np.savez(path, **arrays)
    return path


def mura_with_bad_csv(tmp: Path, content: bytes, name: str = "train_image_paths.csv") -> Path:
    from tests.conftest import make_mura_tree

    root = make_mura_tree(tmp / "mura", patients_per_part=2, corrupt=False)
    (root / "MURA-v1.1" / name).write_bytes(content)
    return root


def study_file(tmp: Path, text: str | bytes) -> Path:
    path = tmp / "s.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


EXP = '[[experiments]]\nstrategy="baseline"\nstudents=["test_resnet"]\n'

# (id, argv builder taking tmp_path, a fragment the message must hold)
CASES = [
    # -- options: numbers out of range, not numbers, NaN and infinities --------------------------------------
    ("seed-negative", lambda t: [*TRAIN, "--seed", "-1"], "seed must lie in"),
    ("seed-2**64", lambda t: [*TRAIN, "--seed", str(2**64)], "seed must lie in"),
    ("seed-text", lambda t: [*TRAIN, "--seed", "abc"], "seed must be a whole number"),
    ("loader-workers-negative", lambda t: [*TRAIN, "--loader-workers", "-1"], "--loader-workers must lie in"),
    ("momentum-negative", lambda t: [*TRAIN, "--momentum", "-0.1"], "must lie in [0, 1]"),
    ("step-size-0", lambda t: [*TRAIN, "--step-size", "0"], "must be >= 1"),
    ("gamma-negative", lambda t: [*TRAIN, "--gamma", "-0.5"], "must lie in (0, 1]"),
    ("lr-nan", lambda t: [*TRAIN, "--lr", "nan"], "finite"),
    ("lr-inf", lambda t: [*TRAIN, "--lr", "inf"], "finite"),
    ("lr-negative", lambda t: [*TRAIN, "--lr", "-1"], "must lie in (0, 10]"),
    ("lr-zero", lambda t: [*TRAIN, "--lr", "0"], "must lie in (0, 10]"),
    ("lr-text", lambda t: [*TRAIN, "--lr", "fast"], "must be number"),
    ("temperature-nan", lambda t: [*KD, "--temperature", "nan"], "finite"),
    ("temperature-inf", lambda t: [*KD, "-T", "inf"], "finite"),
    ("temperature-zero", lambda t: [*KD, "--temperature", "0"], "must lie in (0, 1000]"),
    ("weight-decay-nan", lambda t: [*TRAIN, "--weight-decay", "nan"], "finite"),
    ("weight-decay-negative", lambda t: [*TRAIN, "--weight-decay", "-1"], "must lie in [0, 1]"),
    ("alpha-above-1", lambda t: [*KD, "--alpha", "1.5"], "must lie in [0, 1]"),
    ("alpha-negative", lambda t: [*KD, "--alpha", "-0.1"], "must lie in [0, 1]"),
    ("cap-train-negative", lambda t: [*TRAIN, "--cap-train", "-5"], "must be >= 1"),
    ("cap-test-zero", lambda t: [*TRAIN, "--cap-test", "0"], "must be >= 1"),
    ("epochs-zero", lambda t: [*TRAIN, "--epochs", "0"], "must lie in [1, 100000]"),
    ("epochs-float", lambda t: [*TRAIN, "--epochs", "1e9"], "must be integer"),
    ("batch-zero", lambda t: [*TRAIN, "--batch-size", "0"], "must lie in [1, 65536]"),
    ("batch-negative", lambda t: [*TRAIN, "--batch-size", "-3"], "must lie in [1, 65536]"),
    ("image-size-4", lambda t: [*TRAIN, "--image-size", "4"], "must lie in [8, 4096]"),
    ("image-size-huge", lambda t: [*TRAIN, "--image-size", "100000"], "must lie in [8, 4096]"),
    ("image-size-too-small-for-model", lambda t: ["train", *BASE, "--strategy", "baseline", "--student", "resnet18",
                                                  "--image-size", "16"], "too small for 'resnet18'"),
    ("val-fraction-zero", lambda t: [*TRAIN, "--val-fraction", "0"], "must lie in (0, 0.9]"),
    ("val-fraction-1.5", lambda t: [*TRAIN, "--val-fraction", "1.5"], "must lie in (0, 0.9]"),
    ("test-fraction-nan", lambda t: [*TRAIN, "--test-fraction", "nan"], "finite"),
    ("split-seed-negative", lambda t: [*TRAIN, "--split-seed", "-1"], "must lie in [0, 4294967295]"),
    ("grad-clip-negative", lambda t: [*TRAIN, "--grad-clip", "-1"], "must be >= 0"),
    ("patience-negative", lambda t: [*TRAIN, "--patience", "-2"], "must be >= 0"),
    ("defect-acc-zero", lambda t: ["train", *BASE, "--strategy", "defective", "--teacher", "test_resnet",
                                   "--student", "test_resnet", "--defect-acc", "0"], "must lie in (0, 1]"),
    ("defect-acc-2", lambda t: [*KD, "--defect-acc", "2"], "must lie in (0, 1]"),
    ("tf-a-zero", lambda t: [*TRAIN, "--tf-a", "0"], "must lie in (0, 1]"),
    ("tf-temperature-zero", lambda t: [*TRAIN, "--tf-temperature", "0"], "must lie in (0, 1000]"),
    ("kl-reduction-sum", lambda t: [*KD, "--kl-reduction", "sum"], "must be one of batchmean, mean"),
    ("optimizer-lbfgs", lambda t: [*TRAIN, "--optimizer", "lbfgs"], "must be one of adam, adamw, sgd"),
    ("schedule-poly", lambda t: [*TRAIN, "--schedule", "poly"], "must be one of constant, cosine, step"),
    ("task-on-synthetic", lambda t: [*TRAIN, "--task", "abnormality"], "applies to MURA only"),
    ("unknown-flag", lambda t: [*TRAIN, "--bogus"], "unrecognized arguments"),
    ("flag-without-value", lambda t: [*TRAIN, "--epochs"], "expected one argument"),
    ("device-tpu", lambda t: [*TRAIN, "--device", "tpu"], "unknown device 'tpu'"),
    ("device-cuda-absent", lambda t: [*TRAIN, "--device", "cuda"], "no CUDA device"),
    ("tracker-unknown", lambda t: [*TRAIN, "--tracker", "wandb"], "invalid choice"),
    # -- strategies, models and teachers -------------------------------------------------------------------------
    ("strategy-unknown", lambda t: ["train", *BASE, "--strategy", "bogus", "--student", "test_resnet"],
     "invalid choice"),
    ("student-empty", lambda t: ["train", *BASE, "--strategy", "baseline", "--student", ""], "model must be"),
    ("student-typo", lambda t: ["train", *BASE, "--strategy", "baseline", "--student", "resnet181"],
     "did you mean resnet18"),
    ("teacher-unknown", lambda t: ["train", *BASE, "--strategy", "normal", "--teacher", "nosuchnet",
                                   "--student", "test_resnet"], "unknown model 'nosuchnet'"),
    ("reverse-without-teacher", lambda t: ["train", *BASE, "--strategy", "reverse", "--student", "test_resnet"],
     "needs --teacher"),
    ("tf-reg-with-teacher", lambda t: [*TRAIN[:-4], "--strategy", "tf-reg", "--teacher", "test_resnet",
                                       "--student", "test_resnet"], "takes no --teacher"),
    ("normal-two-teachers", lambda t: [*KD, "--teacher", "resnet18"], "takes one teacher"),
    ("ensemble-one-teacher", lambda t: ["train", *BASE, "--strategy", "ensemble", "--teacher", "test_resnet",
                                        "--student", "test_resnet"], "at least 2 teachers"),
    ("teacher-set-zero-epochs", lambda t: [*KD, "--teacher-set", "epochs=0"], "epochs must lie in"),
    ("teacher-set-unknown-key", lambda t: [*KD, "--teacher-set", "colour=red"], "unknown key 'train.colour'"),
    ("teacher-set-no-equals", lambda t: [*KD, "--teacher-set", "epochs"], "expected key=value"),
    # -- data sources ------------------------------------------------------------------------------------------------
    ("data-missing-path", lambda t: [*TRAIN, "--data", "/nope"], "no such file or directory"),
    ("data-mura-missing", lambda t: [*TRAIN, "--data", "mura:/nope"], "no such file or directory"),
    ("data-npz-missing", lambda t: [*TRAIN, "--data", "npz:/nope.npz"], "no such file or directory"),
    ("data-empty", lambda t: [*TRAIN, "--data", ""], "empty data source"),
    ("data-synthetic-few", lambda t: [*TRAIN, "--data", "synthetic:images=5"], "images must lie in"),
    ("data-synthetic-many", lambda t: [*TRAIN, "--data", "synthetic:images=100000000"], "images must lie in"),
    ("data-synthetic-float", lambda t: [*TRAIN, "--data", "synthetic:images=1e12"], "must be a number"),
    ("data-synthetic-nan", lambda t: [*TRAIN, "--data", "synthetic:difficulty=nan"], "difficulty must lie in"),
    ("data-synthetic-unknown", lambda t: [*TRAIN, "--data", "synthetic:bogus=1"], "bad option 'bogus=1'"),
    ("data-synthetic-seed", lambda t: [*TRAIN, "--data", "synthetic:seed=-1"], "seed must lie in"),
    ("data-text-file", lambda t: [*TRAIN, "--data", str(study_file(t, "x"))], "is a file but not an .npz"),
    ("data-nul-in-path", lambda t: [*TRAIN, "--data", "folder:/tmp/a\x00b"], "NUL"),
    ("check-missing", lambda t: ["data", "check", "/nope"], "no such file or directory"),
    ("check-no-classes", lambda t: ["data", "check", str((t / "empty").mkdir() or t / "empty")],
     "no class sub-folders"),
    ("check-png-bomb", lambda t: ["data", "check", str(folder_with(t, "bomb.png",
                                                                   lambda p: png_claiming(p, 20000, 20000)))],
     "image too large"),
    ("check-png-zero-bytes", lambda t: ["data", "check", str(folder_with(t, "empty.png", lambda p: p.write_bytes(b"")))],
     "corrupt or unreadable image"),
    ("check-png-truncated", lambda t: ["data", "check", str(folder_with(
        t, "cut.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")))], "corrupt or unreadable image"),
    ("check-png-garbage", lambda t: ["data", "check", str(folder_with(t, "junk.png",
                                                                     lambda p: p.write_bytes(os.urandom(4000))))],
     "corrupt or unreadable image"),
    ("check-image-size-2", lambda t: ["data", "check", SMALL_SYNTH, "--image-size", "2"], "must lie in [8, 4096]"),
    ("npz-object-array", lambda t: ["data", "check", str(npz_with(t, train_labels=np.array([{"a": 1}] * 30,
                                                                                             dtype=object)))],
     "object array"),
    ("npz-string-labels", lambda t: ["data", "check", str(npz_with(t, train_labels=np.array(["a", "b", "c"] * 10)))],
     "labels must be whole class numbers"),
    ("npz-negative-labels", lambda t: ["data", "check", str(npz_with(t, train_labels=-(np.arange(30) % 3) - 1))],
     "found -3"),
    ("npz-fraction-labels", lambda t: ["data", "check", str(npz_with(t, train_labels=np.linspace(0, 2, 30)))],
     "labels must be whole class numbers"),
    ("npz-nan-images", lambda t: ["data", "check", str(npz_with(t, train_images=np.full((30, 28, 28), np.nan)))],
     "NaN or infinite"),
    ("npz-zero-size-images", lambda t: ["data", "check", str(npz_with(t, train_images=np.zeros((30, 0, 0),
                                                                                                 np.uint8)))],
     "images are empty"),
    ("npz-string-images", lambda t: ["data", "check", str(npz_with(t, train_images=np.array([["x"] * 28] * 30)))],
     "images must be numbers"),
    ("npz-5d-images", lambda t: ["data", "check", str(npz_with(t, train_images=np.zeros((30, 2, 2, 2, 2),
                                                                                          np.uint8)))],
     "must be (N, H, W)"),
    ("npz-missing-test", lambda t: ["data", "check", str(npz_with(t, test_images=None, test_labels=None))],
     "has no array 'test_images'"),
    ("npz-count-mismatch", lambda t: ["data", "check", str(npz_with(t, train_labels=np.zeros(7, int)))],
     "but train_labels has 7"),
    ("npz-multilabel", lambda t: ["data", "check", str(npz_with(t, train_labels=np.zeros((30, 4), int)))],
     "the splits' labels have different numbers of columns"),  # train multi-label, test one class: refused
    ("npz-garbage", lambda t: ["data", "check", f"npz:{study_file(t, b'PK junk')}"], "not an .npz archive"),
    # numpy's own message for a non-zip file advises allow_pickle: kdstudy never passes that advice on
    ("npz-text-file", lambda t: ["data", "check", f"npz:{study_file(t, b'hello, not an archive')}"],
     "not an .npz archive"),
    ("npz-one-array", lambda t: ["data", "check", f"npz:{(np.save(t / 'one.npy', np.zeros(3)), t / 'one.npy')[1]}"],
     "not an .npz archive"),
    ("mura-csv-not-utf8", lambda t: ["data", "check", "mura:" + str(mura_with_bad_csv(t, bytes(range(128, 256))))],
     "not UTF-8"),
    ("mura-csv-nul", lambda t: ["data", "check", "mura:" + str(mura_with_bad_csv(t, b"MURA-v1.1/a\x00b.png"))],
     "lists none of the images"),
    ("mura-labels-malformed", lambda t: ["data", "check", f"mura:{mura_with_bad_csv(t, b'x,notanumber', 'train_labeled_studies.csv')}"],
     "malformed row"),
    # -- local weights files --------------------------------------------------------------------------------------
    ("weights-missing", lambda t: [*TRAIN, "--pretrained-from", "/nope.safetensors"], "no such file or directory"),
    ("weights-not-safetensors", lambda t: [*TRAIN, "--pretrained-from", str(study_file(t, "hello") .rename(
        t / "fake.safetensors"))], "not a valid safetensors file"),
    ("weights-empty", lambda t: [*TRAIN, "--pretrained-from", str((t / "e.safetensors").write_bytes(b"") or
                                                                  t / "e.safetensors")], "the file is empty"),
    ("weights-not-pth", lambda t: [*TRAIN, "--pretrained-from", str((t / "w.pth").write_text("hello") and
                                                                    t / "w.pth")], "not a PyTorch checkpoint"),
    ("weights-folder-without", lambda t: [*TRAIN, "--pretrained-from", str((t / "wdir").mkdir() or t / "wdir")],
     "no weights for 'test_resnet'"),
    # -- places --------------------------------------------------------------------------------------------------------
    ("runs-dir-is-a-file", lambda t: [*TRAIN, "--runs-dir", str(study_file(t, "x"))], "is a file, not a folder"),
    ("runs-dir-under-a-file", lambda t: [*TRAIN, "--runs-dir", str(study_file(t, "x") / "runs")],
     "is a file"),
    ("runs-list-dir-is-a-file", lambda t: ["runs", "list", "--runs-dir", str(study_file(t, "x"))], "is a file"),
    ("table-out-is-a-file", lambda t: ["table", "--runs-dir", str(finished_store(t)), "--out",
                                       str(study_file(t, "x"))], "is a file, not a folder"),
    ("table-no-runs", lambda t: ["table", "--out", str(t / "o")], "no finished runs"),
    ("table-metric-unknown", lambda t: ["table", "--out", str(t / "o"), "--metric", "auc"], "invalid choice"),
    ("worker-runs-dir-file", lambda t: ["worker", "--once", "--runs-dir", str(study_file(t, "x"))], "is a file"),
    ("worker-idle-nan", lambda t: ["worker", "--once", "--idle-exit", "nan"], "--idle-exit must be"),
    ("worker-loader-negative", lambda t: ["worker", "--once", "--loader-workers", "-1"], "--loader-workers must"),
    # -- the run store's commands ------------------------------------------------------------------------------------
    ("show-unknown", lambda t: ["runs", "show", "nope"], "no run 'nope'"),
    ("stop-unknown", lambda t: ["runs", "stop", "nope"], "no run 'nope'"),
    ("retry-unknown", lambda t: ["runs", "retry", "nope"], "no run 'nope'"),
    ("retry-finished", lambda t: ["runs", "retry", "ce-resnet18", "--runs-dir", str(finished_store(t))], "is finished"),
    ("show-ambiguous", lambda t: ["runs", "show", "test_resnet", "--runs-dir", str(finished_store(t))],
     "matches 2 runs"),
    ("models-unknown", lambda t: ["models", "--check", "nosuchnet"], "unknown model"),
    # -- found by a new user (issue 18): each failed before its fix ----------------------------------------------------
    ("train-unusable-images", lambda t: ["train", "--data", str(text_pngs(t)), "--strategy", "baseline", "--student",
                                         "test_resnet", "--quiet", "--device", "cpu"], "corrupt or unreadable image"),
    ("train-unusable-with-skip-bad", lambda t: ["train", "--data", str(text_pngs(t)), "--skip-bad", "--strategy",
                                                "baseline", "--student", "test_resnet", "--quiet", "--device", "cpu"],
     "no usable train"),
    ("check-unusable-with-skip-bad", lambda t: ["data", "check", str(text_pngs(t)), "--skip-bad"], "no usable train"),
    ("train-pretrained-offline", lambda t: ["train", "--data", SMALL_SYNTH, "--strategy", "baseline", "--student",
                                            "resnet10t", "--pretrained", "--quiet", "--device", "cpu"],
     "pass --pretrained-from"),
    ("export-mlflow-bogus-uri", lambda t: ["export", "mlflow", "--uri", "bogus://x", "--runs-dir",
                                           str(finished_store(t))], "MLflow cannot use bogus://x"),
    ("models-classes-zero", lambda t: ["models", "--classes", "0"], "--classes must"),
    # -- study files -----------------------------------------------------------------------------------------------------
    ("study-not-utf8", lambda t: ["study", "run", str(study_file(t, b"name = \xff\xfe")), "--dry-run"], "not UTF-8"),
    ("study-deeply-nested", lambda t: ["study", "run", str(study_file(t, "x = " + "[" * 500 + "]" * 500 + "\n"
                                                                      + EXP)), "--dry-run"], "nested"),
    ("study-seeds-negative", lambda t: ["study", "run", str(study_file(t, "seeds = [-1]\n" + EXP)), "--dry-run"],
     "'seeds' must lie in"),
    ("study-seeds-huge", lambda t: ["study", "run", str(study_file(t, f"seeds = [{2**40}]\n" + EXP)), "--dry-run"],
     "'seeds' must lie in"),
    ("study-seeds-empty", lambda t: ["study", "run", str(study_file(t, "seeds = []\n" + EXP)), "--dry-run"],
     "non-empty list"),
    ("study-seeds-repeat", lambda t: ["study", "run", str(study_file(t, "seeds = [1, 1]\n" + EXP)), "--dry-run"],
     "repeats a seed"),
    ("study-seeds-bool", lambda t: ["study", "run", str(study_file(t, "seeds = [true]\n" + EXP)), "--dry-run"],
     "list of integers"),
    ("study-is-a-folder", lambda t: ["study", "run", str(t), "--dry-run"], "is a folder"),
    ("study-missing", lambda t: ["study", "run", "/nope.toml", "--dry-run"], "no study file or preset"),
    ("study-unknown-key", lambda t: ["study", "run", str(study_file(t, "colour = 1\n" + EXP)), "--dry-run"],
     "unknown key 'colour'"),
    ("study-unknown-train-key", lambda t: ["study", "run", str(study_file(t, "[train]\nepoch = 3\n" + EXP)),
                                           "--dry-run"], "unknown key 'train.epoch'"),
    ("study-lr-text", lambda t: ["study", "run", str(study_file(t, '[train]\nlr = "fast"\n' + EXP)), "--dry-run"],
     "train.lr must be number"),
    ("study-lr-nan", lambda t: ["study", "run", str(study_file(t, "[train]\nlr = nan\n" + EXP)), "--dry-run"],
     "finite"),
    ("study-epochs-inf", lambda t: ["study", "run", str(study_file(t, "[train]\nepochs = inf\n" + EXP)),
                                    "--dry-run"], "train.epochs must be integer"),
    ("study-image-size-2", lambda t: ["study", "run", str(study_file(t, "[data]\nimage_size = 2\n" + EXP)),
                                      "--dry-run"], "data.image_size must lie in"),
    ("study-train-not-table", lambda t: ["study", "run", str(study_file(t, "train = 3\n" + EXP)), "--dry-run"],
     "'train' must be a table"),
    ("study-strategy-unknown", lambda t: ["study", "run", str(study_file(
        t, '[[experiments]]\nstrategy="bogus"\nstudents=["a"]\n')), "--dry-run"], "strategy' must be one of"),
    ("study-no-students", lambda t: ["study", "run", str(study_file(t, '[[experiments]]\nstrategy="baseline"\n')),
                                     "--dry-run"], "is empty"),
    ("study-students-not-list", lambda t: ["study", "run", str(study_file(
        t, '[[experiments]]\nstrategy="baseline"\nstudents="test_resnet"\n')), "--dry-run"], "list of model names"),
    ("study-model-unknown", lambda t: ["study", "run", str(study_file(
        t, '[[experiments]]\nstrategy="baseline"\nstudents=["nosuchnet"]\n')), "--dry-run"], "unknown model"),
    ("study-name-spaces", lambda t: ["study", "run", str(study_file(t, 'name = "my study"\n' + EXP)), "--dry-run"],
     "'name' may hold"),
    ("study-name-unicode", lambda t: ["study", "run", str(study_file(t, 'name = "étude"\n' + EXP)), "--dry-run"],
     "'name' may hold"),
    ("study-no-experiments", lambda t: ["study", "run", str(study_file(t, "seeds = [0]\n")), "--dry-run"],
     "at least one [[experiments]]"),
    ("study-teacher-train-zero", lambda t: ["study", "run", str(study_file(t, "[teacher_train]\nepochs = 0\n" + EXP)),
                                            "--dry-run"], "train.epochs must lie in"),
    ("study-huge-file", lambda t: ["study", "run", str(study_file(t, "#" * 2_000_000)), "--dry-run"],
     "over 1000 kB"),
    ("study-bad-toml", lambda t: ["study", "run", str(study_file(t, "this is = not toml [")), "--dry-run"],
     "not valid TOML"),
    ("study-set-no-equals", lambda t: ["study", "run", "demo", "--set", "seeds", "--dry-run"], "expected key=value"),
    ("study-set-through-a-value", lambda t: ["study", "run", "demo", "--set", "seeds.x=1", "--dry-run"],
     "'seeds' is not a table"),
    ("study-needs-data", lambda t: ["study", "run", "thesis-mura", "--dry-run"], "--data"),
    ("study-table-unknown", lambda t: ["study", "table", "nope", "--out", str(t / "o")], "no study 'nope'"),
    ("study-status-unknown", lambda t: ["study", "status", "nope"], "no study 'nope'"),
]


def text_pngs(tmp: Path) -> Path:
    """24 text files named *.png in classes a and b: nothing in it can be trained on."""
    root = tmp / "texts"
    for i in range(24):
        path = root / "ab"[i % 2] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not an image")
    return root


def finished_store(tmp: Path) -> Path:
    from tests.tui_helpers import fake_finished_store

    root = tmp / "finished"
    if not root.exists():
        fake_finished_store(root)
    return root


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, capsys, isolated_dirs):
    name, argv, fragment = case
    args = argv(tmp_path)
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert fragment in lines[0], lines[0]
    leftovers = [p for p in tmp_path.rglob("*.tmp")] + [p for p in isolated_dirs.rglob("*.tmp")]
    assert not leftovers, leftovers
    if args[0] in ("train", "study"):  # found before anything was queued
        assert not any(p.is_dir() for p in isolated_dirs.iterdir()), list(isolated_dirs.iterdir())


def test_the_corpus_is_broad():
    assert len(CASES) >= 127


def test_a_dangling_symlink_is_an_unreadable_image_not_skipped_in_silence(tmp_path, capsys):
    """Like a truncated PNG: an error naming it, or counted under --skip-bad (never dropped in silence)."""
    root = folder_with(tmp_path, "link.png", lambda p: p.symlink_to(tmp_path / "gone.png"))
    assert main(["data", "check", str(root)]) == 2
    err = capsys.readouterr().err
    assert "link.png" in err and "does not exist" in err and "--skip-bad" in err
    assert main(["data", "check", str(root), "--skip-bad", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any(s["path"].endswith("link.png") and "does not exist" in s["reason"] for s in summary["skipped"])
    assert sum(summary["splits"][s]["unreadable"] for s in ("train", "val", "test")) == 1
    assert sum(summary["splits"][s]["images"] for s in ("train", "val", "test")) == 30  # the usable ones
    assert main(["train", "--data", str(root), "--strategy", "baseline", "--student", "test_resnet", "--image-size",
                 "32", "--epochs", "1", "--quiet", "--device", "cpu"]) == 2
    assert "link.png" in capsys.readouterr().err and RunStore(runs_dir()).list_ids() == []  # nothing created


def test_a_bomb_is_skipped_with_skip_bad(tmp_path, capsys):
    root = folder_with(tmp_path, "bomb.png", lambda p: png_claiming(p, 20000, 20000))
    assert main(["data", "check", str(root), "--skip-bad", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any("image too large" in s["reason"] for s in summary["skipped"])


def run_cli(*args, user=None, env=None):
    cmd = [os.path.abspath(sys.executable), "-m", "kdengine", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
                          cwd="/")


def test_a_runs_dir_this_user_cannot_write():
    """A folder only its owner may write: as root, the command runs as 'nobody' (setpriv); otherwise chmod."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="kdstudy-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        runs = base / "locked"
        runs.mkdir()
        if os.geteuid() == 0:
            data = base / "data"
            data.mkdir()
            data.chmod(0o777)
            result = run_cli("train", *TRAIN[1:], "--runs-dir", str(runs), user=65534, env={"KDSTUDY_DATA": str(data)})
        else:
            runs.chmod(0o555)
            result = run_cli("train", *TRAIN[1:], "--runs-dir", str(runs))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "not writable by this user" in result.stderr
        assert list(runs.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("args, fragment", [
    (["--runs-dir", "{file}"], "is a file"),
    (["--theme", "no-such-theme"], "theme"),
])
def test_kdtui_bad_input(tmp_path, args, fragment):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cmd = [sys.executable, "-m", "kdtui.app", *[a.replace("{file}", str(blocker)) for a in args]]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and fragment in result.stderr and "Traceback" not in result.stderr


def test_kdtui_bad_flag_is_one_line_too(capsys):
    from kdtui.app import main as kdtui_main

    with pytest.raises(SystemExit) as exit_:
        kdtui_main(["--bogus"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
