"""DICOM radiographs and CSV manifests: decoded pixels checked against what the files say; a manifest trains end
to end; no patient identifier in any output."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from kdengine.cli import main
from kdengine.data.dicom import decode_dicom, voi_window
from kdengine.errors import DataError
from tests.dicom_helpers import PATIENT_ID, radiograph, write_dicom


def ramp(bits: int, signed: bool = False) -> np.ndarray:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return np.linspace(lo, hi, 32 * 32).reshape(32, 32).round()


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_unsigned_depths_without_a_window_use_the_percentile_window(tmp_path, bits):
    pixels = ramp(bits)
    out = decode_dicom(write_dicom(tmp_path / "a.dcm", pixels, bits=bits))
    assert out.dtype == np.uint8 and out.shape == (32, 32)
    lo, hi = np.percentile(pixels, (0.5, 99.5))
    expected = np.round(np.clip((pixels - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255 and np.all(np.diff(out.ravel().astype(int)) >= 0)


def test_a_signed_image_goes_through_its_rescale_then_its_window(tmp_path):
    stored = ramp(12, signed=True)  # -2048..2047
    window = (-500.0, 1000.0)  # in rescaled (modality) units: Hounsfield-like
    out = decode_dicom(write_dicom(tmp_path / "s.dcm", stored, bits=12, signed=True, slope=2.0,
                                   intercept=-1024.0, window=window))
    values = stored * 2.0 - 1024.0
    expected = np.round(voi_window(values, *window) * 255).astype(np.uint8)
    assert np.array_equal(out, expected)
    # the window's edges map to 0 and 255
    center, width = window
    assert np.all(out[values <= center - width / 2] == 0) and np.all(out[values >= center + width / 2] == 255)
    inside = (values > center - width / 2 + 10) & (values < center + width / 2 - 10)
    assert 0 < out[inside].min() and out[inside].max() < 255


def test_monochrome1_is_the_mirror_of_its_monochrome2_twin(tmp_path):
    pixels = radiograph(1, bits=16)
    m2 = decode_dicom(write_dicom(tmp_path / "m2.dcm", pixels, window=(20000, 40000)))
    m1 = decode_dicom(write_dicom(tmp_path / "m1.dcm", pixels, window=(20000, 40000), photometric="MONOCHROME1"))
    assert np.array_equal(m1.astype(int), 255 - m2.astype(int))


def test_a_multi_frame_file_gives_its_first_frame_and_data_check_says_so(tmp_path, capsys):
    frames = np.stack([radiograph(2), radiograph(3) * 0 + 7, radiograph(4)])
    path = write_dicom(tmp_path / "multi.dcm", frames, bits=12)
    single = decode_dicom(write_dicom(tmp_path / "one.dcm", frames[0], bits=12))
    assert np.array_equal(decode_dicom(path), single)
    # in a folder tree: data check counts it and says what was done
    for cls in ("a", "b"):
        for i in range(6):
            write_dicom(tmp_path / "tree" / cls / f"{i}.dcm", radiograph(10 * i, cls=int(cls == "b")), bits=12,
                        patient_id=f"P{cls}{i}")
    write_dicom(tmp_path / "tree" / "a" / "multi.dcm", frames, bits=12, patient_id="Pmulti")
    assert main(["data", "check", str(tmp_path / "tree"), "--json", "--image-size", "32"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["dicom"]["multi_frame"] == {"false": 12, "true": 1}
    assert any("1 multi-frame DICOM file(s): the first frame of each is used" in n for n in s["notes"])


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless"])
def test_compressed_transfer_syntaxes_decode_to_the_same_pixels(tmp_path, syntax):
    import pydicom.uid

    pixels = radiograph(5, bits=12)
    plain = decode_dicom(write_dicom(tmp_path / "plain.dcm", pixels, bits=12, window=(2000, 3000)))
    packed = write_dicom(tmp_path / "packed.dcm", pixels, bits=12, window=(2000, 3000),
                         compress=getattr(pydicom.uid, syntax))
    assert np.array_equal(decode_dicom(packed), plain)


def test_an_undecodable_file_is_named_with_its_transfer_syntax(tmp_path):
    path = write_dicom(tmp_path / "bad.dcm", radiograph(6, bits=12), bits=12)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:100]  # truncated pixel data
    ds.save_as(path)
    with pytest.raises(DataError, match=r"cannot decode .*bad\.dcm \(transfer syntax Explicit VR Little Endian\)"):
        decode_dicom(path)


def manifest_dataset(tmp_path, per_class=10, with_split=False):
    """Three classes of made-up radiographs, DICOM and PNG mixed (some extension-less DICOM), with a manifest."""
    from PIL import Image

    root = tmp_path / "pacs"
    rows = [["path", "label", "patient", "split"] if with_split else ["path", "label", "patient"]]
    names = ["elbow", "hand", "knee"]
    for c, name in enumerate(names):
        for i in range(per_class):
            patient = f"{PATIENT_ID}-{c}-{i // 2}"
            pixels = radiograph(100 * c + i, cls=c)
            if i % 3 == 0:
                rel = f"img/{name}_{i}.png"
                (root / "img").mkdir(parents=True, exist_ok=True)
                Image.fromarray((pixels / 4095 * 255).astype(np.uint8)).save(root / rel)
            elif i % 3 == 1:
                rel = f"dcm/{name}_{i}"  # no extension: recognised by its DICM marker
                write_dicom(root / rel, pixels, bits=12, patient_id=patient, window=(1800, 3600))
            else:
                rel = f"dcm/{name}_{i}.dcm"
                write_dicom(root / rel, pixels, bits=12, patient_id=patient, photometric="MONOCHROME1"
                            if i % 2 else "MONOCHROME2")
            row = [rel, name, patient]
            if with_split:
                row.append(("train", "train", "train", "val", "test")[(i // 2) % 5])
            rows.append(row)
    path = root / "manifest.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_data_check_describes_dicom_truthfully(tmp_path, capsys):
    path = manifest_dataset(tmp_path)
    assert main(["data", "check", f"csv:{path}", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["source"] == "csv" and s["classes"] == ["elbow", "hand", "knee"]
    d = s["dicom"]
    # per class: 4 PNGs, 3 extension-less DICOMs with a window, 3 .dcm without (one of them MONOCHROME1)
    assert d["files"] == 18 and d["modality"] == {"CR": 18} and d["bits_stored"] == {"12": 18}
    assert d["photometric"] == {"MONOCHROME1": 3, "MONOCHROME2": 15}
    assert d["windowing"] == {"percentile window": 9, "window center/width": 9}
    assert d["transfer_syntax"] == {"Explicit VR Little Endian": 18} and d["multi_frame"] == {"false": 18}
    assert s["groups_shared_between_splits"] == 0  # patients kept together
    assert s["splits"]["train"]["images"] + s["splits"]["val"]["images"] + s["splits"]["test"]["images"] == 30
    assert "cache" in s and s["cache"]["usable"]["train"] > 0
    meta = json.loads(open(s["cache"]["path"].removesuffix(".u8") + ".json").read())
    assert meta["dicom"]["windowing"] == d["windowing"]  # what was done is kept with the decoded cache


def test_a_manifest_with_dicoms_trains_end_to_end_and_leaks_no_identifier(tmp_path, capsys):
    path = manifest_dataset(tmp_path, with_split=True)
    code = main(["train", "--data", f"csv:{path}", "--image-size", "32", "--epochs", "1", "--strategy", "normal",
                 "--teacher", "test_efficientnet", "--student", "test_resnet", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert main(["data", "check", f"csv:{path}"]) == 0
    out2, err2 = capsys.readouterr()
    assert main(["table", "--out", str(tmp_path / "t"), "--format", "both"]) == 0
    out3, _ = capsys.readouterr()
    from kdengine.paths import cache_dir, runs_dir

    everything = out + err + out2 + err2 + out3
    for folder in (runs_dir(), cache_dir(), tmp_path / "t"):
        for f in folder.rglob("*"):
            if f.is_file() and f.suffix in (".json", ".jsonl", ".csv", ".md", ".log", ".txt"):
                everything += f.read_text(errors="replace")
    assert "PID-SECRET" not in everything and "Doe" not in everything and "19700101" not in everything
    assert "split" in out2 and "manifest" not in err


@pytest.mark.parametrize("rows, message", [
    ([["path", "label"], ["nope.png", "a"]], "line 2: no such file"),
    ([["path", "label"], ["x.png", ""]], "line 2: empty label"),
    ([["path", "label", "split"], ["x.png", "a", "holdout"]], "line 2: split 'holdout' is not train"),
    ([["path", "label", "patient", "split"], ["x.png", "a", "P1", "train"], ["y.png", "b", "P1", "test"]],
     "line 3: its patient is also in the train split (line 2)"),
    ([["file", "label"], ["x.png", "a"]], "no 'path' column"),
])
def test_bad_manifest_rows_are_named_by_line(tmp_path, capsys, rows, message):
    from PIL import Image

    for name in ("x.png", "y.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert main(["data", "check", f"csv:{path}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "P1" not in err
