"""The selected run in full: its panes (curves overlaid with its teachers', its baseline's and a pinned run's;
confusion matrix; report; details; looks), and its line above them (:class:`RunLine`: state, phase, device,
reason, test metrics).

``RunDetail`` owns what it shows: the run's detail and its overlays (``api.RunDetail``, read again incrementally),
its facts and its maps; it reads them in a worker thread (``load``), draws only the pane on display, and posts
:class:`RunDetail.Updated` when the run's detail changed (its line says it anew)."""
from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static, TabbedContent, TabPane

from kdengine import api
from kdengine.api import Choices
from kdengine.api import RunDetail as Detail
from kdengine.api import State

from ..store_view import state_word
from .confusion import ConfusionPane, ReportPane
from .curves import CurvesPane
from .looks import LooksPane
from .run_list import STATE_STYLE

SPLITS = ("test", "val", "train")  # p again: the report's next split


@dataclass
class Read:
    """What one read of the store gave for the selected run."""

    run_id: str
    view: Detail | None = None
    overlays: list[tuple[str, Detail]] = field(default_factory=list)  # (label, detail): its teachers, its baseline
    pinned: Detail | None = None
    facts: api.RunFacts | None = None  # read while the Details pane shows
    looks: api.Looks | None = None  # read while the Looks pane shows
    looks_read: bool = False


class RunLine(Static):
    """The selected run in a line or two: state, phase, device, reason, test metrics, its last warning."""

    def show(self, run_id: str | None, row: api.RunRow | None, view: Detail | None, workers_alive: bool,
             gpus: int | None) -> None:
        line = Text(str(run_id), style="bold")
        if row is not None:
            line.append(f"  {state_word(row)}", style=STATE_STYLE.get(state_word(row), ""))
            if row.phase and row.state == State.RUNNING:
                line.append(f" · {row.phase}")
            line.append(f" · {row.device}", style="dim")
            if row.reason:
                line.append(f" · {row.reason}", style="red" if row.state == State.FAILED or row.damaged else "yellow")
            if row.state == State.QUEUED and row.device == "cuda" and gpus == 0:
                line.append("  queued for CUDA: no GPU here, a CUDA worker on another machine takes it",
                            style="bold yellow")
            elif row.state == State.QUEUED and not workers_alive:
                line.append("  no worker is running: press w to start one", style="bold yellow")
        if view is not None and view.metrics:
            m = view.metrics.get("test") if isinstance(view.metrics.get("test"), dict) else {}
            kind = (view.metrics.get("task") or {}).get("kind") if isinstance(view.metrics.get("task"), dict) else None
            wanted = HEADLINE if Choices.usual_metric([kind] if kind else []) == "auroc" else HEADLINE[:3]
            said = [f"{label} {m[key]:{fmt}}" for key, label, fmt in wanted
                    if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool)]
            if said:  # what metrics.json holds (a hand-made or older one may lack some)
                line.append("  test " + " · ".join(said))
            if view.metrics.get("synthetic"):
                line.append("  [synthetic data]", style="dim")
        for w in (view.warnings[-1:] if view is not None else []):
            line.append(f"\n{w}", style="yellow")
        self.update(line, layout=False)  # a fixed height: no layout pass

    def say(self, text: Text) -> None:
        self.update(text, layout=False)


# the run line's test figures, in order: (key in metrics.json, label, format); AUROC where the task is read by it
HEADLINE = (("accuracy", "acc", ".4f"), ("macro_f1", "F1", ".4f"), ("kappa", "κ", ".3f"), ("auroc", "AUROC", ".3f"))


class RunDetail(Vertical):
    DEFAULT_CSS = "RunDetail { width: 100%; height: 1fr; min-height: 10; } RunDetail.-short-screen { height: 2fr; }"

    class Updated(Message):
        """The selected run's detail changed (or could not be read: ``error``)."""

        def __init__(self, error: Exception | None = None) -> None:
            super().__init__()
            self.error = error

    class Loaded(Message):
        def __init__(self, read: Read, error: Exception | None = None) -> None:
            super().__init__()
            self.read = read
            self.error = error

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.row: api.RunRow | None = None
        self.run_id: str | None = None
        self.current = Read("")  # what was last read for run_id
        self.pinned_id: str | None = None
        self.report_split = "test"
        self.look_index = 0  # the image the Looks pane shows (kept across runs: one image, model after model)
        self.drawn_version = -1
        self.reading: str | None = None  # the run a read is under way for

    def compose(self) -> ComposeResult:
        with TabbedContent(id="panes", initial="curves"):
            with TabPane("Curves [c]", id="curves"):
                yield CurvesPane(id="curves-pane")
            with TabPane("Confusion [m]", id="confusion"):
                yield ConfusionPane(id="confusion-pane")
            with TabPane("Report [p]", id="report"):
                yield ReportPane(id="report-pane")
            with TabPane("Details [i]", id="details"):
                yield Static("", id="details-pane")
            with TabPane("Looks [l]", id="looks"):
                yield LooksPane("", id="looks-pane")

    @property
    def view(self) -> Detail | None:
        return self.current.view if self.current.run_id == self.run_id else None

    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active

    # -- which run ---------------------------------------------------------------------------------------------------
    def show_run(self, row: api.RunRow | None) -> None:
        """Follow the list's selection (the line follows at once, from the list's row; the panes after their
        read); None: no run is shown."""
        if row is None:
            self._clear()
            return
        self.row = row
        if row.run_id != self.run_id:
            self.run_id = row.run_id
            self.drawn_version = -1
            self.load()

    def _clear(self) -> None:
        """Nothing shown (a filter matches nothing, the last shown run was deleted, no runs yet): no stale detail."""
        if self.run_id is not None:
            self.run_id, self.row, self.current = None, None, Read("")
            self.query_one(CurvesPane).show(None, [], "", key="")
            self.query_one(ConfusionPane).show(None, [], "")
            self.query_one(ReportPane).show(None, "")
            self.query_one("#details-pane", Static).update("")
            self.query_one(LooksPane).update("")

    def toggle_pin(self) -> str | None:
        """Pin the selected run (its curves overlay every other run's), or unpin; the pinned run, or None."""
        if self.pinned_id is not None and (self.run_id is None or self.pinned_id == self.run_id):
            self.pinned_id = None
        elif self.run_id:
            self.pinned_id = self.run_id
        self.drawn_version = -1
        self.load()
        return self.pinned_id

    # -- reading the store -------------------------------------------------------------------------------------------
    def refresh_run(self) -> None:
        """Read the selected run again, unless a read of it is still under way (the next tick reads again)."""
        if self.reading != self.run_id:
            self.load()

    def load(self) -> None:
        """Read the selected run (and what the pane on display needs) in a worker thread."""
        if self.run_id is not None:
            self.reading = self.run_id
            self._read(self.app.store, self.run_id, self.current, self.pinned_id, self.active)

    @work(thread=True, group="run-detail")
    def _read(self, store: api.Store, run_id: str, before: Read, pinned: str | None, pane: str) -> None:
        """The run's detail (only what its log gained since ``before``), its teachers' and baseline's, the pinned
        run's, and what the pane on display needs besides."""
        same = before.run_id == run_id
        read = Read(run_id)
        try:
            read.view = view = store.detail(run_id, before.view if same else None)
            old = {v.run_id: v for _, v in before.overlays} if same else {}
            wanted = [(f"T {t.model}", t.run_id) for t in (view.spec.teachers if view.spec else [])]
            base = view.baseline_id if view.baseline_id not in view.teacher_ids else None  # drawn once, as teacher
            if base and (base in old or store.header(base) is not None):  # its baseline, once in the store
                wanted.append((f"B {view.model}", base))
            read.overlays = [(label, store.detail(rid, old.get(rid))) for label, rid in wanted]
            if pinned is not None:
                read.pinned = store.detail(pinned, before.pinned if same and before.pinned is not None
                                           and before.pinned.run_id == pinned else None)
            if pane == "details":
                read.facts = store.facts(run_id)
            read.looks, read.looks_read = (before.looks, True) if same and before.looks_read else (None, False)
            if pane == "looks" and not read.looks_read:
                read.looks, read.looks_read = store.looks(run_id), True
            if same and pane != "details":
                read.facts = before.facts
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.post_message(self.Loaded(read, exc))
            return
        self.post_message(self.Loaded(read))

    def on_run_detail_loaded(self, message: Loaded) -> None:
        message.stop()
        read = message.read
        if self.reading == read.run_id:
            self.reading = None
        if read.run_id != self.run_id:  # another run was selected meanwhile: its own read follows
            return
        older = self.current.view if self.current.run_id == read.run_id else None
        if older is not None and read.view is not None and read.view.version < older.version:
            return  # a read that started before the one already shown
        if message.error is not None:
            self.post_message(self.Updated(message.error))
            return
        before = self.current
        self.current = read
        changed = (before.run_id != read.run_id or before.view is not read.view or before.pinned is not read.pinned
                   or [v for _, v in before.overlays] != [v for _, v in read.overlays])
        if changed or self.drawn_version != read.view.version:
            self.drawn_version = read.view.version
            self.post_message(self.Updated())
            self.draw_panes()
        elif read.facts is not before.facts or read.looks is not before.looks or read.looks_read != before.looks_read:
            self.draw_panes()

    # -- drawing ---------------------------------------------------------------------------------------------------
    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if self.view is not None:
            self.draw_panes()
            if self.active in ("details", "looks"):
                self.load()  # what only that pane shows

    def draw_panes(self) -> None:
        """Only the pane on display is drawn (the others when their tab is chosen)."""
        view = self.view
        if view is None:
            return
        active = self.active
        if active == "curves":
            self._draw_curves(view)
        elif active == "confusion":
            self.query_one(ConfusionPane).show(view.confusion, view.class_names, confusion_label(view))
        elif active == "details":
            self._draw_details(view)
        elif active == "looks":
            self._draw_looks(view)
        else:
            self._draw_report(view)

    def _draw_curves(self, view: Detail) -> None:
        overlays = [(label, v.curves) for label, v in self.current.overlays]
        pinned = self.current.pinned
        if pinned is not None and pinned.run_id != view.run_id:
            overlays.append((f"≈ {pinned.model}", pinned.curves))
        row = self.row
        role = row.what if row is not None else ("student" if view.kind == "kd" else "run")
        self.query_one(CurvesPane).show(view.curves, overlays, f"{role} {view.model}",
                                        key=f"{view.run_id}|{self.pinned_id or ''}")

    def _draw_report(self, view: Detail) -> None:
        """The classification report of one split (p again: test, val, train); before the end, val's latest."""
        summary, split = "", self.report_split
        if view.metrics:
            t = view.metrics[split]
            summary = (f"{split}: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, kappa {t['kappa']:.4f}, "
                       f"ECE {t['ece']:.4f}" + (f", agreement {t['agreement']:.4f}" if "agreement" in t else ""))
            report, title = view.report(split), f"classification report ({split}; p: next split)"
        else:
            report, title = view.report(), "classification report (val, latest epoch)"
        self.query_one(ReportPane).show(report, title, summary)

    def _draw_details(self, view: Detail) -> None:
        """What the run is: its data (synthetic or not), settings, teachers, baseline and gain (as `runs show`)."""
        row = self.row
        lines = [Text(view.run_id, style="bold")]
        if row is not None:
            lines.append(Text(f"{row.what}" + (f" ({row.point})" if row.point else "") + f" · {state_word(row)}"
                              + (f" · {row.reason}" if row.reason else "")))
        facts = self.current.facts
        lines += facts_text(facts) if facts is not None else [Text("reading…", style="dim")]
        self.query_one("#details-pane", Static).update(Text("\n").join(lines))

    def _draw_looks(self, view: Detail) -> None:
        height = self.query_one("#panes").size.height - 2
        if not self.current.looks_read:
            self.query_one(LooksPane).update(Text("reading the maps…", style="dim"))
            return
        self.query_one(LooksPane).show(self.current.looks, view.run_id, self.look_index, max(6, height))

    # -- the panes' keys ---------------------------------------------------------------------------------------------
    def look(self, step: int) -> None:
        """The Looks pane's next (l again) or previous (L) image."""
        self.look_index += step
        tabs = self.query_one(TabbedContent)
        if tabs.active != "looks":
            tabs.active = "looks"
        elif self.view is not None:
            self._draw_looks(self.view)

    def pane(self, pane: str) -> None:
        tabs = self.query_one(TabbedContent)
        if pane == "report" and tabs.active == "report":  # p again: the next split
            self.report_split = SPLITS[(SPLITS.index(self.report_split) + 1) % len(SPLITS)]
            if self.view is not None:
                self._draw_report(self.view)
            return
        if pane == "looks" and tabs.active == "looks":  # l again: the next image
            self.look(1)
            return
        tabs.active = pane

    def zoom(self) -> bool:
        """The list alone, or back; True when the panes show."""
        self.display = not self.display
        return bool(self.display)


def confusion_label(view: Detail) -> str:
    if view.confusion_split == "test":
        return "test, best checkpoint"
    return f"val, epoch {view.confusion_epoch}" if view.confusion_epoch is not None else ""


def facts_text(facts: api.RunFacts) -> list[Text]:
    """A run's facts (``api.RunFacts``), line by line, the synthetic data in yellow."""
    if facts.damage:
        return [Text(f"damaged: {facts.damage}", style="red")]
    out = [Text(f"data: {facts.data}" + ("  (SYNTHETIC: generated images, not real radiographs)"
                                         if facts.synthetic else ""), style="yellow" if facts.synthetic else "")]
    changed = ", ".join(f"{k}={v}" for k, v in facts.changed.items()) or "the defaults"
    out.append(Text(f"settings: {changed}; seed {facts.seed}"))
    if facts.kd is not None:
        out.append(Text("kd: " + ", ".join(f"{k}={v}" for k, v in facts.kd.items())))
    for t in facts.teachers:
        where = str(t.state) if t.state is not None else "not in the store"
        defect = f"defective: stop at val accuracy {t.defect_acc}; " if t.defect_acc is not None else ""
        acc = f", test accuracy {t.test_accuracy:.4f}" if t.test_accuracy is not None else ""
        out.append(Text(f"teacher: {t.run_id} ({defect}{where}{acc})"))
    if (b := facts.baseline) is not None:
        gain = f", test accuracy {b.test_accuracy:.4f}; gain {b.gain:+.4f}" if b.gain is not None else ""
        out.append(Text(f"baseline: {b.run_id} ({b.state if b.state is not None else 'not in the store'}{gain})"))
    return out
