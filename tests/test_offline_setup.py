"""Set-up on a machine without network (README, "An air-gapped GPU server").

``make setup WHEELHOUSE=dir`` is run for real, offline, on a copy of the project: the "box" is this machine's
Python with kdstudy's heavy dependencies preinstalled (this venv's packages, as a GPU server has its torch), less
kdstudy itself and one pure-Python dependency (tabulate) that only the wheelhouse holds. It proves that the
venv reuses the box's torch (--system-site-packages, chosen from torch's version against pyproject's pin), that
pip takes what is missing from the wheelhouse and nothing from any index (--no-index; a dead proxy besides), that
kdstudy installs editable without build isolation, and that the venv then runs kdengine from the checkout. What it
cannot prove here: that ``make wheelhouse`` finds every wheel for another platform on PyPI (that needs the
network); its resolution and download path is run against a local index below.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = "tabulate"  # a dependency the box lacks: only the wheelhouse has it


def _wheelhouse_module():
    spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "tools" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel_of_installed(name: str, dest: Path) -> Path:
    """A wheel of an installed pure-Python distribution, packed from its installed files (no network here)."""
    dist = importlib.metadata.distribution(name)
    dest.mkdir(parents=True, exist_ok=True)
    whl = dest / f"{name}-{dist.version}-py3-none-any.whl"
    info = f"{name}-{dist.version}.dist-info"
    record = []
    with zipfile.ZipFile(whl, "w") as z:
        for f in dist.files:
            path = str(f)
            if path.startswith("..") or "__pycache__" in path or path.split("/")[-1] in (
                    "RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                continue
            data = Path(f.locate()).read_bytes()
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        z.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return whl


def _box(tmp: Path) -> Path:
    """The box's preinstalled packages: this venv's site-packages less kdstudy and the hidden dependency."""
    site, box = Path(sysconfig.get_paths()["purelib"]), tmp / "box-site-packages"
    box.mkdir()
    for entry in site.iterdir():
        low = entry.name.lower()
        if low.startswith(("kdstudy", "__editable__", HIDDEN, "_virtualenv")) or low.endswith(".pth"):
            continue
        (box / entry.name).symlink_to(entry)
    return box


def _checkout(tmp: Path) -> Path:
    """A copy of the project (its editable install must not touch this one)."""
    dest = tmp / "kdstudy"
    dest.mkdir()
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("kdengine", "kdtui", "tools"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _offline_env(box: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    dead = "http://127.0.0.1:9"  # nothing listens there: any download would fail
    env.update(PYTHONPATH=str(box), HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead,
               PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_builds_a_venv_offline_from_a_wheelhouse(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    _wheel_of_installed(HIDDEN, wheelhouse)
    box, project, venv = _box(tmp_path), _checkout(tmp_path), tmp_path / "venv"
    env = _offline_env(box)
    base = getattr(sys, "_base_executable", sys.executable)  # the box's Python (this venv's own interpreter)
    proc = subprocess.run(["make", "-C", str(project), "setup", f"WHEELHOUSE={wheelhouse}", f"PYTHON={base}",
                           f"VENV={venv}"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    probe = ("import json, kdengine, tabulate, torch; print(json.dumps({'kdengine': kdengine.__file__, "
             "'tabulate': tabulate.__file__, 'torch': torch.__file__}))")
    where = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", probe], env=env, capture_output=True,
                                      text=True, check=True, cwd=tmp_path).stdout)  # not this checkout's folder
    assert Path(where["kdengine"]).resolve().is_relative_to(project.resolve())  # editable: the checkout's code
    assert Path(where["tabulate"]).resolve().is_relative_to(venv.resolve())  # from the wheelhouse
    assert Path(where["torch"]).parent.parent == box  # the box's own torch, not a copy
    help_ = subprocess.run([str(venv / "bin" / "kdengine"), "--help"], env=env, capture_output=True, text=True,
                           cwd=tmp_path)
    assert help_.returncode == 0 and "train" in help_.stdout


def _sdist(dest: Path, name: str, requires: str) -> None:
    """A pure-Python package published as source alone (as grad-cam 1.5.7 is on PyPI)."""
    import io
    import tarfile

    files = {"pyproject.toml": f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                               f'[project]\nname = "{name}"\nversion = "1.0"\ndependencies = ["{requires}"]\n',
             f"{name}.py": "VALUE = 1\n", "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"}
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest / f"{name}-1.0.tar.gz", "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-1.0/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_wheelhouse_resolves_and_downloads_for_another_python_and_platform(tmp_path):
    """``make wheelhouse``'s path against a local index instead of PyPI: resolve for the stated Python and platform,
    build a source-only pure-Python dependency into a wheel, download each pinned wheel, write the manifest."""
    wh = _wheelhouse_module()
    index, dest = tmp_path / "index", tmp_path / "wheelhouse"
    _wheel_of_installed(HIDDEN, index)
    _sdist(index, "sourceonly", HIDDEN)
    assert wh.main(["gather", str(dest), "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64",
                    "--requirement", "sourceonly==1.0", "--pip-arg=--no-index", f"--pip-arg=--find-links={index}",
                    "--pip-arg=--no-build-isolation"]) == 0
    manifest = json.loads((dest / "wheelhouse.json").read_text())
    version = importlib.metadata.version(HIDDEN)
    assert manifest["built_here"] == ["sourceonly==1.0"] and manifest["python"] == "3.12"
    assert manifest["wheels"] == sorted([f"{HIDDEN}=={version}", "sourceonly==1.0"])
    assert manifest["files"] == sorted([f"{HIDDEN}-{version}-py3-none-any.whl", "sourceonly-1.0-py3-none-any.whl"])
    assert "manylinux2014_x86_64" in manifest["platform_tags"] and "manylinux_2_17_x86_64" in manifest["platform_tags"]


def test_the_venv_reuses_a_torch_only_where_its_version_fits():
    wh = _wheelhouse_module()
    pin = wh.torch_pin()
    assert pin == ">=2.4,<2.15"
    assert wh.fits("2.11.0+cu130", pin) and wh.fits("2.4.0", pin)
    assert not wh.fits("2.15.0", pin) and not wh.fits("2.3.1+cu121", pin)
    assert all(wh.TORCH_FAMILY.match(n) for n in ("torch", "torchvision", "triton", "nvidia-cudnn-cu12"))
    assert not wh.TORCH_FAMILY.match("timm")
