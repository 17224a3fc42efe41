"""The launch form's components that own their state: the data source's field (checked as it is typed, in a
worker thread), the "More options" section (its fields made when it is first opened), and one option's widgets."""
from __future__ import annotations

import time
from typing import Any

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
    """The data source (``#source``) and what it holds (``#data-summary``): checked a moment after the last key, in a
    worker thread; ``ok`` says whether the last value checked is usable (None: not checked yet)."""

    DEFAULT_CSS = "SourceField { width: 100%; height: auto; }"

    class Checked(Message):
        def __init__(self, source: str, text: Text, ok: bool) -> None:
            super().__init__()
            self.source = source
            self.text = text
            self.ok = ok

    def __init__(self, option: OptionInfo, value: str) -> None:
        super().__init__()
        self.option = option
        self.initial = value
        self.ok: bool | None = None
        self._asked: str | None = None  # the last value asked to be checked

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(self.option.label, classes="label")
            yield Input(self.initial, id="source", compact=True, placeholder=self.option.help)
        yield Static("", id="data-summary", classes="note")

    @on(Input.Changed, "#source")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#data-summary", Static).update(Text("checking…", style="dim"))
        self.check(event.value)

    def check(self, source: str) -> None:
        self._asked = source
        self._check(source)

    @work(thread=True, group="data-check")
    def _check(self, source: str) -> None:
        time.sleep(0.3)  # debounce: only the last value typed is checked
        if self._asked != source:
            return
        try:
            s = self.app.store.check_data(Choices.CONFIGS["data"](source=source))
            sp = s["splits"]
            text = Text(f"✓ {len(s['classes'])} classes · train {sp['train']['images']} / val {sp['val']['images']} / "
                        f"test {sp['test']['images']} images · {sp['train']['groups']} train groups", style="green")
            if s["synthetic"]:
                text.append(" · synthetic", style="yellow")
            ok = True
        except KDError as exc:
            text, ok = Text(f"✗ {exc}", style="red"), False
        except Exception as exc:  # noqa: BLE001 - never crash on odd input
            text, ok = Text(f"✗ {exc.__class__.__name__}: {exc}", style="red"), False
        self.post_message(self.Checked(source, text, ok))

    def on_source_field_checked(self, message: Checked) -> None:
        message.stop()
        if message.source != self._asked:  # a value typed since: its own check follows
            return
        self.ok = message.ok
        for summary in self.query("#data-summary").results(Static):  # gone when the form closed meanwhile
            summary.update(message.text)

    def summary(self) -> str:
        return str(self.query_one("#data-summary", Static).render())


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
