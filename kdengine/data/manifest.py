"""``--data csv:PATH``: a CSV manifest, the way a PACS export usually comes.

Columns (a header row is required): ``path`` (relative to the CSV's folder, or absolute) and ``label`` (a class
name or a number); optional ``patient``, ``study`` and ``split`` (train / val / test). Images may be PNG, JPEG
or DICOM, mixed.

A multi-label manifest (chest X-ray findings, CheXpert-style) has no ``label`` column but one column per finding,
each 1 or 0, with -1 for uncertain and a blank for not mentioned: those follow ``data.uncertain`` (ignore, zeros,
ones: Irvin et al. 2019), and without a policy they are refused. Every row must have the header's number of
fields. Without ``split``, kdstudy makes patient-grouped, class-stratified splits, as it does for
MURA (grouped by ``patient``, else ``study``, else the DICOM's Patient ID, else the image). Bad rows are named
by their line number, never by a patient identifier.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import policy_labels
from .files import IMAGE_EXTS, FileSource
from .source import SPLITS, SplitIndex
from .splits import grouped_split

REQUIRED = ("path", "label")
OPTIONAL = ("patient", "study", "split")
KNOWN = ("path", "label", *OPTIONAL)
MAX_ROWS_NAMED = 5


def _natural(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def _finding(text: str) -> float:
    """A finding's cell: 1, 0, -1 (uncertain), or blank (not mentioned: NaN); anything else is kept as it is for
    the policy's check to name (NaN-safe)."""
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise DataError(f"a finding's value must be 1, 0, -1 or blank, got '{text}'") from None


def _hash(kind: str, value: str) -> str:
    return f"{kind}:" + hashlib.sha256(value.encode()).hexdigest()[:16]


class CsvSource(FileSource):
    kind = "csv"

    def __init__(self, path: Path, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 split_seed: int = 0, uncertain: str = "none", colour: bool = False) -> None:
        super().__init__()
        self.path = path
        self.channels = 3 if colour else 1
        self.description = f"csv:{path}"
        self.findings: list[str] = []
        rows = self._read(path)
        if self.findings:  # multi-label: a 0/1 column per finding, the policy for the rest
            self.multilabel = True
            self.class_names = list(self.findings)
            try:
                raw = np.array([[_finding(r["values"][f]) for f in self.findings] for r in rows], np.float64)
            except DataError as exc:
                raise DataError(f"csv {path}: {exc}") from None
            labels = policy_labels(raw, uncertain, f"csv {path}")
            for r, y in zip(rows, labels):
                r["label"] = tuple(int(v) for v in y)
        else:
            self.class_names = sorted({r["label"] for r in rows}, key=_natural)
        given = any(r["split"] for r in rows)
        if given and not all(r["split"] for r in rows):
            line = next(r["line"] for r in rows if not r["split"])
            raise DataError(f"csv {path}: line {line} has no split while others do (give every row a split, or none)")
        pool = SplitIndex()
        for r in rows:
            target = self.splits[r["split"]] if given else pool
            target.add(r["file"], r["label"] if self.multilabel else self.class_names.index(r["label"]), r["group"])
        if given:
            if not len(self.splits["val"]):
                self.splits["train"], self.splits["val"] = grouped_split(self.splits["train"], val_fraction, split_seed)
                self.notes.append(f"no val rows: {val_fraction:.0%} of train carved out as val, by patient")
            if not len(self.splits["test"]):
                raise DataError(f"csv {path}: the split column names no test row")
        else:
            rest, self.splits["test"] = grouped_split(pool, test_fraction, split_seed + 1)
            self.splits["train"], self.splits["val"] = grouped_split(rest, val_fraction / (1 - test_fraction),
                                                                     split_seed)
            self.notes.append("no split column: splits grouped by patient (else study), stratified by class")
        self.finish_dicom_notes()

    def _read(self, path: Path) -> list[dict]:
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"csv {path}: not UTF-8 text (save the manifest as UTF-8)") from None
        except OSError as exc:
            raise DataError(f"csv {path}: cannot read it ({exc.strerror})") from None
        try:
            reader = csv.DictReader(text.splitlines())
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
        except csv.Error as exc:
            raise DataError(f"csv {path}: not a readable CSV file ({exc})") from None
        extra = [h for h in header if h not in KNOWN]
        if "label" not in header and extra and "path" in header:
            self.findings = extra  # a multi-label manifest: every other column is a finding
        missing = [c for c in REQUIRED if c not in header and not (c == "label" and self.findings)]
        if missing:
            raise DataError(f"csv {path}: no '{missing[0]}' column (the header must name path and label, or path and "
                            f"one 0/1 column per finding; optional: {', '.join(OPTIONAL)}; found: "
                            f"{', '.join(header) or 'nothing'})")
        reader.fieldnames = header
        rows, bad = [], []
        base = path.parent
        split_of_patient: dict[str, tuple[str, int]] = {}
        try:
            records = list(reader)
        except csv.Error as exc:
            raise DataError(f"csv {path}: not a readable CSV file ({exc})") from None
        for line, rec in enumerate(records, start=2):
            get = {k: str(rec.get(k) or "").strip() for k in (*REQUIRED, *OPTIONAL)}
            if not any(get.values()) and not any(str(v or "").strip() for k, v in rec.items() if k):
                continue  # a blank line
            if None in rec or any(v is None for v in rec.values()):  # csv's restkey / restval
                fields = len(header) + len(rec.get(None) or ()) - sum(v is None for v in rec.values())
                bad.append(f"line {line}: {fields} fields where the header has {len(header)}")
                continue
            if self.findings:
                get["label"] = "findings"
            file = Path(get["path"]).expanduser()
            file = file if file.is_absolute() else base / file
            split = get["split"].lower()
            if not get["path"]:
                bad.append(f"line {line}: empty path")
            elif not get["label"]:
                bad.append(f"line {line}: empty label")
            elif not file.is_file():
                bad.append(f"line {line}: no such file {file}")
            elif split and split not in SPLITS:
                bad.append(f"line {line}: split '{get['split']}' is not train, val or test")
            else:
                group = None
                if get["patient"]:
                    group = _hash("patient", get["patient"])
                    seen = split_of_patient.setdefault(group, (split, line))
                    if split and seen[0] and seen[0] != split:
                        bad.append(f"line {line}: its patient is also in the {seen[0]} split (line {seen[1]}); "
                                   "a patient's images belong to one split")
                        continue
                elif get["study"]:
                    group = _hash("study", get["study"])
                if file.suffix.lower() not in IMAGE_EXTS:  # DICOM (or not an image: found when decoding)
                    try:
                        dicom_group = self.note_dicom(file)  # counted for data check, whatever the group
                        group = group or dicom_group
                    except DataError as exc:
                        bad.append(f"line {line}: {exc}")
                        continue
                rows.append({"line": line, "file": str(file.resolve()), "label": get["label"], "split": split,
                             "group": group or str(file.resolve()),
                             "values": {f: str(rec.get(f) or "").strip() for f in self.findings}})
        if bad:
            more = f" ... and {len(bad) - MAX_ROWS_NAMED} more" if len(bad) > MAX_ROWS_NAMED else ""
            raise DataError(f"csv {path}: {len(bad)} bad row(s): " + "; ".join(bad[:MAX_ROWS_NAMED]) + more)
        if not rows:
            raise DataError(f"csv {path}: the manifest lists no image")
        return rows

    def fingerprint(self) -> str:
        """The manifest's bytes and every listed file's size and time (as for image folders)."""
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return f"csv|{digest}|{super().fingerprint()}"
