"""Options declared once, as dataclass fields with metadata; everything else is generated from them.

A config dataclass (``DataConfig``, ``TrainConfig``, ``KDConfig``) declares each option with
:func:`option`: its default, help text, range or choices. From that one declaration come

- the CLI flags of ``kdengine train`` and ``study run`` (:func:`add_options`, :func:`from_args`),
- the study file's TOML schema (:func:`from_table`, :func:`schema_rows`),
- the TUI launch form's fields (:func:`form_fields`, :func:`parse_text`),
- validation with one-line errors that name the field (:func:`check_fields`).

A new option is one field. No torch here: the TUI reads this.
"""
from __future__ import annotations

import argparse
import difflib
import math
import typing
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from typing import Any

import tomllib

from .errors import UsageError

EVAL_BATCH_CUDA = 256  # evaluation has no gradients: a large batch keeps the card busy


def did_you_mean(name: str, known, prefix: str = "") -> str:
    """"; did you mean X?" when known names are close to ``name`` (a typo), else "": the one suggestion for names
    of keys, models and shifts (``prefix``: a key's table, said with each name)."""
    close = [prefix + c for c in difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)]
    if not close:
        return ""
    return f"; did you mean {close[0] if len(close) == 1 else ', '.join(close[:-1]) + f' or {close[-1]}'}?"


# A setting's short name where a table heading, a sweep point or a run's label says it: T=4, not kd.temperature=4.0
SHORT_NAMES = {"kd.temperature": "T", "kd.method": "method", "kd.alpha": "α", "kd.defect_acc": "defect threshold",
               "train.lr": "lr", "data.image_size": "image size", "train.epochs": "epochs",
               "train.batch_size": "batch size", "data.source": "data"}


def setting_label(key: str) -> str:
    """A setting's name in a heading or a point: ``T`` for kd.temperature, else the dotted key itself."""
    return SHORT_NAMES.get(key, key)


def value_text(value: Any) -> str:
    """A setting's value in a heading or a point: 4 for 4.0, true for True."""
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def option(default: Any, help: str, *, choices: tuple | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, flag: str | None = None, short: str | None = None,
           label: str | None = None, advanced: bool = False, strategies: tuple[str, ...] | None = None,
           scope: str = "run", since: int = 1, metavar: str | None = None, hidden: bool = False,
           menu=None) -> Any:
    """A config field with everything the CLI, the TOML schema and the form need.

    ``low``/``high`` bound numbers (``low_open``: strictly above ``low``). ``strategies`` limits a KD
    option to the strategies that use it (it is left out of the others' identity). ``scope="teacher"``
    marks an option that shapes the teacher's run, not the student's. ``since`` is the store version
    that introduced the field: fields newer than 1 enter a run's identity only when they differ from
    their default, so adding an option never changes the ids of runs already in a store. ``hidden``: set by
    kdstudy itself (a file's checksum), never a flag or a form field. ``menu``: a function giving the values a form
    offers for a text option whose valid values are not all known in advance (the methods: a method file names its
    own); the config checks the value itself.
    """
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open, "flag": flag,
            "short": short, "label": label, "advanced": advanced, "strategies": strategies, "scope": scope,
            "since": since, "metavar": metavar, "hidden": hidden, "menu": menu}
    return field(default=default, metadata={"kd": meta})


@dataclass(frozen=True)
class OptionInfo:
    name: str
    section: str
    type: type  # int, float, str or bool
    nullable: bool
    default: Any
    help: str
    choices: tuple | None
    low: float | None
    high: float | None
    low_open: bool
    flag: str
    short: str | None
    label: str
    advanced: bool
    strategies: tuple[str, ...] | None
    scope: str
    since: int
    metavar: str | None
    hidden: bool = False
    menu: object = None  # a function: the values a form offers (see option)

    @property
    def offered(self) -> tuple:
        """The values a form offers: the choices, or the menu's."""
        return tuple(self.choices or (self.menu() if self.menu else ()))

    @property
    def kind(self) -> str:
        if self.choices or self.menu:
            return "choice"
        return {bool: "bool", int: "int", float: "float"}.get(self.type, "str")

    def describe_type(self) -> str:
        base = {bool: "boolean", int: "integer", float: "number", str: "string"}[self.type]
        return base + (" or none" if self.nullable else "")


def _unwrap(hint) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if args:
        kinds = [a for a in args if a is not type(None)]
        return kinds[0], type(None) in args
    return hint, False


@lru_cache(maxsize=None)
def infos(cls: type) -> tuple[OptionInfo, ...]:
    """The options of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    section = getattr(cls, "SECTION", cls.__name__)
    out = []
    for f in fields(cls):
        meta = f.metadata.get("kd")
        if meta is None:
            continue
        kind, nullable = _unwrap(hints[f.name])
        default = f.default if f.default is not MISSING else None
        out.append(OptionInfo(
            name=f.name, section=section, type=kind, nullable=nullable, default=default, help=meta["help"],
            choices=meta["choices"], low=meta["low"], high=meta["high"], low_open=meta["low_open"],
            flag=meta["flag"] or "--" + f.name.replace("_", "-"), short=meta["short"],
            label=meta["label"] or f.name.replace("_", " ").capitalize(), advanced=meta["advanced"],
            strategies=meta["strategies"], scope=meta["scope"], since=meta["since"], metavar=meta["metavar"],
            hidden=meta["hidden"], menu=meta["menu"]))
    return tuple(out)


def info(cls: type, name: str) -> OptionInfo:
    for i in infos(cls):
        if i.name == name:
            return i
    raise KeyError(name)


# -- values ------------------------------------------------------------------------------------------------
def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1 else f"{x:g}"


def _range_text(i: OptionInfo) -> str:
    """"lie in [1, 100000]", "lie in (0, 1]", "be >= 0" ... ("" when unbounded)."""
    if i.low is not None and i.high is not None:
        return f"lie in {'(' if i.low_open else '['}{_n(i.low)}, {_n(i.high)}]"
    if i.low is not None:
        return f"be {'>' if i.low_open else '>='} {_n(i.low)}"
    if i.high is not None:
        return f"be <= {_n(i.high)}"
    return ""


def check_value(i: OptionInfo, value: Any) -> Any:
    """``value`` as the option's type, or UsageError naming the option (one line)."""
    where = f"{i.section}.{i.name}"
    if value is None:
        if i.nullable:
            return None
        raise UsageError(f"{where} needs a value", field=i.name)
    if i.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if i.type is bool:
        ok = isinstance(value, bool)
    elif i.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, i.type)
    if not ok:
        raise UsageError(f"{where} must be {i.describe_type()}, got {value!r}", field=i.name)
    if i.type is float and not math.isfinite(value):
        raise UsageError(f"{where} must be a finite number, got {value}", field=i.name)
    if i.choices and value not in i.choices:
        raise UsageError(f"{where} must be one of {', '.join(map(str, i.choices))}, got {value!r}", field=i.name)
    if i.type in (int, float):
        too_low = i.low is not None and (value <= i.low if i.low_open else value < i.low)
        too_high = i.high is not None and value > i.high
        if too_low or too_high:
            raise UsageError(f"{where} must {_range_text(i)}, got {value}", field=i.name)
    if i.type is str and "\x00" in value:
        raise UsageError(f"{where} must not contain a NUL character", field=i.name)
    return value


def check_fields(obj: Any) -> None:
    """Validate every option of a config instance (called from ``__post_init__``)."""
    for i in infos(type(obj)):
        value = check_value(i, getattr(obj, i.name))
        if value is not getattr(obj, i.name):  # an int given for a float: store the float
            object.__setattr__(obj, i.name, value)


def parse_text(i: OptionInfo, text: str) -> Any:
    """A value typed by a person (CLI flag, form field) as the option's type; UsageError if it is not."""
    raw = str(text).strip()
    where = f"{i.section}.{i.name}"
    if i.nullable and raw.lower() in ("", "none", "null"):
        return None
    try:
        if i.type is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if i.type is int:
            return check_value(i, int(raw))
        if i.type is float:
            return check_value(i, float(raw))
    except ValueError:
        raise UsageError(f"{where} must be {i.describe_type()}, got '{raw}'", field=i.name) from None
    return check_value(i, raw)


def parse_assignment(item: str) -> tuple[list[str], Any]:
    """``key.sub=value``: the value is read as TOML data (numbers, booleans, lists), else as a string.

    Never evaluated as code."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise UsageError(f"expected key=value, got '{item}'")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip().split("."), parsed


# -- TOML ------------------------------------------------------------------------------------------------------
def from_table(cls: type, table: Any, where: str, base: Any = None) -> Any:
    """A config instance from a TOML table: unknown keys and wrong types fail in one line naming the key.

    Missing keys take their value from ``base`` (an instance) when given, else the defaults."""
    section = getattr(cls, "SECTION", cls.__name__)
    if not isinstance(table, dict):
        raise UsageError(f"{where}: '{section}' must be a table")
    known = {i.name: i for i in infos(cls)}
    for key in table:
        if key not in known:
            raise UsageError(f"{where}: unknown key '{section}.{key}' (known: {', '.join(known)})"
                             + did_you_mean(key, known, f"{section}."))
    values = {}
    for name, i in known.items():
        if name in table:
            value = table[name]
            if i.nullable and isinstance(value, str) and value.strip().lower() == "none":
                value = None  # TOML has no null: "none" unsets an optional key
            try:
                values[name] = check_value(i, value)
            except UsageError as exc:
                raise UsageError(f"{where}: {exc}", field=name) from None
        elif base is not None:
            values[name] = getattr(base, name)
    return cls(**values)


def schema_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for each option: what ``kdengine study schema`` prints."""
    rows = []
    for i in infos(cls):
        if i.hidden:
            continue
        kind = i.describe_type() + (f" ({' | '.join(map(str, i.offered))})" if i.offered else "")
        rng = _range_text(i)
        rows.append((i.name, kind + (f", {rng.split(' ', 1)[1]}" if rng else ""),
                     "none" if i.default is None else repr(i.default),
                     i.help))
    return rows


# -- argparse -------------------------------------------------------------------------------------------------
def _argtype(i: OptionInfo):
    def convert(text: str):
        try:
            return parse_text(i, text)
        except UsageError as exc:  # argparse names the flag: drop the section.key prefix
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{i.section}.{i.name} ")) from None

    convert.__name__ = i.describe_type()
    return convert


def add_options(parser, cls: type, skip: tuple[str, ...] = (), title: str | None = None):
    """One flag per option of ``cls`` in a group of its own (returned). The defaults stay the dataclass's:
    a flag not given is None, and :func:`from_args` leaves it to the dataclass."""
    group = parser.add_argument_group(title or getattr(cls, "SECTION", cls.__name__))
    for i in infos(cls):
        if i.name in skip or i.hidden:
            continue
        default = "none" if i.default is None else i.default
        # a flag not named as its study-file key says the key (--kl-reduction is kd.reduction)
        key = f"; study file: {i.section}.{i.name}" if i.flag != "--" + i.name.replace("_", "-") else ""
        names = [i.flag] + ([i.short] if i.short else [])
        if i.type is bool:
            group.add_argument(*names, dest=i.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{i.help} (default: {'yes' if i.default else 'no'}{key})")
        else:
            metavar = i.metavar or ("{" + ",".join(map(str, i.offered)) + "}" if i.offered else
                                    {int: "N", float: "X"}.get(i.type, "TEXT"))
            group.add_argument(*names, dest=i.name, type=_argtype(i), default=None, metavar=metavar,
                               help=f"{i.help} (default: {default}{key})")
    return group


def from_args(cls: type, args: argparse.Namespace, base: Any = None, **overrides: Any) -> Any:
    """A config from parsed flags: given flags win, then ``overrides``, then ``base``, then the defaults."""
    values = {}
    for i in infos(cls):
        given = getattr(args, i.name, None)
        if given is not None:
            values[i.name] = given
        elif i.name in overrides:
            values[i.name] = overrides[i.name]
        elif base is not None:
            values[i.name] = getattr(base, i.name)
    return cls(**values)


def replace_from_assignments(obj: Any, items: list[str], what: str) -> Any:
    """``obj`` with ``key=value`` items applied (``--teacher-set epochs=30``), each checked like TOML."""
    table = {}
    for item in items:
        keys, value = parse_assignment(item)
        if len(keys) != 1:
            raise UsageError(f"{what}: '{'.'.join(keys)}' is not an option of {getattr(obj, 'SECTION', '')}")
        table[keys[0]] = value
    return from_table(type(obj), table, what, base=obj)


# -- the form ---------------------------------------------------------------------------------------------
def form_fields(*classes: type) -> list[OptionInfo]:
    """Every option of the given configs, in order (the launch form renders one widget per option)."""
    return [i for cls in classes for i in infos(cls) if not i.hidden]


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def identity_values(obj: Any, strategy: str | None = None, include_teacher_scope: bool = True) -> dict[str, Any]:
    """The fields of a config that decide a result, for run identity (see RunSpec.identity).

    Fields limited to other strategies are left out. A config with a ``reads(key, strategy)`` rule (TrainConfig:
    momentum only for SGD; KDConfig: each method's options) holds a field the run does not read at its default,
    so that runs which differ only there are one run (a sweep of it trains nothing twice) while the ids of store
    version 1 stay what they were. Fields newer than store version 1 enter only when they differ from their
    default (so adding an option keeps every stored run id)."""
    reads = getattr(obj, "reads", None)
    out = {}
    for i in infos(type(obj)):
        if i.strategies is not None and strategy not in i.strategies:
            continue
        if i.scope == "teacher" and not include_teacher_scope:
            continue
        value = getattr(obj, i.name) if reads is None or reads(i.name, strategy) else i.default
        if i.since > 1 and value == i.default:
            continue
        out[i.name] = value
    return out


def config_dict(obj: Any) -> dict[str, Any]:
    """Every option of a config, as plain data (spec.json)."""
    return {i.name: getattr(obj, i.name) for i in infos(type(obj))}
