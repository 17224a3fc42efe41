"""The training step as one object: the view of the batch, the teachers' outputs (computed, or read from
another student's shared outputs), the student's forward pass, the loss terms, backward, clipping and the
optimiser step, and the epoch's running sums (loss, confusion matrix), all on the device.

Nothing in a step synchronises with the host, so on CUDA :class:`GraphedStep` captures it once as a CUDA
graph and replays it for every full batch (the last, partial batch runs eagerly); on the CPU the same
object simply runs. The trainer reads the running sums once per epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class StepOut:
    loss: torch.Tensor  # the step's loss (device scalar)
    terms: dict[str, torch.Tensor]  # its named, weighted terms


class TrainStep:
    def __init__(self, feed, forward, model, teachers, loss, opt, grad_clip: float, autocast, num_classes: int,
                 batch_size: int, n_train: int, device: torch.device) -> None:
        self.feed, self.forward, self.model = feed, forward, model
        self.teachers, self.loss, self.opt = teachers, loss, opt
        self.grad_clip, self.autocast = grad_clip, autocast
        self.params = [p for p in model.parameters() if p.requires_grad]
        # the epoch's running sums (reset in place: a captured graph holds their addresses)
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.ce_sum = torch.zeros((), dtype=torch.float32, device=device)  # plain cross-entropy, for the curves
        self.confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
        self._ones = torch.ones(batch_size, dtype=torch.int64, device=device)
        # shared teacher outputs: read them (``reading``) or keep them for the others (``keeping``)
        n_teachers = len(teachers)
        self.teacher_logits = [torch.zeros((n_train, num_classes), dtype=torch.float32, device=device)
                               for _ in range(n_teachers)]
        self.reading = False
        self.keeping = False

    def reset_epoch(self) -> None:
        self.loss_sum.zero_()
        self.ce_sum.zero_()
        self.confusion.zero_()

    def __call__(self, raw: dict) -> StepOut:
        x, y = self.feed.view(raw)
        pos = raw["pos"]
        with self.autocast():
            if self.reading:
                t_logits = [buf[pos] for buf in self.teacher_logits]
            else:
                t_logits = [t(x) for t in self.teachers]
            logits = self.forward(x)
        terms = self.loss.terms(logits, y, t_logits)
        loss = sum(terms.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        with torch.no_grad():
            n = y.shape[0]
            self.loss_sum += loss.detach() * n
            self.ce_sum += F.cross_entropy(logits.detach().float(), y, reduction="sum")
            self.confusion.index_put_((y, logits.detach().argmax(1)), self._ones[:n], accumulate=True)
            if self.keeping:
                for buf, t in zip(self.teacher_logits, t_logits):
                    buf.index_copy_(0, pos, t.detach().float())
        return StepOut(loss.detach(), {k: v.detach() for k, v in terms.items()})


class GraphedStep:
    """A :class:`TrainStep` captured as a CUDA graph on its first full batches and replayed after.

    Its first ``WARMUP`` full batches run eagerly on a side stream (real steps: they initialise the
    optimiser's state and let cudnn pick its kernels), the next is captured and replayed, and every later
    full batch is copied into the captured inputs and replayed. Batches of another size (the last, partial
    one) run eagerly. What a replay returns is the graph's own output tensors: clone them to keep them.
    """

    WARMUP = 3

    def __init__(self, step: TrainStep, batch_size: int) -> None:
        self.step, self.batch_size = step, batch_size
        self.graph = None
        self.static: dict | None = None
        self.out: StepOut | None = None
        self.warm = 0

    def __call__(self, raw: dict) -> StepOut:
        if raw["pos"].shape[0] != self.batch_size:
            return self.step(raw)
        if self.graph is None and self.warm < self.WARMUP:
            self.warm += 1
            side, main = torch.cuda.Stream(), torch.cuda.current_stream()
            side.wait_stream(main)
            with torch.cuda.stream(side):
                out = self.step(raw)
            main.wait_stream(side)
            return out
        if self.graph is None:
            self.static = {k: v.clone() for k, v in raw.items()}
            self.graph = torch.cuda.CUDAGraph()
            self.step.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.out = self.step(self.static)
        else:
            for k, v in raw.items():
                self.static[k].copy_(v, non_blocking=True)
        self.graph.replay()
        return self.out


def macro_f1_from_confusion(cm) -> float:
    """Macro-F1 from a confusion matrix (rows true, columns predicted), as scikit-learn computes it with
    ``zero_division=0``: a class with no true and no predicted sample scores 0."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)  # predicted + true: F1 = 2 tp / (2 tp + fp + fn), as scikit-learn writes it
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return float(f1.mean()) if len(f1) else float("nan")
