"""One training run: build the task and optimizer, train, evaluate, log, checkpoint.

The hot loop does no host-device synchronisation except on log steps (every
``trainer.log_every`` optimizer steps), where the minibatch loss is read and checked.
Everything a run produces is written atomically into its run directory after an epoch
once ``trainer.save_every_s`` seconds have passed since the last save, at a stop signal and
at the end, so a killed run keeps what it last saved and can resume from it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import logging
import math
import os
import random
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from ..errors import SAID
from ..optim.schedules import build_scheduler
from ..plugins import run_provenance
from ..rundir import (CHECKPOINT_FILE, ERROR_LOG, FINISHED, LOCK_FILE, METRICS_FILE, RUN_FILE, MetricsLog, RecordError,
                      RunRecord, Status, WriteError, atomic_write, effective_epochs, effective_lr_schedule,
                      read_record, read_run_json, record_problem, remove_orphan_tmp, result_line, setting_changes,
                      setting_key, setting_overrides, strict_json, write_run_json, write_text)
from ..tasks import TaskError, build_task
from . import threads
from .loggers import build_loggers
from .optimizer import choose_impl, name_optimizer, needs_closure, needs_create_graph
from .record import constructor_hparams, environment
from .preflight import check_config_once
from .validate import UNSET, ConfigError, resolve_device

log = logging.getLogger("adaxbench")


class Diverged(Exception):
    """A non-finite loss: the run ends as ``diverged`` (a result, not a crash)."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGUSR2 stopped the run: write what exists, status ``interrupted``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class CheckpointError(Exception):
    """checkpoint.pt (or the metrics it continues) cannot be read: nothing is written, the user decides."""


class FalseRecord(RuntimeError):
    """A write would have recorded what did not happen (see ``rundir.record_problem``)."""


class RunLocked(Exception):
    """Another live process holds the run dir's lock: this launch must not train it too."""


@dataclass
class RunResult:
    status: str
    run_dir: Path
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return {Status.COMPLETED: 0, Status.DIVERGED: 0, Status.FAILED: 1}.get(self.status, 130)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    # Data order and augmentation of epoch e depend on (seed, e) only, so a resumed run
    # replays exactly the batches the uninterrupted run would have seen.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def effective_schedule(cfg: DictConfig) -> dict[str, Any]:
    return effective_lr_schedule(OmegaConf.to_container(cfg, resolve=True))


def torch_beta2_hat(optimizer: torch.optim.Optimizer, t: int) -> float | None:
    """β̂₂,t of torch.optim's Adam family / Adafactor, so their runs log it like ours."""
    group = optimizer.param_groups[0]
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        from ..optim import beta2_hat
        return beta2_hat("adam", t, beta2=group["betas"][1])
    if isinstance(optimizer, torch.optim.Adafactor):
        return 1.0 - t ** group["beta2_decay"]
    return None


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
             "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
             "numpy_gauss": [int(np_state[3]), float(np_state[4])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]  # a list in checkpoints before 2026-12
    random.setstate((state["python_version"], tuple(python.tolist() if isinstance(python, torch.Tensor) else python),
                     state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         int(state["numpy_gauss"][0]), float(state["numpy_gauss"][1])))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Run:
    """State of one run in its directory; ``execute`` trains it to an end status."""

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None,
                 previous: dict[str, Any] | None = None, loggers: list | None = None):
        self.cfg = cfg
        self.extra_loggers = list(loggers or [])  # RunLogger instances of the Python API
        self.run_dir = Path(run_dir)
        self.overrides = list(overrides or [])
        self.metrics = MetricsLog()
        # The run.json found on disk.  Until this run has either loaded the checkpoint (and with it
        # metrics.parquet) or started over, the files on disk hold more than memory does: a write
        # then changes only status and error of that record, and never touches metrics.parquet.
        self.previous = previous
        self.owns_files = previous is None
        # A run restarted from the start over recorded rows (no checkpoint to continue): the old
        # record stands until this run has passed its step (or ended), see ``take_over``.
        self.replay_to: int | None = None
        self.status = Status.RUNNING
        self.error: str | None = None
        self.step = 0
        self.epochs_done = 0
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.wall_start = time.perf_counter()
        self.final: dict[str, float] = {}
        self.env: dict[str, Any] = {}
        self.epochs_total = 0
        self.log_every = 1  # trainer.log_every, read by ``build``
        self.batch_size = 0
        self.resumed_from: int | None = None
        self.loggers = build_loggers(None, console=False)
        self.resumed_from_step: int | None = None
        # Stops by a signal (time limit, preemption, Ctrl-C): the step each one came at.
        self.stops: list[dict[str, Any]] = []
        self.stop_signals: StopSignals | None = None
        self._config_dict: dict[str, Any] | None = None
        self._identity: dict[str, Any] | None = None
        # The last epoch a resume continues from (the last checkpoint written or loaded).
        self.saved_epoch: int | None = None
        self.saved_at = self.wall_start  # when this run last saved (``save_due``)
        # This run's log lines say whose they are: a pack routes each member's to its own adaxbench.log.
        self.log_extra = {"run_dir": self.run_dir}
        self.optimizer_class: str | None = None
        self.optimizer_hparams: dict[str, Any] = {}

    # ---- persistence -------------------------------------------------------------
    def config_dict(self, copy_: bool = True) -> dict[str, Any]:
        """The resolved config as run.json records it (a copy unless not ``copy_``; resolved once: the
        config does not change during a run, and every epoch's record would otherwise resolve it again)."""
        if self._config_dict is None:
            out = OmegaConf.to_container(self.cfg, resolve=True)
            out.pop("hydra", None)
            if out.get("lr_schedule") is None and "task" in out:  # record the schedule actually used
                out["lr_schedule"] = effective_schedule(self.cfg)
            if isinstance(out.get("optimizer"), dict):  # keys left to the class's default (custom's lr)
                out["optimizer"] = {k: v for k, v in out["optimizer"].items() if v != UNSET}
            self._config_dict = out
        return copy.deepcopy(self._config_dict) if copy_ else self._config_dict

    def take_over(self, resumed: bool) -> None:
        """Memory now holds the run (its checkpoint loaded, or a fresh start): the files follow it.
        A fresh start over a record with training in it keeps that record until it passes it."""
        recorded = int(((self.previous or {}).get("progress") or {}).get("step") or 0)
        if resumed or recorded == 0:
            self.owns_files = True
            return
        self.replay_to = recorded
        log.warning("%s has no checkpoint to continue (trainer.checkpoint=false, or killed before its first): "
                    "training it again from the start; its recorded %d steps stay until this run passes them",
                    self.run_dir, recorded, extra=self.log_extra)

    def write(self) -> None:
        """Rewrite metrics.parquet and run.json (atomically each); see ``owns_files``."""
        if not self.owns_files and self.replay_to is not None and \
                (self.step >= self.replay_to or Status(self.status).finished):
            self.owns_files, self.replay_to = True, None
        if not self.owns_files:
            if self.previous is not None:
                self._write_record({**self.previous, "status": Status(self.status).value, "error": self.error})
            return
        self.metrics.save(self.run_dir / METRICS_FILE)
        samples = self.step * self.batch_size
        self._write_record(RunRecord(
            status=Status(self.status),
            error=self.error,
            config=self.config_dict(copy_=False),  # only read: serialised
            overrides=self.overrides,
            env=self.env,
            timing={"started": self.started,
                    "ended": None if self.status == Status.RUNNING else datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
                    "wall_seconds": time.perf_counter() - self.wall_start},
            throughput={"samples_per_s": samples / self.train_seconds if self.train_seconds > 0 else None,
                        "samples": samples},
            progress={"step": self.step, "epoch": self.epochs_done, "epochs_total": self.epochs_total,
                      "resumed_from_epoch": self.resumed_from,
                      # Only for resumed/stopped runs: where it resumed, and each stop's step.
                      **({"resumed_from_step": self.resumed_from_step} if self.resumed_from is not None else {}),
                      **({"stops": self.stops} if self.stops else {})},
            final=self.final,
            optimizer_class=self.optimizer_class,
            optimizer_hparams=self.optimizer_hparams,
        ).to_json())

    def _write_record(self, record: dict[str, Any]) -> None:
        """Write run.json, unless it would say what did not happen: then record the run ``failed``
        with the reason, and raise (a bug in adaxbench, never a result)."""
        problem = record_problem(record)
        if problem is not None:
            self.status, self.error = Status.FAILED, f"internal error, refused to record: {problem}"
            write_run_json(self.run_dir, {**record, "status": self.status.value, "error": self.error})
            raise FalseRecord(self.error)
        write_run_json(self.run_dir, record)

    def record_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """What run.json records of the optimizer that runs: its class, and every hyperparameter."""
        cls = type(optimizer)
        self.optimizer_class = f"{cls.__module__}.{cls.__qualname__}"
        self.optimizer_hparams = constructor_hparams(optimizer, self.cfg.optimizer.keys())

    def save_checkpoint(self, model, optimizer, scheduler, rng: dict[str, Any] | None = None) -> None:
        """checkpoint.pt at this step; ``rng``: the RNG state to record (default: this process's)."""
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": rng or _rng_state(), "step": self.step,
                 "epoch": self.epochs_done, "train_seconds": self.train_seconds,
                 "eval_seconds": self.eval_seconds, "metric_rows": len(self.metrics), "final": self.final,
                 "stops": self.stops, "identity": self.identity()}
        atomic_write(self.run_dir / CHECKPOINT_FILE, lambda tmp: _torch_save(state, tmp))
        self.saved_epoch = self.epochs_done

    def identity(self) -> dict[str, Any]:
        """Which run a checkpoint belongs to: the setting (``setting_key``) and the seed."""
        if self._identity is None:  # the config does not change during a run
            self._identity = {"setting": setting_key(self.config_dict()), "seed": int(self.cfg.seed)}
        return dict(self._identity)

    def load_checkpoint(self, model, optimizer, scheduler) -> bool:
        """Continue from checkpoint.pt if there is one; CheckpointError (nothing written) if it or
        the metrics it continues cannot be used."""
        path = self.run_dir / CHECKPOINT_FILE
        if not path.exists():
            return False
        restart = f"delete {path} to train this run again from the start"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except PermissionError:
            raise CheckpointError(f"cannot read {path}: permission denied; fix its permissions, or {restart}") from None
        except Exception as e:  # torch's messages for a damaged file suggest unsafe loading: not shown
            raise CheckpointError(f"cannot resume from {path}: not a readable checkpoint ({type(e).__name__}; "
                                  f"damaged or not written by adaxbench); restore it from a copy, or {restart}") from None
        theirs = state.get("identity") if isinstance(state, dict) else None
        if theirs is not None and theirs != self.identity():  # earlier checkpoints carry none
            seed = theirs.get("seed") if isinstance(theirs, dict) else None
            what = f"seed {seed}, this run is seed {self.cfg.seed}" if seed != self.cfg.seed else "another setting"
            raise CheckpointError(f"cannot resume from {path}: it belongs to another run ({what}); "
                                  f"put back this run's own checkpoint, or {restart}")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"])
            step, epoch, rows = int(state["step"]), int(state["epoch"]), int(state["metric_rows"])
            seconds = float(state["train_seconds"]), float(state["eval_seconds"])
            final = dict(state["final"])
            stops = list(state.get("stops", []))
        except Exception as e:  # another model, optimizer or format
            raise CheckpointError(f"cannot resume from {path}: it does not fit this run ({_first_line(e)[:160]}); "
                                  f"restore it from a copy, or {restart}") from None
        try:
            metrics = MetricsLog.load(self.run_dir / METRICS_FILE)
            if len(metrics) < rows:
                raise ValueError(f"{len(metrics)} rows, the checkpoint continues row {rows}")
        except Exception as e:
            raise CheckpointError(f"cannot resume {self.run_dir}: {METRICS_FILE} does not fit its checkpoint "
                                  f"({_first_line(e)}); restore it from a copy, or {restart}") from None
        # Rows logged after the checkpoint (a partial epoch) are replayed, so drop them.
        metrics.truncate(rows)
        self.metrics, self.step, self.epochs_done, self.final = metrics, step, epoch, final
        self.train_seconds, self.eval_seconds = seconds
        self.stops = stops
        self.resumed_from, self.resumed_from_step = self.epochs_done, self.step
        self.saved_epoch = self.epochs_done
        return True

    def stop_if_asked(self, trainee: Trainee, t_epoch: float) -> None:
        """A stop signal arrived: checkpoint at this step (between two optimizer steps), then stop."""
        if self.stop_signals is None or not self.stop_signals.received:
            return
        self.train_seconds += time.perf_counter() - t_epoch
        signum = self.stop_signals.reason()
        with evaluation_point(trainee.optimizer):
            self.record_stop(signum, trainee)
        raise Interrupted(signum)

    def record_stop(self, signum: int, trainee: Trainee, rng: dict[str, Any] | None = None) -> None:
        """Record a stop by ``signum`` at this step and, where the run checkpoints, its records and
        checkpoint here (a pack does it for each member, then stops)."""
        self.stops.append({"step": self.step, "signal": signal.Signals(signum).name})
        log.warning("received %s: stopping at step %d", signal.Signals(signum).name, self.step, extra=self.log_extra)
        if self.cfg.trainer.checkpoint:
            self.save(trainee, rng)

    def save(self, trainee: Trainee, rng: dict[str, Any] | None = None) -> None:
        """metrics.parquet and run.json, then (``trainer.checkpoint``) checkpoint.pt: in this order, so
        that a checkpoint never refers to rows that are not on disk (a kill in between leaves extra
        rows, which the resume drops and replays)."""
        self.write()
        if self.cfg.trainer.checkpoint:
            self.save_checkpoint(trainee.model, trainee.optimizer, trainee.scheduler, rng)
        self.saved_at = time.perf_counter()

    def save_due(self, saved_at: float | None = None) -> bool:
        """An epoch has ended: save it? After every epoch with ``trainer.save_every_s=0``; else once
        that many seconds have passed since the last save (``saved_at``: this run's, or a pack's
        clock).  Short epochs (a synthetic problem, a pack of them) then do not spend their time
        writing files; a hard kill loses at most that much training and the epoch under way, a
        stop signal nothing (``record_stop`` saves).  After the last epoch only a kept checkpoint
        is due: the run's end writes its records next."""
        every = float(self.cfg.trainer.get("save_every_s", 0))  # absent from older records' configs
        if self.epochs_done >= self.epochs_total:
            return every <= 0 or bool(self.cfg.trainer.get("keep_checkpoint", False))
        return every <= 0 or time.perf_counter() - (self.saved_at if saved_at is None else saved_at) >= every

    def saved_note(self) -> str:
        """What a resume would continue from, for the message of a failed write."""
        if self.saved_epoch is None:
            return "no epoch is saved for a resume; free space and launch it again"
        return f"epochs up to {self.saved_epoch} are saved; free space and resume"

    def record_ending(self, e: BaseException) -> None:
        """Record the run as ``e`` ended it: a signal or an exit (submitit's requeue) interrupted it;
        a config or task error or a crash failed it, as did a checkpoint that cannot be read (then
        nothing is written: the user restores or deletes the checkpoint)."""
        if isinstance(e, Interrupted):
            self.status, self.error = Status.INTERRUPTED, f"received {e}"
        elif isinstance(e, SystemExit):
            self.status, self.error = Status.INTERRUPTED, "exited during training (preempted or timed out?)"
        elif isinstance(e, CheckpointError):
            self.status, self.error = Status.FAILED, str(e)
            return
        elif isinstance(e, (ConfigError, TaskError)):
            self.status, self.error = Status.FAILED, str(e).splitlines()[0] if str(e) else type(e).__name__
        else:
            return self.record_crash(e)
        self.write()

    def record_crash(self, e: Exception) -> None:
        """Record this run ``failed`` by ``e``: a full disk or an unwritable dir with what is saved,
        any other error with its traceback in error.log."""
        self.status, self.error = Status.FAILED, _first_line(e)
        if isinstance(e, WriteError):
            self.error = f"{e}; {self.saved_note()}"
        else:
            try:
                write_text(self.run_dir / ERROR_LOG, traceback.format_exc())
                where = f"traceback in {self.run_dir / ERROR_LOG}"
            except OSError as why:  # must not hide the run's own error
                where = f"no traceback saved: {why}"
            log.error("run failed: %s (%s)", self.error, where, extra=self.log_extra)
        self.record_failure()

    def record_failure(self) -> None:
        """Write this failed run's record; where the disk is full or the dir unwritable, at least
        the status and error in the run.json already on disk; where not even that, say so."""
        try:
            self.write()
            return
        except OSError:
            pass
        on_disk, _ = read_run_json(self.run_dir)
        if not isinstance(on_disk, dict):
            return
        try:
            write_run_json(self.run_dir, {**on_disk, "status": Status(self.status).value, "error": self.error})
        except OSError as e:
            self.error += f" ({RUN_FILE} still says {on_disk.get('status')}: {e})"

    def stalled(self) -> bool:
        """The last two stops came at the same step: a requeue would not progress either."""
        return len(self.stops) >= 2 and self.stops[-1]["step"] == self.stops[-2]["step"]

    # ---- setup ---------------------------------------------------------------------
    def build(self, setup: Setup, optimizer_spec: tuple[type, dict[str, Any]], resume: bool,
              console: bool = False) -> Trainee:
        """This run's model, optimizer and LR scheduler (from its checkpoint where it resumes) and its
        loggers (``console``: with the console line).  Models come from the global RNG: the caller
        seeds it.  From here the run's files follow its memory (``take_over``)."""
        cfg, task = self.cfg, setup.task
        self.env = dict(setup.env)
        self.epochs_total, self.batch_size = setup.epochs_total, int(task.batch_size)
        self.log_every = int(cfg.trainer.log_every)  # read every step: a config lookup costs ~30 µs
        model = task.model()
        cls, kwargs = optimizer_spec
        kwargs, self.env["optimizer_impl"] = choose_impl(cls, kwargs, cfg.trainer.get("optimizer_impl", "auto"),
                                                         setup.device)
        optimizer = cls(model.parameters(), **kwargs)
        self.record_optimizer(optimizer)
        # AdaHessian / SophiaH estimate the Hessian from the gradient's own graph.
        create_graph = needs_create_graph(cls, kwargs, cfg.optimizer.get("create_graph"))
        if create_graph:  # zero_grad(set_to_none=True) breaks the cycle torch warns of
            warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
        # Stepped once per optimizer step, whichever schedule (built-in or own) it is.
        steps = task.steps_per_epoch
        scheduler = build_scheduler(optimizer, effective_schedule(cfg), steps, steps * self.epochs_total)
        trainee = Trainee(model, optimizer, scheduler, (cls, kwargs), torch.compile(model) if cfg.trainer.compile
                          else model, needs_closure(cls, kwargs), create_graph)
        resumed = resume and self.load_checkpoint(model, optimizer, scheduler)
        if resumed:
            log.info("resuming %s from epoch %d (step %d)", self.run_dir, self.epochs_done, self.step,
                     extra=self.log_extra)
        self.take_over(resumed)
        self.write()
        self.loggers = build_loggers(self.config_dict().get("logger"), console=console, run_name=run_name(cfg),
                                     extra=self.extra_loggers)
        self.loggers.start(self.run_dir, {**self.config_dict(), "optimizer_hparams": self.optimizer_hparams}, self.step)
        training_point(optimizer)  # a checkpoint holds the evaluation point (schedule-free optimizers)
        return trainee

    # ---- bookkeeping (a run alone and each member of a pack) -----------------------------
    def record_evaluation(self, results: dict[str, dict[str, float]], seconds: float) -> None:
        """Record an evaluation after ``epochs_done`` epochs; Diverged on a non-finite loss."""
        epoch = float(self.epochs_done)
        self.eval_seconds += seconds
        for split, values in results.items():
            self.metrics.add(self.step, epoch, self.train_seconds, split, values)
            self.loggers.log(split, values, self.step, epoch)
            for metric, value in values.items():
                self.final[f"{split}/{metric}"] = value
        bad = [v["loss"] for v in results.values() if "loss" in v and not math.isfinite(v["loss"])]
        if bad:
            raise Diverged(f"non-finite evaluation loss ({bad[0]}) after epoch {epoch:g}")

    def end_epoch(self) -> None:
        """The loggers' epoch hook, after an epoch's evaluation (a run alone's, and each member's of a pack)."""
        self.loggers.epoch_end(self.epochs_done, self.epochs_total, self.step, self.final, self.train_seconds)

    def log_step(self, task, trainee: Trainee, loss: float, lr: float, accuracy: float | None,
                 grad_norm: torch.Tensor | None, diagnostics: dict[str, float], seconds: float) -> None:
        """Record the metrics of the step just taken (a log step); Diverged on a non-finite loss."""
        row = {"loss": loss, "lr": lr}
        if accuracy is not None:
            row["accuracy"] = accuracy
        if grad_norm is not None:
            row["grad_norm"] = grad_norm.item()
        row.update(diagnostics)
        if "beta2_hat" not in row and (b2 := torch_beta2_hat(trainee.optimizer, self.step)) is not None:
            row["beta2_hat"] = b2
        row.update(task.log_metrics(trainee.model))
        epoch = self.step / task.steps_per_epoch
        self.metrics.add(self.step, epoch, seconds, "batch", row)
        self.loggers.log("batch", row, self.step, epoch)
        if not math.isfinite(loss):
            raise Diverged(f"non-finite minibatch loss ({loss}) at step {self.step}")

    def finish(self) -> RunResult:
        """The run has ended: its record, and how it ended."""
        self.write()
        self.drop_checkpoint()
        return RunResult(Status(self.status).value, self.run_dir, self.error)

    def drop_checkpoint(self) -> None:
        """A finished run is never resumed: free the disk of its checkpoint (unless kept)."""
        if Status(self.status).finished and not self.cfg.trainer.get("keep_checkpoint", False):
            (self.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)

    # ---- training ----------------------------------------------------------------
    def execute(self, resume: bool, optimizer_spec: tuple[type, dict[str, Any]]) -> RunResult:
        """Train to an end status; ``optimizer_spec`` is (class, kwargs) from ``check_config``."""
        setup = prepare(self.cfg, run_provenance(self.config_dict()))
        return self.train(setup, self.build(setup, optimizer_spec, resume, console=progress_hidden(self.cfg)))

    def train(self, setup: Setup, trainee: Trainee) -> RunResult:
        """Train a built run (``build``) to an end status."""
        if self.stop_signals is not None:  # from here a signal stops the run at a step boundary
            self.stop_signals.deferred = True
        bar = progress_bar(self.cfg, setup.task.steps_per_epoch * self.epochs_total, self.step)
        try:
            if self.epochs_done == 0 and self.step == 0:
                self.evaluate(setup, trainee)
            for epoch in range(self.epochs_done, self.epochs_total):
                self.train_epoch(setup, trainee, epoch, bar)
                self.evaluate(setup, trainee)
                self.end_epoch()
            self.status = Status.COMPLETED
        except Diverged as e:
            self.status, self.error = Status.DIVERGED, str(e)
        finally:
            bar.close()
            ending = sys.exc_info()[1]  # an exception on its way out: a crash or a signal
            self.loggers.close(self.status if ending is None else
                               "failed" if isinstance(ending, Exception) else "interrupted")
        return self.finish()

    def evaluate(self, setup: Setup, trainee: Trainee) -> None:
        """Evaluate and record at the optimizer's evaluation point; then save there, after an epoch
        (``save_due``)."""
        with evaluation_point(trainee.optimizer):
            t0 = time.perf_counter()
            with setup.autocast():
                results = setup.task.evaluate(trainee.forward)
            self.record_evaluation(results, time.perf_counter() - t0)
            if self.epochs_done == 0:
                self.write()
            elif self.save_due():
                self.save(trainee)

    def train_epoch(self, setup: Setup, trainee: Trainee, epoch: int, bar) -> None:
        task = setup.task
        trainee.forward.train()
        t_epoch = time.perf_counter()
        batches = task.batches(epoch, epoch_generator(int(self.cfg.seed), epoch, setup.device))
        if (done := self.step - epoch * task.steps_per_epoch) > 0:
            # Resumed mid-epoch: replay the epoch's order (a function of seed and epoch)
            # and skip the batches already trained, so the run continues exactly.
            batches = itertools.islice(batches, done, None)
        for batch in batches:
            self.stop_if_asked(trainee, t_epoch)
            self.take_step(setup, trainee, batch, t_epoch, bar)
            bar.update(1)
        if setup.device.type == "cuda":
            torch.cuda.synchronize(setup.device)
        self.train_seconds += time.perf_counter() - t_epoch
        self.epochs_done = epoch + 1

    def take_step(self, setup: Setup, trainee: Trainee, batch: Any, t_epoch: float, bar) -> None:
        task, optimizer = setup.task, trainee.optimizer
        logging_step = (self.step + 1) % self.log_every == 0
        with setup.autocast():
            loss, correct = task.loss(trainee.forward, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward(create_graph=trainee.create_graph)
        grad_norm = global_norm([p.grad for p in trainee.model.parameters()]) if logging_step else None
        lr = optimizer.param_groups[0]["lr"]
        if trainee.closure_step:  # L-BFGS / SAM-style optimizers re-evaluate the loss of the same batch
            optimizer.step(_closure(task, trainee.forward, batch, optimizer, setup.autocast, trainee.create_graph))
        else:
            optimizer.step()
        # Diagnostics describe the step just taken (before the lr moves on).
        diagnostics = getattr(optimizer, "diagnostics", None)
        diag = diagnostics() if logging_step and diagnostics else {}
        trainee.scheduler.step()
        task.after_step(trainee.model)
        self.step += 1
        if not logging_step:
            return
        value = loss.item()  # the one sync of a log step
        now = self.train_seconds + time.perf_counter() - t_epoch
        accuracy = correct.item() / len(batch[1]) if correct is not None else None
        bar.set_postfix(epoch=math.ceil(self.step / task.steps_per_epoch), loss=f"{value:.4f}",
                        **({"acc": f"{accuracy:.3f}"} if accuracy is not None else {}),
                        sps=f"{self.step * self.batch_size / max(now, 1e-9):.0f}")
        self.log_step(task, trainee, value, lr, accuracy, grad_norm, diag, now)


@dataclass
class Setup:
    """What the runs of one setting train with, built once (``prepare``) for a run alone or a pack."""

    device: torch.device
    task: Any
    env: dict[str, Any]  # run.json's env: machine, thread budget, provenance, data source
    epochs_total: int
    autocast: Callable[[], Any]


@dataclass
class Trainee:
    """A run's model, optimizer and LR scheduler (``Run.build``)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    spec: tuple[type, dict[str, Any]]  # the optimizer's class and arguments, its implementation chosen
    forward: Any = None  # the model as called: compiled with trainer.compile
    closure_step: bool = False
    create_graph: bool = False


def prepare(cfg: DictConfig, provenance: dict[str, Any]) -> Setup:
    """The device, this process's thread budget and the task (built after ``seed_everything``)."""
    tr = cfg.trainer
    device = resolve_device(tr.device)
    budget = threads.configure(tr.get("threads", "auto"))  # one run or one pack trains at a time
    env = {**environment(device), "threads": budget.threads, "threads_reason": budget.reason, **provenance}
    seed_everything(int(cfg.seed))
    task = build_task(cfg.task, cfg.data, device, int(cfg.seed), train_limit=tr.train_limit,
                      channels_last=bool(tr.channels_last), eval_batch_size=tr.eval_batch_size,
                      eval_limit=tr.get("eval_limit"))
    env["data_source"] = getattr(task, "source", None)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if tr.precision == "bf16" \
        else contextlib.nullcontext
    return Setup(device, task, env, int(effective_epochs(cfg)), autocast)


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.task.name}/{cfg.optimizer.get('name', '?')}"


def progress_hidden(cfg: DictConfig) -> bool:
    """trainer.progress: true, false, or auto (shown on a terminal, as tqdm decides)."""
    return {"auto": not sys.stderr.isatty(), True: False, False: True}[cfg.trainer.get("progress", "auto")]


def progress_bar(cfg: DictConfig, total: int, initial: int, suffix: str = "") -> tqdm:
    return tqdm(total=total, initial=initial, disable=progress_hidden(cfg), dynamic_ncols=True,
                desc=run_name(cfg) + suffix, unit="step", leave=False)


def global_norm(grads: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The gradients' joint 2-norm (None without any)."""
    grads = [g for g in grads if g is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None


def _torch_save(state: dict[str, Any], path: str) -> None:
    # Serialized in memory, then written by Python: a full disk is then an OSError (ENOSPC), not
    # torch's opaque RuntimeError ("unexpected pos") from a short write inside its zip writer.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def _closure(task, model, batch, optimizer, autocast, create_graph: bool = False):
    """The closure ``step(closure)`` optimizers call: zero the gradients, recompute the loss of
    ``batch`` and its gradients, return the loss (the logged loss stays the first pass's)."""
    @torch.enable_grad()
    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss, _ = task.loss(model, batch)
        loss.backward(create_graph=create_graph)
        return loss
    return closure


def training_point(optimizer: torch.optim.Optimizer) -> None:
    """Put an optimizer with an evaluation point (``train()``/``eval()``: schedule-free
    optimizers) at its training point; a no-op for the others."""
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()


@contextlib.contextmanager
def evaluation_point(optimizer: torch.optim.Optimizer):
    """Evaluate and checkpoint at the optimizer's evaluation point: ``eval()`` before, ``train()``
    after, for optimizers that have them (schedule-free ones swap in their averaged iterate)."""
    if not callable(getattr(optimizer, "eval", None)):
        yield
        return
    optimizer.eval()
    try:
        yield
    finally:
        training_point(optimizer)


def _first_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _read_previous(run_dir: Path) -> dict[str, Any] | None:
    """The run.json already in ``run_dir`` (None if there is none); a damaged one stops the launch."""
    if not (run_dir / RUN_FILE).exists():
        return None
    raw, problem = read_run_json(run_dir)
    try:
        if raw is None:
            raise RecordError(problem)
        RunRecord.from_json(raw)
    except RecordError as e:
        raise ConfigError(f"{run_dir / RUN_FILE} cannot be read ({e}); move the run dir away or choose "
                          "another hydra.run.dir (nothing was changed)") from None
    return raw


# The signal SLURM sends before a job's time limit (sbatch --signal) and on preemption
# through submitit; submitit reads the same variable.
REQUEUE_SIGNAL = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


class StopSignals:
    """SIGINT, SIGTERM and the requeue signal ask the run to stop at the next optimizer step.

    Once training runs, the handler only records the signal; the loop checkpoints at the step boundary
    and then raises ``Interrupted`` (a handler that raised would leave the model between
    two halves of a step).  A second SIGINT stops at once.  The handlers in place before
    (submitit's, which requeue the job) are kept in ``previous``.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.previous: dict[int, Any] = {}
        # Until training starts there is nothing to checkpoint: SIGINT/SIGTERM stop the run at
        # once, so a resume that has not loaded its checkpoint yet rewrites nothing (only the
        # status).  The requeue signal always waits for the loop, which records the stop: a job
        # signalled again before it progressed is then told apart from one that progressed.
        self.deferred = False

    def __call__(self, signum: int, frame) -> None:
        if (not self.deferred and signum != REQUEUE_SIGNAL) or \
                (signum == signal.SIGINT and signal.SIGINT in self.received):
            raise Interrupted(signum)
        self.received.append(signum)  # said by the loop when it stops: logging here could re-enter a write

    def reason(self) -> int:
        return REQUEUE_SIGNAL if REQUEUE_SIGNAL in self.received else self.received[0]

    def requeue_handler(self, signum: int):
        """submitit's handler (checkpoint the job, requeue it, exit) when this stop should requeue."""
        handler = self.previous.get(signum) if signum == REQUEUE_SIGNAL else None
        return handler if callable(handler) else None

    @contextlib.contextmanager
    def installed(self):
        for sig in (signal.SIGINT, signal.SIGTERM, REQUEUE_SIGNAL):
            try:
                self.previous[sig] = signal.signal(sig, self)
            except ValueError:  # not in the main thread (e.g. a joblib worker thread)
                pass
        try:
            yield self
            # A stop asked for after the last step: the run is complete and recorded so, but what
            # would follow it (the sweep's next job) is not started.
            late = [s for s in self.received if s != REQUEUE_SIGNAL]
            if late:
                raise Interrupted(late[0])
        finally:
            for sig, h in self.previous.items():
                signal.signal(sig, h)


def lock_run_dir(run_dir: Path) -> FileLock:
    """Create ``run_dir`` and take its lock: one live process per run dir.  An OS lock (flock)
    dies with its process, so the lock of a killed run is simply taken over; a live holder
    raises RunLocked.  The caller releases it when the run has ended.  Temporary files that
    killed writes left behind are removed once the lock is held."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / LOCK_FILE
    if lock_path.is_symlink() or (lock_path.exists() and not lock_path.is_file()):
        raise ConfigError(f"{lock_path} is not a regular file (a link?); adaxbench locks a run dir with a file of "
                          f"its own there: remove {lock_path} and launch again")
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunLocked(f"another live process is training it (it holds {lock_path})") from None
    remove_orphan_tmp(run_dir)
    return lock


def check_previous(run_dir: Path, overrides: list[str] | None, resume: bool,
                   dir_key: str = "hydra.run.dir") -> tuple[dict[str, Any] | None, RunResult | None]:
    """The run.json already in ``run_dir`` (None if none) and, where that run finished, its result
    (to skip).  Raises ConfigError where the dir holds another run, or a run and ``resume`` is false;
    the message names ``dir_key`` (``hydra.sweep.dir`` for a sweep's job)."""
    previous = _read_previous(run_dir)
    if previous is not None:
        if previous.get("overrides") is not None and overrides is not None and \
                setting_overrides(previous["overrides"], keep_seed=True) != \
                setting_overrides(list(overrides), keep_seed=True):
            # Never overwrite another run's record, not even inside a sweep: stop here.
            again = ("relaunch the same sweep (an optimizing sweeper proposes its trials again only with a seeded sampler: "
                     "hydra.sweeper.sampler.seed)" if dir_key == "hydra.sweep.dir" else "relaunch it with its own overrides")
            raise ConfigError(f"{run_dir} holds a different run ({' '.join(previous['overrides']) or 'no overrides'});"
                              f" {again}, or choose another {dir_key} (nothing was written)")
        if not resume:
            raise ConfigError(f"{run_dir} already holds a run (status {previous.get('status')}); "
                              f"pass resume=true to continue it, or choose another {dir_key} (nothing was written)")
        if previous.get("status") in FINISHED:
            log.info("skipping %s: already %s", run_dir, previous["status"])
            return previous, RunResult(previous["status"], run_dir, previous.get("error"))
    return previous, None


def check_same_config(run: Run, dir_key: str) -> None:
    """A resumed run trains what it was started with: the composed config (an edited
    ``--config-dir`` file, another adaxbench's defaults) may not have changed since.  Raises
    ConfigError (nothing written) naming the first change."""
    if run.previous is None or run.previous.get("status") in FINISHED:
        return
    # Both as run.json spells them: a NaN hyperparameter equals itself.
    changes = setting_changes(strict_json(run.previous["config"]), strict_json(run.config_dict()))
    if changes:
        more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
        raise ConfigError(f"{run.run_dir} was started with another config ({changes[0]}{more}), though with the "
                          "same overrides (an edited --config-dir file or another adaxbench version?); resume it "
                          f"with the config it was started with, or choose another {dir_key} (nothing was written)")


def save_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """Hydra's record of the job in ``run_dir/.hydra`` (config.yaml, hydra.yaml, overrides.yaml), as
    Hydra's ``run_job`` writes it.  adaxbench's config sets ``hydra.output_subdir`` to null and
    writes it here, once the launch is accepted: a refused launch leaves the dir as it was."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.instance().cfg
    if hydra_cfg.hydra.output_subdir is not None:  # the user asked Hydra to write it (and where)
        return
    out = run_dir / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("config.yaml", cfg), ("hydra.yaml", hydra_cfg), ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        text = OmegaConf.to_yaml(part)
        atomic_write(out / name, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))


def run_in_dir(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None, *, resume: bool = False,
               raise_config_errors: bool = True, dir_key: str = "hydra.run.dir",
               accepted: Callable[[], None] | None = None, loggers: list | None = None) -> RunResult:
    """Train ``cfg`` in ``run_dir``; never raises for training failures (they are recorded).

    ``loggers``: RunLogger instances besides those the config names (the Python API's).
    ``resume``: continue from ``checkpoint.pt`` when present; a run that already ended
    ``completed``/``diverged`` is skipped.  Config errors are raised (single runs: exit 2)
    unless ``raise_config_errors`` is false, when they are recorded as ``failed`` (sweeps).  A run
    dir that holds another run, or a run whose config has changed, is refused (ConfigError) with
    nothing written.  ``accepted()`` is called once the launch passed these checks, before training.
    """
    admitted = admit(cfg, Path(run_dir), overrides, resume, dir_key, raise_config_errors, accepted, loggers)
    if isinstance(admitted, RunResult):
        return admitted
    run, optimizer_spec, lock = admitted
    try:
        return train_admitted(run, optimizer_spec, resume, raise_config_errors)
    finally:
        lock.release()


def admit(cfg: DictConfig, run_dir: Path, overrides: list[str] | None, resume: bool, dir_key: str,
          raise_config_errors: bool, accepted: Callable[[], None] | None = None,
          loggers: list | None = None) -> tuple[Run, tuple[type, dict], FileLock] | RunResult:
    """Lock ``run_dir`` and check the launch into it (``run_in_dir``, a pack's job), then ``accepted()``: its Run,
    optimizer (class, kwargs) and the lock, or the result of a run that finished or whose config is wrong."""
    lock = lock_run_dir(run_dir)
    with contextlib.ExitStack() as unlock:
        unlock.callback(lock.release)
        previous, finished = check_previous(run_dir, overrides, resume, dir_key)
        if finished is not None:
            return finished
        run = Run(cfg, run_dir, overrides, previous, loggers)
        try:
            optimizer_spec = check_config_once(cfg)
            name_optimizer(cfg, optimizer_spec[0])  # optimizer=custom: recorded under its class name
        except ConfigError as e:
            run.status, run.error = Status.FAILED, str(e)
            run.write()
            if raise_config_errors:
                raise
            return RunResult("failed", run_dir, str(e))
        check_same_config(run, dir_key)
        if accepted is not None:
            accepted()
        unlock.pop_all()  # admitted: the caller holds the lock until the run has ended
    return run, optimizer_spec, lock


def train_admitted(run: Run, optimizer_spec: tuple[type, dict], resume: bool, raise_config_errors: bool) -> RunResult:
    """Train an admitted run to an end status: a crash is recorded; a stop requeues the job where submitit asks."""
    stop = run.stop_signals = StopSignals()
    with stop.installed():
        try:
            return run.execute(resume=resume, optimizer_spec=optimizer_spec)
        except Interrupted as e:
            requeue = stop.requeue_handler(e.signum)
            if requeue is not None and run.stalled():
                # Requeued, and stopped again at the very same step: requeueing again
                # would loop forever. Say so instead.
                run.status = Status.FAILED
                run.error = (f"stopped by {e} twice at step {run.step} without progress in between: the job's "
                             "time limit leaves no time to train after start-up (raise hydra.launcher.timeout_min "
                             "or lower hydra.launcher.signal_delay_s)")
                log.error("run failed: %s", run.error)
                run.write()
                return RunResult("failed", run.run_dir, run.error)
            run.record_ending(e)
            if requeue is not None:
                try:
                    requeue(e.signum, None)  # submitit: pickle the job, `scontrol requeue` it, exit
                except Exception as why:  # submitit declined (e.g. timed out too many times)
                    run.status, run.error = Status.FAILED, f"received {e} and not requeued: {why}"
                    run.write()
                    return RunResult("failed", run.run_dir, run.error)
            raise
        except (SystemExit, Exception) as e:  # a failed run is a recorded result; the sweep goes on
            run.record_ending(e)
            if isinstance(e, SystemExit):  # submitit requeued the job: it resumes from the last checkpoint
                raise
            if raise_config_errors and isinstance(e, (CheckpointError, ConfigError, TaskError)):
                raise ConfigError(run.error) from None
            if isinstance(e, CheckpointError):
                log.error("%s", e)
            return RunResult("failed", run.run_dir, run.error)


def print_result(result: RunResult) -> None:
    """The run's result line (stderr)."""
    rec, _ = read_record(result.run_dir)
    if rec is not None and rec.status.value == result.status:
        print(result_line(rec, result.run_dir), file=sys.stderr)
    else:  # e.g. a checkpoint that could not be read: run.json was left as it was
        print(f"{result.status}: {result.run_dir}" + (f" ({result.error})" if result.error else ""), file=sys.stderr)


def hydra_job() -> tuple[Path, list[str], bool]:
    """The Hydra job a task function runs in: its run dir, its overrides, whether it is a sweep's."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir), list(hc.overrides.task), hc.mode == RunMode.MULTIRUN


def refused(e: ConfigError | RunLocked | OSError, run_dir: Path, multirun: bool) -> str:
    """A launch refused before training, said in one line: a sweep skips a run dir another process trains
    (``locked``) and counts one it cannot write ``failed``; anything else stops the command (exit 2; 1 for
    a dir it cannot write)."""
    if isinstance(e, RunLocked) and multirun:  # the other process trains it; the sweep goes on
        print(f"skipping {run_dir}: {e}", file=sys.stderr)
        return "locked"
    if isinstance(e, OSError):  # the run dir cannot be created or written (a full disk, no permission)
        reason = e if isinstance(e, WriteError) else f"cannot use {run_dir}: {e.strerror or _first_line(e)}"
        print(f"adaxbench: error: {reason}", file=sys.stderr)
        if multirun:
            return Status.FAILED.value
        sys.exit(1)
    reason = f"{run_dir}: {e}; wait for it, or choose another hydra.run.dir" if isinstance(e, RunLocked) else e
    print(f"adaxbench: error: {reason}", file=sys.stderr)
    sys.exit(2)


def main_from_hydra(cfg: DictConfig) -> str:
    """The Hydra task function: one job of ``adaxbench run`` (single run or sweep job)."""
    run_dir, overrides, multirun = hydra_job()
    composed = copy.deepcopy(cfg)  # .hydra/config.yaml: the config as Hydra composed it
    try:
        result = run_in_dir(cfg, run_dir, overrides, resume=bool(cfg.get("resume", False)) or multirun,
                            raise_config_errors=not multirun, dir_key="hydra.sweep.dir" if multirun else "hydra.run.dir",
                            accepted=lambda: save_hydra_files(composed, run_dir))
    except (ConfigError, RunLocked, OSError) as e:  # config errors, a run dir of another sweep, an unwritable one
        return refused(e, run_dir, multirun)
    except Interrupted as e:
        print(f"adaxbench: interrupted ({e}); progress saved in {run_dir}", file=sys.stderr)
        if multirun:
            raise KeyboardInterrupt(SAID) from None
        sys.exit(128 + e.signum)
    print_result(result)
    if not multirun and result.exit_code:
        sys.exit(result.exit_code)
    return result.status
