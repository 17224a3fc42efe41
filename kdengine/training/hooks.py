"""What the training loop does besides training, as hooks: the step log, the defect check, shared teacher
outputs and trackers here; the executor adds its own (the memory peak that packing needs).

A hook sees the run at its start, each step (its return value True ends the epoch early), and each epoch's
end, with the epoch's event before it is written. The step is device work; a hook that needs a number from
it reads it without waiting for the device (:class:`StepLog`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import RunFailed
from ..store import events as ev

STEP_EVENTS_PER_EPOCH = 25


class Hook:
    def on_start(self, trainer) -> None: ...

    def on_epoch_start(self, trainer, epoch: int) -> None: ...

    def on_step(self, trainer, epoch: int, step: int, out) -> bool:
        return False

    def on_epoch_end(self, trainer, epoch: int, event: ev.Epoch) -> None: ...


class StepLog(Hook):
    """About 25 ``step`` events per epoch (loss, terms, lr), read without a host sync: at a logged step the
    numbers are copied to pinned memory behind the step on the device's stream, and written once the copy is
    done; every one is written before the epoch's end (before any checkpoint), and a NaN fails the run."""

    def __init__(self) -> None:
        self.pending: list[tuple[ev.Step, torch.Tensor, object, list[str]]] = []

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self.every = max(1, trainer.steps_per_epoch // STEP_EVENTS_PER_EPOCH)

    def on_step(self, trainer, epoch, step, out) -> bool:
        if step % self.every and step != trainer.steps_per_epoch:
            return False
        names = list(out.terms)
        values = torch.stack([out.loss, *(out.terms[k] for k in names)]).float()
        meta = ev.Step(epoch=epoch, step=step, global_step=trainer.state.global_step, lr=trainer.lr)
        if values.is_cuda:
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            self.pending.append((meta, host, done, names))
        else:
            self.pending.append((meta, values, None, names))
        self.flush(trainer, wait=False)
        return False

    def flush(self, trainer, wait: bool = True) -> None:
        while self.pending:
            meta, host, done, names = self.pending[0]
            if done is not None and not done.query():
                if not wait:
                    return
                done.synchronize()
            self.pending.pop(0)
            values = host.tolist()
            if not math.isfinite(values[0]):
                raise RunFailed(f"loss became {values[0]} at epoch {meta.epoch}, step {meta.step}")
            trainer.last_loss = values[0]
            meta.loss, meta.terms = values[0], dict(zip(names, values[1:]))
            trainer.emit(meta)

    def on_epoch_end(self, trainer, epoch, event) -> None:
        self.flush(trainer, wait=True)


class DefectCheck(Hook):
    """A defective teacher checks its val accuracy ``defect_check_every`` steps (default: four times an
    epoch) and stops where it first reaches the threshold: those weights are the defective teacher."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self.every = trainer.spec.defect_check_every or max(1, trainer.steps_per_epoch // 4)

    def on_step(self, trainer, epoch, step, out) -> bool:
        state = trainer.state
        if state.global_step % self.every or step >= trainer.steps_per_epoch:
            return False
        trainer.flush_steps()  # every logged step before a checkpoint
        val, _ = trainer.evaluate("val")
        trainer.emit(ev.DefectCheck(epoch=epoch, step=step, global_step=state.global_step,
                                    val_accuracy=val["accuracy"]))
        trainer.model.train()
        if val["accuracy"] >= trainer.spec.defect_acc:
            trainer.record_defect(epoch, step, val["accuracy"])
            return True
        return False


class TeacherSharing(Hook):
    """Shared teacher outputs (``teacher_outputs.py``): each epoch, read the teachers' logits that another
    student stored, or compute them and store them for the others at the epoch's end."""

    def __init__(self, train: list, evaluation: list) -> None:
        self.train, self.evaluation = train, evaluation

    def on_epoch_start(self, trainer, epoch: int) -> None:
        step, n = trainer.step, len(trainer.feed)
        self.name = f"train-e{epoch:04d}"
        stored = [s.load(self.name, n) for s in self.train]
        embedded = [s.load(f"{self.name}-embedding", n) for s in self.train] if step.teacher_embeddings else []
        # a method that reads feature maps runs the teacher anyway: it keeps what it computes, never reads
        step.reading = not trainer.feature_maps and all(a is not None for a in stored + embedded)
        step.keeping = not step.reading
        if step.reading:
            for buf, arr in zip(step.teacher_logits + step.teacher_embeddings, stored + embedded):
                buf.copy_(torch.from_numpy(arr))
        self.steps = 0

    def on_step(self, trainer, epoch, step, out) -> bool:
        self.steps += 1
        return False

    def on_epoch_end(self, trainer, epoch, event) -> None:
        step = trainer.step
        event.teacher_outputs = "shared" if step.reading else "computed"
        if step.keeping and self.steps == trainer.steps_per_epoch:  # a whole epoch: share it
            for shared, buf in zip(self.train, step.teacher_logits):
                shared.save(self.name, buf.cpu().numpy())
            for shared, buf in zip(self.train, step.teacher_embeddings):
                shared.save(f"{self.name}-embedding", buf.cpu().numpy())
        step.reading = step.keeping = False

    def eval_probs(self, i: int, split: str, rows: int, compute) -> np.ndarray:
        """Teacher ``i``'s probabilities on a split: read, or computed and stored."""
        shared = self.evaluation[i]
        probs = shared.load(f"eval-{split}", rows)
        if probs is None:
            probs = compute().astype(np.float32)
            shared.save(f"eval-{split}", probs)
        return probs


class Trackers(Hook):
    """Experiment trackers (Neptune, TensorBoard, MLflow) follow the run; the executor closes them."""

    def __init__(self, trackers: list) -> None:
        self.trackers = list(trackers)

    def on_start(self, trainer) -> None:
        for tr in self.trackers:
            tr.start(trainer.run_id, trainer.spec, trainer.class_names, trainer.store.run_dir(trainer.run_id))

    def on_epoch_end(self, trainer, epoch, event) -> None:
        for tr in self.trackers:
            tr.log_epoch(epoch, event)
