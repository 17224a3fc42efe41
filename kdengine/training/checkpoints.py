"""Checkpoints: best weights as safetensors (with the architecture in its metadata), and a
resumable ``last.pt`` (model, optimizer, scheduler, counters), always loaded with weights_only=True."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path

BEST, LAST = "best.safetensors", "last.pt"


def save_best(path_dir: Path, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    path = Path(path_dir) / BEST
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"kdstudy": json.dumps(meta)})
    return path


def load_best(path_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path_dir) / BEST
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("kdstudy", "{}"))
    return load_file(str(path)), meta


def save_last(path_dir: Path, state: dict[str, Any]) -> None:
    with atomic_path(Path(path_dir) / LAST) as tmp:
        torch.save(state, tmp)


def load_last(path_dir: Path) -> dict[str, Any] | None:
    path = Path(path_dir) / LAST
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
