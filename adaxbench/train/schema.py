"""The run config, declared once: keys, types and ranges (Hydra structured configs).

``RunConfig`` is the primary config's schema (``configs/config.yaml`` lists it first), so trainer,
data, ``seed`` and ``resume`` are typed when Hydra composes.  Task and lr-schedule kinds differ in
their keys, and a user's ``_target_`` takes what its constructor takes, so those groups stay free-form
there; ``validate.check_schema`` checks a built-in one against the dataclass of its kind, and the
whole tree again (``+key=value`` force-adds keys even to a structured node).

What a type cannot say is a field's metadata (``checked``), applied by ``validate.check_value``:
``low``/``high`` bounds (closed below, open above, unless ``low_open``/``high_open``; integers take
``low`` only), ``choices``, a string's ``pattern``, a list's ``length``, ``null`` (null is allowed)
and ``says`` (a message's words for what is accepted).  Every number is finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING


def checked(default: Any, **rules: Any) -> Any:
    """A field with the rules ``validate.check_value`` applies (see above)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=rules)
    return field(default=default, metadata=rules)


SPLIT_METRIC = dict(pattern=r"(train|valid|test)/.+",
                    says="SPLIT/METRIC with SPLIT train, valid or test (e.g. test/accuracy)")
# The largest seed: each epoch's data order is drawn from a torch.Generator seeded with
# seed * 1_000_003 + epoch (runner.epoch_generator), which must fit in a signed 64-bit integer.
MAX_SEED = 2**63 // 1_000_003 - 1


@dataclass
class TrainerSchema:
    epochs: Optional[int] = checked(None, low=1, null=True)
    device: str = "auto"  # checked by validate.resolve_device (what exists here)
    train_limit: Optional[int] = checked(None, low=1, null=True)
    eval_limit: Optional[int] = checked(None, low=1, null=True)
    log_every: int = checked(50, low=1)
    optimizer_impl: str = checked("auto", choices=("auto", "fused", "foreach", "forloop"))
    precision: str = checked("fp32", choices=("fp32", "bf16"))
    compile: bool = False
    channels_last: bool = False
    eval_batch_size: int = checked(1000, low=1)
    checkpoint: bool = True
    save_every_s: float = checked(10.0, low=0)  # see Run.save_due
    progress: Any = checked("auto", choices=("auto", True, False), says="auto, true or false")
    keep_checkpoint: bool = False
    threads: Any = "auto"  # auto | N, checked by threads.parse_setting


@dataclass
class DataSchema:
    root: str = "data"
    download: bool = False


@dataclass
class RunConfig:
    task: Any = None          # a mapping, checked by kind (TASK_SCHEMAS) or by its _target_
    optimizer: Any = None     # constructor arguments of optimizer._target_, checked against its signature
    lr_schedule: Any = None   # null: the task's protocol schedule (task.lr_schedule)
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    data: DataSchema = field(default_factory=DataSchema)
    seed: int = checked(0, low=0)  # and <= MAX_SEED
    resume: bool = False
    logger: Any = None        # the logger group (none | tensorboard | wandb), checked by its own code


@dataclass
class TaskSchema:
    """The keys of every built-in task kind."""
    name: str = MISSING
    kind: str = MISSING
    batch_size: int = checked(MISSING, low=1)
    epochs: int = checked(MISSING, low=1)
    target: Optional[float] = None
    target_metric: Optional[str] = checked(None, **SPLIT_METRIC)
    metric: Optional[str] = checked(None, **SPLIT_METRIC)
    select_metric: Optional[str] = checked(None, **SPLIT_METRIC)  # report/best's, where there is no valid split
    equivalence_margin: Any = None  # report's margin m: a number (the task's metric) or {METRIC: M}
    lr_schedule: Any = None   # checked as an lr schedule


@dataclass
class ImageTaskSchema(TaskSchema):
    kind: str = "image"
    dataset: Any = MISSING    # a dataset name, a user's file (.pt) or a mapping with _target_ (a user's dataset)
    model: Any = MISSING      # a model name, or a mapping with _target_ (a user's model)
    l2_reg: float = checked(0.0, low=0)
    augment: bool = False
    crop_padding: int = checked(4, low=0)
    color_jitter: Any = None  # null or {brightness, contrast, saturation} (checked by the task)
    normalize: Any = None     # dataset | none | {mean, std} (checked by the task)
    drop_last: bool = True
    valid_size: int = checked(10000, low=0)
    train_eval_size: int = checked(10000, low=1)


@dataclass
class SyntheticTaskSchema(TaskSchema):
    kind: str = "synthetic"
    problem: str = MISSING
    noise_level: Optional[float] = checked(None, low=0)
    train_size: Optional[int] = None      # at least task.batch_size
    start: Optional[List[float]] = checked(None, length=2)  # [u, v]
    steps_per_epoch: Optional[int] = checked(None, low=1)
    x0: Optional[float] = checked(None, low=-1, high=1, high_open=False)


# Keys each synthetic problem reads (beyond those of every task), so a key of another problem is refused.
SYNTHETIC_KEYS = {"quadratic_deep": ("noise_level", "train_size"),
                  "rosenbrock_2d": ("noise_level", "train_size", "start"),
                  "reddi_online": ("steps_per_epoch", "x0"),
                  "reddi_stochastic": ("steps_per_epoch", "x0")}


@dataclass
class ScheduleSchema:
    """The keys of every built-in schedule, and all the keys of constant and inverse_sqrt."""
    name: str = MISSING
    warmup_steps: int = checked(0, low=0)


@dataclass
class StepScheduleSchema(ScheduleSchema):
    milestones: List[int] = checked([100, 150], low=1, says="a list of positive epoch numbers")
    gamma: float = checked(0.1, low=0, low_open=True)


@dataclass
class CosineScheduleSchema(ScheduleSchema):
    min_factor: float = checked(0.0, low=0, high=1, high_open=False)


TASK_SCHEMAS = {"image": ImageTaskSchema, "synthetic": SyntheticTaskSchema}
SCHEDULE_SCHEMAS = {"constant": ScheduleSchema, "inverse_sqrt": ScheduleSchema, "step": StepScheduleSchema,
                    "cosine": CosineScheduleSchema}

# Ranges of the hyperparameters the optimizers of torch and adaxbench share (a user's optimizer may
# define its keys otherwise, Adan's three betas, so it gets only lr > 0 and finite numbers).
HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "lr": dict(low=0, low_open=True), "betas": dict(low=0, high=1, length=2),
    "beta1": dict(low=0, high=1), "momentum": dict(low=0, high=1), "alpha": dict(low=0, high=1),
    "dampening": dict(low=0, high=1, high_open=False), "beta2": dict(low=0, high=1, null=True),
    **{key: dict(low=0) for key in ("eps", "weight_decay", "lr_decay", "initial_accumulator_value")},
    **{key: dict(low=0, low_open=True) for key in ("decay_rate", "d")},
    **{key: dict(kind=bool) for key in ("amsgrad", "nesterov", "centered", "maximize", "bias_correction1",
                                         "decoupled_weight_decay")},
}
SCHEMA_NAME = "adaxbench_schema"


def register() -> None:
    """Put the run-config schema into Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=RunConfig, provider="adaxbench")
