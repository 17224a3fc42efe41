"""The architecture holds: the import contracts (layers, no Textual in the engine, kdtui and the CLI through kdengine.api and the
modules it names alone, torch only through listed deferred imports) pass and break on an upward import, on a front end's import of any
other engine module (one written today too) and on an importlib import; kdengine.api exports its handle and types alone; every
deferred import says why; the lifecycle refuses what it does not declare; docs/run-store.md matches the declarations; both front
ends share one service layer."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-logo", "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 kept, 0 broken" in result.stdout


def test_an_upward_import_or_a_torch_import_breaks_them(tmp_path):
    for name in ("kdengine", "kdtui"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "kdengine" / "store" / "upward_probe.py").write_text(
        "def probe():\n    from ..training import trainer  # deferred, and still upward\n    return trainer\n")
    (tmp_path / "kdengine" / "reports" / "torch_probe.py").write_text("import torch\n")
    # kdtui past the door: a direct import of the store instead of kdengine.api
    (tmp_path / "kdtui" / "door_probe.py").write_text("from kdengine.store.lifecycle import RUNNING\n")
    # a CLI command past the door: the trainer's module instead of kdengine.api
    (tmp_path / "kdengine" / "commands" / "door_probe.py").write_text("from ..execution import worker\n")
    # an engine module written today, imported by kdtui: the allow-list covers it with no edit
    (tmp_path / "kdengine" / "brand_new.py").write_text("X = 1\n")
    (tmp_path / "kdtui" / "new_probe.py").write_text("from kdengine.brand_new import X\n")
    # behind the door: one of the service layer's own modules instead of the package
    (tmp_path / "kdtui" / "behind_probe.py").write_text("from kdengine.api.runs import stop\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    out = result.stdout
    assert "Layers: each imports only the layers below it BROKEN" in out
    assert "kdengine.store.upward_probe -> kdengine.training.trainer" in out
    assert "kdengine.reports.torch_probe -> torch" in out
    assert "kdtui and the CLI's commands reach the engine through kdengine.api and the" in out and "BROKEN" in out
    for edge in ("kdtui.door_probe -> kdengine.store.lifecycle", "kdtui.new_probe -> kdengine.brand_new",
                 "kdengine.commands.door_probe -> kdengine.execution.worker", "kdtui.behind_probe -> kdengine.api.runs"):
        assert edge in out, edge


FRONT_ENDS = ("kdtui/**/*.py", "kdengine/commands/**/*.py", "kdengine/cli.py")


def _imports_own_module(node: ast.AST) -> bool:
    """``importlib.import_module(f"{__name__}.…")``: a package importing a module of its own."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "importlib" and node.args):
        return False
    name = node.args[0]
    head = name.values[0] if isinstance(name, ast.JoinedStr) and name.values else None
    return isinstance(head, ast.FormattedValue) and isinstance(head.value, ast.Name) and head.value.id == "__name__"


def dynamic_imports(root: Path) -> list[str]:
    """Imports the import graph cannot see, in the front ends: importlib, __import__, runpy. The one kind allowed is
    a package importing its own modules by name (``import_module(f"{__name__}.{name}")``: the table of screens)."""
    dynamic = ("importlib", "runpy", "__import__")
    found = []
    for path in sorted(p for pattern in FRONT_ENDS for p in root.glob(pattern)):
        tree = ast.parse(path.read_text())
        allowed = {id(node.func.value) for node in ast.walk(tree) if _imports_own_module(node)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] in dynamic and a.asname for a in node.names):
                found.append(f"{where}: an alias of importlib")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in dynamic:
                found.append(f"{where}: from {node.module} import …")
            elif isinstance(node, ast.Name) and node.id in dynamic and id(node) not in allowed:
                found.append(f"{where}: {node.id}")
    return found


def test_the_front_ends_import_nothing_behind_the_graph(tmp_path):
    assert dynamic_imports(ROOT) == []
    for name in ("kdengine", "kdtui"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "kdtui" / "dyn_probe.py").write_text(
        "import importlib\n\ndef probe():\n    return importlib.import_module('kdengine.store.lifecycle')\n")
    (tmp_path / "kdengine" / "commands" / "dyn_probe.py").write_text(
        "def probe():\n    return __import__('kdengine.execution.worker')\n")
    (tmp_path / "kdtui" / "dyn_probe2.py").write_text("from importlib import import_module as im\n")
    assert sorted(dynamic_imports(tmp_path)) == ["kdengine/commands/dyn_probe.py:2: __import__",
                                                 "kdtui/dyn_probe.py:4: importlib",
                                                 "kdtui/dyn_probe2.py:1: from importlib import …"]


def test_the_door_exports_its_handle_and_types_alone():
    """kdengine.api exports the handle (api.open, api.Store), the vocabulary (api.Choices) and the records its methods
    take and return: classes, no engine function, no module, no constant."""
    import inspect

    from kdengine import api

    exported = {name: getattr(api, name) for name in api.__all__}
    assert inspect.isfunction(exported.pop("open"))
    assert all(inspect.isclass(value) for value in exported.values()), [n for n, v in exported.items()
                                                                         if not inspect.isclass(v)]
    public = {n for n in vars(api) if not n.startswith("_") and not inspect.ismodule(getattr(api, n))}
    assert public - {"annotations"} == set(api.__all__)  # nothing besides (its submodules are its own)


def test_every_deferred_import_says_why():
    """An import inside a function keeps torch or another heavy or optional package off a light path; its
    block of imports carries the reason on one of its lines, or in a comment right above it."""
    missing = []
    for path in sorted([*ROOT.glob("kdengine/**/*.py"), *ROOT.glob("kdtui/**/*.py")]):
        src = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(src))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            stmts = sorted((n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))),
                           key=lambda n: n.lineno)
            blocks: list[list] = []
            for n in stmts:
                if blocks and n.lineno <= blocks[-1][-1].end_lineno + 1:
                    blocks[-1].append(n)
                else:
                    blocks.append([n])
            for block in blocks:
                lines = [src[k - 1] for n in block for k in range(n.lineno, n.end_lineno + 1)]
                above = src[block[0].lineno - 2].strip()
                if not any("#" in line for line in lines) and not above.startswith("#"):
                    missing.append(f"{path.relative_to(ROOT)}:{block[0].lineno}: {lines[0].strip()}")
    assert not missing, "deferred imports without a reason:\n" + "\n".join(missing)


def test_the_lifecycle_refuses_an_undeclared_change(tmp_path):
    from kdengine.runspec import RunSpec
    from kdengine.store import RunStore
    from kdengine.store.lifecycle import FINISHED, IllegalTransition

    store = RunStore(tmp_path)
    spec = RunSpec(model="test_resnet", regime="normal")
    store.create(spec)
    rid = spec.run_id
    with pytest.raises(IllegalTransition, match="from queued to finished"):
        store.finish(rid, FINISHED)  # a run that never ran cannot finish
    assert store.claim(rid, "w")
    store.finish(rid, "stopped", "by hand")
    with pytest.raises(IllegalTransition, match="from stopped to finished"):
        store.finish(rid, FINISHED)
    assert store.requeue(rid) and store.read_status(rid).state == "queued"
    states = [e["state"] for e in store.read_events(rid)[0] if e["type"] == "lifecycle"]
    assert states == ["queued", "running", "stopped", "queued"]


def _table(doc: str, heading: str) -> list[list[str]]:
    section = doc.split(heading, 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    start = next(i for i, line in enumerate(section.splitlines()) if line.startswith("|"))
    block = []
    for line in section.splitlines()[start:]:
        if not line.startswith("|"):
            break
        block.append([c.strip() for c in line.strip("|").split("|")])
    assert rows
    return block[2:]


def test_docs_run_store_matches_the_declarations():
    from kdengine.store.events import declared_fields
    from kdengine.store.lifecycle import TRANSITIONS

    doc = (ROOT / "docs" / "run-store.md").read_text()
    documented = {(a.strip("`"), b.strip("`")) for a, b, *_ in _table(doc, "## The lifecycle")}
    assert documented == {(str(a), str(b)) for a, b in TRANSITIONS}
    events = {row[0].strip("`"): row[1] for row in _table(doc, "### events.jsonl")}
    assert set(events) == set(declared_fields())
    for kind, fields in declared_fields().items():
        for name in fields:
            assert re.search(rf"`{name}`", events[kind]), f"docs/run-store.md: event {kind} lacks `{name}`"


def test_tui_and_cli_retry_delete_and_stop_call_the_same_service(monkeypatch, capsys):
    """One implementation for both front ends: each front end's retry, delete and stop is a call of the
    handle's use case (recorded here), and each words the typed record it returned its own way."""
    import asyncio

    from kdengine import api
    from kdengine.cli import main
    from kdtui.app import KDStudyApp
    from kdtui.messages import RemoveRequested, RetryRequested, StopRequested

    calls = []
    queued, running = api.State.QUEUED, api.State.RUNNING
    monkeypatch.setattr(api.Store, "retry", lambda self, rid, force=False, skip_bad=False:
                        calls.append(("retry", rid, force)) or api.Retried(rid, api.State.FAILED, True))
    monkeypatch.setattr(api.Store, "stop", lambda self, rid: calls.append(("stop", rid))
                        or api.Stopped(rid, running, running, None))
    monkeypatch.setattr(api.Store, "remove", lambda self, rid, archive=False: calls.append(("remove", rid, archive))
                        or api.Removed(rid, None))
    monkeypatch.setattr(api.Store, "what_goes", lambda self, rid: api.Removal(rid, 0, 0))
    from tests.engine_helpers import FAST

    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--queue"]) == 0
    store = api.open()
    (rid,) = [r.run_id for r in store.rows()]
    assert store.status(rid).state == queued
    for args in (["runs", "retry", rid, "--force"], ["runs", "stop", rid], ["runs", "delete", rid, "--yes"]):
        assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{rid}: queued again; it resumes" in out and f"{rid}: stopping (it stops within" in out
    assert f"deleted {rid}" in out
    cli = list(calls)
    calls.clear()

    async def tui():
        app = KDStudyApp(store.root, start_workers=False)
        notes = []
        app.notify = lambda message, **kw: notes.append(message)
        async with app.run_test(size=(100, 30)) as pilot:
            app.post_message(RetryRequested(rid, force=True))
            app.post_message(StopRequested(rid))
            app.post_message(RemoveRequested(rid, archive=False))
            for _ in range(20):
                await pilot.pause(0.05)
                if len(calls) == 3:
                    break
        return notes

    notes = asyncio.run(tui())
    assert calls == cli == [("retry", rid, True), ("stop", rid), ("remove", rid, False)]
    assert any(f"{rid}: queued again" in n for n in notes) and any(f"{rid}: stopping" in n for n in notes)
    assert f"deleted {rid}" in notes


def test_the_service_layer_says_no_cli_word():
    """The handle's records and errors hold facts, never a CLI command or flag: each front end words them (the CLI
    adds its remedies by the error's field). Strings in kdengine/api that name a command or a flag are listed here,
    docstrings aside; the one allowed kind is the child process's own flags (checks: kdengine.preflight)."""
    cli_word = re.compile(r"kdengine (runs|worker|study|train|shift|explain|table|report|data|models)\b|(^|\s)--[a-z]")
    found = []
    for path in sorted((ROOT / "kdengine" / "api").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and cli_word.search(node.value) and node.value not in ("--data", "--decode"):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert found == [], found
