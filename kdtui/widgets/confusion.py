"""The confusion matrix with counts and class names, shaded by row share; and the classification report."""
from __future__ import annotations

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
    return Group(Text(f"{label} · rows true, columns predicted", style="italic"), table)


class ConfusionPane(Static):
    def show(self, cm: list[list[int]] | None, names: list[str], label: str) -> None:
        if not cm or not names:
            self.update("No confusion matrix yet: it appears after the first epoch.")
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
