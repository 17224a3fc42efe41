"""A table as LaTeX for a paper (no torch): pandas' Styler, booktabs rules, the best cell of each row in bold, the
marks as the Markdown has them, and the note (interval method, correction, n) as the caption.

Needs only ``booktabs`` in the preamble (``\\usepackage{booktabs}``); text is escaped for LaTeX, and the few
symbols the tables use (±, ρ, κ, →, –) are written as LaTeX commands, so pdflatex takes it as it is.
"""
from __future__ import annotations

from .stats import Summary
from .table_model import METRICS, Table, text_frame

# after escaping: the tables' non-ASCII symbols, as LaTeX commands pdflatex knows without extra packages
SYMBOLS = {"±": r"$\pm$", "ρ": r"$\rho$", "κ": r"$\kappa$", "→": r"$\to$", "–": "--", "—": "---", "×": r"$\times$",
           "≥": r"$\geq$", "≤": r"$\leq$", "·": r"$\cdot$", "○": r"$\circ$", "’": "'", "²": r"$^2$"}


def symbols(text: str) -> str:
    for k, v in SYMBOLS.items():
        text = text.replace(k, v)
    return text


_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Plain text (a caption) escaped for LaTeX, as Styler's ``escape="latex"`` escapes the cells."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def comparable(t: Table) -> list[int]:
    """The columns among which a row's best cell is picked: a sweep's gains at each value, a strategy table's
    teachers and baseline; none where the columns are not alternatives (splits, attention measures)."""
    if t.name.startswith("sweep_"):
        return [i for i, c in enumerate(t.columns) if c.startswith("gain ") and "at best" not in c]
    if t.name.startswith(("students_", "robustness_")):
        return [i for i, c in enumerate(t.columns) if not t.is_text(c) and not c.startswith("gain")]
    return []


def best_cells(t: Table, higher: bool) -> set[tuple[int, int]]:
    out = set()
    cols = comparable(t)
    for i, row in enumerate(t.rows):
        vals = [(row[j].mean, j) for j in cols if isinstance(row[j], Summary)]
        if len(vals) > 1:
            top = max(v for v, _ in vals) if higher else min(v for v, _ in vals)
            out |= {(i, j) for v, j in vals if v == top}
    return out


def table_latex(t: Table, metric: str = "accuracy") -> str:
    """One table as a LaTeX ``table`` float (booktabs), its caption the title and the notes."""
    import pandas as pd  # pandas (0.4 s): only where a table is written

    text = text_frame(t)
    bold = best_cells(t, METRICS.get(metric, ("", (0, 1), True))[2])

    def style(frame):
        return pd.DataFrame([["textbf:--rwrap;" if (i, j) in bold else "" for j in range(frame.shape[1])]
                             for i in range(frame.shape[0])], index=frame.index, columns=frame.columns)

    caption = " ".join([escape(t.title) + "."] + [escape(n) for n in t.notes])
    styler = (text.style.apply(style, axis=None).format(escape="latex").format_index(escape="latex", axis=1)
              .hide(axis="index"))
    return symbols(styler.to_latex(hrules=True, caption=caption, label=f"tab:{t.name}",
                                   column_format="l" * len(t.columns), position="htbp", position_float="centering"))


def document(floats: list[str], title: str) -> str:
    """A standalone document of the tables (``tables.tex``): compiles with pdflatex and booktabs alone."""
    return "\n".join([r"\documentclass{article}", r"\usepackage[T1]{fontenc}", r"\usepackage{booktabs}",
                      r"\usepackage[landscape,margin=1cm]{geometry}", r"\begin{document}", r"\scriptsize",
                      r"\section*{" + symbols(escape(title)) + "}", *floats, r"\end{document}", ""])
