"""The confusion matrix with counts and class names, shaded by row share (a multi-label run: one 2 x 2 matrix per
finding); and the classification report."""
from __future__ import annotations

from rich.columns import Columns
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

# (upper share, background, text): colours that keep their order in 16-colour (ANSI) terminals too.
SHADES = ((0.15, "grey30", "white"), (0.4, "blue", "white"), (0.7, "dark_cyan", "black"), (1.01, "bright_cyan", "black"))


def shade(share: float) -> str:
    for upper, bg, fg in SHADES:
        if share < upper:
            return f"bold {fg} on {bg}"
    return ""


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "."


def confusion_table(cm: list[list[int]], names: list[str], label: str) -> Group:
    """The caption above the matrix, as wide as the pane (a table's own title wraps at the table's width: a few
    classes made it a column of 35 characters), then the matrix."""
    return Group(Text(f"{label} · rows true, columns predicted", style="italic"), _matrix(cm, names))


def _matrix(cm: list[list[int]], names: list[str]) -> Table:
    width = 5 if len(names) > 5 else 9
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=False, header_style="bold")
    table.add_column("", no_wrap=True)
    for n in names:
        table.add_column(_short(n, width), justify="right", no_wrap=True)
    for i, row in enumerate(cm):
        total = sum(row) or 1
        cells = []
        for j, v in enumerate(row):
            style = shade(v / total) if v else "dim"
            cells.append(Text(str(v), style=style + (" underline" if i == j else "")))
        table.add_row(_short(names[i], 9), *cells)
    return table


def finding_tables(cms: dict[str, list[list[int]]], label: str) -> Group:
    """A multi-label run's confusion: one small matrix per finding (absent, present) at a probability of 0.5, laid
    side by side as the pane's width allows."""
    tables = []
    for name, cm in cms.items():
        table = _matrix(cm, ["absent", "present"])
        table.title = Text(_short(name, 24), style="bold")
        tables.append(table)
    head = Text(f"{label} · each finding at 0.5 · rows true, columns predicted", style="bold")
    return Group(head, Columns(tables, padding=(1, 3)))


class ConfusionPane(Static):
    def show(self, cm: list[list[int]] | dict[str, list[list[int]]] | None, names: list[str], label: str) -> None:
        if not cm or not names:
            self.update("No confusion matrix yet: it appears after the first epoch.")
        elif isinstance(cm, dict):
            self.update(finding_tables(cm, label))
        else:
            self.update(confusion_table(cm, names, label))


class ReportPane(Static):
    def show(self, report: dict | None, title: str, summary: str = "") -> None:
        if not report:
            self.update("No classification report yet.")
            return
        table = Table(title=title, title_justify="left", box=None, show_edge=False, pad_edge=False,
                      padding=(0, 1), header_style="bold")
        for col, just in (("class", "left"), ("precision", "right"), ("recall", "right"), ("f1", "right"), ("support", "right")):
            table.add_column(col, justify=just)
        for name, r in report.items():
            table.add_row(name, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
        if summary:
            table.caption = summary
            table.caption_justify = "left"
        self.update(table)
