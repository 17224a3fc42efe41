"""Trains one claimed run and writes what it learns into the run store: the loop, plus hooks.

The run's spec decides the model, the data, the strategy and its teachers (already finished: the
executor sees to that). The loop runs the step object (``step.py``: eager, or a captured CUDA graph)
over the feed's batches (``inputs.py``), validates after every epoch, keeps the best checkpoint by val
accuracy and writes a resumable checkpoint, so a stopped or crashed run continues from its last finished
epoch. Everything else is a hook (``hooks.py``): the step log, the defect check, shared teacher outputs,
trackers, and whatever the executor adds. The end evaluates train, val and test with the best weights
and returns the results; the executor draws the figures and writes ``metrics.json``.
"""
from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import strategy_catalog as catalog
from ..data.cache import build_or_load, require_usable
from ..data.config import open_source
from ..data.loader import Normalizer
from ..errors import RunFailed
from ..metric_names import EPOCH_TRAIN, EPOCH_VAL, HEADLINE, SPLITS
from ..models.factory import check_image_size, create_model, input_channels, resolve_pretrained_name
from ..options import config_dict
from ..runspec import RunSpec
from ..store import RunStore
from ..store import events as ev
from ..store.runstore import PREDICTED_SPLITS
from ..strategy_catalog import size_warning
from .checkpoints import load_best, load_last, save_best, save_last
from .device import DeviceSetup
from .hooks import DefectCheck, Hook, StepLog, TeacherSharing, Trackers
from .inputs import DeviceFeed, Images, LoaderFeed, device_images, eval_iter, label_tensor
from .losses import distiller_for
from .methods.base import declaration
from .methods.plugins import method_class
from .methods.taps import Tap, model_shape
from .metrics import (YOUDEN, agreement, choose_thresholds, classification_metrics, multilabel_metrics,
                      split_metrics, study_level)
from .task import Task, accuracy_and_f1
from .optim import build_optimizer, load_optimizer_state
from .progress import Progress
from .step import GraphedStep, TrainStep
from .teacher import FrozenTeacher, frozen_from_checkpoint
from .teacher_outputs import TeacherOutputs, sharing_enabled


class Stopped(Exception):
    """The user asked the run to stop."""


@dataclass
class TrainState:
    """The trainer's counters: saved in ``last.pt`` after every epoch, and all a resume needs besides weights."""

    epoch: int = 0
    global_step: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    defect: dict | None = None
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def apply(self, decision: "EpochDecision", epoch: int, val_acc: float) -> None:
        self.epoch = epoch
        if decision.improved:
            self.best_acc, self.best_epoch = val_acc, epoch
        if not decision.defect:
            self.bad_epochs = decision.bad_epochs
        self.stopped_early = decision.stop is not None


@dataclass(frozen=True)
class EpochDecision:
    improved: bool  # a new best val accuracy: save these weights
    defect: bool  # the defect threshold is reached: these weights are the defective teacher
    bad_epochs: int  # epochs in a row without improvement
    stop: str | None  # "defect" or "patience" when training ends after this epoch


def decide(state: TrainState, val_acc: float, defect_acc: float | None, patience: int) -> EpochDecision:
    """What the end of an epoch means, from its val accuracy alone (unit-tested without a model)."""
    if defect_acc is not None and val_acc >= defect_acc:
        return EpochDecision(improved=False, defect=True, bad_epochs=state.bad_epochs, stop="defect")
    improved = val_acc > state.best_acc
    bad = 0 if improved else state.bad_epochs + 1
    return EpochDecision(improved, False, bad, "patience" if patience and bad >= patience else None)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trained_on(dev) -> dict:
    """Where a run trains: device, GPU name, the visible GPUs, host, and the input path and step it uses."""
    return {"device": str(dev.device), "gpu": torch.cuda.get_device_name(dev.device) if dev.is_cuda else None,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "host": socket.gethostname(),
            **dev.runtime()}


class Trainer:
    def __init__(self, store: RunStore, spec: RunSpec, dev: DeviceSetup, hooks=(), progress: bool = True,
                 log=None, beat=None, trackers=()) -> None:
        self.store = store
        self.spec = spec
        self.run_id = spec.run_id
        self.dev = dev
        self.extra_hooks = list(hooks)
        self.trackers = list(trackers)
        self.progress = Progress(spec.describe(), enabled=progress)
        self.log = log or self.progress.line
        self.beat = beat  # the executor's Heartbeat: carries progress out, and stop requests in
        self._teacher_cache: dict[str, np.ndarray] = {}
        self.last_loss = float("nan")
        self.predictions: dict[str, dict] = {}  # the best weights' per-image val and test predictions, at the end

    def emit(self, event: ev.Event) -> None:
        self.store.append_event(self.run_id, event)

    # -- set-up -------------------------------------------------------------------------------------
    def _data(self) -> None:
        spec = self.spec
        self.source = open_source(spec.data)
        self.class_names = self.source.class_names
        self.task = Task.of_source(self.source)
        self.cache = build_or_load(self.source, spec.data.image_size, skip_bad=spec.data.skip_bad,
                                   progress=lambda done, total: self._beat(phase=f"decoding images {done}/{total}"))
        self.eval_rows = {s: self.cache.rows(s) for s in SPLITS}
        require_usable(self.cache, self.source)
        resident = device_images(self.cache, self.dev) if self.dev.device_input else None
        self.images = Images(self.cache, self.dev, resident)
        batch = spec.train.batch_size
        if self.dev.device_input:
            self.feed = DeviceFeed(self.cache, spec.seed, batch, self.dev, self.images)
        else:
            self.feed = LoaderFeed(self.cache, spec.seed, batch, self.dev)
        self.eval_batch = self.dev.eval_batch(batch)

    def _student(self) -> None:
        spec = self.spec
        _seed_everything(spec.seed)
        colour = self.cache.channels == 3
        chans = input_channels(spec.train.pretrained, colour)
        model = create_model(spec.model, len(self.class_names), spec.train.pretrained, spec.train.pretrained_from,
                             warn=self.log, colour=colour)
        check_image_size(model, spec.model, spec.data.image_size, chans)
        self.arch = resolve_pretrained_name(spec.model, lambda m: None) if spec.train.pretrained else spec.model
        self.chans = chans
        self.model = model.to(self.dev.device)
        if self.dev.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.norm = Normalizer(chans, self.dev.channels_last).to(self.dev.device)
        self.n_params = sum(p.numel() for p in model.parameters())

    def _teachers(self) -> None:
        self.teachers: list[FrozenTeacher] = []
        self.teacher_nets = []
        self.teacher_info = []
        for tspec in self.spec.teachers:
            tid = tspec.run_id
            teacher, net = frozen_from_checkpoint(self.store.checkpoint_dir(tid), self.dev)
            self.teachers.append(teacher)
            self.teacher_nets.append(net)
            tm = self.store.read_metrics(tid) or {}
            info = {"run_id": tid, "model": tspec.model, "params": sum(p.numel() for p in net.parameters()),
                    "val_accuracy": tm.get("val", {}).get("accuracy"), "test_accuracy": tm.get("test", {}).get("accuracy")}
            if tm.get("defect"):
                info["defect"] = tm["defect"]
            self.teacher_info.append(info)
        self.sharing: TeacherSharing | None = None
        if self.teachers and sharing_enabled():
            data, numerics = config_dict(self.spec.data), self.numerics()
            train = [TeacherOutputs.for_training(self.store.run_dir(t.run_id), t.run_id, self.spec.seed,
                                                 self.spec.train.batch_size, data, numerics, self.feed.backend)
                     for t in self.spec.teachers]
            evaluation = [TeacherOutputs.for_evaluation(self.store.run_dir(t.run_id), t.run_id, self.eval_batch,
                                                        data, numerics) for t in self.spec.teachers]
            self.sharing = TeacherSharing(train, evaluation)
        if self.spec.kind == "kd" and self.teacher_info:
            t = self.teacher_info[0]
            msg = size_warning(catalog.get(self.spec.strategy), t["model"], t["params"], self.spec.model, self.n_params)
            if msg:
                self.log(f"warning: {msg}")
                self.emit(ev.Warning(message=msg))

    def numerics(self) -> dict:
        """What a step's numbers depend on besides the data and the weights (the shared outputs' key)."""
        return {"device": self.dev.device.type, "amp": str(self.dev.amp_dtype) if self.dev.amp_dtype else None,
                "channels_last": self.dev.channels_last,
                "threads": torch.get_num_threads() if self.dev.device.type == "cpu" else None}

    def _loss(self) -> None:
        """The run's loss (its method, built from the models' shapes) and what the step reads from the models: the
        stages and the embedding the method asks for, through taps on timm's feature API."""
        spec = self.spec
        needs_shapes = spec.kind == "kd" and declaration(method_class(spec.kd)).needs_network
        with torch.random.fork_rng(devices=[]):  # the adapters' initial weights: from the seed, not the history
            torch.manual_seed(spec.seed)
            self.loss = distiller_for(
                spec, len(self.class_names), n_train=len(self.feed), device=self.dev.device, log=self._note,
                task=self.task,
                student=model_shape(self.model) if needs_shapes else None,
                teachers=tuple(model_shape(n) for n in self.teacher_nets) if needs_shapes else ()).to(self.dev.device)
        method = self.loss.method
        self.method_params = [p for p in self.loss.parameters() if p.requires_grad]
        stages = method.student_stages if method is not None else []
        embedding = method is not None and method.embedding
        self.student_tap = Tap(self.model, self._student_forward, stages, embedding)
        self.teacher_taps = [Tap(net, teacher, method.teacher_stages(i) if method else [], embedding, clone=True)
                             for i, (net, teacher) in enumerate(zip(self.teacher_nets, self.teachers))]
        self.feature_maps = bool(stages)
        if self.feature_maps and self.sharing is not None:
            self._note(f"{spec.kd.method} reads the teacher's feature maps: the teacher runs at every step (shared "
                       "teacher outputs hold logits and embeddings only)")

    def _note(self, message: str) -> None:
        """A note for the run's log and its events, said once where it is made."""
        self.log(f"note: {message}")
        self.emit(ev.Warning(message=message))

    def _step(self) -> None:
        spec = self.spec
        self._loss()
        params = [p for p in self.model.parameters() if p.requires_grad] + self.method_params
        graphed = self.dev.graphed and self.loss.graph_safe
        if self.dev.graphed and not graphed:
            self._note(f"method {spec.kd.method} draws on the host at every step: its steps run eagerly, not as a "
                       "CUDA graph")
        self.opt, self.sched = build_optimizer(params, spec.train, self.dev.device, graphed=graphed)
        method = self.loss.method
        dims = tuple(t.embedding_dim for t in self.loss.ctx.teachers) if method is not None and method.embedding else ()
        step = TrainStep(self.feed, self.student_tap, self.model, self.teacher_taps, self.loss, self.opt,
                         spec.train.grad_clip, lambda: self.dev.autocast(cache=not graphed), len(self.class_names),
                         spec.train.batch_size, len(self.feed), self.dev.device, params=params, embedding_dims=dims,
                         task=self.task)
        self.step = step
        self.run_step = GraphedStep(step, spec.train.batch_size) if graphed else step

    def _hooks(self) -> None:
        self.step_log = StepLog()
        hooks: list[Hook] = [self.step_log]
        if self.spec.defect_acc is not None:
            hooks.append(DefectCheck())
        if self.sharing is not None:
            hooks.append(self.sharing)
        hooks.append(Trackers(self.trackers))
        self.hooks = hooks + self.extra_hooks

    # -- evaluation -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def _predict(self, forward, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Probabilities, labels and mean cross-entropy of ``forward`` over one split (no augmentation), at
        the evaluation batch size; the numbers stay on the device until the end."""
        rows = self.eval_rows[split]
        labels = label_tensor(self.cache.labels[rows])
        labels_dev = labels.to(self.dev.device)
        probs, loss_sum, start = [], torch.zeros((), dtype=torch.float64, device=self.dev.device), 0
        for x in eval_iter(self.images, rows, self.eval_batch):
            self._beat()
            y = labels_dev[start:start + x.shape[0]]
            start += x.shape[0]
            with self.dev.autocast():
                logits = forward(x).float()
            loss_sum += self.task.loss(logits, y, reduction="sum").double()
            probs.append(self.task.probs(logits))
        n = len(rows)
        out = torch.cat(probs).cpu().numpy() if probs else np.zeros((0, len(self.class_names)), np.float32)
        return out, labels.numpy(), loss_sum.item() / max(1, n)

    def _student_forward(self, x):
        return self.model(self.norm(x))

    def evaluate(self, split: str, final: bool = False, thresholds=None) -> tuple[dict, np.ndarray]:
        """A split's metrics (at the end, ``final``, with the ranking metrics and ``thresholds`` chosen on val) and
        its probabilities."""
        self._phase(f"evaluating {split}" + (" (best checkpoint)" if final else ""))
        self.model.eval()
        probs, labels, loss = self._predict(self._student_forward, split)
        if final:
            return split_metrics(labels, probs, self.class_names, loss, thresholds), probs
        if self.task.multilabel:
            return multilabel_metrics(labels, probs, self.class_names, loss), probs
        return classification_metrics(labels, probs, self.class_names, loss), probs

    def _teacher_probs(self, split: str) -> np.ndarray | None:
        """The (averaged) teachers' probabilities on a split: fixed, so computed once per split, and shared
        with the teachers' other students."""
        if not self.teachers:
            return None
        if split not in self._teacher_cache:
            per_teacher = []
            for i, teacher in enumerate(self.teachers):
                compute = lambda teacher=teacher: self._predict(teacher, split)[0]  # noqa: E731
                if self.sharing is not None:
                    per_teacher.append(self.sharing.eval_probs(i, split, len(self.eval_rows[split]), compute))
                else:
                    per_teacher.append(compute().astype(np.float32))
            self._teacher_cache[split] = np.mean(per_teacher, 0)
        return self._teacher_cache[split]

    # -- the loop -------------------------------------------------------------------------------------
    def _beat(self, **progress) -> None:
        """Hand the latest progress to the heartbeat thread, and honour a stop request it noticed.

        No file system access here: this runs every step."""
        if self.beat is None:
            return
        if progress:
            self.beat.progress = progress
        if self.beat.stop_requested.is_set() and not (self.beat.progress or {}).get("final"):
            raise Stopped()  # the final evaluation is never cut short: a stop then is too late, and says so

    def _phase(self, phase: str, **more) -> None:
        """Say what the run is doing now (decoding, training, evaluating val ...): into status.json at once."""
        if self.beat is None:
            return
        self.beat.progress = {**(self.beat.progress or {}), "phase": phase, **more}
        self.beat.beat()

    def prepare(self) -> None:
        """Data, student, teachers, loss, optimiser, step and hooks: everything before the first step."""
        self._data()
        self._student()
        self._teachers()
        self._step()
        self._hooks()
        self.ckpt_dir = self.store.checkpoint_dir(self.run_id)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.meta = {"arch": self.arch, "model": self.spec.model, "in_chans": self.chans,
                     "num_classes": len(self.class_names), "class_names": self.class_names, "run_id": self.run_id}
        self.steps_per_epoch = -(-len(self.feed) // self.spec.train.batch_size)
        self.total_steps = self.spec.train.epochs * self.steps_per_epoch
        self.trained_on = trained_on(self.dev)
        if self.beat is not None:
            self.beat.extra["trained_on"] = self.trained_on
            self.beat.beat()  # into status.json now, not at the next beat
        if self.dev.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.dev.device)

    def resume(self) -> TrainState:
        """The state after the last finished epoch (``last.pt``), or a fresh one."""
        last = load_last(self.ckpt_dir)
        if last is None:
            return TrainState()
        self.model.load_state_dict(last["model"])
        if last.get("method"):  # the method's adapters, heads and banks (CRD's): resumed with the student
            self.loss.load_state_dict(last["method"])
        load_optimizer_state(self.opt, last["optimizer"])  # this process's rate tensor and flags stay
        self.sched.load_state_dict(last["scheduler"])
        state = TrainState.from_dict(last["state"])
        self.log(f"resuming {self.run_id} after epoch {state.epoch}")
        self.emit(ev.Resume(epoch=state.epoch))
        before = next((e.get("threads") for e in reversed(self.store.read_events(self.run_id)[0])
                       if e.get("type") == "start"), None)
        if self.dev.device.type == "cpu" and before not in (None, torch.get_num_threads()):
            msg = (f"this run started with {before} CPU threads and resumes with {torch.get_num_threads()}: "
                   "CPU results repeat exactly only at the same thread count")
            self.log(f"warning: {msg}")
            self.emit(ev.Warning(message=msg))
        return state

    @property
    def lr(self) -> float:
        """The rate this epoch trains with (read once per epoch: a tensor learning rate is device memory)."""
        return self._lr

    def _read_lr(self) -> None:
        lr = self.opt.param_groups[0]["lr"]
        self._lr = float(lr.item() if torch.is_tensor(lr) else lr)

    def run(self) -> dict:
        spec = self.spec
        t0 = time.time()
        try:
            self.prepare()
            state = self.state = self.resume()
            for hook in self.hooks:
                hook.on_start(self)
            self.emit(ev.Start(epochs=spec.train.epochs, steps_per_epoch=self.steps_per_epoch,
                               train_images=len(self.feed), val_images=len(self.eval_rows["val"]),
                               test_images=len(self.eval_rows["test"]), params=self.n_params,
                               device=str(self.dev.device), trained_on=self.trained_on,
                               threads=torch.get_num_threads(), classes=self.class_names, teachers=self.teacher_info,
                               synthetic=self.source.synthetic, augment=self.feed.backend, eval_batch=self.eval_batch,
                               prepare_s=round(time.time() - t0, 3)))
            self.val_teacher = self._teacher_probs("val")
            self.progress.start(self.total_steps, state.global_step)
            self._timing = {"t0": time.time(), "steps": 0}
            epoch = state.epoch
            while state.defect is None and not state.stopped_early and epoch < spec.train.epochs:
                epoch += 1
                started = time.time()
                train_stats = self.train_epoch(epoch, state)
                self.progress.flush()  # the bar at the epoch's last step
                if state.defect is not None:  # the defect threshold was reached mid-epoch: training ends here
                    state.epoch = epoch
                    break
                self.end_epoch(epoch, state, train_stats, t0, started)
            if state.defect is not None or state.stopped_early:
                why = "stopped at the defect threshold" if state.defect is not None else "early stop"
                self.progress.finish(state.global_step, f"ep {state.epoch}/{spec.train.epochs} {why}")
        except BaseException:
            self.progress.close(clear=True)  # ctrl-c, a failure: the message is the last line, the bar gone
            raise
        finally:
            self.progress.close()
            if hasattr(self, "feed"):
                self.feed.close()
        return self._finish(state, t0)

    def train_epoch(self, epoch: int, state: TrainState) -> dict:
        """One pass over the training split; returns its loss, accuracy, macro-F1 and timings."""
        spec = self.spec
        self.state = state
        steps, epochs = self.steps_per_epoch, spec.train.epochs
        _seed_everything(spec.seed * 1000 + epoch)
        self.loss.on_epoch_start(epoch)
        self._read_lr()
        self.model.train()
        self.step.reset_epoch()
        for hook in self.hooks:
            hook.on_epoch_start(self, epoch)
        t_start = time.perf_counter()  # monotonic, sub-microsecond: the benchmarks' rates are read from this
        first_batch = None
        batches = self.feed.epoch(epoch)
        try:
            for step, raw in enumerate(batches, start=1):
                if first_batch is None:
                    first_batch = time.perf_counter() - t_start
                out = self.run_step(raw)
                state.global_step += 1
                self._timing["steps"] += 1
                stop = False
                for hook in self.hooks:
                    stop |= bool(hook.on_step(self, epoch, step, out))
                per_step = (time.time() - self._timing["t0"]) / self._timing["steps"]
                self.progress.step(state.global_step, f"ep {epoch}/{epochs} loss {self.last_loss:.3f}")
                self._beat(phase="training", epoch=epoch, epochs=epochs, epochs_done=state.epoch, step=step,
                           steps=steps, global_step=state.global_step, total_steps=self.total_steps,
                           best_val_accuracy=max(state.best_acc, 0.0),
                           eta_s=round((self.total_steps - state.global_step) * per_step, 1))
                if stop:
                    break
        finally:
            close = getattr(batches, "close", None)
            if close:
                close()
        self.sched.step()
        self.flush_steps()
        n = len(self.feed)
        confusion = self.step.confusion.cpu().numpy()
        seen = int(self.step.seen.item())
        accuracy, f1 = accuracy_and_f1(confusion)
        stats = {"lr": self._lr, "loss": self.step.loss_sum.item() / max(1, seen),
                 "ce": self.step.ce_sum.item() / max(1, seen), "accuracy": accuracy, "macro_f1": f1,
                 # microseconds kept: rounded to milliseconds, a tiny epoch's rates tied and gave no interval
                 "train_s": round(time.perf_counter() - t_start, 6),
                 "first_batch_s": round(first_batch or 0.0, 6), "images": seen if seen else n}
        if not np.isfinite(stats["loss"]):
            raise RunFailed(f"loss became {stats['loss']} in epoch {epoch}")
        return stats

    def flush_steps(self) -> None:
        self.step_log.flush(self, wait=True)

    def end_epoch(self, epoch: int, state: TrainState, train_stats: dict, t0: float, started: float) -> None:
        """Validate, decide (best, defect, patience), log the epoch and write the resumable checkpoint."""
        spec = self.spec
        t_val = time.time()
        val, val_probs = self.evaluate("val")
        val_s = time.time() - t_val
        decision = decide(state, val["accuracy"], spec.defect_acc, spec.train.patience)
        if decision.defect:
            self.record_defect(epoch, self.steps_per_epoch, val["accuracy"])
        elif decision.improved:
            save_best(self.ckpt_dir, self.model, {**self.meta, "epoch": epoch, "val_accuracy": val["accuracy"]})
        state.apply(decision, epoch, val["accuracy"])
        # the new best, and the epochs done (a stopped run resumes after them), without waiting for the heartbeat
        self._phase("training", epoch=epoch, epochs_done=epoch, best_val_accuracy=state.best_acc)
        event = ev.Epoch(epoch=epoch, lr=train_stats["lr"], train={k: train_stats[k] for k in EPOCH_TRAIN},
                         val={k: val[k] for k in EPOCH_VAL}, val_confusion=val["confusion"],
                         best_val_accuracy=state.best_acc, best_epoch=state.best_epoch,
                         timing={"train_s": train_stats["train_s"], "first_batch_s": train_stats["first_batch_s"],
                                 "val_s": round(val_s, 3), "images": train_stats["images"],
                                 "captures": getattr(self.run_step, "captures", 0)})  # graphs so far (bench-gpu)
        if self.val_teacher is not None:
            event.val["agreement"] = agreement(val_probs, self.val_teacher, self.task.multilabel)
        for hook in self.hooks:
            hook.on_epoch_end(self, epoch, event)
        now = time.time()
        event.epoch_s = round(now - started, 3)  # this epoch alone: its training and its validation
        event.seconds = round(now - t0, 2)  # since the run (this process's part of it) started
        self.emit(event)
        save_last(self.ckpt_dir, {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                                  "scheduler": self.sched.state_dict(), "state": state.to_dict(),
                                  **({"method": self.loss.state_dict()} if self.loss.state_dict() else {})})
        self.log(f"epoch {epoch}/{spec.train.epochs}  train loss {train_stats['loss']:.4f} "
                 f"acc {train_stats['accuracy']:.4f}  val loss {val['loss']:.4f} acc {val['accuracy']:.4f}  "
                 f"best {state.best_acc:.4f}")
        if decision.stop == "patience":
            self.log(f"early stop: no val improvement for {spec.train.patience} epochs")
            self.emit(ev.EarlyStop(epoch=epoch))

    # -- defective teachers --------------------------------------------------------------------------------
    def record_defect(self, epoch: int, step: int, acc: float) -> None:
        """The threshold is reached: these weights are the defective teacher, and training stops."""
        state = self.state
        save_best(self.ckpt_dir, self.model, {**self.meta, "epoch": epoch, "val_accuracy": acc})
        state.defect = {"threshold": self.spec.defect_acc, "val_accuracy": acc, "epoch": epoch, "step": step,
                        "global_step": state.global_step, "reached": acc >= self.spec.defect_acc}
        state.best_acc, state.best_epoch = acc, epoch
        self.log(f"defective teacher: val accuracy {acc:.4f} reached the threshold {self.spec.defect_acc} "
                 f"at epoch {epoch}, step {step}; training stops here")
        self.emit(ev.Defect(**state.defect))

    # -- the end ----------------------------------------------------------------------------------------------
    def _finish(self, state: TrainState, t0: float) -> dict:
        spec, rid = self.spec, self.run_id
        self._phase("evaluating the best checkpoint", final=True)  # a stop asked from now on is too late
        weights, _ = load_best(self.ckpt_dir)
        self.model.load_state_dict(weights)
        # eval mode before any forward pass: a run stopped mid-epoch (a defective teacher at its threshold) is still in
        # train mode, where a pass over val would move batch norm's running statistics away from the saved weights
        self.model.eval()
        results: dict = {"run_id": rid, "describe": spec.describe(), "model": spec.model, "strategy": spec.strategy,
                         "method": spec.method, "method_extra_params": self.loss.method.extra_parameters()
                         if self.loss.method is not None else 0,
                         "kind": spec.kind, "class_names": self.class_names, "best_epoch": state.best_epoch,
                         "epochs_run": state.epoch, "params": self.n_params, "seconds": None,
                         "synthetic": self.source.synthetic, "teachers": self.teacher_info,
                         "runtime": {"device": self.dev.device.type, "threads": torch.get_num_threads(),
                                     "torch": torch.__version__, **self.dev.runtime()}}
        # val first: its probabilities choose the thresholds that sensitivity and specificity use on every split
        val_probs, val_labels, _ = self._predict(self._student_forward, "val")
        thresholds = choose_thresholds(val_labels, val_probs) if len(val_labels) else None
        for split in SPLITS:
            metrics, probs = self.evaluate(split, final=True, thresholds=thresholds)
            if split in PREDICTED_SPLITS:  # per image, for the intervals over the test images (predictions.npz)
                rows = self.eval_rows[split]
                self.predictions[split] = {"probs": probs, "rows": rows, "labels": self.cache.labels[rows]}
            if self.teachers:
                metrics["agreement"] = agreement(probs, self._teacher_probs(split), self.task.multilabel)
            if self.source.kind == "mura" and spec.data.task == "abnormality":
                refs, rows = self.source.all_refs(), self.eval_rows[split]
                metrics["study"] = study_level(probs, self.cache.labels[rows],
                                               [str(Path(refs[row]).parent) for row in rows], self.class_names)
            results[split] = metrics
        if spec.defect_acc is not None:
            results["defect"] = state.defect or {"threshold": spec.defect_acc, "reached": False,
                                                    "val_accuracy": results["val"]["accuracy"]}
            if not results["defect"]["reached"]:
                msg = (f"warning: the defective teacher never reached val accuracy {spec.defect_acc}; "
                       f"it stops at {results['val']['accuracy']:.4f}")
                self.log(msg)
                self.emit(ev.Warning(message=msg))
        results["seconds"] = round(time.time() - t0, 2)
        results["task"] = {"kind": self.task.kind, "threshold_rule": YOUDEN, "channels": self.cache.channels}
        self.emit(ev.Final(test={k: results["test"][k] for k in HEADLINE}, test_confusion=results["test"]["confusion"]))
        return results
