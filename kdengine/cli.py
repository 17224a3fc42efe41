"""The headless CLI: ``kdengine <command>``.

Exit codes (a contract, README): 0 done; 1 a run failed (a NaN loss, a crash); 2 bad input or a bad
environment, always as one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Callable, Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from . import commands
from .errors import Interrupted, KDError, RunFailed  # noqa: E402

# what the CLI adds to an error, by the field at fault (the service layer names the field, never a flag)
REMEDIES = {"runs_dir": "pass --runs-dir DIR or set KDSTUDY_HOME", "run_id": "kdengine runs list shows them",
            "skip_bad": "--skip-bad",
            # the seed planner's (kdengine study plan)
            "detect": "--detect GAIN", "variance": "--variance seed=V,image=V,residual=V", "images": "--images N",
            "power": "--power P", "cells": "--cells M", "correction": "--correction"}


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
        remedy = REMEDIES.get(exc.field)
        print(f"error: {exc}" + (f" ({remedy})" if remedy else ""), file=sys.stderr)
        return exc.exit_code
    except RunFailed as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # what was stopped and how to resume
        print(interrupted_text(exc, sys.argv[1:] if argv is None else list(argv)), file=sys.stderr)
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


def interrupted_text(exc: KeyboardInterrupt, argv: Sequence[str] | None = None) -> str:
    """Ctrl-C in a line: what was stopped, what waits for its teacher, how to resume (the command as it was typed,
    ``argv``: it resumes from the same folder; a study's name alone finds it in the store too), what still runs
    elsewhere."""
    if not isinstance(exc, Interrupted) or not exc.wound_up:
        return f"interrupted: {exc}" if str(exc) else "interrupted"
    stopped = ([str(exc)] if str(exc) else []) + [f"{rid} (queued by this command) stopped before it started"
                                                  for rid in exc.stopped]
    text = "; ".join(stopped) or "nothing was running yet"
    if exc.waiting:
        text += f"; {', '.join(exc.waiting)} {'wait' if len(exc.waiting) > 1 else 'waits'} for its teacher"
    again = (f"{shlex.join(['kdengine', *argv])} again" if argv else
             f"kdengine study run {exc.study} again" if exc.study else "run the same command again")
    text += (f". Resume with: kdengine runs retry {' '.join(exc.resumable)}, or {again}" if exc.resumable
             else f". Resume with: {again}")
    if exc.elsewhere:
        text += (f". Still running in other workers: {', '.join(exc.elsewhere)} "
                 f"(kdengine runs stop {' '.join(exc.elsewhere)})")
    return f"interrupted: {text}"
