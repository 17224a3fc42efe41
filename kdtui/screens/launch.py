"""Launch: choose data, teacher, student, strategy and settings; queue the runs; make sure a worker runs.

Every option field is generated from the config dataclasses (``kdtui.forms.option_fields``): a new
option appears here with no edit. The main options are shown; the rest wait under "More options".
"""
from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Collapsible, Footer, Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from kdengine import api
from kdengine import strategy_catalog as catalog
from kdengine.api import DataConfig, open_source
from kdengine.errors import KDError
from kdengine.api import check_name
from kdengine.api import DEVICES

from ..forms import (
    PRESETS,
    defaults,
    display,
    model_note,
    model_suggestions,
    option_fields,
    remember,
    size_warning,
    spec_from_form,
)
from ..messages import LaunchRequested
from ..widgets.tick import Tick

INPUT_TYPES = {"int": "integer", "float": "number", "str": "text"}


def option_widgets(i, value):
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


class LaunchScreen(Screen):
    BINDINGS = [
        Binding("f2", "preset('cpu-quick')", "CPU-quick"),
        Binding("f3", "preset('thesis')", "Thesis"),
        Binding("f5", "launch", "Launch"),
        Binding("f6", "run_study", "Study"),
        Binding("escape", "leave_form", "Leave form"),
        Binding("tab", "enter_form", "Edit", show=False),
        Binding("shift+tab", "previous_field", "Back", show=False),
        # In the form, a digit (or q) never leaves the screen, whatever field holds the focus; esc first.
        *(Binding(k, f"screen_key('{k}')", show=False) for k in ("1", "2", "3", "4", "q")),
    ]

    def compose(self) -> ComposeResult:
        values = defaults(self.app.store)
        options = option_fields()
        source = next(i for i in options if i.name == "source")
        yield Header()
        with VerticalScroll(id="launch-form"):
            with Horizontal(classes="row"):
                yield Label(source.label, classes="label")
                yield Input(values["source"], id="source", compact=True, placeholder=source.help)
            yield Static("", id="data-summary", classes="note")
            yield Static("tab: into the form · esc: out of it (then 1 2 3 4 change screens) · F5: launch",
                         id="form-hint", classes="note")
            models = model_suggestions()
            with Grid(classes="launch-grid", id="launch-grid"):
                yield Label("Strategy", classes="label")
                yield Select([(f"{s.name}", s.name) for s in catalog.CATALOGUE.values()], value=values["strategy"],
                             allow_blank=False, id="strategy", compact=True)
                yield Label("Seed", classes="label")
                yield Input(values["seed"], id="seed", type="integer", compact=True)
                yield Label("Teacher", classes="label")
                yield Input(values["teacher"], id="teacher", compact=True,
                            suggester=SuggestFromList(models, case_sensitive=False))
                yield Label("Student", classes="label")
                yield Input(values["student"], id="student", compact=True,
                            suggester=SuggestFromList(models, case_sensitive=False))
                yield Static("", id="teacher-note", classes="note span2")
                yield Static("", id="student-note", classes="note span2")
                for i in options:
                    if not i.advanced and i.name != "source":
                        yield from option_widgets(i, values[i.name])
                yield Label("Device", classes="label")
                yield Select([(d, d) for d in DEVICES], value=values["device"], allow_blank=False, id="device",
                             compact=True)
                yield Label("Runs per GPU", classes="label")
                yield Select([(n, n) for n in ("1", "2", "4", "8", "auto")], value="1", allow_blank=False,
                             id="runs_per_gpu", compact=True)
                yield Label("Baseline", classes="label")
                yield Tick("also train the student alone", values["baseline"], id="baseline", compact=True)
            yield Static("", id="strategy-note", classes="note")
            with Collapsible(title="More options", collapsed=True, id="more"):
                with Grid(classes="launch-grid"):
                    yield Label("Teacher set", classes="label")
                    yield Input(values["teacher_set"], id="teacher_set", compact=True,
                                placeholder="its own settings: epochs=30 lr=1e-4")
                    yield Static("", classes="span2")
                    for i in options:
                        if i.advanced:
                            yield from option_widgets(i, values[i.name])
            yield Static("", id="form-message")
            yield Button("Launch  [F5]", id="launch", variant="primary", compact=True)
            with Horizontal(classes="row", id="study-row"):
                yield Label("Study file", classes="label")
                yield Input("", id="study_file", compact=True,
                            placeholder="a study TOML file or a preset (demo, thesis-mura): F6 queues it")
            yield Static("", id="study-message", classes="note")
        yield Footer()

    def on_mount(self) -> None:
        # No field has the focus at first: 1 2 3 4 still change screens; tab enters the form.
        self.set_focus(None)
        self.check_data(self.query_one("#source", Input).value)
        self._refresh_notes()

    def on_screen_resume(self) -> None:
        """Back on the form (from another screen, the palette or a dialog): no field has the focus, as at first.
        Textual would give it back to the field last left, text selected, and the next digit, meant as a screen
        key, would replace a model's name (and be remembered for the next kdtui)."""
        self.set_focus(None)

    # -- values ----------------------------------------------------------------------------------------
    def values(self) -> dict:
        return {w.id: w.value for w in self.query("Input, Select, Checkbox") if w.id}

    def _set(self, key: str, value) -> None:
        info = next((i for i in option_fields() if i.name == key), None)
        self.query_one(f"#{key}").value = display(info, value) if info else value

    # -- live checks ------------------------------------------------------------------------------------
    @on(Input.Changed, "#source")
    def _data_changed(self, event: Input.Changed) -> None:
        self.query_one("#data-summary", Static).update(Text("checking…", style="dim"))
        self.check_data(event.value)

    def _say(self, selector: str, text: Text) -> None:
        """A worker thread's answer, put on screen from the UI thread: looked up there, not in the worker (a DOM
        query from a thread races the app), and dropped when the form is no longer there to show it (the screen
        left, the app closing: the answer came too late, which is no error)."""
        for widget in self.query(selector).results(Static):
            widget.update(text)

    @work(thread=True, exclusive=True, group="data-check")
    def check_data(self, source: str) -> None:
        time.sleep(0.3)  # debounce: only the last value typed is checked

        if get_current_worker().is_cancelled:
            return

        try:
            src = open_source(DataConfig(source=source))
            s = src.summary()
            sp = s["splits"]
            text = Text(f"✓ {len(s['classes'])} classes · train {sp['train']['images']} / val {sp['val']['images']} / "
                        f"test {sp['test']['images']} images · {sp['train']['groups']} train groups", style="green")
            if s["synthetic"]:
                text.append(" · synthetic", style="yellow")
            self._data_ok = True
        except KDError as exc:
            text = Text(f"✗ {exc}", style="red")
            self._data_ok = False
        except Exception as exc:  # noqa: BLE001 - never crash on odd input
            text = Text(f"✗ {exc.__class__.__name__}: {exc}", style="red")
            self._data_ok = False
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._say, "#data-summary", text)

    @on(Input.Changed, "#teacher, #student")
    @on(Select.Changed, "#strategy")
    def _models_changed(self, event) -> None:
        self._refresh_notes()

    def _refresh_notes(self) -> None:
        values = self.values()
        strat = catalog.CATALOGUE.get(values.get("strategy"))
        for key in ("teacher", "student"):
            name = values.get(key, "")
            note = model_note(name)
            if key == "teacher" and strat is not None and not strat.takes_teachers:
                note = f"{strat.name} uses no teacher network" if strat.teacher_source != "self" else \
                    "tf-self: the teacher is a copy of the student"
            elif key == "teacher" and strat is not None and strat.max_teachers is None:
                names = [n.strip() for n in name.split(",") if n.strip()]
                note = f"{strat.name}: several teachers, comma-separated (" + \
                    ", ".join(model_note(n) or "?" for n in names) + ")"
            self.query_one(f"#{key}-note", Static).update(Text(note, style="dim"))
            if model_note(name).startswith("not in the catalog") and not (key == "teacher" and "," in name):
                self.check_model(key, name)
        if strat is not None:
            self.query_one("#strategy-note", Static).update(Text(f"{strat.label}: {strat.description}", style="dim"))
        warn = size_warning(values)
        self.query_one("#form-message", Static).update(Text(warn, style="yellow") if warn else "")

    def check_model(self, key: str, name: str) -> None:
        self.run_worker(lambda: self._check_model(key, name), thread=True, exclusive=True, group=f"model-{key}")

    def _check_model(self, key: str, name: str) -> None:
        time.sleep(0.3)  # debounce while typing
        if get_current_worker().is_cancelled:
            return
        try:  # timm's names without torch: milliseconds
            check_name(name.strip())
            text = Text("✓ a timm model (not in the catalog: its size is checked at launch)", style="green")
        except KDError as exc:
            text = Text("✗ " + str(exc).split("; `kdengine")[0], style="red")

        def apply() -> None:
            if self.values().get(key, "").strip() == name.strip():
                self.query_one(f"#{key}-note", Static).update(text)

        self.app.call_from_thread(apply)

    # -- actions ---------------------------------------------------------------------------------------
    def action_leave_form(self) -> None:
        """Take focus out of the fields, so that 1/2/3/4/q/? work again."""
        self.set_focus(None)

    def action_enter_form(self) -> None:
        if not isinstance(self.focused, (Input, Select, Tick, Button)):
            self.query_one("#source", Input).focus()
        else:
            self.focus_next()

    def action_screen_key(self, key: str) -> None:
        if isinstance(self.focused, (Input, Select, Tick, Button)):
            self.notify("in the form: esc first, then 1 2 3 4 change screens", timeout=2)
            return
        if key == "q":
            self.app.exit()
        else:
            self.app.switch_mode({"1": "runs", "2": "launch", "3": "results", "4": "workers"}[key])

    def action_previous_field(self) -> None:
        """Back one field; from the first, round to the last: shift-tab never leaves the form (esc does), so
        digits typed next go into a field, never switch screens."""
        fields = [w for w in self.focus_chain if isinstance(w, (Input, Select, Tick, Button))]
        if not fields:
            return
        if self.focused in fields:
            fields[fields.index(self.focused) - 1].focus()
        else:
            fields[-1].focus()

    def action_run_study(self) -> None:
        """Queue a study file (or preset) and start workers, through api in a worker thread (what needs torch
        among its checks, api.check runs in a child process of its own: the TUI never imports torch)."""
        name = self.query_one("#study_file", Input).value.strip()
        note = self.query_one("#study-message", Static)
        if not name:
            note.update(Text("name a study file (or a preset) first", style="yellow"))
            self.query_one("#study_file", Input).focus()
            return
        note.update(Text(f"checking and queueing {name}…", style="dim"))
        self.queue_study(name)

    @work(thread=True, exclusive=True, group="study")
    def queue_study(self, name: str) -> None:
        try:
            study, plan = api.plan_study(name, decode=True)
            outcome = api.run_study_detached(self.app.store, study, plan)
        except (KDError, OSError) as exc:
            text, ok = Text(f"✗ {exc}", style="red"), False
        else:
            text, ok = Text(f"✓ study {outcome.name}: {outcome.total} runs ({outcome.finished} already finished) "
                            f"queued; {len(outcome.workers)} worker(s) started", style="green"), True
        self.app.call_from_thread(self._say, "#study-message", text)
        if ok:
            self.app.call_from_thread(self.app.notify, f"study {name} queued; workers started")

    def action_preset(self, name: str) -> None:
        for key, value in PRESETS[name].items():
            self._set(key, value)
        self.notify(f"preset: {name}")

    @on(Button.Pressed, "#launch")
    def _pressed(self) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        message = self.query_one("#form-message", Static)
        for w in self.query(Input):
            w.remove_class("-invalid")
        if getattr(self, "_data_ok", None) is False:
            message.update(Text("✗ fix the data first: " + str(self.query_one("#data-summary", Static).render()), style="red"))
            self.query_one("#source", Input).focus()
            return
        values = self.values()
        try:
            spec = spec_from_form(values, self.app.store)
        except KDError as err:
            message.update(Text(f"✗ {err}", style="red"))
            self._focus_field(err.field)
            return
        request = LaunchRequested(spec, values["device"], bool(values.get("baseline", True)),
                                  values.get("runs_per_gpu", "1"))
        message.update(Text("checking the models and settings…", style="dim"))
        self.check_then_launch(request)

    def _launch(self, request: LaunchRequested) -> None:
        remember(self.app.store, self.values())
        self.post_message(request)
        self.query_one("#form-message", Static).update(Text(f"✓ queued {request.spec.run_id}", style="green"))

    @work(thread=True, exclusive=True, group="preflight")
    def check_then_launch(self, request: LaunchRequested) -> None:
        """The same checks as `kdengine train` before anything is queued (api.check: models, sizes, weights), in
        a worker thread; what needs torch runs in a child process of its own (the TUI never imports torch), and
        a spec of known models needs none."""
        try:
            api.check([request.spec], data=False)
        except KDError as exc:
            self.app.call_from_thread(self._say, "#form-message", Text(f"✗ {exc}", style="red"))
            return
        self.app.call_from_thread(self._launch, request)

    def _focus_field(self, field: str | None) -> None:
        if not field:
            return
        widgets = self.query(f"#{field}")
        if not widgets:
            return
        widget = widgets.first()
        if widget.ancestors and any(isinstance(a, Collapsible) for a in widget.ancestors):
            self.query_one("#more", Collapsible).collapsed = False
        widget.add_class("-invalid")
        widget.focus()
