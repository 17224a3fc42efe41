"""The headless CLI: ``kdengine <command>``.

Exit codes (a contract, README): 0 done; 1 a run failed (a NaN loss, a crash); 2 bad input or a bad
environment, always as one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from . import commands
from .errors import KDError, RunFailed  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kdengine", description="kdstudy engine: knowledge-distillation studies on medical images")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag (already said in one line)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except KDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunFailed as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # the message says what was stopped and how to resume
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (OSError, MemoryError) as exc:  # the environment: a disk, a mount, the memory
        if os.environ.get("KDSTUDY_DEBUG"):
            raise
        print(f"error: {environment_error(exc)} (KDSTUDY_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


def environment_error(exc: BaseException) -> str:
    """One line for an error of the surroundings rather than of kdstudy."""
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller --batch-size or --image-size)"
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    return f"{(exc.strerror or exc.__class__.__name__).lower()}:{where}" if where else str(exc) or exc.__class__.__name__
