"""Tables a script can read (issue 35, item 10): every table's CSV is long and typed, and one settings label names a
group in every output."""
from __future__ import annotations

import pandas as pd

from kdengine.reports.tables import export
from tests.test_latex import KINDS, every_kind

NUMBERS = {"mean", "std", "ci_lo", "ci_hi", "n_seeds", "n_images", "p", "p_adj", "mde", "best_on_val", "shared_seeds",
           "combinations", "seeds"}


def _numeric_text(series) -> bool:
    """Every value of a text column reads as a number: a number stored as text."""
    values = series.dropna().astype(str)
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().all()


def test_every_csv_is_long_typed_and_shares_one_group_label(tmp_path):
    tables = every_kind()
    export(tables, tmp_path, "csv")
    frames = {p.stem: pd.read_csv(p) for p in tmp_path.glob("*.csv")}
    assert KINDS | {"runs", "robustness_cells"} <= set(frames)
    for name, frame in frames.items():
        assert not [c for c in frame.columns if " " in c], (name, list(frame.columns))  # no spaces in names
        for column in frame.columns:
            if column in NUMBERS:
                assert pd.api.types.is_numeric_dtype(frame[column]), (name, column, frame[column].dtype)
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                assert not _numeric_text(frame[column]), (name, column, frame[column].head().tolist())
    for name in KINDS:  # long: one row per cell (and split), the cell's numbers in columns of their own
        frame = frames[name]
        assert {"column", "quantity", "of", "mean", "interval", "mark", "family"} <= set(frame.columns), name
        assert frame["tested"].dtype == bool and frame["significant"].dtype == bool
    sweep = frames["sweep_kd_temperature"]
    assert pd.api.types.is_float_dtype(sweep["best_on_val"]) and sweep["tie"].dtype == bool
    assert set(sweep["best_on_val"]) <= {2.0, 4.0}
    best = frames["sweep_best"]  # a combination: its value on each axis, typed
    assert pd.api.types.is_float_dtype(best["best_on_val_T"]) and set(best["best_on_val_T"]) <= {2.0, 4.0}
    # one label everywhere: each student's settings group is its point, in runs.csv as in every table
    runs = frames["runs"]
    labels = set(runs.loc[runs["kind"] == "kd", "settings"])
    assert labels == {"T=2, α=0.9", "T=4, α=0.9"}
    for name in ("students_normal", "robustness_normal", "robustness", "attention", "robustness_cells"):
        assert labels <= set(frames[name]["settings"].dropna()) <= set(runs["settings"]), name
