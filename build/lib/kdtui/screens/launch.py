"""Launch: choose data, teacher, student, strategy and settings; queue the runs; make sure a worker runs."""
from __future__ import annotations

import subprocess
import sys

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, Static

from kdengine.runspec import OPTIMIZERS, STRATEGIES

from ..forms import DEFAULTS, PRESETS, FieldError, model_note, model_suggestions, reverse_warning, spec_from_form

TEXT_FIELDS = {"epochs": "integer", "batch_size": "integer", "lr": "number", "image_size": "integer",
               "alpha": "number", "temperature": "number", "defect_acc": "number", "seed": "integer"}
LABELS = {"epochs": "Epochs", "batch_size": "Batch size", "lr": "Learning rate", "image_size": "Image size",
          "alpha": "Alpha (KD)", "temperature": "Temperature", "defect_acc": "Defect acc", "seed": "Seed"}


class LaunchScreen(Screen):
    BINDINGS = [
        Binding("f2", "preset('cpu-quick')", "CPU-quick"),
        Binding("f3", "preset('thesis')", "Thesis"),
        Binding("f5", "launch", "Launch"),
        Binding("escape", "leave_form", "Leave form"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="launch-form"):
            with Horizontal(classes="row"):
                yield Label("Data", classes="label")
                yield Input(DEFAULTS["data"], id="data", compact=True,
                            placeholder="synthetic | mura:PATH | folder:PATH | npz:PATH")
            yield Static("", id="data-summary", classes="note")
            models = model_suggestions()
            with Grid(id="launch-grid"):
                yield Label("Strategy", classes="label")
                yield Select([(s, s) for s in STRATEGIES], value=DEFAULTS["strategy"], allow_blank=False,
                             id="strategy", compact=True)
                yield Label("Optimizer", classes="label")
                yield Select([(o, o) for o in OPTIMIZERS], value=DEFAULTS["optimizer"], allow_blank=False,
                             id="optimizer", compact=True)
                yield Label("Teacher", classes="label")
                yield Input(DEFAULTS["teacher"], id="teacher", compact=True,
                            suggester=SuggestFromList(models, case_sensitive=False))
                yield Label("Student", classes="label")
                yield Input(DEFAULTS["student"], id="student", compact=True,
                            suggester=SuggestFromList(models, case_sensitive=False))
                yield Static("", id="teacher-note", classes="note span2")
                yield Static("", id="student-note", classes="note span2")
                for key, kind in TEXT_FIELDS.items():
                    yield Label(LABELS[key], classes="label")
                    yield Input(DEFAULTS[key], id=key, type=kind, compact=True)
                yield Label("Device", classes="label")
                yield Select([(d, d) for d in ("auto", "cpu", "cuda")], value=DEFAULTS["device"], allow_blank=False,
                             id="device", compact=True)
                yield Label("Pretrained", classes="label")
                yield Checkbox("ImageNet", DEFAULTS["pretrained"], id="pretrained", compact=True)
                yield Label("Baseline", classes="label")
                yield Checkbox("student alone", True, id="baseline", compact=True)
            yield Static("", id="form-message")
            yield Button("Launch  [F5]", id="launch", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#data", Input).focus()
        self.check_data(self.query_one("#data", Input).value)
        self._refresh_notes()

    # -- values ----------------------------------------------------------------------------------------
    def values(self) -> dict:
        out = {}
        for w in self.query("Input, Select, Checkbox"):
            if w.id:
                out[w.id] = w.value
        return out

    def _set(self, key: str, value) -> None:
        widget = self.query_one(f"#{key}")
        widget.value = value

    # -- live checks ------------------------------------------------------------------------------------
    @on(Input.Changed, "#data")
    def _data_changed(self, event: Input.Changed) -> None:
        self.query_one("#data-summary", Static).update(Text("checking…", style="dim"))
        self.check_data(event.value)

    @work(thread=True, exclusive=True, group="data-check")
    def check_data(self, spec: str) -> None:
        import time

        time.sleep(0.3)  # debounce: only the last value typed is checked
        from textual.worker import get_current_worker

        if get_current_worker().is_cancelled:
            return
        from kdengine.data.spec import DataConfig, open_source
        from kdengine.errors import KDError

        try:
            src = open_source(DataConfig(spec=spec))
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
            self.app.call_from_thread(self.query_one("#data-summary", Static).update, text)

    @on(Input.Changed, "#teacher, #student")
    @on(Select.Changed, "#strategy")
    def _models_changed(self, event) -> None:
        self._refresh_notes()

    def _refresh_notes(self) -> None:
        values = self.values()
        for key in ("teacher", "student"):
            name = values.get(key, "")
            note = model_note(name)
            if key == "teacher" and values.get("strategy") == "ensemble":
                names = [n.strip() for n in name.split(",") if n.strip()]
                note = f"ensemble of {len(names)}: " + ", ".join(model_note(n) or "?" for n in names)
                note = note if all(model_note(n).endswith("parameters") for n in names) else \
                    "ensemble: several teachers, comma-separated (catalog names)"
            elif key == "teacher" and values.get("strategy") in ("baseline", "tf-self", "tf-reg"):
                note = f"{values['strategy']} uses no teacher network"
            self.query_one(f"#{key}-note", Static).update(Text(note, style="dim"))
            if note.startswith("not in the catalog"):
                self.check_model(key, name)
        warn = reverse_warning(values)
        self.query_one("#form-message", Static).update(Text(warn, style="yellow") if warn else "")

    def check_model(self, key: str, name: str) -> None:
        self.run_worker(lambda: self._check_model(key, name), thread=True, exclusive=True, group=f"model-{key}")

    def _check_model(self, key: str, name: str) -> None:
        import time

        from textual.worker import get_current_worker

        time.sleep(0.6)  # debounce while typing
        if get_current_worker().is_cancelled:
            return
        proc = subprocess.run([sys.executable, "-m", "kdengine", "models", "--check", name], capture_output=True,
                              text=True, timeout=120)
        err = proc.stderr.strip().removeprefix("error: ").split("; `kdengine")[0]
        text = Text(("✓ " + proc.stdout.strip()) if proc.returncode == 0 else ("✗ " + err),
                    style="green" if proc.returncode == 0 else "red")

        def apply() -> None:
            if self.values().get(key, "").strip() == name.strip():
                self.query_one(f"#{key}-note", Static).update(text)

        self.app.call_from_thread(apply)

    # -- actions ---------------------------------------------------------------------------------------
    def action_leave_form(self) -> None:
        """Take focus out of the fields, so that 1/2/3/q/? work again."""
        self.set_focus(None)

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
            self.query_one("#data", Input).focus()
            return
        try:
            spec = spec_from_form(self.values())
        except FieldError as err:
            message.update(Text(f"✗ {err.message}", style="red"))
            try:
                widget = self.query_one(f"#{err.field}")
                widget.add_class("-invalid")
                widget.focus()
            except Exception:  # noqa: BLE001
                pass
            return
        try:
            run_id = self.app.launch(spec, self.values()["device"], self.values().get("baseline", True))
        except Exception as exc:  # noqa: BLE001 - report, never crash
            message.update(Text(f"✗ could not launch: {exc}", style="red"))
            return
        message.update(Text(f"✓ queued {run_id}", style="green"))
