"""kdtui --serve without a browser (make test-browser drives Chromium): its flags, its errors, and the page it
serves (local fonts, a websocket URL taken from the address the browser used)."""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kdtui import serve as serve_mod
from kdtui.app import main

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_host_and_port_need_serve(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--runs-dir", str(tmp_path / "runs"), "--port", "8001"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--host and --port go with --serve" in err


def test_a_taken_port_is_one_line_and_exit_2(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--runs-dir", str(tmp_path / "runs"), "--serve", "--port", str(port)]) == 2
    out = capsys.readouterr()
    assert out.err == f"error: port {port} on 127.0.0.1 is in use: pass another --port\n"
    assert out.out == ""  # nothing announced for a server that never started
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port 70000 is not a TCP port (1-65535)"),
    (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid' is not an address of this machine"
                                         + serve_mod.FOREIGN_HINT),
    (["--host", "192.0.2.7"], "--host '192.0.2.7' is not an address of this machine" + serve_mod.FOREIGN_HINT),
])
def test_bad_host_or_port(tmp_path, capsys, args, message):
    assert main(["--runs-dir", str(tmp_path / "runs"), "--serve", *args]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_without_textual_serve_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)  # import fails as if it were not installed
    assert main(["--runs-dir", str(tmp_path / "runs"), "--serve", "--port", str(_free_port())]) == 2
    assert "pip install 'kdstudy[serve]'" in capsys.readouterr().err


def test_what_it_prints_local_and_wide():
    local = serve_mod.how_to_reach("127.0.0.1", 8000)
    assert "http://127.0.0.1:8000" in local[0]
    assert f"ssh -N -L 8000:127.0.0.1:8000 {getpass.getuser()}@{socket.gethostname()}," in local[1]
    wide = serve_mod.how_to_reach("0.0.0.0", 8000)
    assert wide[1].startswith("warning: --host 0.0.0.0") and "no login" in wide[1]


def test_each_tab_runs_this_kdtui_on_this_store(tmp_path):
    cmd = serve_mod.app_command(tmp_path / "my runs", theme="nord")
    assert cmd.startswith(sys.executable) and "-m kdtui" in cmd
    assert f"--runs-dir '{tmp_path / 'my runs'}'" in cmd and cmd.endswith("--theme nord")


def test_the_page_is_offline_and_follows_the_address_used(tmp_path):
    """The served page: no font host (nothing beyond the tunnel), kdstudy's title, and a websocket URL built from
    the Host header, so ``ssh -L 9000:127.0.0.1:PORT`` (another local port) still connects."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "kdtui", "--serve", "--port", str(port),
                               "--runs-dir", str(tmp_path / "runs")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              start_new_session=True)
    try:
        page = None
        end = time.monotonic() + 30
        while page is None:
            assert server.poll() is None and time.monotonic() < end, server.stdout.read().decode()
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": "localhost:9000"})
                page = urllib.request.urlopen(req, timeout=5).read().decode()
            except OSError:
                time.sleep(0.2)
        assert 'data-session-websocket-url="ws://localhost:9000/ws"' in page
        assert "<title>kdstudy</title>" in page
        assert "googleapis" not in page and "https://" not in page
        font = urllib.request.urlopen(f"http://127.0.0.1:{port}/static/fonts/RobotoMono-VariableFont_wght.ttf",
                                      timeout=5)
        assert font.status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        out = server.communicate(timeout=10)[0].decode()
    assert f"kdtui in a browser: http://127.0.0.1:{port}" in out
