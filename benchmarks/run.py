"""Benchmarks: each one measures a ratio against a reference measured in the same run, and says where.

    python -m benchmarks.run [--quick] [--device auto|cpu|cuda] [--out results.json]

1. cache:   one pass over the images from the decoded memmap cache vs decoding the PNGs (what an
            epoch costs without the cache).
2. startup: kdtui's time to its first screen vs a bare Textual app's (the TUI never imports torch).
3. kd-step: a distillation training step (student + frozen teacher forward) vs a plain cross-entropy
            step of the same student.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def machine(device: str) -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_cache(n: int, repeats: int) -> dict:
    import numpy as np
    from PIL import Image

    from kdengine.data.cache import build_or_load, letterbox
    from kdengine.data.files import decode_gray
    from kdengine.data.config import DataConfig, open_source

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        rng = np.random.default_rng(0)
        for i in range(n):
            cls = root / f"c{i % 4}"
            cls.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (384, 320), dtype=np.uint8)).save(cls / f"{i}.png")
        os.environ["KDSTUDY_CACHE"] = str(Path(tmp) / "cache")
        src = open_source(DataConfig(source=f"folder:{root}"))
        refs = src.all_refs()
        t_build = best_of(lambda: None, 1)
        t0 = time.perf_counter()
        cache = build_or_load(src, 128)
        t_build = time.perf_counter() - t0

        def from_png():
            for r in refs:
                letterbox(decode_gray(r), 128)

        def from_cache():
            for i in range(len(refs)):
                np.array(cache.images[i])

        png = best_of(from_png, repeats)
        cached = best_of(from_cache, repeats)
        os.environ.pop("KDSTUDY_CACHE")
    return {"images": n, "source": "384x320 PNG -> 128 px", "decode_pass_s": png, "cache_pass_s": cached,
            "cache_build_s": t_build, "speedup": png / cached}


STARTUP = """
import asyncio, sys, time
t0 = time.perf_counter()
{imports}
async def main():
    app = {app}
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0)
    print(time.perf_counter() - t0)
    print("torch" in sys.modules)
asyncio.run(main())
"""


def bench_startup(repeats: int) -> dict:
    def run(imports: str, app: str) -> tuple[float, bool]:
        code = STARTUP.format(imports=imports, app=app)
        best, torch_loaded = float("inf"), False
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ, "KDSTUDY_HOME": tempfile.mkdtemp()}).stdout.split()
            best, torch_loaded = min(best, float(out[0])), out[1] == "True"
        return best, torch_loaded

    bare, _ = run("from textual.app import App", "App()")
    tui, torch_loaded = run("from kdtui.app import KDStudyApp", "KDStudyApp(start_workers=False)")
    return {"bare_textual_s": bare, "kdtui_s": tui, "ratio": tui / bare, "torch_imported": torch_loaded}


def bench_kd_step(device: str, steps: int, size: int, batch: int) -> dict:
    import timm
    import torch

    from kdengine.data.loader import Normalizer
    from kdengine.runspec import KDConfig
    from kdengine.training.device import setup_device
    from kdengine.training.strategies import CrossEntropy, Hinton
    from kdengine.training.teacher import FrozenTeacher

    dev = setup_device(device)
    torch.manual_seed(0)
    student = timm.create_model("resnet18", num_classes=7, in_chans=1).to(dev.device)
    teacher = FrozenTeacher(timm.create_model("resnet34", num_classes=7, in_chans=1), Normalizer(1)).to(dev.device)
    norm = Normalizer(1, dev.channels_last).to(dev.device)
    if dev.channels_last:
        student = student.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(student.parameters(), 1e-3)
    x = torch.randint(0, 255, (batch, 1, size, size), dtype=torch.uint8, device=dev.device)
    y = torch.randint(0, 7, (batch,), device=dev.device)

    def step(strategy, teachers):
        with dev.autocast():
            t_logits = [t(x) for t in teachers]
            logits = student(norm(x))
        loss = sum(strategy.terms(logits, y, t_logits).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(strategy, teachers):
        for _ in range(3):
            step(strategy, teachers)
        if dev.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step(strategy, teachers)
        if dev.is_cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / steps

    ce = timed(CrossEntropy(None, 7), [])
    kd = timed(Hinton(KDConfig(), 7), [teacher])
    return {"student": "resnet18", "teacher": "resnet34", "image_size": size, "batch": batch,
            "ce_step_s": ce, "kd_step_s": kd, "kd_over_ce": kd / ce, "images_per_s_kd": batch / kd}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    quick = args.quick
    results = {"machine": machine(device)}
    results["cache"] = bench_cache(100 if quick else 400, 2 if quick else 3)
    print(f"cache:   {results['cache']['speedup']:.1f}x faster than decoding PNGs "
          f"({results['cache']['decode_pass_s']:.3f}s vs {results['cache']['cache_pass_s']:.3f}s per pass)")
    results["startup"] = bench_startup(2 if quick else 3)
    s = results["startup"]
    print(f"startup: kdtui first screen {s['kdtui_s']:.2f}s vs bare Textual {s['bare_textual_s']:.2f}s "
          f"({s['ratio']:.2f}x); torch imported: {s['torch_imported']}")
    size, batch = (64, 32) if device == "cpu" else (224, 64)
    results["kd_step"] = bench_kd_step(device, 5 if quick else 20, size, batch)
    k = results["kd_step"]
    print(f"kd-step: {k['kd_over_ce']:.2f}x the cost of a CE step ({k['kd_step_s'] * 1000:.1f} ms vs "
          f"{k['ce_step_s'] * 1000:.1f} ms, {k['images_per_s_kd']:.0f} img/s) on {device}")
    print(json.dumps(results["machine"]))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
