"""Extension points register where they are defined: a new data source and a new kdtui screen are each one code
file (dropped into their package, with no other edit) and this test. Each is proved in a fresh process on a copy of
the package, so that the file is found the way a newcomer's would be."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STRIPES = '''\
"""``stripes:N``: N images of horizontal or vertical stripes (a toy kind: two classes, one image a patient)."""
from __future__ import annotations

import numpy as np

from ..arrays import ArraySource
from ..source import register_source


class StripesSource(ArraySource):
    kind = "stripes"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.description = f"stripes:{n}"
        self.class_names = ["horizontal", "vertical"]
        rows = np.repeat((np.arange(16) % 4 < 2)[:, None], 16, 1).astype(np.uint8) * 255
        self.images = np.stack([rows if i % 2 == 0 else rows.T for i in range(n)])
        self._fingerprint = f"stripes-{n}"
        for i in range(n):
            self.splits[("train", "train", "val", "test")[i // 2 % 4]].add(i, i % 2, f"p{i}")


@register_source("stripes", "stripes:N", paths=False)
def open_stripes(arg: str, cfg):
    return StripesSource(int(arg or 40))
'''

TOY_SCREEN = '''\
"""A toy screen: one line of text, one key, one palette entry."""
from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer, Static

from . import register_screen


@register_screen("toy", "5", "Toy", "A toy screen that says hello")
class ToyScreen(Screen):
    HELP = [("t", "say hello again")]
    COMMANDS = [("Toy hello", "Say hello from the toy screen", "hello")]

    def compose(self):
        yield Static("hello from the toy screen", id="toy")
        yield Footer()

    def action_hello(self) -> None:
        self.notify("hello again")
'''


def _copy(tmp_path: Path, package: str) -> Path:
    shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / package


def _run(tmp_path: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "NO_ALBUMENTATIONS_UPDATE": "1",
           "KDSTUDY_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_a_new_data_source_is_one_file(tmp_path):
    (_copy(tmp_path, "kdengine") / "data" / "sources" / "stripes.py").write_text(STRIPES)
    result = _run(tmp_path, """
        import contextlib, io, json
        from kdengine import api
        from kdengine.cli import main

        help_ = io.StringIO()
        with contextlib.redirect_stdout(help_), contextlib.suppress(SystemExit):
            main(["data", "check", "--help"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["data", "check", "stripes:40", "--image-size", "16", "--json"])
        store = api.open()
        spec = store.spec("baseline", "test_resnet", [], api.Choices.CONFIGS["data"](source="stripes:40").resolved(),
                          api.Choices.CONFIGS["train"](), api.Choices.CONFIGS["kd"](), 0)
        print(json.dumps({"help": help_.getvalue(), "code": code, "summary": json.loads(out.getvalue()),
                          "form": api.Store.check_data(api.Choices.CONFIGS["data"](source="stripes:12")),
                          "queued": store.queue(spec, device="cpu").runs, "source": spec.data.source}))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    said = json.loads(result.stdout.strip().splitlines()[-1])
    assert "stripes:N" in " ".join(said["help"].split())  # the CLI's help names the new kind
    assert said["code"] == 0 and said["summary"]["classes"] == ["horizontal", "vertical"]
    assert said["summary"]["splits"]["train"]["images"] == 20 and said["summary"]["cache"]["size"] == 16
    assert said["form"]["splits"]["test"]["images"] == 2  # the launch form's check: the same use case
    assert said["source"] == "stripes:40" and len(said["queued"]) == 1  # a run on it is queued like any other
    # the package as shipped holds no such kind: the one file made it
    assert "stripes" not in _run(tmp_path.parent, "from kdengine.data.config import source_help; print(source_help())"
                                 ).stdout


def test_a_new_screen_is_one_file(tmp_path):
    (_copy(tmp_path, "kdtui") / "screens" / "toy.py").write_text(TOY_SCREEN)
    result = _run(tmp_path, """
        import asyncio, json
        from kdtui.app import KDStudyApp
        from kdtui.screens.dialogs import help_rows

        async def main():
            app = KDStudyApp("runs", start_workers=False)
            notes = []
            async with app.run_test(size=(100, 30)) as pilot:
                app.notify = lambda message, **kw: notes.append(message)
                await pilot.press("5")
                await pilot.pause(0.3)
                shown = type(app.screen).__name__
                footer = list(app.screen.active_bindings)
                palette = {c.title: c.help for c in app.get_system_commands(app.screen)}
                await pilot.press("2")
                await pilot.pause(0.5)
                await pilot.press("escape", "5")  # the launch form's screen keys come from the table too
                await pilot.pause(0.3)
                from_form = type(app.screen).__name__
                app.on_screen_action("toy", "hello")
                await pilot.pause(0.3)
            print(json.dumps({"shown": shown, "footer": footer, "palette": palette, "from_form": from_form,
                              "help": help_rows(app.screen_table), "notes": notes}))

        asyncio.run(main())
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    said = json.loads(result.stdout.strip().splitlines()[-1])
    assert said["shown"] == "ToyScreen" and said["from_form"] == "ToyScreen"
    assert "5" in said["footer"]
    assert said["palette"]["Toy"] == "A toy screen that says hello" and "Toy hello" in said["palette"]
    assert ["1 2 3 4 5", "not typing", "Runs · Launch · Results · Workers · Toy (in a text field, esc first)"] \
        == said["help"][0] and ["t", "Toy", "say hello again"] in said["help"]
    assert said["notes"] == ["hello again"]
