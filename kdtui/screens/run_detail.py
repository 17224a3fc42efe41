"""The Runs screen's detail: the selected run's line, and its panes (curves overlaid with its teachers', its
baseline's and a pinned run's; confusion matrix; report; details; looks). A mixin of
:class:`~kdtui.screens.runs.RunsScreen`."""
from __future__ import annotations

from functools import lru_cache

from rich.text import Text
from textual.widgets import Static, TabbedContent

from kdengine import api
from kdengine.api import gpu_count
from kdengine.api import FAILED, QUEUED, RUNNING

from ..store_view import RunView, state_word
from ..widgets.confusion import ConfusionPane, ReportPane
from ..widgets.curves import CurvesPane
from ..widgets.looks import LooksPane
from .run_list import STATE_STYLE


@lru_cache(maxsize=1)
def local_gpus() -> int:
    """The GPUs this machine has (nvidia-smi, asked once: the run line is drawn often)."""
    return gpu_count()


class RunDetailMixin:
    """The selected run's line and panes."""

    def on_tabbed_content_tab_activated(self, event) -> None:
        if self.view is not None:
            self._draw_panes(self.view)

    def _draw(self, view: RunView) -> None:
        self._draw_line(view)
        self._draw_panes(view)

    def _draw_line(self, view: RunView | None) -> None:
        """The selected run in a line or two: state, phase, device, reason, test metrics."""
        rid = view.run_id if view is not None else self.selected
        row = self.rows.get(rid)
        line = Text(str(rid), style="bold")
        if row is not None:
            line.append(f"  {state_word(row)}", style=STATE_STYLE.get(state_word(row), ""))
            if row.phase and row.state == RUNNING:
                line.append(f" · {row.phase}")
            line.append(f" · {row.device}", style="dim")
            if row.reason:
                line.append(f" · {row.reason}", style="red" if row.state == FAILED or row.damaged else "yellow")
            if row.state == QUEUED and row.device == "cuda" and not local_gpus():
                line.append("  queued for CUDA: no GPU here, a CUDA worker on another machine takes it",
                            style="bold yellow")
            elif row.state == QUEUED and not self.workers_alive:
                line.append("  no worker is running: press w to start one", style="bold yellow")
        if view is not None and view.metrics:
            m = view.metrics
            line.append(f"  test acc {m['test']['accuracy']:.4f} · F1 {m['test']['macro_f1']:.4f} · κ {m['test']['kappa']:.3f}")
            if m.get("synthetic"):
                line.append("  [synthetic data]", style="dim")
        for w in (view.warnings[-1:] if view is not None else []):
            line.append(f"\n{w}", style="yellow")
        self.query_one("#run-line", Static).update(line, layout=False)  # a fixed height: no layout pass

    def _draw_panes(self, view: RunView) -> None:
        """Only the pane on display is drawn (the others when their tab is chosen)."""
        active = self.query_one(TabbedContent).active
        if active == "curves":
            self._draw_curves(view)
        elif active == "confusion":
            self.query_one(ConfusionPane).show(view.confusion, view.class_names, view.confusion_label)
        elif active == "details":
            self._draw_details(view)
        elif active == "looks":
            self._draw_looks(view)
        else:
            self._draw_report(view)

    def _draw_looks(self, view: RunView) -> None:
        height = self.query_one("#panes").size.height - 2
        self.query_one(LooksPane).show(self.app.store, view.run_id, view.spec, self.look_index, max(6, height))

    def action_look(self, step: int) -> None:
        """The Looks pane's next (l again) or previous (L) image."""
        self.look_index += step
        tabs = self.query_one(TabbedContent)
        if tabs.active != "looks":
            tabs.active = "looks"
        elif self.view is not None:
            self._draw_looks(self.view)

    def _draw_details(self, view: RunView) -> None:
        """What the run is: its data (synthetic or not), settings, teachers, baseline and gain (as `runs show`)."""
        row = self.rows.get(view.run_id)
        lines = [Text(view.run_id, style="bold")]
        if row is not None:
            lines.append(Text(f"{row.what}" + (f" ({row.point})" if row.point else "") + f" · {state_word(row)}"
                              + (f" · {row.reason}" if row.reason else "")))
        for fact in api.run_facts(self.app.store, view.run_id):
            style = "yellow" if "SYNTHETIC" in fact else ""
            lines.append(Text(fact, style=style))
        self.query_one("#details-pane", Static).update(Text("\n").join(lines))

    def _draw_curves(self, view: RunView) -> None:
        overlays = [(label, v.curves) for label, v in self.overlay_views]
        if self.pinned is not None and self.pinned.run_id != view.run_id:
            overlays.append((f"≈ {self.pinned.model}", self.pinned.curves))
        row = self.rows.get(view.run_id)
        role = row.what if row is not None else ("student" if view.spec and view.spec.kind == "kd" else "run")
        pinned = self.pinned.run_id if self.pinned is not None else ""
        self.query_one(CurvesPane).show(view.curves, overlays, f"{role} {view.model}", key=f"{view.run_id}|{pinned}")

    def _draw_report(self, view: RunView) -> None:
        """The classification report of one split (p again: test, val, train); before the end, val's latest."""
        summary, split = "", self.report_split
        if view.metrics:
            t = view.metrics[split]
            summary = (f"{split}: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, kappa {t['kappa']:.4f}, "
                       f"ECE {t['ece']:.4f}" + (f", agreement {t['agreement']:.4f}" if "agreement" in t else ""))
            report, title = view.metrics[split]["report"], f"classification report ({split}; p: next split)"
        else:
            report, title = view.report(), "classification report (val, latest epoch)"
        self.query_one(ReportPane).show(report, title, summary)

    # -- the list ------------------------------------------------------------------------------------------

    def action_zoom(self) -> None:
        panes = self.query_one("#panes")
        panes.display = not panes.display
        self.query_one("#run-line").display = panes.display
        self.query_one("#runs-table").set_class(not panes.display, "-zoomed")

    def action_pane(self, pane: str) -> None:
        tabs = self.query_one(TabbedContent)
        if pane == "report" and tabs.active == "report":  # p again: the next split
            order = ("test", "val", "train")
            self.report_split = order[(order.index(self.report_split) + 1) % len(order)]
            if self.view is not None:
                self._draw_report(self.view)
            return
        if pane == "looks" and tabs.active == "looks":  # l again: the next image
            self.action_look(1)
            return
        tabs.active = pane

    def action_pin(self) -> None:
        if self.pinned is not None and (self.selected is None or self.pinned.run_id == self.selected):
            self.pinned = None
            self.notify("unpinned")
        elif self.selected:
            self.pinned = RunView(self.app.store, self.selected)
            self.notify(f"pinned {self.selected}: its curves overlay the other runs'")
        self._drawn_version = -1
        self._draw_list_line(len(self.rows), len(self.shown))
        self.call_later(self._poll_selected)

    # -- run management ----------------------------------------------------------------------------------
