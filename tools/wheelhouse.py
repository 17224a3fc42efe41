"""kdstudy on a machine without internet (an air-gapped hospital GPU server, a cluster node): the wheels it needs,
gathered on a connected machine, and the choice of venv on the offline one. Standard library only: it runs before
anything is installed (``make wheelhouse``, ``make setup WHEELHOUSE=dir``).

    python tools/wheelhouse.py gather DIR [--python-version 3.12] [--platform manylinux_2_28_x86_64]
                                          [--extras dev,bench,explain] [--reuse-torch] [--pip-arg=--index-url=URL]
    python tools/wheelhouse.py venv-flags      # "--system-site-packages" when this Python's torch fits kdstudy

``gather`` resolves kdstudy and every dependency (its extras too) **for the stated Python and platform**, not this
machine's (``pip install --dry-run --report`` with ``--python-version``/``--platform``, binary wheels only; a
pure-Python dependency published only as source, such as grad-cam, is built into a wheel here first), then downloads
each pinned wheel into DIR, with kdstudy's own wheel, ``setuptools`` (to install kdstudy editable there) and
``wheelhouse.json`` (what was gathered, for which Python and platform). ``--reuse-torch`` leaves out torch,
torchvision, triton and the nvidia-* libraries: the offline box's own torch is used (a GPU server's torch matches its
driver; PyPI's is several GB). ``--pip-arg`` passes an option to pip (another index, a proxy).

``venv-flags`` says how the offline box's venv sees its preinstalled packages: with ``--system-site-packages``
when this interpreter imports a torch whose version kdstudy accepts (pyproject.toml's pin), else a plain venv (its
torch must then be in the wheelhouse).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_FAMILY = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")
DEFAULT_EXTRAS = "dev,bench,explain"
SETUPTOOLS = "setuptools>=70.1"  # builds an editable install without the 'wheel' package


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platforms(platform: str) -> list[str]:
    """The tags a wheel may carry to install on ``platform`` (pip matches each tag exactly): manylinux_2_N_ARCH
    covers every older glibc too, down to manylinux2014 (2.17); any other platform stands alone."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    tags = [f"manylinux_2_{n}_{arch}" for n in range(glibc, 16, -1)] + [f"manylinux2014_{arch}"]
    return tags + ([f"manylinux2010_{arch}", f"manylinux1_{arch}"] if arch in ("x86_64", "i686") else [])


def torch_pin(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """kdstudy's torch requirement (e.g. ``>=2.4,<2.15``), read as text (tomllib is not in every Python)."""
    return re.search(r'"torch\s*([<>=!][^"]*)"', pyproject.read_text()).group(1).replace(" ", "")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:3])


def fits(version: str, pin: str) -> bool:
    """Whether ``version`` (2.11.0+cu130) satisfies ``pin`` (>=2.4,<2.15): comparison operators on release numbers."""
    v = _version(version)
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
           "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    for clause in filter(None, (c.strip() for c in pin.split(","))):
        op, ver = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([\w.]+)", clause).groups()
        want = _version(ver)
        if not ops[op](v[:len(want)] if op in ("==", "!=") else v, want):
            return False
    return True


def venv_flags() -> str:
    try:
        import torch  # noqa: PLC0415 - the question is whether this interpreter has one
    except ImportError:
        print("wheelhouse: no torch on this Python: a plain venv (the wheelhouse must hold torch)", file=sys.stderr)
        return ""
    pin = torch_pin()
    if fits(torch.__version__, pin):
        print(f"wheelhouse: this Python's torch {torch.__version__} fits {pin}: the venv reuses it "
              "(--system-site-packages)", file=sys.stderr)
        return "--system-site-packages"
    print(f"wheelhouse: this Python's torch {torch.__version__} does not fit {pin}: a plain venv (the wheelhouse "
          "must hold torch)", file=sys.stderr)
    return ""


def _pip(*args: str, pip_args=()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args, *pip_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"wheelhouse: pip {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return proc


NO_WHEEL = re.compile(r"No matching distribution found for (\S+?)(?: \(from |$)", re.M)


def _resolve(dest: Path, target: list[str], links: list[str], requirements: list[str], pip_args) -> tuple[list, list]:
    """Everything ``requirements`` need on the target, binary wheels only (pip's report, nothing installed). A
    dependency published as a source distribution alone (grad-cam 1.5.7) is built into a wheel here, once, when it
    is pure Python (a py3-none-any wheel installs anywhere), and the resolution tried again."""
    built: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        for _ in range(20):
            cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--dry-run",
                   "--ignore-installed", "--quiet", "--report", str(report), "--target", str(Path(tmp) / "t"),
                   *target, *links, *requirements, *pip_args]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                return json.loads(report.read_text())["install"], built
            missing = NO_WHEEL.search(proc.stderr)
            if not missing or missing.group(1) in built:
                raise SystemExit(f"wheelhouse: the resolution failed:\n{proc.stderr[-3000:]}")
            req = missing.group(1)
            before = set(dest.glob("*.whl"))
            _pip("wheel", "--no-deps", "--wheel-dir", str(dest), req, pip_args=pip_args)
            new = [p.name for p in set(dest.glob("*.whl")) - before]
            if not new or not all(n.endswith("-none-any.whl") for n in new):
                raise SystemExit(f"wheelhouse: {req} has no wheel for the target and does not build as pure Python "
                                 f"here ({', '.join(new) or 'nothing built'}): gather on a machine like the target")
            built.append(req)
    raise SystemExit("wheelhouse: too many source-only dependencies to build")


def gather(dest: Path, python_version: str, platform: str, extras: str, reuse_torch: bool, pip_args: list[str],
           requirements: list[str] | None = None) -> dict:
    """Every wheel ``requirements`` (default: kdstudy with ``extras``) need on ``python_version``/``platform``."""
    dest.mkdir(parents=True, exist_ok=True)
    target = ["--python-version", python_version, "--implementation", "cp", "--only-binary=:all:",
              *[a for tag in platforms(platform) for a in ("--platform", tag)]]
    links = ["--find-links", str(dest)]
    if requirements is None:  # kdstudy's own wheel first: the resolution below finds it in DEST
        _pip("wheel", "--no-deps", "--wheel-dir", str(dest), str(ROOT), pip_args=pip_args)
        requirements = [f"kdstudy[{extras}]" if extras else "kdstudy", SETUPTOOLS]
    resolved, built = _resolve(dest, target, links, requirements, pip_args)
    wanted, left_out = [], []
    for item in resolved:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if _canonical(name) == "kdstudy":
            continue  # built above
        (left_out if reuse_torch and TORCH_FAMILY.match(_canonical(name)) else wanted).append(f"{name}=={version}")
    if wanted:
        _pip("download", "--no-deps", "--quiet", "--dest", str(dest), *target, *links, *wanted, pip_args=pip_args)
    manifest = {"python": python_version, "platform": platform, "platform_tags": platforms(platform),
                "extras": extras, "reuse_torch": reuse_torch, "requirements": requirements, "wheels": sorted(wanted),
                "built_here": built, "left_out": sorted(left_out), "gathered": time.strftime("%Y-%m-%d %H:%M"),
                "files": sorted(p.name for p in dest.glob("*.whl"))}
    (dest / "wheelhouse.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/wheelhouse.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gather", help="gather every wheel for another Python and platform (needs a connection)")
    g.add_argument("dest", type=Path)
    g.add_argument("--python-version", default="3.12", help="the offline box's Python, X.Y (default 3.12)")
    g.add_argument("--platform", default="manylinux_2_28_x86_64",
                   help="its platform tag, newest glibc it has (default manylinux_2_28_x86_64)")
    g.add_argument("--extras", default=DEFAULT_EXTRAS, help=f"kdstudy's extras (default {DEFAULT_EXTRAS})")
    g.add_argument("--reuse-torch", action="store_true", help="leave torch and its CUDA libraries out")
    g.add_argument("--pip-arg", action="append", default=[], help="an option for pip (repeatable)")
    g.add_argument("--requirement", action="append", default=None, help="gather these instead of kdstudy")
    sub.add_parser("venv-flags", help="--system-site-packages when this Python's torch fits kdstudy")
    args = p.parse_args(argv)
    if args.cmd == "venv-flags":
        print(venv_flags())
        return 0
    if not re.fullmatch(r"3\.\d+", args.python_version):
        print(f"wheelhouse: --python-version takes X.Y (3.12), got '{args.python_version}'", file=sys.stderr)
        return 2
    m = gather(args.dest, args.python_version, args.platform, args.extras, args.reuse_torch, args.pip_arg,
               args.requirement)
    print(f"wheelhouse: {len(m['files'])} wheels in {args.dest} for Python {m['python']} on {m['platform']}"
          + (f"; left out (the box's own): {', '.join(m['left_out'])}" if m["left_out"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
