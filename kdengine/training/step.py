"""The training step as one object: the view of the batch, the teachers' outputs (computed, or read from
another student's shared outputs), the student's forward pass, the loss terms, backward, clipping and the
optimiser step, and the epoch's running sums (loss, confusion matrix), all on the device.

Nothing in a step synchronises with the host, so on CUDA :class:`GraphedStep` captures it as CUDA graphs (one
per batch shape and sharing mode, in one memory pool) and replays them; on the CPU the same object simply runs. The trainer reads the running sums once per epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .methods import Outputs


@dataclass
class StepOut:
    loss: torch.Tensor  # the step's loss (device scalar)
    terms: dict[str, torch.Tensor]  # its named, weighted terms


class TrainStep:
    """``forward`` and each of ``teachers`` map a batch to :class:`~.methods.Outputs` (the logits, and the feature
    maps or the embedding the run's method reads); ``loss`` is the run's :class:`~.losses.Distiller`."""

    def __init__(self, feed, forward, model, teachers, loss, opt, grad_clip: float, autocast, num_classes: int,
                 batch_size: int, n_train: int, device: torch.device, params=None,
                 embedding_dims: tuple[int, ...] = (), task=None) -> None:
        self.feed, self.forward, self.model = feed, forward, model
        self.teachers, self.loss, self.opt = teachers, loss, opt
        self.grad_clip, self.autocast = grad_clip, autocast
        # what is clipped: the student's parameters and the method's (adapters, heads), as the optimiser steps them
        self.params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
        # the epoch's running sums (reset in place: a captured graph holds their addresses)
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.ce_sum = torch.zeros((), dtype=torch.float32, device=device)  # plain cross-entropy, for the curves
        self.seen = torch.zeros((), dtype=torch.int64, device=device)  # images this epoch
        self.task = task if task is not None else loss.ctx.task
        self.confusion = torch.zeros(self.task.confusion_shape(), dtype=torch.int64, device=device)
        # shared teacher outputs: read them (``reading``) or keep them for the others (``keeping``): the logits,
        # and the embeddings where the method reads them (``embedding_dims``: one per teacher, else none)
        n_teachers = len(teachers)
        self.teacher_logits = [torch.zeros((n_train, num_classes), dtype=torch.float32, device=device)
                               for _ in range(n_teachers)]
        self.teacher_embeddings = [torch.zeros((n_train, d), dtype=torch.float32, device=device)
                                   for d in embedding_dims]
        self.reading = False
        self.keeping = False

    @property
    def mode(self) -> tuple[bool, bool]:
        """(reading, keeping): which branch a step takes, and so which graph it needs (GraphedStep)."""
        return self.reading, self.keeping

    def reset_epoch(self) -> None:
        self.loss_sum.zero_()
        self.ce_sum.zero_()
        self.seen.zero_()
        self.confusion.zero_()

    def _read(self, pos) -> list[Outputs]:
        embeddings = [buf[pos] for buf in self.teacher_embeddings] or [None] * len(self.teacher_logits)
        return [Outputs(buf[pos], embedding=e) for buf, e in zip(self.teacher_logits, embeddings)]

    def __call__(self, raw: dict) -> StepOut:
        x, y = self.feed.view(raw)
        pos = raw["pos"]
        with self.autocast():
            t_out = self._read(pos) if self.reading else [t(x) for t in self.teachers]
            s_out = self.forward(x)
        terms = self.loss.terms(s_out, t_out, y, pos)
        loss = sum(terms.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        with torch.no_grad():
            logits = s_out.logits.detach()
            n = y.shape[0]
            self.loss_sum += loss.detach() * n
            self.seen += n
            self.ce_sum += self.task.loss(logits.float(), y, reduction="sum")
            cells, counts = self.task.confusion_cells(logits, y)
            self.confusion.view(-1).index_add_(0, cells, counts)
            if self.keeping:
                for buf, t in zip(self.teacher_logits, t_out):
                    buf.index_copy_(0, pos, t.logits.detach().float())
                for buf, t in zip(self.teacher_embeddings, t_out):
                    buf.index_copy_(0, pos, t.embedding.detach().float())
        return StepOut(loss.detach(), {k: v.detach() for k, v in terms.items()})


@dataclass
class Captured:
    """One captured graph: its static inputs (copied into before each replay) and its static outputs."""
    graph: object
    static: dict
    out: StepOut


class GraphedStep:
    """A :class:`TrainStep` captured as CUDA graphs and replayed.

    - **Warm-up**: before the first capture, ``WARMUP`` full batches run eagerly on a side stream (real steps:
      they create the optimiser's state and let cuDNN pick its kernels); a later shape or mode runs one eager
      step first (cuDNN's choice for that shape) and is then captured.
    - **One graph per batch shape**: the full batch and the epoch's last, partial batch each get a graph,
      captured into **one memory pool** (the partial batch's graph reuses the full batch's activations and
      gradients rather than opening a second pool, and never autotunes again). They are replayed in the order
      they were captured (full batches, then the partial one, every epoch), which a shared pool requires.
    - **The mode is part of the graph**: a captured graph replays the branch it was captured under, so a step
      that reads shared teacher outputs and one that computes them are different graphs. When the mode changes
      between epochs (``TrainStep.mode``: another student has, or has not yet, stored this epoch's outputs), the
      graphs are dropped and captured again under the new mode: recapture costs one capture per change (modes
      change rarely: a student that computes keeps computing until another is ahead of it), while keeping a
      graph per mode would double the private memory of every packed run. Replaying a graph of the other mode
      would train on stale logits and spread them to every other student (the defect this fixes).
    - **Capture is thread-local** (``capture_error_mode="thread_local"``): the loader's pin-memory thread and the
      host-gather thread keep making CUDA calls (pinned allocations, event queries) while this thread
      captures, which the default "global" mode turns into a capture error.

    What a replay returns is the graph's own output tensors: clone them to keep them. ``cuda`` is torch.cuda
    (a stand-in in the CPU tests of this logic).
    """

    WARMUP = 3

    def __init__(self, step: TrainStep, batch_size: int, cuda=None) -> None:
        self.step, self.batch_size = step, batch_size
        self.cuda = cuda if cuda is not None else torch.cuda
        self.graphs: dict[int, Captured] = {}  # batch size -> its graph, for ``self.mode``
        self.mode: tuple | None = None
        self.pool = None  # the memory pool every graph of this mode shares
        self.warm: dict[tuple, int] = {}  # (mode, batch size) -> eager steps run
        self.captures = 0  # graphs captured so far (a mode change or a new shape adds one)

    @property
    def graph(self):
        """The full batch's graph (None before it is captured)."""
        c = self.graphs.get(self.batch_size)
        return c.graph if c is not None else None

    def drop(self) -> None:
        """Forget every graph (and its pool): the next batches warm up and capture again."""
        self.graphs.clear()
        self.pool = None

    def _eager(self, raw: dict) -> StepOut:
        side, main = self.cuda.Stream(), self.cuda.current_stream()
        side.wait_stream(main)
        with self.cuda.stream(side):
            out = self.step(raw)
        main.wait_stream(side)
        return out

    def _capture(self, raw: dict, n: int) -> Captured:
        static = {k: v.clone() for k, v in raw.items()}
        graph = self.cuda.CUDAGraph()
        self.step.opt.zero_grad(set_to_none=True)
        with self.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            out = self.step(static)
        if self.pool is None:
            self.pool = graph.pool()
        self.captures += 1
        self.graphs[n] = Captured(graph, static, out)
        return self.graphs[n]

    def __call__(self, raw: dict) -> StepOut:
        n = int(raw["pos"].shape[0])
        mode = self.step.mode
        if mode != self.mode:  # graphs captured under the other branch would replay it
            self.drop()
            self.mode = mode
        captured = self.graphs.get(n)
        if captured is None:
            key = (mode, n)
            need = self.WARMUP if self.captures == 0 else 1
            if self.warm.get(key, 0) < need:
                self.warm[key] = self.warm.get(key, 0) + 1
                return self._eager(raw)
            captured = self._capture(raw, n)
        else:
            for k, v in raw.items():
                captured.static[k].copy_(v, non_blocking=True)
        captured.graph.replay()
        return captured.out


def macro_f1_from_confusion(cm) -> float:
    """Macro-F1 from a confusion matrix (rows true, columns predicted), as scikit-learn computes it with
    ``zero_division=0``: a class with no true and no predicted sample scores 0."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)  # predicted + true: F1 = 2 tp / (2 tp + fp + fn), as scikit-learn writes it
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return float(f1.mean()) if len(f1) else float("nan")
