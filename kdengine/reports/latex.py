"""A table as LaTeX for a paper (no torch): pandas' Styler for the cells, booktabs rules, the marks as every front
end has them, the title as the caption and the notes (interval method, family, correction, power, settings) as a
list under it.

- **Within a landscape page.** A table wider than about a page is split into parts of its number columns, each
  repeating the row labels ("(continued)"), and every part is scaled down to the line width if it still runs past
  it (``\\resizebox``, only then); ``tables.tex`` is landscape A4 with 1 cm margins.
- **Bold** marks a row's best among alternatives in a strategy table (the teachers and the baseline); in a sweep
  table the value chosen on val (:attr:`~.table_model.Table.emphasis`), never the best on test.
- Negative numbers are ``$-$0.0123``, not a hyphen. Text is escaped for LaTeX, and the few symbols the tables use
  (±, ρ, κ, →, –, ×, −) are written as LaTeX commands: pdflatex takes it as it is, with ``booktabs`` and
  ``graphicx`` in the preamble (tests/test_latex.py compiles one table of each kind where pdflatex is installed).
"""
from __future__ import annotations

import re

from .stats import Summary
from .table_model import METRICS, Table, text_frame

# after escaping: the tables' non-ASCII symbols, as LaTeX commands pdflatex knows without extra packages
SYMBOLS = {"±": r"$\pm$", "ρ": r"$\rho$", "κ": r"$\kappa$", "→": r"$\to$", "–": "--", "—": "---", "×": r"$\times$",
           "≥": r"$\geq$", "≤": r"$\leq$", "·": r"$\cdot$", "○": r"$\circ$", "’": "'", "²": r"$^2$", "−": "$-$",
           "α": r"$\alpha$", "σ": r"$\sigma$", "…": r"\ldots{}"}
# a minus sign before a number (after a space, a bracket, a colon, or at the start): not a hyphen in a word
_MINUS = re.compile(r"(?<![\w$\-])-(?=\d)")
PAGE_PT = 786.0  # the text width of landscape A4 with 1 cm margins
CHAR_PT = 3.6  # a character of \scriptsize, about
COLUMN_PT = 12.0  # the space between two columns (2 \tabcolsep)
SHRINK = 1.35  # a part may be this much wider than the page: \resizebox takes it in, still readable


def symbols(text: str) -> str:
    text = _MINUS.sub("$-$", text)
    for k, v in SYMBOLS.items():
        text = text.replace(k, v)
    # anything else outside Latin-1 (which T1 and pdflatex's utf-8 take) would stop pdflatex: a question mark
    return "".join(ch if ord(ch) < 256 else "?" for ch in text)


_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Plain text (a caption) escaped for LaTeX, as Styler's ``escape="latex"`` escapes the cells."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def comparable(t: Table) -> list[int]:
    """The columns among which a row's best cell is picked: a strategy table's teachers and baseline; none where the
    columns are not alternatives (splits, attention measures) or the choice is made elsewhere (a sweep: on val)."""
    if t.name.startswith(("students_", "robustness_")):
        return [i for i, c in enumerate(t.columns) if not t.is_text(c) and not c.startswith("gain")]
    return []


def best_cells(t: Table, higher: bool) -> set[tuple[int, int]]:
    if t.name.startswith("sweep_"):
        return set(t.emphasis)
    out = set()
    cols = comparable(t)
    for i, row in enumerate(t.rows):
        vals = [(row[j].mean, j) for j in cols if isinstance(row[j], Summary)]
        if len(vals) > 1:
            top = max(v for v, _ in vals) if higher else min(v for v, _ in vals)
            out |= {(i, j) for v, j in vals if v == top}
    return out


def _width(text, j: int) -> float:
    return max(len(str(text.columns[j])), *(len(str(v)) for v in text.iloc[:, j])) * CHAR_PT + COLUMN_PT


def parts(t: Table, text) -> list[list[int]]:
    """The table's columns in parts that each fit about a page: the leading label columns in every part, the
    others in order, as many as fit."""
    labels = []
    for j, c in enumerate(t.columns):
        if not t.is_text(c):
            break
        labels.append(j)
    rest = [j for j in range(len(t.columns)) if j not in labels]
    room = PAGE_PT * SHRINK - sum(_width(text, j) for j in labels)
    out, current, used = [], [], 0.0
    for j in rest:
        w = _width(text, j)
        if current and used + w > room:
            out.append(current)
            current, used = [], 0.0
        current.append(j)
        used += w
    out.append(current)
    return [labels + p for p in out if p] or [labels]


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    items = "".join(rf"\item {symbols(escape(n))} " for n in notes)
    return (r"\newline\begin{minipage}[t]{\linewidth}\begin{itemize}\setlength{\itemsep}{0pt}"
            + items + r"\end{itemize}\end{minipage}")


def table_latex(t: Table, metric: str = "accuracy") -> str:
    """One table as LaTeX ``table`` floats (booktabs; one per part of a wide table), its caption the title with
    the notes listed under it."""
    text = text_frame(t)
    bold = best_cells(t, METRICS.get(metric, ("", (0, 1), True))[2])
    chunks = parts(t, text)
    floats = []
    for k, cols in enumerate(chunks):
        frame = text.iloc[:, cols]
        marks = [["textbf:--rwrap;" if (i, j) in bold else "" for j in cols] for i in range(len(text))]

        def style(f, marks=marks):
            import pandas as pd  # pandas (0.4 s): only where a table is written

            return pd.DataFrame(marks, index=f.index, columns=f.columns)

        styler = (frame.style.apply(style, axis=None).format(escape="latex").format_index(escape="latex", axis=1)
                  .hide(axis="index"))
        tabular = symbols(styler.to_latex(hrules=True, column_format="".join(
            "l" if t.is_text(t.columns[j]) else "r" for j in cols)))
        title = symbols(escape(t.title))
        more = f" (continued, part {k + 1} of {len(chunks)})" if k else ""
        caption = rf"\caption[{title}{more}]{{{title}.{more}" + (_notes(t.notes) if k == 0 else "") + "}"
        label = rf"\label{{tab:{t.name}}}" if k == 0 else rf"\label{{tab:{t.name}-{k + 1}}}"
        floats.append("\n".join([r"\begin{table}[htbp]", r"\centering", caption, label,
                                 r"\sbox0{" + tabular.strip() + "}%",
                                 r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi",
                                 r"\end{table}", ""]))
    return "\n".join(floats)


def document(floats: list[str], title: str) -> str:
    """A standalone document of the tables (``tables.tex``): compiles with pdflatex, booktabs and graphicx."""
    return "\n".join([r"\documentclass{article}", r"\usepackage[T1]{fontenc}", r"\usepackage{booktabs}",
                      r"\usepackage{graphicx}", r"\usepackage[landscape,margin=1cm]{geometry}", r"\begin{document}",
                      r"\scriptsize", r"\section*{" + symbols(escape(title)) + "}", *floats, r"\end{document}", ""])
