"""Trains one claimed run and writes everything it learns into the run store.

The run's spec decides the model, the data, the strategy and its teachers
(already finished: the executor sees to that). Every epoch logs train and val
metrics; the best checkpoint by val accuracy is kept; a resumable checkpoint
is written after each epoch, so a stopped or crashed run continues from its
last finished epoch. The end evaluates train, val and test with the best
weights.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cache import build_or_load
from ..data.loader import CachedImages, Normalizer, make_loader
from ..data.config import open_source
from ..errors import RunFailed, UsageError
from ..models.factory import check_image_size, create_model, input_channels, resolve_pretrained_name
from .. import strategy_catalog as catalog
from ..options import config_dict
from ..runspec import RunSpec
from ..strategy_catalog import size_warning
from ..store import RunStore
from .checkpoints import load_best, load_last, save_best, save_last
from .device import DeviceSetup
from .metrics import agreement, classification_metrics, macro_f1, study_level
from .progress import Progress
from .strategies import strategy_for
from .teacher import FrozenTeacher, frozen_from_checkpoint
from .teacher_outputs import TeacherOutputs, sharing_enabled

STEP_EVENTS_PER_EPOCH = 25


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
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trained_on(dev) -> dict:
    """Where a run trains: device, GPU name, the visible GPUs, host, and whether it is compiled."""
    import os
    import socket

    return {"device": str(dev.device), "gpu": torch.cuda.get_device_name(dev.device) if dev.is_cuda else None,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "host": socket.gethostname(),
            "compile": bool(dev.compile and dev.is_cuda)}


class Trainer:
    def __init__(self, store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers=(), progress: bool = True,
                 log=None, beat=None) -> None:
        self.store = store
        self.spec = spec
        self.run_id = spec.run_id
        self.dev = dev
        self.trackers = list(trackers)
        self.progress = Progress(spec.describe(), enabled=progress)
        self.log = log or self.progress.line
        self.beat = beat  # the executor's Heartbeat: carries progress out, and stop requests in
        self._teacher_cache: dict[str, np.ndarray] = {}

    # -- set-up -------------------------------------------------------------------------------------
    def _data(self) -> None:
        spec = self.spec
        self.source = open_source(spec.data)
        self.class_names = self.source.class_names
        self.cache = build_or_load(self.source, spec.data.image_size, skip_bad=spec.data.skip_bad,
                                   progress=lambda done, total: self._beat(phase=f"decoding images {done}/{total}"))
        self.train_ds = CachedImages(self.cache, "train", train=True, seed=spec.seed)
        self.eval_ds = {s: CachedImages(self.cache, s, train=False, seed=spec.seed) for s in ("train", "val", "test")}
        if len(self.train_ds) == 0 or len(self.eval_ds["val"]) == 0:
            raise UsageError("the data has no usable train or val images")

    def _student(self) -> None:
        spec = self.spec
        _seed_everything(spec.seed)
        chans = input_channels(spec.train.pretrained)
        model = create_model(spec.model, len(self.class_names), spec.train.pretrained, spec.train.pretrained_from,
                             warn=self.log)
        check_image_size(model, spec.model, spec.data.image_size, chans)
        self.arch = resolve_pretrained_name(spec.model, lambda m: None) if spec.train.pretrained else spec.model
        self.chans = chans
        self.model = model.to(self.dev.device)
        if self.dev.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.norm = Normalizer(chans, self.dev.channels_last).to(self.dev.device)
        self.n_params = sum(p.numel() for p in model.parameters())
        # the compiled module serves forward passes; checkpoints always hold the plain module's weights
        self.forward_model = self.model
        if self.dev.compile and self.dev.is_cuda:
            small = spec.train.batch_size <= 32  # launch-bound: CUDA graphs pay off
            self.forward_model = torch.compile(self.model, mode="reduce-overhead" if small else None)

    def _teachers(self) -> None:
        self.teachers: list[FrozenTeacher] = []
        self.teacher_info = []
        for tspec in self.spec.teachers:
            tid = tspec.run_id
            teacher, net = frozen_from_checkpoint(self.store.checkpoint_dir(tid), self.dev)
            self.teachers.append(teacher)
            tm = self.store.read_metrics(tid) or {}
            info = {"run_id": tid, "model": tspec.model, "params": sum(p.numel() for p in net.parameters()),
                    "val_accuracy": tm.get("val", {}).get("accuracy"), "test_accuracy": tm.get("test", {}).get("accuracy")}
            if tm.get("defect"):
                info["defect"] = tm["defect"]
            self.teacher_info.append(info)
        self.shared_train, self.shared_eval = [], []
        if self.teachers and sharing_enabled():
            data = config_dict(self.spec.data)
            for tspec in self.spec.teachers:
                tdir = self.store.run_dir(tspec.run_id)
                self.shared_train.append(TeacherOutputs.for_training(
                    tdir, tspec.run_id, self.spec.seed, self.spec.train.batch_size, data, self.dev))
                self.shared_eval.append(TeacherOutputs.for_evaluation(
                    tdir, tspec.run_id, self.spec.train.batch_size, data, self.dev))
        if self.spec.kind == "kd" and self.teacher_info:
            t = self.teacher_info[0]
            msg = size_warning(catalog.get(self.spec.strategy), t["model"], t["params"], self.spec.model, self.n_params)
            if msg:
                self.log(f"warning: {msg}")
                self.store.append_event(self.run_id, {"type": "warning", "message": msg})

    def _optim(self):
        t = self.spec.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        if t.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=False)
        elif t.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        if t.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs)
        elif t.schedule == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=t.step_size, gamma=t.gamma)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        return opt, sched

    # -- evaluation -----------------------------------------------------------------------------------
    def _loader(self, ds, epoch=0, shuffle=False):
        return make_loader(ds, self.spec.train.batch_size, epoch=epoch, shuffle=shuffle,
                           workers=self.dev.loader_workers, pin_memory=self.dev.pin_memory)

    @torch.no_grad()
    def _predict(self, forward, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Probabilities, labels and mean cross-entropy of ``forward`` over one split (eval transform)."""
        probs, labels, loss_sum = [], [], 0.0
        for x, y, _ in self._loader(self.eval_ds[split]):
            self._beat()
            x = x.to(self.dev.device, non_blocking=True)
            y = y.to(self.dev.device, non_blocking=True)
            with self.dev.autocast():
                logits = forward(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            probs.append(F.softmax(logits, 1).cpu().numpy())
            labels.append(y.cpu().numpy())
        n = sum(len(l) for l in labels)
        return np.concatenate(probs), np.concatenate(labels), loss_sum / max(1, n)

    def _student_forward(self, x):
        return self.forward_model(self.norm(x))

    def evaluate(self, split: str, final: bool = False) -> tuple[dict, np.ndarray]:
        self._phase(f"evaluating {split}" + (" (best checkpoint)" if final else ""))
        self.model.eval()
        probs, labels, loss = self._predict(self._student_forward, split)
        return classification_metrics(labels, probs, self.class_names, loss), probs

    def _teacher_probs(self, split: str) -> np.ndarray | None:
        """The (averaged) teachers' probabilities on a split: fixed, so computed once per split, and shared
        with the teachers' other students."""
        if not self.teachers:
            return None
        if split not in self._teacher_cache:
            per_teacher = []
            for i, teacher in enumerate(self.teachers):
                shared = self.shared_eval[i] if self.shared_eval else None
                probs = shared.load(f"eval-{split}", len(self.eval_ds[split])) if shared else None
                if probs is None:
                    probs = self._predict(teacher, split)[0].astype(np.float32)
                    if shared:
                        shared.save(f"eval-{split}", probs)
                per_teacher.append(probs)
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
        if self.beat.stop_requested.is_set():
            raise Stopped()

    def _phase(self, phase: str, **more) -> None:
        """Say what the run is doing now (decoding, training, evaluating val ...): into status.json at once."""
        if self.beat is None:
            return
        self.beat.progress = {**(self.beat.progress or {}), "phase": phase, **more}
        self.beat.beat()

    def prepare(self) -> None:
        """Data, student, teachers, loss and optimiser: everything before the first step."""
        self._data()
        self._student()
        self._teachers()
        self.strategy = strategy_for(self.spec, len(self.class_names))
        self.opt, self.sched = self._optim()
        self.ckpt_dir = self.store.checkpoint_dir(self.run_id)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.meta = {"arch": self.arch, "model": self.spec.model, "in_chans": self.chans,
                     "num_classes": len(self.class_names), "class_names": self.class_names, "run_id": self.run_id}
        self.steps_per_epoch = math.ceil(len(self.train_ds) / self.spec.train.batch_size)
        self.total_steps = self.spec.train.epochs * self.steps_per_epoch
        self.trained_on = trained_on(self.dev)
        if self.beat is not None:
            self.beat.extra["trained_on"] = self.trained_on
            self.beat.beat()  # into status.json now, not at the next beat
        if self.dev.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.dev.device)
        self._peak_recorded = False

    def resume(self) -> TrainState:
        """The state after the last finished epoch (``last.pt``), or a fresh one."""
        last = load_last(self.ckpt_dir)
        if last is None:
            return TrainState()
        self.model.load_state_dict(last["model"])
        self.opt.load_state_dict(last["optimizer"])
        self.sched.load_state_dict(last["scheduler"])
        state = TrainState.from_dict(last["state"])
        self.log(f"resuming {self.run_id} after epoch {state.epoch}")
        self.store.append_event(self.run_id, {"type": "resume", "epoch": state.epoch})
        before = next((e.get("threads") for e in reversed(self.store.read_events(self.run_id)[0])
                       if e.get("type") == "start"), None)
        if self.dev.device.type == "cpu" and before not in (None, torch.get_num_threads()):
            msg = (f"this run started with {before} CPU threads and resumes with {torch.get_num_threads()}: "
                   "CPU results repeat exactly only at the same thread count")
            self.log(f"warning: {msg}")
            self.store.append_event(self.run_id, {"type": "warning", "message": msg})
        return state

    def run(self) -> dict:
        spec, store, rid = self.spec, self.store, self.run_id
        t0 = time.time()
        self.prepare()
        state = self.resume()
        for tr in self.trackers:
            tr.start(rid, spec, self.class_names, store.run_dir(rid))
        store.append_event(rid, {"type": "start", "epochs": spec.train.epochs, "steps_per_epoch": self.steps_per_epoch,
                                 "train_images": len(self.train_ds), "val_images": len(self.eval_ds["val"]),
                                 "test_images": len(self.eval_ds["test"]), "params": self.n_params,
                                 "device": str(self.dev.device), "trained_on": self.trained_on,
                                 "threads": torch.get_num_threads(),
                                 "classes": self.class_names,
                                 "teachers": self.teacher_info, "synthetic": self.source.synthetic})
        self.val_teacher = self._teacher_probs("val")
        self.progress.start(self.total_steps, state.global_step)
        self._timing = {"t0": time.time(), "steps": 0}
        try:
            epoch = state.epoch
            while state.defect is None and not state.stopped_early and epoch < spec.train.epochs:
                epoch += 1
                train_stats = self.train_epoch(epoch, state)
                if state.defect is not None:  # the defect threshold was reached mid-epoch: training ends here
                    state.epoch = epoch
                    break
                self.end_epoch(epoch, state, train_stats, t0)
        finally:
            self.progress.close()
        return self._finish(state, t0)

    def train_epoch(self, epoch: int, state: TrainState) -> dict:
        """One pass over the training split; returns its loss, accuracy and macro-F1."""
        spec, rid = self.spec, self.run_id
        steps, epochs = self.steps_per_epoch, spec.train.epochs
        log_every = max(1, steps // STEP_EVENTS_PER_EPOCH)
        defect_every = spec.defect_check_every or max(1, steps // 4)
        _seed_everything(spec.seed * 1000 + epoch)
        lr = self.opt.param_groups[0]["lr"]  # the rate this epoch trains with
        self.model.train()
        # Running sums stay on the device: no host sync per step (only at logged steps).
        loss_sum = torch.zeros((), device=self.dev.device)
        preds, trues = [], []
        last_loss = float("nan")
        name, n = f"train-e{epoch:04d}", len(self.train_ds)
        stored = [s.load(name, n) for s in self.shared_train]
        reuse = bool(stored) and all(a is not None for a in stored)  # another student computed them
        computed: list[tuple[np.ndarray, list[torch.Tensor]]] = []
        for step, (x, y, rows) in enumerate(self._loader(self.train_ds, epoch=epoch, shuffle=True), start=1):
            x = x.to(self.dev.device, non_blocking=True)
            y = y.to(self.dev.device, non_blocking=True)
            t_logits = None
            if self.shared_train:
                pos = np.searchsorted(self.train_ds.rows, rows.numpy())
                if reuse:
                    t_logits = [torch.from_numpy(a[pos]).to(self.dev.device, non_blocking=True) for a in stored]
            loss, terms, pred, t_out = self._train_step(self.opt, x, y, t_logits)
            if self.shared_train and not reuse:
                computed.append((pos, [t.detach() for t in t_out]))  # kept on the device: no sync per step
            state.global_step += 1
            loss_sum += loss.detach() * y.shape[0]
            preds.append(pred)
            trues.append(y)
            if step % log_every == 0 or step == steps:
                last_loss = loss.item()  # syncs; a NaN is caught here, before any checkpoint
                if not math.isfinite(last_loss):
                    raise RunFailed(f"loss became {last_loss} at epoch {epoch}, step {step}")
                self.store.append_event(rid, {"type": "step", "epoch": epoch, "step": step,
                                              "global_step": state.global_step, "loss": last_loss,
                                              "terms": {k: v.item() for k, v in terms.items()},
                                              "lr": self.opt.param_groups[0]["lr"]})
            self._timing["steps"] += 1
            per_step = (time.time() - self._timing["t0"]) / self._timing["steps"]
            self.progress.step(state.global_step, f"ep {epoch}/{epochs} loss {last_loss:.3f}")
            self._beat(phase="training", epoch=epoch, epochs=epochs, step=step, steps=steps,
                       global_step=state.global_step,
                       total_steps=self.total_steps, best_val_accuracy=max(state.best_acc, 0.0),
                       eta_s=round((self.total_steps - state.global_step) * per_step, 1))
            if spec.defect_acc is not None and state.global_step % defect_every == 0 and step < steps:
                if self._check_defect(state, epoch, step):
                    break
                self.model.train()
        self.sched.step()
        if computed and len(computed) == self.steps_per_epoch:  # a whole epoch: share it
            order = np.concatenate([p for p, _ in computed])
            for i, shared in enumerate(self.shared_train):
                arr = np.empty((n, len(self.class_names)), np.float32)
                arr[order] = torch.cat([t[i] for _, t in computed]).float().cpu().numpy()
                shared.save(name, arr)
        y_true, y_pred = torch.cat(trues).cpu().numpy(), torch.cat(preds).cpu().numpy()
        stats = {"lr": lr, "teacher_outputs": ("shared" if reuse else "computed") if self.shared_train else None,
                 "loss": loss_sum.item() / max(1, len(y_true)),
                 "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
                 "macro_f1": macro_f1(y_true, y_pred, len(self.class_names))}
        if not math.isfinite(stats["loss"]):
            raise RunFailed(f"loss became {stats['loss']} in epoch {epoch}")
        return stats

    def end_epoch(self, epoch: int, state: TrainState, train_stats: dict, t0: float) -> None:
        """Validate, decide (best, defect, patience), log the epoch and write the resumable checkpoint."""
        spec, rid = self.spec, self.run_id
        val, val_probs = self.evaluate("val")
        decision = decide(state, val["accuracy"], spec.defect_acc, spec.train.patience)
        if decision.defect:
            self._record_defect(state, epoch, self.steps_per_epoch, val["accuracy"])
        elif decision.improved:
            save_best(self.ckpt_dir, self.model, {**self.meta, "epoch": epoch, "val_accuracy": val["accuracy"]})
        state.apply(decision, epoch, val["accuracy"])
        self._phase("training", epoch=epoch, best_val_accuracy=state.best_acc)  # the new best, without waiting
        event = {"type": "epoch", "epoch": epoch, "lr": train_stats["lr"],
                 "train": {k: train_stats[k] for k in ("loss", "accuracy", "macro_f1")},
                 "val": {k: val[k] for k in ("loss", "accuracy", "macro_f1", "kappa", "ece")},
                 "val_confusion": val["confusion"], "best_val_accuracy": state.best_acc,
                 "best_epoch": state.best_epoch, "seconds": round(time.time() - t0, 2)}
        if train_stats.get("teacher_outputs"):
            event["teacher_outputs"] = train_stats["teacher_outputs"]
        if self.val_teacher is not None:
            event["val"]["agreement"] = agreement(val_probs, self.val_teacher)
        self.store.append_event(rid, event)
        for tr in self.trackers:
            tr.log_epoch(epoch, event)
        self.log(f"epoch {epoch}/{spec.train.epochs}  train loss {train_stats['loss']:.4f} "
                 f"acc {train_stats['accuracy']:.4f}  val loss {val['loss']:.4f} acc {val['accuracy']:.4f}  "
                 f"best {state.best_acc:.4f}")
        if decision.stop == "patience":
            self.log(f"early stop: no val improvement for {spec.train.patience} epochs")
            self.store.append_event(rid, {"type": "early_stop", "epoch": epoch})
        save_last(self.ckpt_dir, {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                                  "scheduler": self.sched.state_dict(), "state": state.to_dict()})
        if self.dev.is_cuda and not self._peak_recorded:  # what packing needs to know: this shape's peak memory
            from ..packing import memory_key, record_peak

            record_peak(self.store, memory_key(spec), torch.cuda.max_memory_allocated(self.dev.device))
            self._peak_recorded = True

    def _train_step(self, opt, x: torch.Tensor, y: torch.Tensor, t_logits: list | None = None):
        """One optimisation step; returns the loss, its terms, the predictions and the teachers' logits (all on
        the device). ``t_logits`` given (shared by another student) replaces the teachers' forward passes."""
        with self.dev.autocast():
            if t_logits is None:
                t_logits = [t(x) for t in self.teachers]
            logits = self._student_forward(x)
        terms = self.strategy.terms(logits, y, t_logits)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.spec.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.train.grad_clip)
        opt.step()
        return loss, terms, logits.detach().argmax(1), t_logits

    # -- defective teachers --------------------------------------------------------------------------------
    def _record_defect(self, state: TrainState, epoch: int, step: int, acc: float) -> None:
        """The threshold is reached: these weights are the defective teacher, and training stops."""
        save_best(self.ckpt_dir, self.model, {**self.meta, "epoch": epoch, "val_accuracy": acc})
        state.defect = {"threshold": self.spec.defect_acc, "val_accuracy": acc, "epoch": epoch, "step": step,
                        "global_step": state.global_step, "reached": acc >= self.spec.defect_acc}
        state.best_acc, state.best_epoch = acc, epoch
        self.log(f"defective teacher: val accuracy {acc:.4f} reached the threshold {self.spec.defect_acc} "
                 f"at epoch {epoch}, step {step}; training stops here")
        self.store.append_event(self.run_id, {"type": "defect", **state.defect})

    def _check_defect(self, state: TrainState, epoch: int, step: int) -> bool:
        val, _ = self.evaluate("val")
        self.store.append_event(self.run_id, {"type": "defect_check", "epoch": epoch, "step": step,
                                              "global_step": state.global_step, "val_accuracy": val["accuracy"]})
        if val["accuracy"] >= self.spec.defect_acc:
            self._record_defect(state, epoch, step, val["accuracy"])
            return True
        return False

    # -- the end ----------------------------------------------------------------------------------------------
    def _finish(self, state: TrainState, t0: float) -> dict:
        spec, rid = self.spec, self.run_id
        weights, _ = load_best(self.ckpt_dir)
        self.model.load_state_dict(weights)
        results: dict = {"run_id": rid, "describe": spec.describe(), "model": spec.model, "strategy": spec.strategy,
                         "kind": spec.kind, "class_names": self.class_names, "best_epoch": state.best_epoch,
                         "epochs_run": state.epoch, "params": self.n_params, "seconds": None,
                         "synthetic": self.source.synthetic, "teachers": self.teacher_info,
                         "runtime": {"device": self.dev.device.type, "threads": torch.get_num_threads(),
                                     "torch": torch.__version__}}
        for split in ("train", "val", "test"):
            metrics, probs = self.evaluate(split, final=True)
            if self.teachers:
                metrics["agreement"] = agreement(probs, self._teacher_probs(split))
            if self.source.kind == "mura" and spec.data.task == "abnormality":
                refs, rows = self.source.all_refs(), self.eval_ds[split].rows
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
                self.store.append_event(rid, {"type": "warning", "message": msg})
        results["seconds"] = round(time.time() - t0, 2)
        self.store.append_event(rid, {"type": "final", "test": {k: results["test"][k] for k in ("accuracy", "macro_f1", "kappa", "ece")},
                                      "test_confusion": results["test"]["confusion"]})
        figures = self._figures(results)
        # metrics.json last of the run's own files: with the best checkpoint it marks the run finished
        self.store.write_metrics(rid, results)
        for tr in self.trackers:
            tr.log_final(results, figures)
        return results

    def _figures(self, results: dict) -> list[Path]:
        """Curves, confusion matrix and reliability diagram as PNGs beside the metrics; a failure to draw them
        is a warning, never a failed run."""
        try:
            from ..reports.figures import write_run_figures

            return write_run_figures(self.store.run_dir(self.run_id), self.store.read_events(self.run_id)[0],
                                     results, self.spec.describe())
        except Exception as exc:  # noqa: BLE001 - figures are a view of the results, not the results
            msg = f"figures not drawn: {exc.__class__.__name__}: {str(exc)[:200]}"
            self.log(f"warning: {msg}")
            self.store.append_event(self.run_id, {"type": "warning", "message": msg})
            return []
