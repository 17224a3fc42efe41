"""``kdengine table``: the tidy results.csv and, per strategy, the thesis's wide table (CSV)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from .collect import RunRecord, tidy_rows
from .wide import wide_tables

TIDY_COLUMNS = ["run_id", "strategy", "role", "teacher", "student", "seed", "split", "accuracy", "macro_f1",
                "kappa", "ece", "loss", "agreement", "baseline_accuracy", "gain", "defect_threshold",
                "defect_val_accuracy", "teacher_val_accuracy", "data", "task", "image_size", "epochs",
                "best_epoch", "settings", "synthetic"]


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")


def export_tables(records: list[RunRecord], out_dir: Path) -> list[Path]:
    """Write results.csv and table_<strategy>.csv into ``out_dir``; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = tidy_rows(records)
    paths = [out_dir / "results.csv"]
    write_csv(pd.DataFrame(rows, columns=TIDY_COLUMNS), paths[0])
    for strategy, table in wide_tables(rows).items():
        path = out_dir / f"table_{strategy}.csv"
        write_csv(pd.DataFrame(table["rows"], columns=table["columns"]), path)
        paths.append(path)
    return paths
