"""The launch form's components that own their state: the data source's field (checked as it is typed, in a
worker thread), the "More options" section (its fields made when it is first opened), and one option's widgets."""
from __future__ import annotations

import time
from typing import Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.widgets import Collapsible, Input, Label, Select, Static

from kdengine.api import Choices
from kdengine.errors import KDError
from kdengine.options import OptionInfo

from ..forms import display
from .tick import Tick

DataConfig = Choices.CONFIGS["data"]  # the data settings, declared once in the engine
INPUT_TYPES = {"int": "integer", "float": "number", "str": "text"}


def option_widgets(i: OptionInfo, value):
    """Label and widget for one option."""
    yield Label(i.label, classes="label")
    if i.kind == "choice":
        yield Select([(str(c), c) for c in i.offered], value=value, allow_blank=False, id=i.name, compact=True,
                     tooltip=i.help)
    elif i.kind == "bool":
        yield Tick(i.help, bool(value), id=i.name, compact=True, tooltip=i.help)
    else:
        yield Input(display(i, value), id=i.name, type=INPUT_TYPES[i.kind] if not i.nullable else "text",
                    compact=True, placeholder="none" if i.nullable else "", tooltip=i.help)


class SourceField(Vertical):
    """The data source (``#source``) and what it holds (``#data-summary``), checked as `kdengine train` checks it: a
    moment after the last key (or a change of the form's data settings), in a worker thread, the source is indexed
    and its images decoded into the cache at the form's image size, with skip bad as the form says, so that the counts
    are the images training will use and unreadable files are refused (or counted as skipped) before F5; the launch
    then finds the cache made. ``ok`` says whether the last settings checked are usable (None: not checked yet)."""

    DEFAULT_CSS = "SourceField { width: 100%; height: auto; }"

    class Checked(Message):
        def __init__(self, asked: tuple, text: Text, ok: bool | None) -> None:
            super().__init__()
            self.asked = asked
            self.text = text
            self.ok = ok  # None: not an answer yet (how far the decoding is)

    def __init__(self, option: OptionInfo, value: str, settings: Callable[[str], DataConfig]) -> None:
        super().__init__()
        self.option = option
        self.initial = value
        self.settings = settings  # a source -> the form's data settings with it (on the UI thread; KDError: invalid)
        self.ok: bool | None = None
        self._asked: tuple | None = None  # the last (source, settings) asked to be checked

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(self.option.label, classes="label")
            yield Input(self.initial, id="source", compact=True, placeholder=self.option.help)
        yield Static("", id="data-summary", classes="note")

    @on(Input.Changed, "#source")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.check(event.value)

    def check(self, source: str | None = None) -> None:
        """Check ``source`` (default: the field's) with the form's data settings as they are now."""
        source = self.query_one("#source", Input).value if source is None else source
        try:
            cfg: DataConfig | KDError = self.settings(source)
        except KDError as exc:  # a bad source or data setting: said at once (no worker needed)
            cfg = exc
        asked = (source, cfg if isinstance(cfg, DataConfig) else str(cfg))
        if asked == self._asked:
            # checked already, or being checked: the form's fields each ask as they are made, and three decodes of
            # one source at once took 20 s where one takes 4
            return
        self._asked = asked
        self.ok = None
        self.query_one("#data-summary", Static).update(Text("checking…", style="dim"))
        self._check(asked, cfg)

    @work(thread=True, group="data-check")
    def _check(self, asked: tuple, cfg: "DataConfig | KDError") -> None:
        time.sleep(0.3)  # debounce: only the last value typed is checked
        if self._asked != asked:
            return

        def decoding(done: int, total: int) -> None:
            self.post_message(self.Checked(asked, Text(f"decoding the images… {done}/{total}", style="dim"), None))

        try:
            if isinstance(cfg, KDError):
                raise cfg
            text, ok = summary_text(self.app.store.check_data(cfg, cfg.image_size, cfg.skip_bad, decoding)), True
        except KDError as exc:
            text, ok = Text(f"✗ {form_words(str(exc))}", style="red"), False
        except Exception as exc:  # noqa: BLE001 - never crash on odd input
            text, ok = Text(f"✗ {exc.__class__.__name__}: {exc}", style="red"), False
        self.post_message(self.Checked(asked, text, ok))

    def on_source_field_checked(self, message: Checked) -> None:
        message.stop()
        if message.asked != self._asked:  # a value typed since: its own check follows
            return
        if message.ok is not None:
            self.ok = message.ok
        elif self.ok is not None:
            return  # a progress note that came after the answer
        for summary in self.query("#data-summary").results(Static):  # gone when the form closed meanwhile
            summary.update(message.text)

    def summary(self) -> str:
        return str(self.query_one("#data-summary", Static).render())


def summary_text(s: dict) -> Text:
    """What the data check found, in a line: its kind, the images training will use per split (the unreadable ones
    skipped, and said), the train groups."""
    sp = s["splits"]
    text = Text(f"✓ {s['kind']} · train {sp['train']['images']} / val {sp['val']['images']} / "
                f"test {sp['test']['images']} images · {sp['train']['groups']} train groups", style="green")
    usual = Choices.usual_metric({s.get("task") or "multiclass"})
    if usual != "accuracy":  # a screening or findings task: its tables are read by their ranking metrics
        text.append(f" · read by {Choices.METRICS[usual][0]}, AP, sensitivity and specificity (Youden's J on val)")
    skipped = sum(sp[x].get("unreadable", 0) for x in sp)
    if skipped:
        text.append(f" · {skipped} unreadable file{'s' * (skipped != 1)} skipped", style="yellow")
    if s["synthetic"]:
        text.append(" · synthetic", style="yellow")
    return text


def form_words(message: str) -> str:
    """An engine message in the form's words: the flag that skips unreadable images is a tick here."""
    return message.replace("use --skip-bad", "tick Skip bad (More options)")


class MoreOptions(Collapsible):
    """"More options": the teacher's own settings and the advanced options. Half the form's fields wait here, made
    only when it is first opened (the form shows at once); until then it holds their values, as the widgets would."""

    def __init__(self, fields: list[OptionInfo], values: dict[str, Any], **kw) -> None:
        super().__init__(Grid(classes="launch-grid", id="more-grid"), title="More options", collapsed=True, **kw)
        self.fields = fields
        self.held = {"teacher_set": values["teacher_set"], **{i.name: display(i, values[i.name]) for i in fields}}

    @property
    def made(self) -> bool:
        return bool(self.query_one("#more-grid", Grid).children)

    def holds(self, key: str) -> bool:
        return key in self.held

    def value(self, key: str):
        return self.query_one(f"#{key}").value if self.made else self.held[key]

    def set(self, key: str, value) -> None:
        """Set a field to ``value`` as its widget holds it (text, a choice, a tick)."""
        if self.made:
            self.query_one(f"#{key}").value = value
        else:
            self.held[key] = value

    def values(self) -> dict[str, Any]:
        return {k: self.value(k) for k in self.held}

    def on_collapsible_expanded(self, event: Collapsible.Expanded) -> None:
        if event.collapsible is not self or self.made:
            return
        widgets = [Label("Teacher set", classes="label"),
                   Input(self.held["teacher_set"], id="teacher_set", compact=True,
                         placeholder="its own settings: epochs=30 lr=1e-4"), Static("", classes="span2")]
        for i in self.fields:
            widgets += list(option_widgets(i, self.held[i.name]))
        self.query_one("#more-grid", Grid).mount(*widgets)
