"""Checks that run before anything is queued, so that what can be known in advance never becomes a failed run:
model names, whether each model takes the image size, the local weights file, and the data source.

What cannot be known in advance (a corrupt image among 40,000) fails the run later, with a reason that
says what to fix.
"""
from __future__ import annotations

import json
import sys
from typing import Iterable

from . import method_catalog as methods
from .data.config import open_source
from .errors import KDError, UsageError
from .models.architectures import APPROX_PARAMS, MIN_IMAGE_SIZE
from .models.names import check_names
from .runspec import RunSpec


def _all_specs(specs: Iterable[RunSpec]) -> list[RunSpec]:
    out, seen = [], set()
    stack = list(specs)
    while stack:
        s = stack.pop()
        if s.run_id in seen:
            continue
        seen.add(s.run_id)
        out.append(s)
        stack.extend(s.teachers)
    return out


def preflight(specs: Iterable[RunSpec], check_data: bool = True, decode: bool = False) -> None:
    """Raise a one-line KDError for the first problem found; quiet when all is well.

    ``decode``: also decode each data config's images into the cache (the runs reuse it: no work is done twice)
    and require usable train and val images, so that a run is never created for data training would refuse."""
    every = _all_specs(specs)
    check_names({s.model for s in every})  # torch-free first: a mistyped name is refused at once
    # timm and torch, on the meta device (the store's readers never need them)
    from .models.factory import check_buildable, check_pretrained_reachable, check_weights_file
    shapes = sorted({(s.model, s.train.pretrained, s.data.image_size) for s in every})
    for model, pretrained, size in shapes:
        check_buildable(model, size, pretrained)
    for path, model in sorted({(s.train.pretrained_from, s.model) for s in every if s.train.pretrained_from}):
        check_weights_file(path, model)
    for model in sorted({s.model for s in every if s.train.pretrained and not s.train.pretrained_from}):
        check_pretrained_reachable(model)
    # torch: a method file is imported, a feature method's stages are found in the models' feature_info
    from .training.methods.checks import check_method
    for s in every:
        check_method(s)
    if check_data:
        for data in sorted({s.data for s in every}, key=repr):
            source = open_source(data)
            for s in every:  # what the task rules out: a softmax method, or a virtual teacher, on a multi-label task
                if s.data == data:
                    check_task(s, source.task_kind, source.description)
            if decode:
                from .data.cache import build_or_load, require_usable  # cv2: decoding images

                require_usable(build_or_load(source, data.image_size, skip_bad=data.skip_bad), source)


def check_task(spec: RunSpec, task: str, where: str) -> None:
    """One line when a KD run's method or strategy is not defined for the data's task (the method's declared tasks;
    tf-reg's virtual teacher puts its mass on one class)."""
    if spec.kind != "kd":
        return
    declared = methods.get(spec.kd.method)
    if declared is not None and task not in declared.tasks:
        fits = ", ".join(n for n, m in methods.CATALOGUE.items() if task in m.tasks)
        raise UsageError(f"method {spec.kd.method} is defined for {' and '.join(declared.tasks)} tasks; {where} is "
                         f"{task} (methods for it: {fits})", field="method")
    if task == "multilabel" and spec.kd.logit_standardize:
        raise UsageError("logit standardisation z-scores one softmax's logits; a multi-label task has a sigmoid per "
                         "finding (turn kd.logit_standardize off)", field="logit_standardize")
    if task == "multilabel" and spec.strategy == "tf-reg":
        raise UsageError("tf-reg's virtual teacher puts its mass on one class per image; a multi-label task has "
                         "several findings (use tf-self or a teacher network)", field="strategy")


def needs_torch(specs: Iterable[RunSpec]) -> bool:
    """Whether proving ``specs`` needs timm and torch: a model outside kdstudy's known architectures (their
    sizes and minimum image side are tested against timm), an image side below that minimum, a local weights
    file, pretrained weights to find, or a method that reads the models' insides or comes from a file or a
    package. Otherwise the torch-free checks are the whole answer."""
    every = _all_specs(specs)
    return any(s.model not in APPROX_PARAMS or s.train.pretrained_from or s.train.pretrained
               or s.data.image_size < MIN_IMAGE_SIZE or _method_needs_torch(s) for s in every)


def _method_needs_torch(spec: RunSpec) -> bool:
    if spec.kind != "kd":
        return False
    declared = methods.get(spec.kd.method)
    return declared is None or declared.needs_network


def main(argv: list[str] | None = None) -> int:
    """``python -m kdengine.preflight [--data] [--decode]``: the checks of a JSON list of run specs on stdin, in
    a process of their own (kdengine.api.check runs it so that a caller without torch, kdtui, never imports
    it). Quiet and 0 when all is well; one line on stderr and 2 otherwise."""
    args = sys.argv[1:] if argv is None else argv
    try:
        items = json.load(sys.stdin)
        specs = [RunSpec.from_dict(d) for d in (items if isinstance(items, list) else [items])]
        preflight(specs, check_data="--data" in args, decode="--decode" in args)
    except KDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: the checks read a JSON list of run specs on stdin: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
