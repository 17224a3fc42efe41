"""kdtui --serve in a real browser: headless Chromium (Debian's package) driven by selenium through
chromium-driver. The page opens, the run list is drawn, a run is launched from the form with keys typed into the
page, and the list shows it.

xterm.js draws on a canvas, so the text is read from the terminal's own buffer: a script the browser runs before
the page's (``Page.addScriptToEvaluateOnNewDocument``) keeps a handle on the Terminal that textual.js creates. The
product's page is not changed for the test.

Set-up (README): ``apt-get install chromium chromium-driver``; ``make test-browser``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdengine.store.runstore import RunStore
from tests.conftest import SMALL_SYNTH

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[2]

# Keep the Terminal instance textual.js assigns to `this.terminal` (the first object with a readable buffer).
CAPTURE = """
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  set(value) {
    if (!window.__kdtuiTerminal && value && value.buffer && value.buffer.active) { window.__kdtuiTerminal = value; }
    Object.defineProperty(this, 'terminal', {value, writable: true, configurable: true, enumerable: true});
  },
});
"""
SCREEN = """
const t = window.__kdtuiTerminal;
if (!t) { return ''; }
const b = t.buffer.active, out = [];
for (let i = 0; i < t.rows; i++) { const l = b.getLine(b.viewportY + i); out.push(l ? l.translateToString(true) : ''); }
return out.join('\\n');
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """kdtui --serve on a fresh store whose form remembers tiny settings (the form's own saved values)."""
    if not (CHROMIUM and DRIVER):
        pytest.fail("make test-browser needs chromium and chromium-driver: apt-get install chromium chromium-driver")
    runs = tmp_path / "runs"
    (runs / ".kdtui").mkdir(parents=True)
    (runs / ".kdtui" / "launch.json").write_text(json.dumps({
        "strategy": "normal", "teacher": "test_resnet", "student": "test_efficientnet", "image_size": "32",
        "epochs": "1", "device": "cpu", "baseline": False, "seed": "3"}))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "kdtui", "--serve", "--port", str(port), "--runs-dir", str(runs)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, server.stdout.read().decode()
            time.sleep(0.2)
        yield runs, port
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and every tab's kdtui
        server.wait(10)
        for w in RunStore(runs).live_workers():  # the detached worker the launch started
            try:
                os.killpg(int(w["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE})
    try:
        yield driver
    finally:
        driver.quit()


def _wait_screen(driver, predicate, timeout=60.0) -> str:
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = driver.execute_script(SCREEN) or ""
        if predicate(text):
            return text
        time.sleep(0.25)
    raise AssertionError(f"the page never showed what was waited for; it shows:\n{text}")


def test_launch_from_the_form_in_a_browser(served, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    runs, port = served
    browser.get(f"http://127.0.0.1:{port}/?fontsize=12")
    assert browser.title == "kdstudy"
    # the run list, on an empty store: it says so and how to launch
    _wait_screen(browser, lambda t: "No runs yet: press 2 to launch one" in t)
    browser.find_element(By.CSS_SELECTOR, ".textual-terminal").click()
    keys = ActionChains(browser)
    keys.send_keys("2").perform()
    _wait_screen(browser, lambda t: "F5: launch" in t)
    # into the form's first field (its text is selected), type the data source, leave the form, launch
    keys.send_keys(Keys.TAB).pause(0.5).send_keys(SMALL_SYNTH).pause(0.5).send_keys(Keys.ESCAPE).perform()
    _wait_screen(browser, lambda t: "7 classes" in t)
    ActionChains(browser).send_keys(Keys.F5).perform()
    # the launch queues the run (and its teacher) and shows the run list, where the new run stands
    end = time.monotonic() + 60
    while not any(r.startswith("normal-test_efficientnet-s3-") for r in RunStore(runs).list_ids()):
        assert time.monotonic() < end, browser.execute_script(SCREEN)
        time.sleep(0.25)
    student = next(r for r in RunStore(runs).list_ids() if r.startswith("normal-test_efficientnet-s3-"))
    assert RunStore(runs).load_spec(student).data.source == SMALL_SYNTH  # what was typed in the page
    screen = _wait_screen(browser, lambda t: student in t)
    assert "test_resnet" in screen  # its teacher's row (or the student's "what" cell) names the teacher
