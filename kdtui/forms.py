"""Launch-form logic without Textual: its fields (generated from the config dataclasses), presets, and
parsing into a run spec. An error names the field at fault (``KDError.field``)."""
from __future__ import annotations

import re
from typing import Any

from kdengine import api
from kdengine import strategy_catalog as catalog
from kdengine.api import Choices
from kdengine.errors import DataError, KDError, UsageError
from kdengine.models.architectures import APPROX_PARAMS, known_names
from kdengine.options import OptionInfo, form_fields, parse_text, to_text


def thesis_settings() -> dict[str, Any]:
    """The thesis's training settings, read from the thesis-mura preset (their one home)."""
    raw = api.Store.study_file("thesis-mura")
    train = {k: raw["train"][k] for k in ("epochs", "batch_size", "lr", "optimizer", "pretrained")}
    return {**train, "image_size": raw["data"]["image_size"], "device": "auto"}


def describe_settings(values: dict[str, Any]) -> str:
    """'Adam, lr 0.0001, batch 16, 20 epochs, 224 px, pretrained': a preset in a line."""
    return (f"{values['optimizer'].capitalize()}, lr {values['lr']:g}, batch {values['batch_size']}, "
            f"{values['epochs']} epochs, {values['image_size']} px" + (", pretrained" if values.get("pretrained") else ""))


# Presets fill options by name (typed values, as in a study file).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-quick": {"epochs": 3, "batch_size": 32, "lr": 0.001, "optimizer": "adam", "image_size": 64,
                  "device": "cpu", "pretrained": False},
    "thesis": thesis_settings(),
}

# The form's own fields, beside the options: what to train, where, and with what.
EXTRA_DEFAULTS = {"strategy": "normal", "teacher": "resnet18", "student": "test_resnet", "seed": "0",
                  "device": "auto", "baseline": True, "teacher_set": ""}


def option_fields() -> list[OptionInfo]:
    """One form field per option of the data, training and KD configs (read at call time: a new option is a
    new field, with no edit here)."""
    return form_fields(Choices.CONFIGS["data"], Choices.CONFIGS["train"], Choices.CONFIGS["kd"])


LAST = "launch"  # the form's last launched values, kept in the run store under this name (store.save_settings)


def defaults() -> dict[str, Any]:
    """Every field's initial value before the last launched ones are read: the options' defaults (the CPU-quick
    numbers where the form starts from)."""
    values = {i.name: i.default for i in option_fields()}
    values.update(PRESETS["cpu-quick"])
    values.update(EXTRA_DEFAULTS)  # the form's device stays auto: the preset's CPU is for F2
    return values


def remembered(last: dict[str, Any] | None) -> dict[str, Any]:
    """Of the values last launched from this store (``store.load_settings(LAST)``), those the form can still hold:
    text, a choice, a tick (a stale choice is dropped)."""
    values = defaults()
    choices = {i.name: i.offered for i in option_fields() if i.kind == "choice"}
    choices["strategy"] = tuple(catalog.CATALOGUE)
    choices["device"] = Choices.DEVICES
    return {k: v for k, v in (last or {}).items() if k in values and isinstance(v, (str, bool, int, float))
            and (k not in choices or v in choices[k])}


def to_remember(values: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a launch: a reopened kdtui starts its form from it."""
    known = set(defaults())
    return {k: v for k, v in values.items() if k in known}


def display(i: OptionInfo, value: Any) -> Any:
    """A typed value as its widget holds it: text for inputs, the value itself for selects and checkboxes."""
    return value if i.kind in ("choice", "bool") else to_text(value)


def _parse_option(i: OptionInfo, raw: Any) -> Any:
    if i.kind == "bool":
        return bool(raw)
    if i.kind == "choice":
        if raw not in i.offered:
            raise UsageError(f"{i.label.lower()} must be one of {', '.join(map(str, i.offered))}", field=i.name)
        return raw
    return parse_text(i, raw)


def _config(cls, values: dict) -> Any:
    kwargs = {}
    for i in [i for i in option_fields() if i.section == cls.SECTION]:
        if i.name in values:
            kwargs[i.name] = _parse_option(i, values[i.name])
    return cls(**kwargs)


def data_config(values: dict) -> Any:
    """The data settings the form holds (``DataConfig``, its source resolved): what a run reads and what the data
    check decodes; a KDError names the field at fault."""
    try:
        return _config(Choices.CONFIGS["data"], values).resolved()
    except DataError as exc:
        raise DataError(str(exc), field="source") from None


DATA_FIELDS = frozenset(i.name for i in form_fields(Choices.CONFIGS["data"]))  # a change of one: checked again


def _teacher_items(text: str) -> list[str]:
    """``epochs=30, lr=1e-4`` or ``epochs=30 lr=1e-4``."""
    return [item for item in re.split(r"[,\s]+", text.strip()) if item]


def spec_from_form(values: dict, store: api.Store) -> api.RunSpec:
    """Build the run spec the form describes; a KDError whose ``field`` names the field at fault.

    A teacher field may hold a run id from ``store`` (distil from that finished run): it reads the store, so the
    form calls this in a worker thread."""
    strategy = values.get("strategy", "")
    student = str(values.get("student", "")).strip()
    if not student:
        raise UsageError("choose a student model", field="student")
    strat = catalog.get(strategy)
    teacher = str(values.get("teacher", "")).strip()
    names = [t.strip() for t in teacher.split(",") if t.strip()] if strat.takes_teachers else []
    if strat.max_teachers == 1 and len(names) > 1:
        raise UsageError(f"strategy {strategy} takes one teacher; use ensemble for several (comma-separated)",
                         field="teacher")
    seed_text = str(values.get("seed", "")).strip()
    if not seed_text.isdigit() or int(seed_text) > Choices.MAX_SEED:
        raise UsageError(f"seed must be a whole number in [0, {Choices.MAX_SEED}], got '{seed_text}'", field="seed")
    data = data_config(values)
    train = _config(Choices.CONFIGS["train"], values)
    kd = _config(Choices.CONFIGS["kd"], values)
    try:
        return store.spec(strategy, student, names, data, train, kd, int(seed_text),
                          _teacher_items(str(values.get("teacher_set", ""))), "teacher settings")
    except KDError as exc:
        if exc.field is None:
            exc.field = "strategy"
        raise


def model_note(name: str) -> str:
    """A one-line note on a model name, from kdengine.models.architectures (no timm import)."""
    name = name.strip()
    if not name:
        return ""
    if name in APPROX_PARAMS:
        return f"{APPROX_PARAMS[name] / 1e6:.1f}M parameters"
    return "not in the catalog: checking with timm…"


def size_warning(values: dict) -> str:
    t, s = str(values.get("teacher", "")).strip(), str(values.get("student", "")).strip()
    strat = catalog.CATALOGUE.get(values.get("strategy", ""))
    if strat is None or t not in APPROX_PARAMS or s not in APPROX_PARAMS:
        return ""
    return catalog.size_warning(strat, t, APPROX_PARAMS[t], s, APPROX_PARAMS[s])


def model_suggestions() -> list[str]:
    return known_names()
