"""Launch: choose data, teacher, student, strategy and settings; queue the runs; make sure a worker runs.

Every option field is generated from the config dataclasses (``kdtui.forms.option_fields``): a new
option appears here with no edit. The main options are shown; the rest wait under "More options".

Whatever reads the store or the data (the values last launched, the data check, a model's name, the checks before
launching, a study file) runs in a worker thread and posts its answer; the answer is shown if its field is still
there to show it."""
from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Collapsible, Footer, Header, Input, Label, Select, Static
from textual.widgets._collapsible import CollapsibleTitle

from kdengine import strategy_catalog as catalog
from kdengine.api import Choices
from kdengine.errors import KDError

from ..forms import (
    DATA_FIELDS,
    LAST,
    PRESETS,
    data_config,
    defaults,
    describe_settings,
    display,
    model_note,
    model_suggestions,
    option_fields,
    remembered,
    size_warning,
    spec_from_form,
    to_remember,
)
from ..messages import LaunchRequested
from ..widgets.form_fields import MoreOptions, SourceField, form_words, option_widgets
from ..widgets.tick import Tick
from . import register_screen, screens

class ModelChecked(Message):
    """A model name checked against timm's names, off the UI thread."""

    def __init__(self, key: str, name: str, text: Text) -> None:
        super().__init__()
        self.key = key
        self.name = name
        self.text = text


class Said(Message):
    """A worker thread's answer for a note of the form (``selector``), shown from the UI thread."""

    def __init__(self, selector: str, text: Text, notice: str | None = None) -> None:
        super().__init__()
        self.selector = selector
        self.text = text
        self.notice = notice  # also said in a notification


class Remembered(Message):
    """The values last launched from this store, read off the UI thread."""

    def __init__(self, values: dict) -> None:
        super().__init__()
        self.values = values


class Checked(Message):
    """The form's run, built and checked as `kdengine train` checks it (``error``: why not, naming its field)."""

    def __init__(self, request: LaunchRequested | None, values: dict, error: KDError | None = None) -> None:
        super().__init__()
        self.request = request
        self.values = values
        self.error = error


@register_screen("launch", "2", "Launch", "Set up and launch a run")
class LaunchScreen(Screen):
    # No field has the focus when the form shows (1 2 3 4 still change screens; tab enters the form); nor is one
    # given it and taken back: each change of focus restyles the whole form (a second, on a busy machine).
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("f2", "preset('cpu-quick')", "CPU-quick"),
        Binding("f3", "preset('thesis')", "Thesis"),
        Binding("f5", "launch", "Launch"),
        Binding("f6", "run_study", "Study"),
        Binding("escape", "leave_form", "Leave form"),
        Binding("tab", "enter_form", "Edit", show=False),
        Binding("shift+tab", "previous_field", "Back", show=False),
    ]
    HELP = [
        ("tab", "into the form, next field"),
        ("esc", "leave the form (then 1 2 3 4 q work)"),
        ("F2 F3", "CPU-quick preset · thesis preset"),
        ("F5", "launch the run(s)"),
        ("F6", "run the study file named (queued; workers start)"),
    ]
    COMMANDS = [
        ("Run a study file", "Queue a study TOML file (or preset) and start workers (Launch, F6)", "study_file"),
        ("CPU-quick preset", "Fill the launch form for a quick CPU run", "preset('cpu-quick')"),
        ("Thesis preset", describe_settings(PRESETS["thesis"]), "preset('thesis')"),
    ]

    def __init__(self) -> None:
        super().__init__()
        # In the form, a screen key (or q) never leaves the screen, whatever field holds the focus; esc first.
        for key in [*(e.key for e in screens()), "q"]:
            self._bindings.bind(key, f"screen_key('{key}')", show=False)
        self._initial = defaults()
        self._asked: dict[str, str] = {}  # the last model name asked of each checked field (teacher, student)

    def compose(self) -> ComposeResult:
        values = self._initial
        options = option_fields()
        source = next(i for i in options if i.name == "source")
        yield Header()
        with VerticalScroll(id="launch-form"):
            yield SourceField(source, values["source"], self._data_settings)
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
                yield Select([(d, d) for d in Choices.DEVICES], value=values["device"], allow_blank=False, id="device",
                             compact=True)
                yield Label("Runs per GPU", classes="label")
                yield Select([(n, n) for n in ("1", "2", "4", "8", "auto")], value="1", allow_blank=False,
                             id="runs_per_gpu", compact=True)
                yield Label("Baseline", classes="label")
                yield Tick("also train the student alone", values["baseline"], id="baseline", compact=True)
            yield Static("", id="strategy-note", classes="note")
            yield MoreOptions([i for i in options if i.advanced], values, id="more")
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
        self.read_remembered()
        self._refresh_notes()

    @work(thread=True, group="remembered")
    def read_remembered(self) -> None:
        try:
            last = self.app.store.load_settings(LAST)
        except Exception:  # noqa: BLE001 - an unreadable store: the form starts from the defaults
            last = None
        self.post_message(Remembered(remembered(last)))

    def on_remembered(self, message: Remembered) -> None:
        """The values last launched from this store, in every field still as it was first shown (a field already
        changed keeps what was typed)."""
        for key, value in message.values.items():
            if key in self._initial and self._value(key) == self._display(key, self._initial[key]):
                self._set(key, value)
        self.query_one(SourceField).check(self.query_one("#source", Input).value)

    def on_screen_resume(self) -> None:
        """Back on the form (from another screen, the palette or a dialog): no field has the focus, as at first.
        Textual would give it back to the field last left, text selected, and the next digit, meant as a screen
        key, would replace a model's name (and be remembered for the next kdtui)."""
        self.set_focus(None)

    # -- values ----------------------------------------------------------------------------------------
    def values(self) -> dict:
        return {**self.query_one(MoreOptions).values(),
                **{w.id: w.value for w in self.query("Input, Select, Checkbox") if w.id}}

    def _display(self, key: str, value):
        info = next((i for i in option_fields() if i.name == key), None)
        return display(info, value) if info else value

    def _set(self, key: str, value) -> None:
        more = self.query_one(MoreOptions)
        if more.holds(key):
            more.set(key, self._display(key, value))
        else:
            self.query_one(f"#{key}").value = self._display(key, value)

    def _value(self, key: str):
        more = self.query_one(MoreOptions)
        return more.value(key) if more.holds(key) else self.query_one(f"#{key}").value

    def _data_settings(self, source: str):
        """The form's data settings with ``source`` (what the data check decodes, as a run would read them)."""
        return data_config({**self.values(), "source": source})

    # -- live checks ------------------------------------------------------------------------------------
    @on(Input.Changed)
    @on(Select.Changed)
    @on(Tick.Changed)
    def _data_setting_changed(self, event) -> None:
        """A data setting (image size, skip bad, colour, splits...) changed: the data is checked again with it."""
        widget = getattr(event, "input", None) or getattr(event, "select", None) or getattr(event, "checkbox", None)
        if widget is not None and widget.id in DATA_FIELDS and widget.id != "source":
            self.query_one(SourceField).check()

    def _say(self, selector: str, text: Text) -> None:
        """A worker thread's answer, put on screen from the UI thread: looked up there, not in the worker (a DOM
        query from a thread races the app), and dropped when the form is no longer there to show it (the screen
        left, the app closing: the answer came too late, which is no error)."""
        for widget in self.query(selector).results(Static):
            widget.update(text)

    def on_said(self, message: Said) -> None:
        self._say(message.selector, message.text)
        if message.notice:
            self.app.notify(message.notice)

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
        self._asked[key] = name
        self._check_model(key, name)

    @work(thread=True, group="model-check")
    def _check_model(self, key: str, name: str) -> None:
        time.sleep(0.3)  # debounce while typing: only the last name asked of a field is checked
        if self._asked.get(key) != name:
            return
        try:  # timm's names without torch: milliseconds
            self.app.store.check_name(name.strip())
            text = Text("✓ a timm model (not in the catalog: its size is checked at launch)", style="green")
        except KDError as exc:
            text = Text("✗ " + str(exc).split("; `kdengine")[0], style="red")
        except Exception as exc:  # noqa: BLE001 - timm's names unreadable: said, never a crash
            text = Text(f"✗ {exc.__class__.__name__}: {exc}", style="red")
        self.post_message(ModelChecked(key, name, text))

    def on_model_checked(self, message: "ModelChecked") -> None:
        if self.values().get(message.key, "").strip() == message.name.strip():
            self._say(f"#{message.key}-note", message.text)

    # -- actions ---------------------------------------------------------------------------------------
    def action_leave_form(self) -> None:
        """Take focus out of the fields, so that 1/2/3/4/q/? work again."""
        self.set_focus(None)

    def _fields(self) -> list:
        """The form's fields in focus order: inputs, choices, ticks, buttons, and the "More options" title (enter
        or tab there opens it)."""
        return [w for w in self.focus_chain if isinstance(w, (Input, Select, Tick, Button, CollapsibleTitle))]

    def action_enter_form(self) -> None:
        """Into the form (its first field), else the next field; on "More options" while it is folded, into it:
        it opens and its first field takes the focus (forward tab reaches every field, as shift-tab does)."""
        fields = self._fields()
        focused = self.focused
        if focused not in fields:
            self.query_one("#source", Input).focus()
            return
        more = self.query_one(MoreOptions)
        if isinstance(focused, CollapsibleTitle) and focused.parent is more and more.collapsed:
            more.collapsed = False  # its fields are made as it opens: the first takes the focus once they are
            self.call_after_refresh(lambda: self.query_one("#teacher_set", Input).focus())
            return
        fields[(fields.index(focused) + 1) % len(fields)].focus()

    def action_screen_key(self, key: str) -> None:
        entries = screens()
        if self.focused in self._fields():
            self.notify(f"in the form: esc first, then {' '.join(e.key for e in entries)} change screens", timeout=2)
            return
        if key == "q":
            self.app.exit()
        else:
            self.app.switch_mode(next(e.name for e in entries if e.key == key))

    def action_previous_field(self) -> None:
        """Back one field; from the first, round to the last: shift-tab never leaves the form (esc does), so
        digits typed next go into a field, never switch screens."""
        fields = self._fields()
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

    @work(thread=True, group="study")
    def queue_study(self, name: str) -> None:
        store = self.app.store
        try:
            outcome = store.run_study_detached(store.plan_study(name, decode=True))
        except Exception as exc:  # noqa: BLE001 - a bad file, an unwritable store: said, never a crash
            self.post_message(Said("#study-message", Text(f"✗ {exc}", style="red")))
            return
        self.post_message(Said("#study-message", Text(
            f"✓ study {outcome.name}: {outcome.total} runs ({outcome.finished} already finished) queued; "
            f"{len(outcome.workers)} worker(s) started", style="green"),
            notice=f"study {name} queued; workers started"))

    def action_study_file(self) -> None:
        """Into the study file's field (the palette's "Run a study file")."""
        self.query_one("#study_file", Input).focus()

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
        source = self.query_one(SourceField)
        if source.ok is False:
            message.update(Text("✗ fix the data first: " + source.summary(), style="red"))
            self.query_one("#source", Input).focus()
            return
        message.update(Text("checking the models, settings and data…", style="dim"))
        self.check_then_launch(self.values())

    @work(thread=True, group="preflight")
    def check_then_launch(self, values: dict) -> None:
        """The form's run, built (a teacher may be a run of the store) and checked as `kdengine train` checks it
        (api.check: models, sizes, weights, and the data decoded into the cache its runs will read, skip bad as the
        form says), in a worker thread; what needs torch or decodes images runs in a child process of its own (the
        TUI never imports torch). Data training would refuse is refused here, before anything is queued."""
        store = self.app.store
        try:
            spec = spec_from_form(values, store)
            store.check([spec], decode=True)
        except KDError as exc:
            self.post_message(Checked(None, values, exc))
            return
        except Exception as exc:  # noqa: BLE001 - never crash on odd input
            self.post_message(Checked(None, values, KDError(f"{exc.__class__.__name__}: {exc}")))
            return
        request = LaunchRequested(spec, values["device"], bool(values.get("baseline", True)),
                                  values.get("runs_per_gpu", "1"), workers=self.app.start_workers)
        self.post_message(Checked(request, values))

    def on_checked(self, message: Checked) -> None:
        if message.error is not None:
            self._say("#form-message", Text(f"✗ {form_words(str(message.error))}", style="red"))
            if self.is_mounted:
                self._focus_field(message.error.field)
            return
        self.remember(message.values)
        self.post_message(message.request)
        self._say("#form-message", Text(f"✓ queued {message.request.spec.run_id}", style="green"))

    @work(thread=True, group="remember")
    def remember(self, values: dict) -> None:
        """Keep what was launched: a reopened kdtui starts its form from it."""
        try:
            self.app.store.save_settings(LAST, to_remember(values))
        except (OSError, KDError):  # an unwritable store: the form simply starts from the defaults next time
            pass

    def _focus_field(self, field: str | None, opened: bool = False) -> None:
        if not field:
            return
        more = self.query_one(MoreOptions)
        if more.holds(field) and not more.made and not opened:  # under "More options": opened (its fields are
            more.collapsed = False  # made), then marked
            self.call_after_refresh(self._focus_field, field, True)
            return
        widgets = self.query(f"#{field}")
        if not widgets:
            return
        widget = widgets.first()
        if widget.ancestors and any(isinstance(a, Collapsible) for a in widget.ancestors):
            self.query_one("#more", Collapsible).collapsed = False
        widget.add_class("-invalid")
        widget.focus()
