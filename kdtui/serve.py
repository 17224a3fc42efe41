"""``kdtui --serve``: the same app in a browser tab, through textual-serve.

Each browser tab that connects starts its own ``python -m kdtui`` on this machine (textual-serve's web driver);
they all read the one run store, as several terminals would. Local by default (127.0.0.1): from a laptop, an
SSH port-forward reaches it, and nothing on the network can drive the app. There is no login, so a wider
``--host`` is said out loud.
"""
from __future__ import annotations

import errno
import getpass
import shlex
import socket
import sys
from pathlib import Path

PAGE = Path(__file__).parent / "serve_page"  # textual-serve's page with local fonts (no font host at run time)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# --host is where kdtui listens, on this machine, not the machine a browser will be on
FOREIGN_HINT = (" (--host is the address kdtui listens on here, not the browser's: leave it out and use ssh -L from "
                "the laptop, or --host 0.0.0.0 to listen on every address)")


class ServeError(Exception):
    """The browser app cannot start (the package is missing, the port is taken): one line, exit 2."""


def app_command(runs_dir: Path, theme: str | None = None) -> str:
    """The command each browser tab runs: this interpreter, this store, this theme."""
    args = [sys.executable, "-m", "kdtui", "--runs-dir", str(runs_dir)]
    if theme:
        args += ["--theme", theme]
    return shlex.join(args)


def check_port(host: str, port: int) -> None:
    """Fail before textual-serve prints its banner: a port in use or a host that is not this machine's."""
    if not 0 < port < 65536:
        raise ServeError(f"--port {port} is not a TCP port (1-65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except socket.gaierror:
            raise ServeError(f"--host {host!r} is not an address of this machine{FOREIGN_HINT}") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"port {port} on {host} is in use: pass another --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ServeError(f"--host {host!r} is not an address of this machine{FOREIGN_HINT}") from None
            if exc.errno == errno.EACCES:
                raise ServeError(f"port {port} needs root here: pass a port above 1023") from None
            raise


def how_to_reach(host: str, port: int) -> list[str]:
    """What kdtui prints before serving: the address, and the SSH forward that reaches it from a laptop."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"kdtui in a browser: http://{shown}:{port} (ctrl-c stops the server and every tab's app)"]
    if host in LOCAL_HOSTS:
        lines.append(f"from a laptop: ssh -N -L {port}:127.0.0.1:{port} {getpass.getuser()}@{socket.gethostname()}, "
                     f"then open http://localhost:{port}")
    else:
        lines.append(f"warning: --host {host} lets anyone who reaches port {port} drive kdtui (launch, stop, "
                     "delete runs) with no login; 127.0.0.1 and an SSH forward keep it yours")
    return lines


def serve(runs_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, theme: str | None = None) -> None:
    """Serve kdtui until ctrl-c. Raises ServeError for what the user can fix."""
    try:
        # textual-serve (aiohttp): only --serve needs it; a terminal kdtui starts without it
        from textual_serve.server import Server
    except ImportError:
        raise ServeError("kdtui --serve needs textual-serve: pip install 'kdstudy[serve]' "
                         "(make setup installs it)") from None
    check_port(host, port)
    for line in how_to_reach(host, port):
        print(line, flush=True)
    server = _server_class(Server)(app_command(runs_dir, theme), host=host, port=port, title="kdstudy",
                                   templates_path=PAGE)
    server.serve()


def _server_class(base):
    """textual-serve's Server, with the page's URLs taken from the address the browser used.

    textual-serve writes ``http://HOST:PORT`` into the page, so a tab opened through ``ssh -L 9000:…:8000``
    (or on a box bound to 0.0.0.0) would open its websocket to the wrong place. The request's own Host header is
    the address that reached us."""

    class KdtuiServer(base):
        async def handle_index(self, request):
            self.public_url = f"{request.scheme}://{request.host}"
            return await base.handle_index(self, request)

    return KdtuiServer
