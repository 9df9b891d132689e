"""One training run: build the task and optimizer, train, evaluate, log, checkpoint.

The hot loop does no host-device synchronisation except on log steps (every
``trainer.log_every`` optimizer steps), where the minibatch loss is read and checked.
Everything a run produces is written atomically into its run directory at least once
per epoch, so a killed run keeps every finished epoch and can resume from it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from ..optim.schedules import build_lr_lambda
from ..tasks import TaskError, build_task
from . import record, threads
from .record import CHECKPOINT_FILE, METRICS_FILE, RUN_FILE, MetricsLog
from .validate import ConfigError, check_config, choose_impl, resolve_device

log = logging.getLogger("adaxbench")
FINISHED = ("completed", "diverged")


class Diverged(Exception):
    """A non-finite loss: the run ends as ``diverged`` (a result, not a crash)."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGUSR2 stopped the run: write what exists, status ``interrupted``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class RunResult:
    status: str
    run_dir: Path
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return {"completed": 0, "diverged": 0, "failed": 1}.get(self.status, 130)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    # Data order and augmentation of epoch e depend on (seed, e) only, so a resumed run
    # replays exactly the batches the uninterrupted run would have seen.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def effective_schedule(cfg: DictConfig) -> dict[str, Any]:
    sched = cfg.get("lr_schedule") or cfg.task.get("lr_schedule") or {"name": "constant"}
    sched = OmegaConf.to_container(sched, resolve=True) if isinstance(sched, DictConfig) else dict(sched)
    sched.setdefault("warmup_steps", 0)
    return sched


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
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
             "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
             "numpy_gauss": [int(np_state[3]), float(np_state[4])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         int(state["numpy_gauss"][0]), float(state["numpy_gauss"][1])))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Run:
    """State of one run in its directory; ``execute`` trains it to an end status."""

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.overrides = list(overrides or [])
        self.metrics = MetricsLog()
        self.status = "running"
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
        self.batch_size = 0
        self.resumed_from: int | None = None
        self.resumed_from_step: int | None = None
        # Stops by a signal (time limit, preemption, Ctrl-C): the step each one came at.
        self.stops: list[dict[str, Any]] = []
        self.stop_signals: StopSignals | None = None

    # ---- persistence -------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        out = OmegaConf.to_container(self.cfg, resolve=True)
        out.pop("hydra", None)
        if out.get("lr_schedule") is None and "task" in out:  # record the schedule actually used
            out["lr_schedule"] = effective_schedule(self.cfg)
        return out

    def write(self) -> None:
        """Rewrite metrics.parquet and run.json (atomically each)."""
        self.metrics.save(self.run_dir / METRICS_FILE)
        samples = self.step * self.batch_size
        record.write_json(self.run_dir / RUN_FILE, {
            "status": self.status,
            "error": self.error,
            "config": self.config_dict(),
            "overrides": self.overrides,
            "env": self.env,
            "timing": {"started": self.started,
                       "ended": None if self.status == "running" else datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
                       "wall_seconds": time.perf_counter() - self.wall_start},
            "throughput": {"samples_per_s": samples / self.train_seconds if self.train_seconds > 0 else None,
                           "samples": samples},
            "progress": {"step": self.step, "epoch": self.epochs_done, "epochs_total": self.epochs_total,
                         "resumed_from_epoch": self.resumed_from,
                         # Only for resumed/stopped runs: where it resumed, and each stop's step.
                         **({"resumed_from_step": self.resumed_from_step} if self.resumed_from is not None else {}),
                         **({"stops": self.stops} if self.stops else {})},
            "final": self.final,
        })

    def save_checkpoint(self, model, optimizer, scheduler) -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": _rng_state(), "step": self.step,
                 "epoch": self.epochs_done, "train_seconds": self.train_seconds,
                 "eval_seconds": self.eval_seconds, "metric_rows": len(self.metrics), "final": self.final,
                 "stops": self.stops}
        record.atomic_write(self.run_dir / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self, model, optimizer, scheduler) -> bool:
        path = self.run_dir / CHECKPOINT_FILE
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.step, self.epochs_done = int(state["step"]), int(state["epoch"])
        self.train_seconds, self.eval_seconds = float(state["train_seconds"]), float(state["eval_seconds"])
        self.final = dict(state["final"])
        self.stops = list(state.get("stops", []))
        if (self.run_dir / METRICS_FILE).exists():
            self.metrics = MetricsLog.load(self.run_dir / METRICS_FILE)
        # Rows logged after the checkpoint (a partial epoch) are replayed, so drop them.
        self.metrics.truncate(int(state["metric_rows"]))
        self.resumed_from, self.resumed_from_step = self.epochs_done, self.step
        return True

    def stop_here(self, model, optimizer, scheduler, checkpoint: bool) -> None:
        """A stop signal arrived: checkpoint at this step (between two optimizer steps), then stop."""
        signum = self.stop_signals.reason()
        self.stops.append({"step": self.step, "signal": signal.Signals(signum).name})
        if checkpoint:
            self.save_checkpoint(model, optimizer, scheduler)
        raise Interrupted(signum)

    def stalled(self) -> bool:
        """The last two stops came at the same step: a requeue would not progress either."""
        return len(self.stops) >= 2 and self.stops[-1]["step"] == self.stops[-2]["step"]

    # ---- training ----------------------------------------------------------------
    def evaluate(self, task, model, epoch: float) -> None:
        t0 = time.perf_counter()
        results = task.evaluate(model)
        self.eval_seconds += time.perf_counter() - t0
        for split, values in results.items():
            self.metrics.add(self.step, epoch, self.train_seconds, split, values)
            for metric, value in values.items():
                self.final[f"{split}/{metric}"] = value
        losses = [v.get("loss") for v in results.values() if "loss" in v]
        bad = [x for x in losses if not math.isfinite(x)]
        if bad:
            raise Diverged(f"non-finite evaluation loss ({bad[0]}) after epoch {epoch:g}")

    def execute(self, resume: bool, optimizer_spec: tuple[type, dict[str, Any]]) -> RunResult:
        """Train to an end status; ``optimizer_spec`` is (class, kwargs) from ``check_config``."""
        cfg = self.cfg
        tr = cfg.trainer
        device = resolve_device(tr.device)
        budget = threads.configure(tr.get("threads", "auto"))
        self.env = record.environment(device)
        self.env["threads"], self.env["threads_reason"] = budget.threads, budget.reason
        seed = int(cfg.seed)
        seed_everything(seed)
        task = build_task(cfg.task, cfg.data, device, seed, train_limit=tr.train_limit,
                          channels_last=bool(tr.channels_last), eval_batch_size=tr.eval_batch_size,
                          eval_limit=tr.get("eval_limit"))
        self.env["data_source"] = getattr(task, "source", None)
        self.epochs_total = int(tr.epochs if tr.epochs is not None else cfg.task.epochs)
        self.batch_size = int(task.batch_size)
        steps_per_epoch = task.steps_per_epoch
        model = task.model()
        cls, kwargs = optimizer_spec
        kwargs, self.env["optimizer_impl"] = choose_impl(cls, kwargs, tr.get("optimizer_impl", "auto"), device)
        optimizer = cls(model.parameters(), **kwargs)
        lr_lambda = build_lr_lambda(effective_schedule(cfg), steps_per_epoch, steps_per_epoch * self.epochs_total)
        scheduler = LambdaLR(optimizer, lr_lambda)
        forward = torch.compile(model) if tr.compile else model
        if resume and self.load_checkpoint(model, optimizer, scheduler):
            log.info("resuming %s from epoch %d (step %d)", self.run_dir, self.epochs_done, self.step)
        self.write()

        use_bf16 = tr.precision == "bf16"
        autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
        log_every = int(tr.log_every)
        params = [p for p in model.parameters() if p.requires_grad]
        diagnostics = getattr(optimizer, "diagnostics", None)
        show = {"auto": None, True: False, False: True}[tr.get("progress", "auto")]
        bar = tqdm(total=steps_per_epoch * self.epochs_total, initial=self.step, disable=show, dynamic_ncols=True,
                   desc=f"{cfg.task.name}/{cfg.optimizer.get('name', '?')}", unit="step", leave=False)
        try:
            if self.epochs_done == 0 and self.step == 0:
                with autocast():
                    self.evaluate(task, forward, 0.0)
                self.write()
            for epoch in range(self.epochs_done, self.epochs_total):
                forward.train()
                gen = epoch_generator(seed, epoch, device)
                t_epoch = time.perf_counter()
                batches = task.batches(epoch, gen)
                if (done := self.step - epoch * steps_per_epoch) > 0:
                    # Resumed mid-epoch: replay the epoch's order (a function of seed and epoch)
                    # and skip the batches already trained, so the run continues exactly.
                    batches = itertools.islice(batches, done, None)
                for batch in batches:
                    if self.stop_signals is not None and self.stop_signals.received:
                        self.train_seconds += time.perf_counter() - t_epoch
                        self.stop_here(model, optimizer, scheduler, bool(tr.checkpoint))
                    logging_step = (self.step + 1) % log_every == 0
                    with autocast():
                        loss, correct = task.loss(forward, batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if logging_step:
                        grads = [p.grad for p in params if p.grad is not None]
                        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None
                    lr = optimizer.param_groups[0]["lr"]
                    optimizer.step()
                    # Diagnostics describe the step just taken (before the lr moves on).
                    diag = diagnostics() if logging_step and diagnostics else {}
                    scheduler.step()
                    task.after_step(model)
                    self.step += 1
                    if logging_step:
                        value = loss.item()  # the one sync of a log step
                        now = self.train_seconds + time.perf_counter() - t_epoch
                        row = {"loss": value, "lr": lr}
                        if correct is not None:
                            row["accuracy"] = correct.item() / len(batch[1])
                        if grad_norm is not None:
                            row["grad_norm"] = grad_norm.item()
                        row.update(diag)
                        if "beta2_hat" not in row and (b2 := torch_beta2_hat(optimizer, self.step)) is not None:
                            row["beta2_hat"] = b2
                        row.update(task.log_metrics(model))
                        self.metrics.add(self.step, self.step / steps_per_epoch, now, "batch", row)
                        bar.set_postfix(epoch=epoch + 1, loss=f"{value:.4f}", **(
                            {"acc": f"{row['accuracy']:.3f}"} if "accuracy" in row else {}),
                            sps=f"{self.step * self.batch_size / max(now, 1e-9):.0f}")
                        if not math.isfinite(value):
                            raise Diverged(f"non-finite minibatch loss ({value}) at step {self.step}")
                    bar.update(1)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                self.train_seconds += time.perf_counter() - t_epoch
                self.epochs_done = epoch + 1
                with autocast():
                    self.evaluate(task, forward, float(self.epochs_done))
                if tr.checkpoint:
                    self.save_checkpoint(model, optimizer, scheduler)
                self.write()
            self.status = "completed"
        except Diverged as e:
            self.status, self.error = "diverged", str(e)
        finally:
            bar.close()
        self.write()  # the final checkpoint stays: it holds the trained model
        return RunResult(self.status, self.run_dir, self.error)


def _read_status(run_dir: Path) -> dict[str, Any] | None:
    import json
    try:
        return json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


# The signal SLURM sends before a job's time limit (sbatch --signal) and on preemption
# through submitit; submitit reads the same variable.
REQUEUE_SIGNAL = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


class StopSignals:
    """SIGINT, SIGTERM and the requeue signal ask the run to stop at the next optimizer step.

    The handler only records the signal; the training loop checkpoints at the step boundary
    and then raises ``Interrupted`` (a handler that raised would leave the model between
    two halves of a step).  A second SIGINT stops at once.  The handlers in place before
    (submitit's, which requeue the job) are kept in ``previous``.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and signal.SIGINT in self.received:
            raise Interrupted(signum)
        self.received.append(signum)
        log.warning("received %s: stopping at the next step", signal.Signals(signum).name)

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
        finally:
            for sig, h in self.previous.items():
                signal.signal(sig, h)


def run_in_dir(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None, *, resume: bool = False,
               raise_config_errors: bool = True) -> RunResult:
    """Train ``cfg`` in ``run_dir``; never raises for training failures (they are recorded).

    ``resume``: continue from ``checkpoint.pt`` when present; a run that already ended
    ``completed``/``diverged`` is skipped.  Config errors are raised (single runs: exit 2)
    unless ``raise_config_errors`` is false, when they are recorded as ``failed`` (sweeps).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_status(run_dir)
    run = Run(cfg, run_dir, overrides)
    if previous is not None:
        if previous.get("overrides") is not None and overrides is not None and \
                record.setting_overrides(previous["overrides"], keep_seed=True) != \
                record.setting_overrides(list(overrides), keep_seed=True):
            # Never overwrite another run's record, not even inside a sweep: stop here.
            raise ConfigError(f"{run_dir} holds a different run ({' '.join(previous['overrides']) or 'no overrides'});"
                              " relaunch the same sweep, or use a new hydra.sweep.dir")
        if not resume:
            raise ConfigError(f"{run_dir} already holds a run (status {previous.get('status')}); "
                              "pass resume=true to continue it, or choose another hydra.run.dir")
        if previous.get("status") in FINISHED:
            log.info("skipping %s: already %s", run_dir, previous["status"])
            return RunResult(previous["status"], run_dir, previous.get("error"))
    try:
        optimizer_spec = check_config(cfg)
    except ConfigError as e:
        run.status, run.error = "failed", str(e)
        run.write()
        if raise_config_errors:
            raise
        return RunResult("failed", run_dir, str(e))
    stop = run.stop_signals = StopSignals()
    with stop.installed():
        try:
            return run.execute(resume=resume, optimizer_spec=optimizer_spec)
        except (ConfigError, TaskError) as e:
            run.status, run.error = "failed", str(e).splitlines()[0] if str(e) else type(e).__name__
            run.write()
            if raise_config_errors:
                raise ConfigError(run.error) from None
            return RunResult("failed", run_dir, run.error)
        except Interrupted as e:
            requeue = stop.requeue_handler(e.signum)
            if requeue is not None and run.stalled():
                # Requeued, and stopped again at the very same step: requeueing again
                # would loop forever. Say so instead.
                run.status = "failed"
                run.error = (f"stopped by {e} twice at step {run.step} without progress in between: the job's "
                             "time limit leaves no time to train after start-up (raise hydra.launcher.timeout_min "
                             "or lower hydra.launcher.signal_delay_s)")
                log.error("run failed: %s", run.error)
                run.write()
                return RunResult("failed", run_dir, run.error)
            run.status, run.error = "interrupted", f"received {e}"
            run.write()
            if requeue is not None:
                try:
                    requeue(e.signum, None)  # submitit: pickle the job, `scontrol requeue` it, exit
                except Exception as why:  # submitit declined (e.g. timed out too many times)
                    run.status, run.error = "failed", f"received {e} and not requeued: {why}"
                    run.write()
                    return RunResult("failed", run_dir, run.error)
            raise
        except SystemExit:
            # submitit's preemption/timeout handler requeues the job and exits from inside
            # the loop; the requeued job resumes from the last checkpoint.
            run.status, run.error = "interrupted", "exited during training (preempted or timed out?)"
            run.write()
            raise
        except Exception as e:  # a crash of this run is a recorded result; the sweep goes on
            first = (str(e).strip().splitlines() or [""])[0]
            run.status, run.error = "failed", f"{type(e).__name__}: {first}"
            (run_dir / "error.log").write_text(traceback.format_exc())
            log.error("run failed: %s (traceback in %s)", run.error, run_dir / "error.log")
            run.write()
            return RunResult("failed", run_dir, run.error)


def main_from_hydra(cfg: DictConfig) -> str:
    """The Hydra task function: one job of ``adaxbench run`` (single run or sweep job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    resume = bool(cfg.get("resume", False)) or multirun
    try:
        result = run_in_dir(cfg, run_dir, overrides, resume=resume, raise_config_errors=not multirun)
    except ConfigError as e:  # single runs: any config error; sweeps: a run dir of another sweep
        print(f"adaxbench: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(f"adaxbench: interrupted ({e}); progress saved in {run_dir}", file=sys.stderr)
        if multirun:
            raise KeyboardInterrupt from None
        sys.exit(128 + e.signum)
    print(f"{result.status}: {run_dir}" + (f" ({result.error})" if result.error else ""), file=sys.stderr)
    if not multirun and result.exit_code:
        sys.exit(result.exit_code)
    return result.status
