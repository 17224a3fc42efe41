"""Figures, as PNG (matplotlib, headless; no torch): a run's curves, confusion matrix and reliability diagram,
written once at the end of every run into ``<run>/figures/``; and the report's comparisons (a student over its
baseline and teacher, robustness against severity).

Made for print as much as for screens: 9-point type or larger, lines told apart by style and marker as well as
by colour, a colour map that reads in grayscale.
"""
from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..store import events as ev
from ..store.curves import curves

STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "figure.dpi": 120,
         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False}
LINES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "x")]


def _plt():
    import matplotlib  # matplotlib (0.3 s): drawn at a run's end and for the report only

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # as above

    plt.rcParams.update(STYLE)
    return plt


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def save_png(fig, path: Path) -> Path:
    data = png_bytes(fig)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return path


def _epoch_axis(*axes) -> None:
    from matplotlib.ticker import MaxNLocator  # matplotlib: see _plt

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")


def curves_figure(events: list[ev.Event], title: str):
    plt = _plt()
    c = curves(events)  # the store's read model: the same curves as kdtui's and `runs show`'s
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3.2))
    losses = ((c.train_loss, "train (cross-entropy)" if c.train_is_ce else "train"), (c.val_loss, "val"))
    for ax, series, label in ((ax_loss, losses, "loss"), (ax_acc, ((c.train_acc, "train"), (c.val_acc, "val")),
                                                           "accuracy")):
        for (ys, name), (ls, mk) in zip(series, LINES):
            ax.plot(c.epochs, ys, linestyle=ls, marker=mk, label=name)
        _epoch_axis(ax)
        ax.set_ylabel(label)
    if c.checks:
        ax_acc.scatter(*zip(*c.checks), marker="x", color="black", label="defect checks", zorder=3)
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(loc="lower right")
    ax_loss.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


CONFUSION_COUNT_PT = 12
CONFUSION_DISPLAY_PX = 512  # two to a row of the report's page (48 % of its 1100 px less padding)


def confusion_figure(cm, names: list[str], title: str):
    """The test confusion matrix (true x predicted, each row shaded by its share); for a multi-label task
    (``cm`` a 2 x 2 matrix per finding, as metrics.json keeps it) one small panel per finding."""
    if isinstance(cm, dict):
        return findings_confusion_figure(cm, title)
    plt = _plt()
    cm = np.asarray(cm)
    share = cm / np.maximum(1, cm.sum(1, keepdims=True))
    # The report shows it 512 px wide (CONFUSION_DISPLAY_PX): sized so that its 12-point counts and 10-point
    # class names stay at least 8 and 7 points there (a 7-class matrix drawn 7.9 inches wide showed 4-point type)
    side = 1.9 + 0.42 * len(names)
    fig, ax = plt.subplots(figsize=(side + 0.9, side))
    im = ax.imshow(share, cmap="Greys", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=CONFUSION_COUNT_PT,
                    color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=10)
    ax.set_yticks(range(len(names)), names, fontsize=10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.grid(False)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def findings_confusion_figure(per_finding: dict[str, list[list[int]]], title: str):
    """A multi-label task's confusion: per finding its 2 x 2 matrix (true x predicted at 0.5, over the images whose
    label for it is known), each row shaded by its share, four panels to a row."""
    plt = _plt()
    names = list(per_finding)
    cols = min(4, max(1, len(names)))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols + 0.4, 2.0 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        cm = np.asarray(per_finding[name])
        share = cm / np.maximum(1, cm.sum(1, keepdims=True))
        ax.imshow(share, cmap="Greys", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=10,
                        color="white" if share[i, j] > 0.55 else "black")
        ax.set_xticks([0, 1], ["0", "1"])
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted")
        ax.grid(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("true")
    fig.suptitle(f"{title} (per finding, at 0.5)")
    fig.tight_layout()
    return fig


def reliability_figure(bins: list[dict], ece: float, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    filled = [b for b in bins if b["count"]]
    width = bins[0]["hi"] - bins[0]["lo"] if bins else 0.1
    ax.bar([b["lo"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
           color="0.6", edgecolor="black", linewidth=0.5, label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE {ece:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def write_run_figures(run_dir: Path, events: list[ev.Event], metrics: dict, title: str) -> list[Path]:
    """The run's three figures into ``<run>/figures/``; returns their paths."""
    folder = Path(run_dir) / "figures"
    test = metrics["test"]
    paths = [save_png(curves_figure(events, title), folder / "curves.png"),
             save_png(confusion_figure(test["confusion"], metrics["class_names"],
                                       f"{title}: test, best checkpoint"), folder / "confusion.png")]
    if test.get("calibration"):
        paths.append(save_png(reliability_figure(test["calibration"], test["ece"], f"{title}: test"),
                              folder / "reliability.png"))
    return paths


def overlay_figure(series: list[tuple[str, list[ev.Event]]], title: str):
    """Val accuracy and loss of several runs on shared axes (a student, its baseline, its teacher(s))."""
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3.2))
    for (label, events), (ls, mk) in zip(series, LINES):
        c = curves(events)
        ax_loss.plot(c.epochs, c.val_loss, linestyle=ls, marker=mk, label=label)
        ax_acc.plot(c.epochs, c.val_acc, linestyle=ls, marker=mk, label=label)
        if c.checks:  # a defective teacher stops mid-epoch: its checks are its curve
            ax_acc.plot(*zip(*c.checks), linestyle=ls, marker=mk, label=f"{label}: checks")
    ax_loss.set_ylabel("val loss")
    ax_acc.set_ylabel("val accuracy")
    ax_acc.set_ylim(0, 1)
    _epoch_axis(ax_loss, ax_acc)
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def robustness_figure(curves: dict[str, dict[str, tuple[list, list]]], title: str):
    """Accuracy against severity (0: clean) for each shift: one panel per shift, one line per model/role.

    ``curves``: shift -> label -> (severities, mean accuracies)."""
    plt = _plt()
    shifts = list(curves)
    cols = 3
    rows = (len(shifts) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(8, 2.4 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, shifts):
        for (label, (xs, ys)), (ls, mk) in zip(curves[name].items(), LINES):
            ax.plot(xs, ys, linestyle=ls, marker=mk, label=label)
        ax.set_title(name)
        ax.set_ylim(0, 1)
        ax.set_xlabel("severity")
    for ax in list(axes.flat)[len(shifts):]:
        ax.axis("off")
    axes[0][0].set_ylabel("test accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), bbox_to_anchor=(0.5, 1.02))
    fig.suptitle(title, y=1.08)
    fig.tight_layout()
    return fig


def sweep_figure(sweep, metric_label: str):
    """The test gain over the baseline against one swept setting: a panel per strategy, a line per teacher and
    student (and value of the other axes), its 95 % interval as a band, a ring on the value chosen on val.

    ``sweep``: a :class:`kdengine.reports.sweep.Sweep`."""
    plt = _plt()
    strategies = list(dict.fromkeys(r.strategy for r in sweep.rows))
    cols = min(3, len(strategies))
    rows = (len(strategies) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 0.6, 3.0 * rows + 0.4), squeeze=False, sharey=True)
    xs = list(range(len(sweep.values)))
    ticks = [f"{v:g}" if isinstance(v, float) else str(v) for v in sweep.values]
    for ax, strategy in zip(axes.flat, strategies):
        mine = [r for r in sweep.rows if r.strategy == strategy]
        for r, (ls, mk) in zip(mine, itertools.cycle(LINES)):
            at = [(x, r.gain.get(v)) for x, v in zip(xs, sweep.values) if r.gain.get(v) is not None]
            if not at:
                continue
            line, = ax.plot([x for x, _ in at], [g.mean for _, g in at], linestyle=ls, marker=mk,
                            label=r.title.split(": ", 1)[1])
            band = [(x, g) for x, g in at if g.has_interval]
            if band:
                ax.fill_between([x for x, _ in band], [g.lo for _, g in band], [g.hi for _, g in band],
                                color=line.get_color(), alpha=0.15, linewidth=0)
            seeds = [(x, v) for x, g in at for _, v in g.per_seed]  # each seed's own gain, over the band
            if seeds:
                ax.plot([x for x, _ in seeds], [v for _, v in seeds], marker=".", linestyle="none", alpha=0.6,
                        color=line.get_color(), markersize=5)
            if r.best is not None and r.gain.get(r.best) is not None:
                ax.plot([sweep.values.index(r.best)], [r.gain[r.best].mean], marker="o", markersize=11,
                        markerfacecolor="none", markeredgecolor=line.get_color(), linestyle="none")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(xs, ticks)
        ax.set_xlabel(f"{sweep.label} ({sweep.key})")
        ax.set_title(strategy)
        ax.legend(loc="best", fontsize=7)
    for ax in list(axes.flat)[len(strategies):]:
        ax.axis("off")
    axes[0][0].set_ylabel(f"test {metric_label} gain over baseline")
    fig.suptitle(f"Gain against {sweep.label}: mean over seeds, 95% interval shaded, · each seed; ○ the value chosen "
                 "on val")
    fig.tight_layout()
    return fig


def teacher_gain_figure(sweep, metric_label: str):
    """A defect-threshold sweep's second view: each student's test gain against the val accuracy its defective
    teacher actually reached (a threshold never reached is a teacher that stopped elsewhere), a panel per strategy,
    the nominal threshold as the marker's label."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator  # matplotlib, as _plt: only where a figure is drawn

    strategies = list(dict.fromkeys(r.strategy for r in sweep.rows))
    cols = min(3, len(strategies))
    rows = (len(strategies) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 0.6, 3.0 * rows + 0.4), squeeze=False, sharey=True)
    for ax, strategy in zip(axes.flat, strategies):
        for r, (_, mk) in zip([r for r in sweep.rows if r.strategy == strategy], itertools.cycle(LINES)):
            pts = [p for p in r.points if p[2] is not None]
            if not pts:
                continue
            ax.plot([p[2] for p in pts], [p[3] for p in pts], marker=mk, linestyle="none", alpha=0.8,
                    label=r.title.split(": ", 1)[1])
            for value, _, x, y in pts:
                ax.annotate(f"{value:g}" if isinstance(value, float) else str(value), (x, y), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_xlabel("teacher's val accuracy reached")
        ax.set_title(strategy)
        ax.legend(loc="best", fontsize=7)
    for ax in list(axes.flat)[len(strategies):]:
        ax.axis("off")
    axes[0][0].set_ylabel(f"test {metric_label} gain over baseline")
    fig.suptitle(f"Gain against the defective teacher's achieved accuracy (labels: the nominal {sweep.label})")
    fig.tight_layout()
    return fig


def explain_figure(images: np.ndarray, columns: list[tuple[str, np.ndarray, np.ndarray]], true: np.ndarray,
                   class_names: list[str], title: str, finding: bool = False):
    """The gallery of one KD run: a row per image, the image and then one column per model (teacher, baseline,
    student) with its map over the image, the class it predicted and whether it was right.

    ``columns``: (label, maps (N, H, W) in [0, 1], predicted classes (N,)). ``finding``: a multi-label task, where
    ``true`` is the finding each map answers for and a model's prediction is its most probable finding."""
    plt = _plt()
    n, cols = len(images), 1 + len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.95 * n + 0.5), squeeze=False)
    for i in range(n):
        ax = axes[i][0]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{'finding' if finding else 'true'}: {class_names[int(true[i])]}", fontsize=8)
        for j, (label, maps, preds) in enumerate(columns, start=1):
            ax = axes[i][j]
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)  # a colour image is drawn in its colours
            ax.imshow(maps[i], cmap="inferno", alpha=0.5, vmin=0, vmax=1)
            right = int(preds[i]) == int(true[i])
            ax.set_title(f"{label}\n{class_names[int(preds[i])]} {'✓ right' if right else '✗ wrong'}", fontsize=8,
                         color="black" if right else "#b00000")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))  # the title above the first row's
    return fig
