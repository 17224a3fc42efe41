"""The Looks pane: where a run looks, from its ``explain.json`` (``kdengine explain``), drawn in half-block cells
(two pixels a cell, ▀ with a foreground and a background colour) so that it reads over SSH in any terminal of 256
colours or more; Rich lowers the colours to what the terminal has. A KD run is drawn beside its teacher and its
baseline, on the same image. No torch, no numpy: the maps are 32 x 32 grids of plain numbers, read by the run detail
off the UI thread (``api.Looks``)."""
from __future__ import annotations

import textwrap

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from kdengine.api import Looks

# inferno, at 8 stops: dark to bright, readable in grayscale (as the report's figures)
INFERNO = [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21), (250, 193, 39),
           (252, 255, 164)]
ALPHA = 0.55  # the map's weight over the image


def colormap(v: float) -> tuple[int, int, int]:
    v = min(1.0, max(0.0, v)) * (len(INFERNO) - 1)
    i = min(int(v), len(INFERNO) - 2)
    f = v - i
    a, b = INFERNO[i], INFERNO[i + 1]
    return tuple(int(a[k] + (b[k] - a[k]) * f) for k in range(3))


def sample(grid: list[list[float]], side: int) -> list[list[float]]:
    """The grid at ``side`` x ``side``, nearest cell."""
    n = len(grid)
    return [[grid[min(n - 1, y * n // side)][min(n - 1, x * n // side)] for x in range(side)] for y in range(side)]


def picture(thumb: list[list[float]], grid: list[list[float]] | None, side: int) -> list[Text]:
    """``side`` columns by side/2 rows: the image in gray, with the map blended over it when given."""
    img = sample(thumb, side)
    heat = sample(grid, side) if grid is not None else None

    def rgb(y: int, x: int) -> tuple[int, int, int]:
        g = int(img[y][x])
        if heat is None:
            return g, g, g
        c = colormap(heat[y][x])
        return tuple(int((1 - ALPHA) * g + ALPHA * c[k]) for k in range(3))

    rows = []
    for y in range(0, side - 1, 2):
        line = Text()
        for x in range(side):
            top, bottom = rgb(y, x), rgb(y + 1, x)
            line.append("▀", Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom)))
        rows.append(line)
    return rows



def _present(item: dict) -> list[int] | None:
    """A multi-label image's present findings (its ``true`` is a 0/1 vector, -1 unknown); None for a single label."""
    true = item["true"]
    return [k for k, v in enumerate(true) if v == 1] if isinstance(true, list) else None


def _right(item: dict) -> bool:
    """The model's top prediction is right: the true class, or one of a multi-label image's present findings."""
    present = _present(item)
    return item["pred"] == item["true"] if present is None else item["pred"] in present


def _true_text(item: dict, name) -> str:
    """The true class; a multi-label image's present findings, and the finding its map answers for."""
    present = _present(item)
    if present is None:
        return name(item["true"])
    found = ", ".join(name(k) for k in present) or "no finding"
    return f"{found} (map for {name(item['target'])})" if "target" in item else found

class LooksPane(Static):
    def show(self, looks: Looks | None, run_id: str, index: int, height: int) -> int:
        """Draw image ``index`` (modulo the number of images) of a run's maps (``api.Looks``, read off the UI
        thread); returns how many images there are."""
        if looks is None:
            self.update(Text(f"No maps yet: kdengine explain {run_id} (or its study) computes where this run, its "
                             "teachers and its baseline look.", style="dim"))
            return 0
        entry = looks.entry
        images = entry.get("images") or []
        if not images:
            self.update(Text("explain.json holds no images.", style="dim"))
            return 0
        i = index % len(images)
        me = images[i]
        names = entry.get("class_names") or []
        name = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
        key = entry.get("key") or {}
        columns: list[tuple[str, dict | None]] = []
        for partner in looks.partners:  # a KD run's teachers, then its baseline, on the same images
            label = f"teacher {partner.model}" if partner.role == "teacher" else partner.role
            columns.append((label, partner.entry["images"][i] if partner.entry else None))
        columns.append(("this run" if columns else "map", me))
        labels = ["image"] + [(f"{'✓' if _right(item) else '✗'} {label}: {name(item['pred'])}"
                               if item is not None else f"{label}: no maps") for label, item in columns]
        side = picture_side(labels, height)
        pictures = [(labels[0], picture(me["thumb"], None, side))]
        for label, (_, item) in zip(labels[1:], columns):
            pictures.append((label, picture(me["thumb"], item["grid"], side) if item is not None
                             else [Text(" " * side) for _ in range(side // 2)]))
        head = Text(f"{key.get('method')} · {key.get('target')} class · {key.get('split')} image {i + 1}/"
                    f"{len(images)}" + (f" under {key['shift']}" if key.get("shift") else "")
                    + f" · true {_true_text(me, name)} · {entry.get('cells')}x{entry.get('cells')} cells at "
                    f"{entry.get('layer')}  (l: next image, L: previous)", style="bold")
        lines = [head]
        agree = entry.get("agreement")
        if agree:
            ts = agree["teacher_student"]
            text = f"agreement with the teacher: ρ {_num(ts['spearman'][i])} · IoU {_num(ts['top_iou'][i])}"
            tb = agree.get("teacher_baseline")
            if tb:
                text += f"   (its baseline's: ρ {_num(tb['spearman'][i])} · IoU {_num(tb['top_iou'][i])})"
            lines.append(Text(text))
        if me.get("border_mass") is not None:
            lines.append(Text(f"border: {me['border_mass']:.2f} of the map (uniform: {entry['border']['area']:.2f})"))
        gap = "  "
        lines.extend(label_lines([label for label, _ in pictures], side, gap))
        for r in range(side // 2):
            row = Text()
            for k, (_, pic) in enumerate(pictures):
                row.append_text(pic[r])
                if k < len(pictures) - 1:
                    row.append(gap)
            lines.append(row)
        self.update(Text("\n").join(lines))
        return len(images)


def picture_side(labels: list[str], height: int) -> int:
    """The pictures' width (their height is half): what the pane's height leaves under the head, agreement and
    border lines and the labels, which wrap onto more lines as the pictures narrow (so the lines they take come
    from the pictures, never past the pane's bottom). 8 at least, 32 at most."""
    side = max(8, min(32, 2 * (height - 4)))
    for _ in range(3):  # labels take 3 lines at most: a narrower picture can add at most two
        fit = max(8, min(32, 2 * (height - 3 - len(label_lines(labels, side)))))
        if fit >= side:
            break
        side = fit
    return side


def label_lines(labels: list[str], side: int, gap: str = "  ", most: int = 3) -> list[Text]:
    """The pictures' labels above them, each wrapped at its picture's width (a narrow terminal gives the words
    more lines instead of cutting them: "✓ teacher resn"); a word longer than the picture is cut there, and a
    label that needs more than ``most`` lines ends in "…"."""
    wrapped = []
    for label in labels:
        parts = textwrap.wrap(label, side, break_long_words=True, break_on_hyphens=False) or [""]
        if len(parts) > most:
            parts = parts[:most - 1] + [textwrap.shorten(" ".join(parts[most - 1:]), side, placeholder="…")]
        wrapped.append(parts)
    rows = max(len(p) for p in wrapped)
    return [Text(gap.join((p[r] if r < len(p) else "").ljust(side) for p in wrapped), style="dim")
            for r in range(rows)]


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"
