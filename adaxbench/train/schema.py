"""The typed shape of a run config: Hydra structured configs (dataclasses in the ConfigStore).

``RunConfig`` is the schema of the primary config (``configs/config.yaml`` lists it first in
its defaults), so the trainer and data groups, ``seed`` and ``resume`` are typed when Hydra
composes: ``trainer.epochs=abc`` or ``trainer.compile=maybe`` fail right there.

Tasks and lr schedules come in several kinds with different keys, and a user's plug-in
(``task._target_=mypkg.MyTask``, ``lr_schedule._target_=torch.optim.lr_scheduler.StepLR``)
takes any keys its constructor takes, so those groups stay free-form at composition;
``validate.check_config`` checks a built-in task or schedule against the dataclass of its kind
(``TASK_SCHEMAS``, ``SCHEDULE_SCHEMAS``) and leaves ``_target_`` configs to their own checks.
``+key=value`` can add keys even to a structured node (Hydra's force-add), so the unknown-key
check of the whole tree also happens in ``validate``, against these same dataclasses.

Every key of the run config is declared here: a new trainer or top-level key needs a field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING


@dataclass
class TrainerSchema:
    epochs: Optional[int] = None
    device: str = "auto"
    train_limit: Optional[int] = None
    eval_limit: Optional[int] = None
    log_every: int = 50
    optimizer_impl: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    eval_batch_size: int = 1000
    checkpoint: bool = True
    progress: Any = "auto"  # auto | true | false (a union OmegaConf cannot type)
    # Keys other branches add (issue 8 §2: keep_checkpoint; SLURM thread budgets: threads = auto | N).
    keep_checkpoint: bool = False
    threads: Any = "auto"


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
    seed: int = 0
    resume: bool = False
    logger: Any = None        # the logger group (none | tensorboard | wandb), checked by its own code


@dataclass
class ImageTaskSchema:
    name: str = MISSING
    kind: str = "image"
    dataset: Any = MISSING    # a dataset name, a user's file (.pt) or a mapping with _target_ (a user's dataset)
    model: Any = MISSING      # a model name, or a mapping with _target_ (a user's model)
    batch_size: int = MISSING
    epochs: int = MISSING
    l2_reg: float = 0.0
    augment: bool = False
    crop_padding: int = 4
    color_jitter: Any = None  # null or {brightness, contrast, saturation} (checked by the task)
    normalize: Any = None     # dataset | none | {mean, std} (checked by the task)
    drop_last: bool = True
    valid_size: int = 10000
    train_eval_size: int = 10000
    target: Optional[float] = None
    target_metric: Optional[str] = None
    metric: Optional[str] = None
    select_metric: Optional[str] = None  # what report/best select on where there is no validation split
    equivalence_margin: Any = None  # report's margin m: a number (the task's metric) or {METRIC: M}
    lr_schedule: Any = None


@dataclass
class SyntheticTaskSchema:
    name: str = MISSING
    kind: str = "synthetic"
    problem: str = MISSING
    batch_size: int = MISSING
    epochs: int = MISSING
    target: Optional[float] = None
    target_metric: Optional[str] = None
    metric: Optional[str] = None
    select_metric: Optional[str] = None  # what report/best select on where there is no validation split
    equivalence_margin: Any = None  # report's margin m: a number (the task's metric) or {METRIC: M}
    lr_schedule: Any = None
    noise_level: Optional[float] = None   # quadratic_deep, rosenbrock_2d
    train_size: Optional[int] = None      # quadratic_deep, rosenbrock_2d
    start: Optional[List[float]] = None   # rosenbrock_2d
    steps_per_epoch: Optional[int] = None  # reddi_*
    x0: Optional[float] = None            # reddi_*


# Keys each synthetic problem reads (beyond the common ones), so a key of another problem is refused.
SYNTHETIC_KEYS = {"quadratic_deep": ("noise_level", "train_size"),
                  "rosenbrock_2d": ("noise_level", "train_size", "start"),
                  "reddi_online": ("steps_per_epoch", "x0"),
                  "reddi_stochastic": ("steps_per_epoch", "x0")}
SYNTHETIC_COMMON = ("name", "kind", "problem", "batch_size", "epochs", "target", "target_metric", "metric",
                    "select_metric", "equivalence_margin", "lr_schedule")


@dataclass
class ConstantScheduleSchema:
    name: str = "constant"
    warmup_steps: int = 0


@dataclass
class InverseSqrtScheduleSchema:
    name: str = "inverse_sqrt"
    warmup_steps: int = 0


@dataclass
class StepScheduleSchema:
    name: str = "step"
    milestones: List[int] = field(default_factory=lambda: [100, 150])
    gamma: float = 0.1
    warmup_steps: int = 0


@dataclass
class CosineScheduleSchema:
    name: str = "cosine"
    min_factor: float = 0.0
    warmup_steps: int = 0


TASK_SCHEMAS = {"image": ImageTaskSchema, "synthetic": SyntheticTaskSchema}
SCHEDULE_SCHEMAS = {"constant": ConstantScheduleSchema, "inverse_sqrt": InverseSqrtScheduleSchema,
                    "step": StepScheduleSchema, "cosine": CosineScheduleSchema}
SCHEMA_NAME = "adaxbench_schema"


def register() -> None:
    """Put the run-config schema into Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=RunConfig, provider="adaxbench")
