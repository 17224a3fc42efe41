"""The seed planner in kdtui (`p` on Results): how many seeds, and test images, a stated gain needs at 80% power
after the study's correction, from the study's finished runs as a pilot. The same api.plan_seeds as `kdengine study
plan NAME --detect GAIN`, and the same arithmetic on screen. Self-contained: a modal with one field."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from kdengine.errors import KDError

DEFAULT_GAIN = "0.02"


class PlanScreen(ModalScreen[None]):
    """Type the gain to detect (accuracy, e.g. 0.02), enter: the plan and its arithmetic; esc closes."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]
    DEFAULT_CSS = """
    PlanScreen { align: center middle; }
    #plan-box { width: 96%; height: 90%; border: round $accent; padding: 0 1; background: $surface; }
    #plan-out { width: 100%; }
    """

    def __init__(self, study: str) -> None:
        super().__init__()
        self.study = study

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="plan-box") as box:
            box.border_title = f"plan seeds · {self.study} · enter computes · esc closes"
            yield Input(value=DEFAULT_GAIN, placeholder="the gain to detect, e.g. 0.02", id="plan-gain")
            yield Static(Text("the gain to detect (accuracy), then enter: the seeds it needs at 80% power after the "
                              "study's correction, from its finished runs", style="dim"), id="plan-out")

    def on_mount(self) -> None:
        self.query_one("#plan-gain", Input).focus()

    class Planned(Message):
        """A plan, or the one line that says why there is none, from the worker."""

        def __init__(self, plan, error: str | None = None) -> None:
            super().__init__()
            self.plan, self.error = plan, error

    def on_input_submitted(self, event: Input.Submitted) -> None:
        out = self.query_one("#plan-out", Static)
        try:
            gain = float(event.value)
        except ValueError:
            out.update(Text(f"not a number: '{event.value}' (the gain, e.g. 0.02)", style="red"))
            return
        out.update(Text("planning…", style="bold yellow"))
        self.plan(gain)

    @work(thread=True, group="plan", exclusive=True)
    def plan(self, gain: float) -> None:
        """The pilot's tables are built off the UI thread, as Results builds its own."""
        try:
            self.post_message(self.Planned(self.app.store.plan_seeds(self.study, gain)))
        except KDError as exc:
            self.post_message(self.Planned(None, str(exc)))

    def on_plan_screen_planned(self, message: "PlanScreen.Planned") -> None:
        out = self.query_one("#plan-out", Static)
        out.update(Text(message.error, style="red") if message.error else Text(message.plan.text()))
