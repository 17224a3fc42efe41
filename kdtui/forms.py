"""Launch-form logic without Textual: presets, parsing and validation into run specs."""
from __future__ import annotations

from dataclasses import dataclass

from kdengine.data.spec import DataConfig
from kdengine.errors import KDError, UsageError
from kdengine.models.catalog import APPROX_PARAMS, known_names
from kdengine.runspec import KDConfig, RunSpec, TrainConfig, build_specs

PRESETS = {
    "cpu-quick": {"epochs": "3", "batch_size": "32", "lr": "0.001", "optimizer": "adam", "image_size": "64",
                  "device": "cpu", "pretrained": False},
    # The thesis: Adam, lr 1e-4, batch 16, 20 epochs, 224 px, ImageNet-pretrained.
    "thesis": {"epochs": "20", "batch_size": "16", "lr": "0.0001", "optimizer": "adam", "image_size": "224",
               "device": "auto", "pretrained": True},
}

DEFAULTS = {"data": "synthetic", "teacher": "resnet18", "student": "test_resnet", "strategy": "normal",
            "alpha": "0.9", "temperature": "4", "defect_acc": "0.5", "seed": "0", **PRESETS["cpu-quick"]}


@dataclass
class FieldError(Exception):
    field: str
    message: str


def _num(values: dict, key: str, kind=float, label: str | None = None):
    raw = str(values.get(key, "")).strip()
    try:
        return kind(raw)
    except ValueError:
        raise FieldError(key, f"{label or key.replace('_', ' ')} must be {'a whole number' if kind is int else 'a number'}, got '{raw}'") from None


def spec_from_form(values: dict) -> RunSpec:
    """Build the run spec the form describes; raise FieldError naming the field at fault."""
    strategy = values["strategy"]
    teacher = str(values.get("teacher", "")).strip()
    student = str(values.get("student", "")).strip()
    if not student:
        raise FieldError("student", "choose a student model")
    teachers = [teacher] if teacher and strategy in ("normal", "reverse", "defective", "ensemble") else []
    if strategy == "ensemble":
        teachers = [t.strip() for t in teacher.split(",") if t.strip()]
    train = TrainConfig(epochs=_num(values, "epochs", int), batch_size=_num(values, "batch_size", int, "batch size"),
                        lr=_num(values, "lr", float, "learning rate"), optimizer=values["optimizer"],
                        image_size=_num(values, "image_size", int, "image size"))
    kd = KDConfig(alpha=_num(values, "alpha"), temperature=_num(values, "temperature"))
    try:
        return build_specs(strategy, student, teachers, DataConfig(spec=str(values["data"]).strip()).resolved(), train, kd,
                           _num(values, "seed", int), pretrained=bool(values.get("pretrained")),
                           defect_acc=_num(values, "defect_acc", float, "defect threshold"))
    except UsageError as exc:
        msg = str(exc)
        field = next((f for f in ("teacher", "alpha", "temperature", "epochs", "image_size", "batch_size", "lr")
                      if f.replace("_", " ") in msg or (f == "lr" and "learning rate" in msg)), "strategy")
        raise FieldError(field, msg) from None
    except KDError as exc:
        raise FieldError("data", str(exc)) from None


def model_note(name: str) -> str:
    """A one-line note on a model name, from the catalog (no timm import)."""
    name = name.strip()
    if not name:
        return ""
    if name in APPROX_PARAMS:
        return f"{APPROX_PARAMS[name] / 1e6:.1f}M parameters"
    return "not in the catalog: checking with timm…"


def reverse_warning(values: dict) -> str:
    t, s = str(values.get("teacher", "")).strip(), str(values.get("student", "")).strip()
    if values.get("strategy") == "reverse" and t in APPROX_PARAMS and s in APPROX_PARAMS and APPROX_PARAMS[t] >= APPROX_PARAMS[s]:
        return f"reverse KD expects a smaller teacher: {t} is not smaller than {s}"
    return ""


def model_suggestions() -> list[str]:
    return known_names()
