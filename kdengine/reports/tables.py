"""``kdengine table``: the tidy results.csv and, per strategy, the thesis's wide table.

Wide layout (as in the thesis): rows are (student, split), columns are the
teachers; a ``baseline`` column holds the same student trained without a
teacher (same data, settings and seed), and ``gain vs baseline`` columns the
differences. Several seeds in one cell are averaged (`n` says how many);
``kdengine study table`` adds intervals.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from .collect import RunRecord, tidy_rows

SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def tidy_frame(records: list[RunRecord]) -> pd.DataFrame:
    cols = ["run_id", "strategy", "role", "teacher", "student", "seed", "split", "accuracy", "macro_f1", "kappa",
            "ece", "loss", "agreement", "baseline_accuracy", "gain", "defect_threshold", "defect_val_accuracy",
            "teacher_val_accuracy", "data", "task", "image_size", "epochs", "best_epoch", "settings", "synthetic"]
    return pd.DataFrame(tidy_rows(records), columns=cols)


def wide_tables(tidy: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """strategy -> wide table (rows: student, split; columns: teachers, baseline, gains)."""
    out = {}
    if tidy.empty:
        return out
    for strategy, df in tidy.groupby("strategy", sort=True):
        if strategy in ("baseline", "defective-teacher"):
            wide = (df.groupby(["student", "split"]).agg(accuracy=("accuracy", "mean"), n=("accuracy", "size"))
                    .reset_index())
        else:
            wide = df.pivot_table(index=["student", "split"], columns="teacher", values="accuracy", aggfunc="mean")
            wide.columns = [str(c) for c in wide.columns]
            teachers = list(wide.columns)
            base = df.groupby(["student", "split"])["baseline_accuracy"].mean()
            wide["baseline"] = base
            for t in teachers:
                wide[f"gain {t}"] = wide[t] - wide["baseline"]
            wide["n"] = df.groupby(["student", "split"])["accuracy"].size()
            wide = wide.reset_index()
        wide["_o"] = wide["split"].map(SPLIT_ORDER)
        out[strategy] = wide.sort_values(["student", "_o"]).drop(columns="_o").reset_index(drop=True)
    return out


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")


def export_tables(records: list[RunRecord], out_dir: Path) -> list[Path]:
    """Write results.csv and table_<strategy>.csv into ``out_dir``; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tidy = tidy_frame(records)
    paths = [out_dir / "results.csv"]
    write_csv(tidy, paths[0])
    for strategy, wide in wide_tables(tidy).items():
        path = out_dir / f"table_{strategy}.csv"
        write_csv(wide, path)
        paths.append(path)
    return paths
