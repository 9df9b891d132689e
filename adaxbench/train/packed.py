"""Packed runs: the jobs of one setting trained together as one vectorised model.

Small runs leave the hardware idle: a Reddi step costs the same ~300 µs for one copy of the
1-d problem as for 32, and an MNIST-sized network barely occupies a GPU. A pack stacks the
members' parameters and buffers along a leading member dimension and evaluates the task's
own ``loss`` once per step for all of them with ``torch.func.vmap`` (the model's tensors
swapped for the members' as ``functional_call`` does), or without vmap where the task's code
takes the members stacked itself (``broadcasts_members``: the synthetic problems); one
optimizer of the members' own class steps the stacked tensors.

Every member is the run it would have been alone:

* it is set up by the same code (``prepare`` once for the pack, then ``Run.build`` for each
  member after ``seed_everything(seed)``), and its batches come from its own
  ``epoch_generator(seed, epoch)``;
* the summed loss back-propagates to each member's own slice only, and the optimizers
  allowed here (``ELEMENTWISE``) update every coordinate from that coordinate alone, so a
  stacked step is the members' steps side by side. Members whose optimizer
  hyperparameters differ (an lr grid, β̂₂ schedules of ScheduledBeta2) get one param group
  each, stepped with that group's own scalars;
* buffers (BatchNorm statistics, the Reddi regret sums) are stacked too, so each member
  keeps its own;
* each member has its own ``Run``: the same run dir, metrics.parquet, run.json and
  checkpoint.pt (model, optimizer and scheduler state dicts of the unpacked classes, RNG
  state), so ``report``, ``best`` and resume cannot tell the difference, and a pack can
  resume runs started alone and vice versa. The members are evaluated together (one call
  where the task has ``evaluation``).

A member whose loss turns non-finite is recorded ``diverged`` at that log step, exactly as
alone; its rows stop there and it is dropped from the pack at the end of the epoch (until
then its NaNs cannot reach the others: no operation mixes members). A member whose build or
write fails (a full disk, a bug) is recorded ``failed`` by its own error, as alone, and leaves
the pack the same way. Jobs that cannot be
packed exactly run alone through the normal runner: optimizers outside ``ELEMENTWISE``
(Adafactor factors across a matrix, L-BFGS is global), models with dropout (it draws from
the global RNG), ``trainer.compile``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.func import vmap
from torch.optim.lr_scheduler import LambdaLR

from ..errors import SAID
from ..optim import AdaX, AdaXW, ScheduledBeta2
from ..plugins import run_provenance
from ..rundir import Status, effective_lr_schedule
from .runner import (CheckpointError, Diverged, Interrupted, Run, RunLocked, RunResult, Setup, StopSignals, Trainee,
                     _rng_state, admit, epoch_generator, hydra_job, prepare, print_result, progress_bar, progress_hidden,
                     refused, save_hydra_files, seed_everything)
from .validate import ConfigError, optimizer_kwargs

log = logging.getLogger("adaxbench")

# Optimizers whose step updates every coordinate from that coordinate's own gradient and state
# (plus step-dependent scalars): stepping stacked tensors is stepping each member.
ELEMENTWISE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad,
               torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adadelta,
               AdaX, AdaXW, ScheduledBeta2)
# Optimizer state entries that depend on the step count only (the same for every member).
SHARED_STATE = ("step", "mu_product")
# Config keys that may differ inside a pack: the seed, resume, and the optimizer's hyperparameters.
PER_MEMBER_KEYS = ("seed", "resume")
# Threads writing the members' records and checkpoints (the writes wait on the disk, not the CPU).
MAX_WRITERS = 8


def pack_key(cfg: DictConfig) -> str | None:
    """Jobs with equal keys can be trained as one pack; None: this job must run alone."""
    try:
        cls, _ = optimizer_kwargs(cfg.optimizer)
        plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    except Exception:  # a config error: the normal runner records it
        return None
    if cls not in ELEMENTWISE or plain.get("trainer", {}).get("compile"):
        return None
    # Users' code (a task, model, dataset or lr schedule by _target_) and live loggers run alone.
    if "_target_" in json.dumps(plain.get("task")) or "_target_" in effective_lr_schedule(plain) or \
            (plain.get("logger") or {"name": "none"}) != {"name": "none"}:
        return None
    for key in PER_MEMBER_KEYS:
        plain.pop(key, None)
    plain["optimizer"] = {"_target_": plain.get("optimizer", {}).get("_target_")}
    return json.dumps(plain, sort_keys=True, default=str)


def _elementwise(cfg: DictConfig) -> bool:
    try:
        return optimizer_kwargs(cfg.optimizer)[0] in ELEMENTWISE
    except Exception:  # a config error: the runner reports it
        return True


def plan(configs: Sequence[DictConfig], max_pack: int) -> list[list[int]]:
    """Split jobs (by position) into groups: packs of equal ``pack_key``, at most ``max_pack``
    each, and single unpackable jobs; ordered by their first job."""
    groups: list[list[int]] = []
    open_packs: dict[str, list[int]] = {}
    told: set[str] = set()
    for i, cfg in enumerate(configs):
        key = pack_key(cfg)
        if key is None:
            target = str(cfg.optimizer.get("_target_"))
            if target not in told and not _elementwise(cfg):
                told.add(target)
                log.info("%s runs unpacked: packs step their members' stacked tensors at once, which equals "
                         "stepping each member only for optimizers known to update every coordinate from its own "
                         "gradient and state (%s)", target, ", ".join(c.__name__ for c in ELEMENTWISE))
            groups.append([i])
            continue
        pack = open_packs.get(key)
        if pack is None or len(pack) >= max_pack:
            pack = open_packs[key] = []
            groups.append(pack)
        pack.append(i)
    return groups


class _Swapped:
    """Calls a task hook on ``model`` with given tensors in place of its parameters and buffers,
    as ``torch.func.functional_call`` does, minus its per-call pytree work (which costs more
    than a whole step of a small problem)."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.model = model
        self.slots = []
        for name in names:
            owner, _, attr = name.rpartition(".")
            module = model.get_submodule(owner)
            self.slots.append((module._parameters if attr in module._parameters else module._buffers, attr))

    def __call__(self, hook, tensors: Sequence[torch.Tensor], *args):
        saved = [slots[attr] for slots, attr in self.slots]
        for (slots, attr), t in zip(self.slots, tensors):
            slots[attr] = t
        try:
            return hook(self.model, *args)
        finally:
            for (slots, attr), t in zip(self.slots, saved):
                slots[attr] = t


try:  # torch.func.vmap's core, without its per-call pytree work (~0.3 ms: a small problem's whole step)
    from torch._C._functorch import _add_batch_dim, _remove_batch_dim, _vmap_decrement_nesting, _vmap_increment_nesting
    # The batching rules torch.func.vmap registers on first use (e.g. nll_loss, without which
    # cross_entropy loops over the members).
    from torch._functorch.vmap import lazy_load_decompositions
except ImportError:  # pragma: no cover - other torch versions: the public API
    _vmap_increment_nesting = lazy_load_decompositions = None


def _batched(x: Any, dims: Any, level: int) -> Any:
    if dims is None:
        return x
    if isinstance(x, torch.Tensor):
        return _add_batch_dim(x, dims, level)
    return _same_kind(x, [_batched(a, d, level) for a, d in zip(x, dims)])


def _same_kind(like: tuple | list, items: list) -> Any:
    """``items`` as a sequence of ``like``'s type (a tuple, list or NamedTuple)."""
    return type(like)(*items) if hasattr(like, "_fields") else type(like)(items)


def _vmap(fn, size: int, tensors: Sequence[torch.Tensor], batch: Any = None, batch_dims: Any = None) -> tuple:
    """``torch.func.vmap(fn, in_dims=(0, batch_dims))(tensors, batch)`` for ``fn`` returning a
    tuple of tensors; randomness is an error, as there (no member could get its own stream)."""
    if _vmap_increment_nesting is None:
        return vmap(fn, in_dims=(0, batch_dims))(tuple(tensors), batch)
    lazy_load_decompositions()  # a flag check after the first call
    level = _vmap_increment_nesting(size, "error")
    try:
        out = fn([_add_batch_dim(t, 0, level) for t in tensors], _batched(batch, batch_dims, level))
        return tuple(_remove_batch_dim(o, level, size, 0) for o in out)
    finally:
        _vmap_decrement_nesting()


def _is_noop(method) -> bool:
    """Whether a hook's body is just ``pass`` (then the pack need not call it every step)."""
    def noop(self, model):
        pass
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    return code is not None and code.co_code == noop.__code__.co_code and not code.co_names


def _stack_batches(batches: list[Any]) -> tuple[Any, Any]:
    """Stack the members' batches along a new dim 0; returns (batch, vmap in_dims). Python
    numbers equal across members (the Reddi online f_t) pass unbatched."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(batches), 0
    if isinstance(first, (tuple, list)):
        parts = [_stack_batches([b[k] for b in batches]) for k in range(len(first))]
        return _same_kind(first, [p[0] for p in parts]), _same_kind(first, [p[1] for p in parts])
    if all(b == first for b in batches):
        return first, None
    return torch.tensor(batches), 0


def _in_dims(batch: Any) -> Any:
    """vmap's in_dims of a stacked batch: its tensors are batched along dim 0, numbers shared."""
    if isinstance(batch, torch.Tensor):
        return 0
    if isinstance(batch, (tuple, list)):
        return _same_kind(batch, [_in_dims(b) for b in batch])
    return None


@dataclass
class Member:
    """One job of a pack: its Run (the record) and its own model, optimizer and scheduler
    (``trainee``), which hold its state whenever it is written to disk or evaluated."""

    run: Run
    seed: int
    spec: tuple[type, dict[str, Any]]
    trainee: Trainee = None
    rng: dict[str, Any] = field(default_factory=dict)  # what its checkpoints hold: nothing draws from it
    active: bool = True
    lock: Any = None  # the run dir's lock, held from prepare_job until the pack has ended
    log_files: list = field(default_factory=list)  # its job's log file handlers (its adaxbench.log)
    model = property(lambda self: self.trainee.model)
    optimizer = property(lambda self: self.trainee.optimizer)
    scheduler = property(lambda self: self.trainee.scheduler)

    def finish(self) -> RunResult:
        """After training: free the disk of a finished run's checkpoint (unless kept), release
        the run dir, and say how it ended."""
        self.run.drop_checkpoint()
        self.run.loggers.close(Status(self.run.status).value)
        if self.lock is not None:
            self.lock.release()
        return RunResult(Status(self.run.status).value, self.run.run_dir, self.run.error)


def _member_slice(t: torch.Tensor, clone: bool) -> torch.Tensor:
    return t.clone(memory_format=torch.contiguous_format) if clone else t


def _group_hyper(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}


class Pack:
    """The active members' tensors stacked, one optimizer and LR scheduler over them."""

    def __init__(self, members: list[Member], task):
        # Members with equal optimizer hyperparameters share a param group; order by group.
        keys: dict[str, list[Member]] = {}
        for m in members:
            keys.setdefault(repr(sorted(_group_hyper(m.optimizer).items())), []).append(m)
        self.groups = list(keys.values())
        self.members = [m for g in self.groups for m in g]
        self.task = task
        base = self.members[0].model
        self.param_names = [n for n, _ in base.named_parameters()]
        self.buffer_names = [n for n, _ in base.named_buffers()]
        self.call = _Swapped(base, self.param_names + self.buffer_names)
        # Linear weights (out, in) are stacked transposed, as (M, in, out): vmap computes their
        # gradient as x.T @ g, in that layout, so it lands in .grad without a transposing copy
        # (a quarter of an MLP's packed step on CPU), and the optimizer steps contiguous memory.
        # The model sees the (M, out, in) view; ``_logical`` maps a leaf or its state to it.
        self.transposed = {f"{name}.weight" for name, mod in base.named_modules() if isinstance(mod, nn.Linear)}
        own = [dict(m.model.named_parameters()) for m in self.members]
        self.stacked = {n: torch.stack([self._logical(n, p[n].detach()) for p in own]).requires_grad_(p0.requires_grad)
                        for n, p0 in base.named_parameters()}
        # Each param group steps its members' slices of the stacked leaves (views: the model
        # reads the leaves whole, without a cat of the groups each step); one group (a seed
        # sweep) steps the leaves themselves, whose gradients backward leaves in place.
        self.group_sizes = [len(g) for g in self.groups]
        self.group_params = [dict(self.stacked)] if len(self.groups) == 1 else \
            [dict(zip(self.stacked, views)) for views in
             zip(*(leaf.detach().split(self.group_sizes) for leaf in self.stacked.values()))]
        self.buffers = {n: torch.stack([dict(m.model.named_buffers())[n] for m in self.members])
                        for n in self.buffer_names}
        cls, kwargs = self.members[0].spec
        self.optimizer = cls([{"params": [params[n] for n in self.param_names], **_group_hyper(g[0].optimizer)}
                              for g, params in zip(self.groups, self.group_params)], **kwargs)
        for g, params in zip(self.groups, self.group_params):
            for n in self.param_names:
                states = [m.optimizer.state.get(dict(m.model.named_parameters())[n]) for m in g]
                if states[0]:
                    self.optimizer.state[params[n]] = {
                        k: (v.clone() if isinstance(v, torch.Tensor) else v) if k in SHARED_STATE
                        or not isinstance(v, torch.Tensor) else torch.stack([self._logical(n, s[k]) for s in states])
                        for k, v in states[0].items()}
        self.scheduler = LambdaLR(self.optimizer, self.members[0].scheduler.lr_lambdas[0])  # the same for all
        # Continue the members' schedules (a resumed pack): per-group lists side by side.
        state = {k: ([g[0].scheduler.state_dict()[k][0] for g in self.groups] if isinstance(v, list) else v)
                 for k, v in self.members[0].scheduler.state_dict().items()}
        self.scheduler.load_state_dict(state)
        for group, g in zip(self.optimizer.param_groups, self.groups):
            group["lr"] = g[0].optimizer.param_groups[0]["lr"]
        self.where = {id(m): (gi, j) for gi, g in enumerate(self.groups) for j, m in enumerate(g)}
        self.position = {id(m): i for i, m in enumerate(self.members)}
        self.after_step = None if _is_noop(task.after_step) else task.after_step
        # A task whose code takes the members stacked (the built-in synthetic problems) is called once
        # with the stacked tensors; any other under vmap, as one member at a time.
        self.broadcasts = bool(getattr(task, "broadcasts_members", False))

    # ---- views -------------------------------------------------------------------
    def _logical(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """A transposed-stored weight (or a member's slice, or its optimizer state) in the
        model's layout; the transpose is its own inverse, so this also stores one."""
        return t.transpose(-1, -2) if name in self.transposed and t.dim() >= 2 else t

    def params(self) -> dict[str, torch.Tensor]:
        """The stacked parameters as the model sees them (views of the leaves)."""
        return {n: self._logical(n, leaf) for n, leaf in self.stacked.items()}

    def member_tensors(self, m: Member) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        i = self.position[id(m)]
        return ({n: self._logical(n, leaf[i]) for n, leaf in self.stacked.items()},
                {n: self.buffers[n][i] for n in self.buffer_names})

    def lr(self, m: Member) -> float:
        return self.optimizer.param_groups[self.where[id(m)][0]]["lr"]

    def _each(self, fn, tensors: Sequence[torch.Tensor], batch: Any = None, batch_dims: Any = None) -> tuple:
        """``fn(tensors, batch)`` (a tuple of tensors) for every member: one call on the stacked
        tensors, under vmap unless the task takes them stacked itself."""
        if self.broadcasts:
            out = tuple(fn(tensors, batch))
            if any(o.shape[:1] != (len(self.members),) for o in out):  # e.g. one value for all members
                raise TypeError(f"{type(self.task).__name__} sets broadcasts_members, but gave values of shapes "
                                f"{[tuple(o.shape) for o in out]} for {len(self.members)} stacked members")
            return out
        return _vmap(fn, len(self.members), tensors, batch, batch_dims)

    # ---- the step ------------------------------------------------------------------
    def zero_grad(self) -> None:
        # Backward accumulates into the stacked leaves only; share_grads then replaces every
        # group param's gradient, so the optimizer's own zero_grad would be work for nothing.
        for leaf in self.stacked.values():
            leaf.grad = None

    def share_grads(self) -> None:
        """After backward: each param group's slices get theirs of the stacked gradients (views)."""
        if len(self.groups) == 1:  # the group's params are the leaves
            return
        for n, leaf in self.stacked.items():
            grads = [None] * len(self.groups) if leaf.grad is None else leaf.grad.split(self.group_sizes)
            for params, grad in zip(self.group_params, grads):
                params[n].grad = grad

    def losses(self, batch: Any, in_dims: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every member's ``task.loss`` on its own batch: ([M] losses, [M] correct counts or,
        for a task without accuracy, None)."""
        task, call = self.task, self.call

        def member_loss(tensors, batch):
            loss, correct = call(task.loss, tensors, batch)
            if not task.has_accuracy:
                return (loss,)
            return loss, (correct if correct is not None else torch.zeros((), dtype=torch.int64, device=loss.device))
        tensors = (*self.params().values(), *self.buffers.values())
        losses, *corrects = self._each(member_loss, tensors, batch, in_dims)
        return losses, (corrects[0] if corrects else None)

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, dict[str, float]]]:
        """Every member's evaluation: one vmapped call of the task's ``evaluation`` (its metrics as
        tensors: the built-in synthetic tasks), read in one transfer; else each member's own
        ``evaluate`` on its model."""
        measure = getattr(self.task, "evaluation", None)
        if measure is None:
            results = []
            for m in self.members:
                self.to_member(m, optimizer=False)
                results.append(self.task.evaluate(m.model))
            return results
        names: list[tuple[str, str]] = []

        def member_evaluation(tensors, _):
            results = self.call(measure, tensors)
            names[:] = [(split, metric) for split, values in results.items() for metric in values]
            return tuple(value for values in results.values() for value in values.values())
        tensors = (*self.params().values(), *self.buffers.values())
        values = torch.stack([v.double() for v in self._each(member_evaluation, tensors)], 1).tolist()
        results = [{} for _ in self.members]
        for result, row in zip(results, values):
            for (split, metric), value in zip(names, row):
                result.setdefault(split, {})[metric] = value
        return results

    def run_after_step(self) -> None:
        if self.after_step is None:
            return
        hook, call = self.after_step, self.call

        def member_after(tensors, _):
            call(hook, tensors)
            return ()
        # views of the leaves themselves, so in-place hooks land
        tensors = (*(self._logical(n, leaf.detach()) for n, leaf in self.stacked.items()), *self.buffers.values())
        self._each(member_after, tensors)

    # ---- a member's own objects ------------------------------------------------------
    @torch.no_grad()
    def to_member(self, m: Member, optimizer: bool, clone: bool = True) -> None:
        """Copy member ``m``'s slice into its own model; with ``optimizer`` also its optimizer
        state (views unless ``clone``) and scheduler state."""
        params, buffers = self.member_tensors(m)
        for n, p in m.model.named_parameters():
            p.copy_(params[n])
        for n, b in m.model.named_buffers():
            b.copy_(buffers[n])
        if not optimizer:
            return
        gi, j = self.where[id(m)]
        own = dict(m.model.named_parameters())
        for n in self.param_names:
            state = self.optimizer.state.get(self.group_params[gi][n])
            if not state:
                continue
            m.optimizer.state[own[n]] = {
                k: (v.clone() if clone and isinstance(v, torch.Tensor) else v) if k in SHARED_STATE
                or not isinstance(v, torch.Tensor) else _member_slice(self._logical(n, v[j]), clone)
                for k, v in state.items()}
        m.optimizer.param_groups[0]["lr"] = self.optimizer.param_groups[gi]["lr"]
        state = {k: ([v[gi]] if isinstance(v, list) else v) for k, v in self.scheduler.state_dict().items()}
        m.scheduler.load_state_dict(state)

    def grad_norm(self, m: Member) -> torch.Tensor | None:
        gi, j = self.where[id(m)]
        grads = [leaf.grad[j] for leaf in self.group_params[gi].values() if leaf.grad is not None]
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None


def _packable_model(model: nn.Module) -> bool:
    # Dropout draws from the global RNG: under vmap no member could get its own stream.
    return not any(isinstance(mod, nn.modules.dropout._DropoutNd) and mod.p > 0 for mod in model.modules())


def train(members: list[Member], resume: bool = True) -> None:
    """Train the members (same task, trainer, schedule; see ``pack_key``) as packs to an end
    status each; every member's Run records its outcome. Never raises for training failures
    (``Interrupted`` on SIGINT/SIGTERM, after recording it: once a pack trains, at a step
    boundary with every member checkpointed there, as a run alone stops)."""
    stop = StopSignals()
    with stop.installed():
        for m in members:  # the jobs that run alone (dropout) stop as the runner's runs do
            m.run.stop_signals = stop
        _guarded(lambda: _train(members, resume, stop), members)


def _train(members: list[Member], resume: bool, stop: StopSignals) -> None:
    for m in members:
        m.run.run_dir.mkdir(parents=True, exist_ok=True)
    run0 = members[0].run
    setup = prepare(run0.cfg, run_provenance(run0.config_dict()))
    if not _packable_model(setup.task.model()):
        log.info("%s has dropout: its %d jobs run one by one", run0.cfg.task.name, len(members))
        for m in members:
            _guarded(lambda m=m: m.run.execute(resume=resume, optimizer_spec=m.spec), [m])
        return
    for m in members:  # each member is built as its run alone builds itself
        seed_everything(m.seed)
        try:
            m.trainee = m.run.build(setup, m.spec, resume, console=progress_hidden(m.run.cfg))
        except Exception as e:  # as alone (an unreadable checkpoint, a write): this member fails, the others train
            _fail(m, e)
        m.rng = _rng_state()
    # Members resumed from different points train as separate packs.
    by_progress: dict[tuple[int, int], list[Member]] = {}
    for m in members:
        if m.active:
            by_progress.setdefault((m.run.step, m.run.epochs_done), []).append(m)
    for group in by_progress.values():
        _guarded(lambda group=group: PackRun(group, setup, stop).train(), group)


def _guarded(fn, members: list[Member]) -> None:
    """``run_in_dir``'s outcome handling for a whole pack: a crash of the pack fails its active
    members (traceback in each error.log), a signal marks them interrupted and is passed on."""
    try:
        fn()
    except (Interrupted, SystemExit, Exception) as e:
        for m in members:
            if m.run.status == Status.RUNNING:
                m.run.record_ending(e)
        if isinstance(e, CheckpointError):
            log.error("%s", e, extra=members[0].run.log_extra if len(members) == 1 else None)
        if not isinstance(e, Exception):
            raise


def _fail(m: Member, e: Exception) -> None:
    """Member ``m`` failed by ``e`` (its build or one of its writes; called while ``e`` is handled):
    recorded as its run alone records it, and it leaves the pack as a diverged member does."""
    m.active = False
    m.run.record_ending(e)
    if isinstance(e, CheckpointError):  # as alone: its files stay as they are, the user decides
        log.error("%s", e, extra=m.run.log_extra)


def _diverge(m: Member, message: str) -> None:
    m.run.status, m.run.error, m.active = Status.DIVERGED, message, False
    try:
        m.run.write()
    except Exception as e:  # as alone: a diverged run whose record cannot be written fails
        _fail(m, e)


class PackRun:
    """The training loop of one pack: ``Run.train``'s steps, for every member at once."""

    def __init__(self, members: list[Member], setup: Setup, stop: StopSignals):
        self.setup, self.stop, self.task = setup, stop, setup.task
        self.run0 = members[0].run
        self.step, self.epochs_done = self.run0.step, self.run0.epochs_done
        self.log_every = self.run0.log_every
        for m in members:
            m.run.env["packed"] = {"members": len(members)}
        self.pack = Pack(members, self.task)
        self.bar = progress_bar(self.run0.cfg, self.task.steps_per_epoch * self.run0.epochs_total, self.step,
                                f" x{len(members)}")
        # One clock for the members' saves (``save``): they save at the same epochs, so a relaunch
        # after a kill resumes them as one pack again.
        self.saved_at = time.perf_counter()

    def active(self) -> list[Member]:
        return [m for m in self.pack.members if m.active]

    def train(self) -> None:
        # The members' files are written side by side, mostly waiting on the disk (three files a
        # member at each save).
        writers = min(len(self.pack.members), MAX_WRITERS)
        with contextlib.closing(self.bar), ThreadPoolExecutor(writers, "adaxbench-save") as self.writers:
            if self.epochs_done == 0 and self.step == 0:
                self.evaluate()
            self.stop.deferred = True  # from here a signal stops the pack at a step boundary
            for epoch in range(self.epochs_done, self.run0.epochs_total):
                if not self.drop_diverged():
                    return
                self.train_epoch(epoch)
                self.evaluate()
                for m in self.active():
                    m.run.end_epoch()
            for m in self.active():
                m.run.status = Status.COMPLETED
            self.each(lambda m: m.run.write(), self.active())

    def drop_diverged(self) -> bool:
        """Repack without the members that diverged or failed; False when none is left."""
        active = self.active()
        if active and len(active) < len(self.pack.members):
            for m in active:
                self.pack.to_member(m, optimizer=True)
            self.pack = Pack(active, self.task)
        return bool(active)

    def train_epoch(self, epoch: int) -> None:
        t_epoch = time.perf_counter()
        batches = self.stacked_batches(epoch)
        if (done := self.step - epoch * self.task.steps_per_epoch) > 0:
            # Resumed mid-epoch (a stop at a step): replay the epoch's order and skip the
            # batches already trained, as the runner does.
            batches = itertools.islice(batches, done, None)
        self.pack.call.model.train()
        for batch in batches:
            self.stop_if_asked(t_epoch)
            self.take_step(batch, t_epoch)
            self.bar.update(1)
        if self.setup.device.type == "cuda":
            torch.cuda.synchronize(self.setup.device)
        elapsed = time.perf_counter() - t_epoch
        self.epochs_done = epoch + 1
        for m in self.active():
            m.run.train_seconds += elapsed
            m.run.step, m.run.epochs_done = self.step, self.epochs_done

    def stacked_batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """The members' batches of ``epoch`` stacked (dim 0: the member), each member's drawn from
        its own ``epoch_generator`` as alone; with vmap's in_dims. The built-in tasks cut them
        for all members at once (``task.stacked_batches``), others member by member."""
        generators = [epoch_generator(m.seed, epoch, self.setup.device) for m in self.pack.members]
        stacked = getattr(self.task, "stacked_batches", None)
        batches = stacked(epoch, generators) if stacked is not None else None
        if batches is None:
            return map(_stack_batches, zip(*(self.task.batches(epoch, g) for g in generators)))
        return ((batch, _in_dims(batch)) for batch in batches)

    def take_step(self, stacked_batch: tuple[Any, Any], t_epoch: float) -> None:
        pack, members = self.pack, self.pack.members
        logging_step = (self.step + 1) % self.log_every == 0
        batch, in_dims = stacked_batch
        with self.setup.autocast():
            losses, corrects = pack.losses(batch, in_dims)
        pack.zero_grad()
        losses.sum().backward()
        pack.share_grads()
        if logging_step:
            norms, lrs = [pack.grad_norm(m) for m in members], [pack.lr(m) for m in members]
        pack.optimizer.step()
        diagnostics = [_diagnostics(pack, m) for m in members] if logging_step else None
        pack.scheduler.step()
        pack.run_after_step()
        self.step += 1
        if logging_step:
            self.log_step(losses.tolist(), corrects.tolist() if corrects is not None else None, norms, lrs, diagnostics,
                          time.perf_counter() - t_epoch)

    def log_step(self, losses, corrects, norms, lrs, diagnostics, elapsed: float) -> None:
        for i, m in enumerate(self.pack.members):
            if not m.active:
                continue
            m.run.step = self.step
            self.pack.to_member(m, optimizer=False)  # the model its task's log_metrics reads
            accuracy = corrects[i] / self.task.batch_size if self.task.has_accuracy else None
            try:
                m.run.log_step(self.task, m.trainee, losses[i], lrs[i], accuracy, norms[i], diagnostics[i],
                               m.run.train_seconds + elapsed)
            except Diverged as e:
                _diverge(m, str(e))
        self.bar.set_postfix(epoch=math.ceil(self.step / self.task.steps_per_epoch), loss=f"{losses[0]:.4f}",
                             members=len(self.active()))

    def evaluate(self) -> None:
        """Evaluate every active member (at once where the task allows), record it and save each:
        its records and, after an epoch, its checkpoint."""
        t0 = time.perf_counter()
        with self.setup.autocast():
            results = self.pack.evaluate()
        seconds = time.perf_counter() - t0
        for m, result in zip(self.pack.members, results):
            if m.active:
                try:
                    m.run.record_evaluation(result, seconds)
                except Diverged as e:
                    _diverge(m, str(e))
        self.save(self.active(), initial=self.epochs_done == 0)

    def save(self, members: list[Member], initial: bool = False) -> None:
        """Each member's records (``initial``) or, when a save is due (``Run.save_due`` on the pack's
        clock, the same for all), ``Run.save``: each member's files in their order, the members side
        by side (a kill may leave any of them saved and others not; each resumes from what it saved)."""
        if initial:
            self.each(lambda m: m.run.write(), members)
            return
        if not members or not members[0].run.save_due(self.saved_at):
            return
        if self.run0.cfg.trainer.checkpoint:
            for m in members:
                self.pack.to_member(m, optimizer=True)
        self.each(lambda m: m.run.save(m.trainee, m.rng), members)
        self.saved_at = time.perf_counter()

    def each(self, write, members: list[Member]) -> None:
        """``write(member)`` for every member on the writer threads; a member whose write fails
        (a full disk, a bug) fails by its own error and leaves the pack, the others train on."""
        futures = [self.writers.submit(write, m) for m in members]
        wait(futures)
        for m, future in zip(members, futures):
            try:
                future.result()
            except Exception as e:
                _fail(m, e)

    def stop_if_asked(self, t_epoch: float) -> None:
        """A stop signal arrived: every active member records the stop and, between two optimizer
        steps, its records and checkpoint (``Run.record_stop``), then the pack stops."""
        if not self.stop.received:
            return
        signum, elapsed = self.stop.reason(), time.perf_counter() - t_epoch
        checkpoint = bool(self.run0.cfg.trainer.checkpoint)
        for m in self.active():
            m.run.train_seconds += elapsed
            m.run.step = self.step
            self.pack.to_member(m, optimizer=checkpoint)
            try:
                m.run.record_stop(signum, m.trainee, m.rng)
            except Exception as e:  # its save failed: it fails, the others are recorded interrupted
                _fail(m, e)
        raise Interrupted(signum)


def _diagnostics(pack: Pack, m: Member) -> dict[str, float]:
    """The member's own ``optimizer.diagnostics()`` (our optimizers), on views of its state."""
    diagnostics = getattr(m.optimizer, "diagnostics", None)
    if diagnostics is None or not m.active:
        return {}
    pack.to_member(m, optimizer=True, clone=False)
    return diagnostics()


# ---- the Hydra launcher -------------------------------------------------------------------


def prepare_job(cfg: DictConfig) -> Member | RunResult | str:
    """The task function a packed job runs inside Hydra's ``run_job`` (which makes its run
    dir): ``run_in_dir``'s checks, without the training; .hydra/ once they pass.  A refused
    job's status (``refused``, which said why) where its run dir is locked or cannot be written."""
    run_dir, overrides, _ = hydra_job()
    composed, cfg = copy.deepcopy(cfg), copy.deepcopy(cfg)
    with contextlib.suppress(Exception):  # one that does not resolve: admit records it, as a run alone does
        OmegaConf.resolve(cfg)  # ${hydra:...} is this job's only while its Hydra config is current
    try:
        admitted = admit(cfg, run_dir, overrides, resume=True, dir_key="hydra.sweep.dir", raise_config_errors=False,
                         accepted=lambda: save_hydra_files(composed, run_dir))
    except (ConfigError, RunLocked, OSError) as e:  # as a job alone (``main_from_hydra``): skipped, failed or stop
        return refused(e, run_dir, multirun=True)
    if isinstance(admitted, RunResult):
        return admitted
    run, spec, lock = admitted
    # The job's own log files, as its logging config made them here: the pack writes its lines there.
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    return Member(run=run, seed=int(cfg.seed), spec=spec, lock=lock, log_files=files)


class _Own(logging.Filter):
    """A member's log file takes its own lines (``Run.log_extra``: the record names its run dir)."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = run_dir

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "run_dir", None) == self.run_dir


@contextlib.contextmanager
def members_logging(members: list[Member]) -> Iterator[None]:
    """While a pack's jobs train, each member's lines also go to its own log files (appended to what
    its job's logging opened there), as a run alone's do.  A packed member's epoch lines
    (``trainer.progress=false``) go only there: the console would repeat them for every member."""
    root, by_dir = logging.getLogger(), {m.run.run_dir: m for m in members}

    def console_line(record: logging.LogRecord) -> bool:
        m = by_dir.get(getattr(record, "run_dir", None))
        return not (getattr(record, "epoch_line", False) and m is not None and m.log_files and "packed" in m.run.env)
    console = list(root.handlers)
    for handler in console:
        handler.addFilter(console_line)
    added = []
    for m in members:
        for opened in m.log_files:  # (closed again by the launcher's logging; a mode "w" file would not reopen)
            handler = logging.FileHandler(opened.baseFilename, mode="a", encoding=opened.encoding, delay=True)
            handler.setFormatter(opened.formatter)
            handler.setLevel(opened.level)
            handler.addFilter(_Own(m.run.run_dir))
            root.addHandler(handler)
            added.append(handler)
    try:
        yield
    finally:
        for handler in console:
            handler.removeFilter(console_line)
        for handler in added:
            root.removeHandler(handler)
            handler.close()


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
    """``PackedLauncher.launch``: jobs as the basic launcher runs them (same dirs, .hydra/,
    callbacks, JobReturns), but each pack of jobs trained at once."""
    from hydra.core.utils import JobStatus, configure_log, filter_overrides, run_job, setup_globals
    from omegaconf import open_dict

    setup_globals()
    config, context = launcher.config, launcher.hydra_context
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    configs = []
    for n, overrides in enumerate(job_overrides):
        sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + n
        configs.append(sweep_config)
    groups = plan(configs, int(launcher.max_pack))
    log.info("Launching %d jobs as %d group(s), packs of up to %d", len(configs), len(groups), launcher.max_pack)
    returns: list = [None] * len(configs)

    def job(i: int, task_function):
        log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(job_overrides[i])))
        return run_job(hydra_context=context, task_function=task_function, config=configs[i],
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")

    for group in groups:
        if len(group) == 1:
            returns[group[0]] = job(group[0], launcher.task_function)
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
            continue
        for i in group:  # as the basic launcher: each job under its own logging, the launcher's in between
            returns[i] = job(i, prepare_job)
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        members = [returns[i]._return_value for i in group if returns[i].status == JobStatus.COMPLETED
                   and isinstance(returns[i]._return_value, Member)]
        if members:
            log.info("training %d jobs as one pack: %s", len(members), members[0].run.cfg.task.name)
            try:
                with members_logging(members):
                    train(members)
            except Interrupted as e:
                print(f"adaxbench: interrupted ({e}); progress saved", file=sys.stderr)
                raise KeyboardInterrupt(SAID) from None
            finally:
                results = {id(m): m.finish() for m in members}
        for i in group:
            value = returns[i]._return_value
            if isinstance(value, Member):
                value = results[id(value)]
            if isinstance(value, RunResult):
                print_result(value)
                returns[i].return_value = value.status
    return returns
