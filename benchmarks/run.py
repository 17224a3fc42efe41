"""Benchmarks: each one measures a ratio against a reference measured in the same run, and says where.

    python -m benchmarks.run [--quick] [--device auto|cpu|cuda] [--out results.json]

1. cache:    one pass over the images from the decoded memmap cache vs decoding the PNGs (what an
             epoch costs without the cache).
2. startup:  kdtui's time to its first screen vs a bare Textual app's (the TUI never imports torch).
3. peers:    one KD epoch, kdstudy vs timm's LogitDistillationTask and torchdistill's KDLoss (benchmarks/kd.py).
4. sharing:  a 1-teacher x 3-student grid with shared teacher outputs vs without; identical weights.
5. tui:      a key press with a hundred runs, some live, vs a bare Textual app (benchmarks/tui.py).
6. dicom:    the first decode of 1,000 DICOMs vs 1,000 PNGs of the same size (a one-off cost).
7. memos:    a study (the demo's normal-KD trio and its shift evaluation) with the process memos vs without
             ($KDSTUDY_MEMO_MB=0); identical weights and shift cells (benchmarks/kd.py).
8. methods:  each distillation method's training step, kdstudy's against torchdistill's implementation of the same
             method fed the same batches (benchmarks/methods.py)

GPU figures (per architecture, the step's breakdown, packing through ``kdengine worker``, the thesis grid):
``make bench-gpu`` (benchmarks/gpu.py).
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


def bench_dicom(n: int) -> dict:
    """The first decode of ``n`` 16-bit DICOMs (windowed) against ``n`` 8-bit PNGs of the same size into the
    decoded cache (a one-off cost: later epochs and runs read the cache)."""
    import numpy as np
    from PIL import Image

    from kdengine.data.cache import build_or_load
    from kdengine.data.config import DataConfig, open_source
    from tests.dicom_helpers import write_dicom

    side = 256
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(n):
            img = rng.integers(0, 4095, (side, side)).astype(np.uint16)
            cls = f"c{i % 4}"
            write_dicom(Path(tmp) / "dcm" / cls / f"{i}.dcm", img, bits=12, window=(2048, 4096),
                        patient_id=f"P{i}")
            (Path(tmp) / "png" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray((img >> 4).astype(np.uint8)).save(Path(tmp) / "png" / cls / f"{i}.png")
        os.environ["KDSTUDY_CACHE"] = str(Path(tmp) / "cache")
        times = {}
        try:
            for kind in ("png", "dcm"):
                src = open_source(DataConfig(source=f"folder:{Path(tmp) / kind}"))
                t0 = time.perf_counter()
                build_or_load(src, 224)
                times[kind] = time.perf_counter() - t0
        finally:
            os.environ.pop("KDSTUDY_CACHE")
    return {"images": n, "size": f"{side}x{side} -> 224 px", "png_first_decode_s": times["png"],
            "dicom_first_decode_s": times["dcm"], "dicom_over_png": times["dcm"] / times["png"],
            "dicom_images_per_s": n / times["dcm"]}


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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="write every figure, with the machine and the date, as JSON")
    args = p.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    quick = args.quick
    results = {"machine": machine(device), "date": time.strftime("%Y-%m-%d")}
    results["cache"] = bench_cache(100 if quick else 400, 2 if quick else 3)
    print(f"cache:   {results['cache']['speedup']:.1f}x faster than decoding PNGs "
          f"({results['cache']['decode_pass_s']:.3f}s vs {results['cache']['cache_pass_s']:.3f}s per pass)")
    results["dicom"] = bench_dicom(200 if quick else 1000)
    d = results["dicom"]
    print(f"dicom:   first decode of {d['images']} DICOMs {d['dicom_over_png']:.2f}x the time of as many PNGs "
          f"({d['dicom_first_decode_s']:.1f}s vs {d['png_first_decode_s']:.1f}s; later passes read the cache)")
    results["startup"] = bench_startup(2 if quick else 3)
    s = results["startup"]
    print(f"startup: kdtui first screen {s['kdtui_s']:.2f}s vs bare Textual {s['bare_textual_s']:.2f}s "
          f"({s['ratio']:.2f}x); torch imported: {s['torch_imported']}")
    from .kd import bench_memos, bench_peers, bench_sharing
    from .tui import bench_tui_latency

    results["tui"] = bench_tui_latency(30 if quick else 60)
    t = results["tui"]
    print(f"tui:     a key press answers in {t['p50_ms']:.0f} ms (p50; p95 {t['p95_ms']:.0f} ms) with {t['runs']} runs, "
          f"{t['live_runs']} live; a bare Textual app {t['bare_textual_p50_ms']:.0f} ms in the same harness")

    size = 64 if device == "cpu" else 224
    results["peers"] = bench_peers(device, images=350 if quick else 1400, size=size, repeats=2 if quick else 3)
    pe = results["peers"]
    print(f"peers:   kdstudy {pe['kdstudy']['images_per_s']:.0f} img/s; "
          f"{pe['timm']['ratio']:.2f}x timm's LogitDistillationTask ({pe['timm']['images_per_s']:.0f} img/s), "
          f"{pe['torchdistill']['ratio']:.2f}x torchdistill's KDLoss ({pe['torchdistill']['images_per_s']:.0f} img/s)")
    results["sharing"] = bench_sharing(device, images=350 if quick else 1400, size=size, epochs=1 if quick else 2)
    sh = results["sharing"]
    print(f"sharing: 1 teacher x 3 students {sh['speedup']:.2f}x faster with shared teacher outputs "
          f"({sh['without_s']:.1f}s vs {sh['with_s']:.1f}s); identical best weights: {sh['identical']}")
    results["memos"] = bench_memos(device, images=700 if quick else 1400, epochs=2 if quick else 3)
    me = results["memos"]
    print(f"memos:   a study of {me['runs']} runs and its shift evaluation {me['speedup']:.2f}x faster with the "
          f"process memos ({me['off_s']:.1f}s vs {me['on_s']:.1f}s); identical weights and shift cells: "
          f"{me['identical']}")
    from .methods import bench_methods

    results["methods"] = bench_methods(device, images=350 if quick else 700, size=32 if quick else 64,
                                       repeats=2 if quick else 3)
    for name, m in results["methods"]["methods"].items():
        print(f"methods: {name:7} kdstudy {m['kdstudy_ms_per_step']:6.1f} ms/step, {m['reference']} "
              f"{m['torchdistill_ms_per_step']:6.1f} ms/step: {m['ratio']:.2f}x")
    print("gpu:     make bench-gpu (benchmarks/gpu.py) measures the GPU paths")
    print(json.dumps(results["machine"]))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
