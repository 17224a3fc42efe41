"""What a new user tripped over, round three (issue 38): each defect reproduced, each failed before its fix."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from kdengine.cli import main
from kdengine.paths import runs_dir
from tests.conftest import make_png_folder


def broken_folder(root: Path) -> Path:
    """The issue's data in small: grey PNGs in 3 classes, 3 broken files and one odd-sized RGB image."""
    make_png_folder(root, per_class=14, side=40)
    for cls in ("a", "b", "c"):
        (root / cls / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    rgb = np.random.default_rng(5).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "a" / "odd.png")
    return root


def test_data_check_counts_groups_of_readable_images_and_says_what_it_saw(tmp_path, capsys):
    data = broken_folder(tmp_path / "imgs")
    args = ["data", "check", f"folder:{data}", "--skip-bad", "--image-size", "32"]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    splits = summary["splits"]
    assert sum(s["images"] for s in splits.values()) == 3 * 14 + 1  # the broken ones are not images training uses
    for split in splits.values():  # a folder's every image is its own group: the groups are the readable images
        assert split["groups"] == split["images"]
    assert len(summary["skipped"]) == 3
    assert summary["seen"]["colour"] == 1 and summary["seen"]["sizes"] == {"40x40": 42, "50x30": 1}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "images read: 42 grey and 1 RGB (made grey: --color rgb keeps colour); sizes 40×40 (42) and 50×30 (1)" \
        in out


def _failed_on_bad_images(tmp_path):
    """The issue's store after F5 on a folder with broken images: the teacher and the baseline failed on them, the
    student waits for its teacher."""
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, baseline_of, build_specs
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue

    data = broken_folder(tmp_path / "imgs")
    store = RunStore(runs_dir())
    spec = build_specs("normal", "test_resnet", ["resnet10t"], DataConfig(source=f"folder:{data}", image_size=32),
                       TrainConfig(epochs=1), KDConfig(), 0)
    enqueue(store, spec, device="cpu")
    enqueue(store, baseline_of(spec), device="cpu")
    why = f"corrupt or unreadable image: {data}/a/broken.png (use --skip-bad to skip the 3 unreadable image(s))"
    for rid in (spec.teacher.run_id, baseline_of(spec).run_id):
        store.claim(rid, "worker")
        store.finish(rid, "failed", why)
    return store, spec


def test_doctor_names_a_student_waiting_on_a_failed_teacher_and_retry_can_skip_the_bad_images(tmp_path, capsys):
    store, spec = _failed_on_bad_images(tmp_path)
    teacher = spec.teacher.run_id
    assert main(["runs", "doctor"]) == 0
    out = capsys.readouterr().out
    assert "the store is healthy" not in out
    assert f"{spec.run_id}  waits for its teacher {teacher}, which failed" in out
    assert f"kdengine runs retry {teacher}" in out
    # a retry as it is would fail again: refused, with the way out
    assert main(["runs", "retry", teacher]) == 2
    assert "fails again" in capsys.readouterr().err and store.read_status(teacher).state == "failed"
    assert main(["runs", "retry", teacher, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    twin = next(r for r in store.list_ids() if r.startswith("ce-resnet10t") and r != teacher)
    student = next(r for r in store.list_ids() if r.startswith("normal-") and r != spec.run_id)
    assert f"queued {twin} in its place" in out and f"its student {spec.run_id} moved to {student}" in out
    assert store.load_spec(twin).data.skip_bad and store.read_status(twin).state == "queued"
    assert store.load_spec(student).teachers[0].run_id == twin and store.read_status(student).state == "queued"
    assert store.read_status(spec.run_id).state == "stopped"  # it no longer waits for ever
    assert main(["runs", "doctor"]) == 0
    assert "waits for its teacher" not in capsys.readouterr().out
