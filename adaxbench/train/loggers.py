"""Live views of a run besides its record: TensorBoard, Weights & Biases, a console line.

``metrics.parquet`` stays the record; a logger only mirrors what the runner logs.  The
runner calls, in this order:

* ``start(run_dir, config, step)`` once the run dir exists (``step`` > 0 on resume);
* ``log(split, values, step, epoch)`` for every metric row it records: minibatch rows on log
  steps (split ``batch``) and full evaluations (``train``, ``valid``, ``test``);
* ``epoch_end(epoch, epochs_total, step, final, train_seconds)`` after each epoch's evaluation;
* ``close(status)`` when the run ends, whatever the status.

Choose one with ``logger=none|tensorboard|wandb`` (``configs/logger/``), your own with
``logger._target_=mypkg.MyLogger`` (a ``RunLogger`` subclass; the other ``logger.*`` keys are its
constructor's arguments), or several with ``logger=many`` and ``logger.loggers=[...]`` (a list of
such configs).  ``start``'s config is the run's resolved config plus ``optimizer_hparams`` (every
hyperparameter of the built optimizer).  The console line per epoch is added whenever the
progress bar is off (not a terminal, or ``trainer.progress=false``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger("adaxbench")

LOGGERS = ("none", "tensorboard", "wandb", "many")
# The package each logger needs, and the extra that installs it.
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


class RunLogger:
    """Every hook a no-op: subclass and override what you need."""

    def start(self, run_dir: Path, config: Mapping[str, Any], step: int) -> None:
        pass

    def log(self, split: str, values: Mapping[str, float], step: int, epoch: float) -> None:
        pass

    def epoch_end(self, epoch: int, epochs_total: int, step: int, final: Mapping[str, float],
                  train_seconds: float) -> None:
        pass

    def close(self, status: str) -> None:
        pass


class ConsoleLogger(RunLogger):
    """One line per epoch: where the run is and its evaluation metrics."""

    def __init__(self, name: str = ""):
        self.name = name
        self.extra: dict[str, Any] = {}

    def start(self, run_dir, config, step) -> None:
        # Whose line it is: a pack writes its members' epoch lines to their own adaxbench.log only.
        self.extra = {"run_dir": Path(run_dir), "epoch_line": True}

    def epoch_end(self, epoch, epochs_total, step, final, train_seconds) -> None:
        shown = " ".join(f"{k} {v:.4g}" for k, v in final.items() if k.split("/")[0] in ("train", "valid", "test"))
        log.info("%sepoch %d/%d step %d %s (%.1f s training)", f"{self.name} " if self.name else "", epoch,
                 epochs_total, step, shown, train_seconds, extra=self.extra)


def hparams_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The values that tell runs apart in a table (TensorBoard's HParams): task and optimizer names,
    seed, the optimizer's effective hyperparameters, lr schedule and epochs, as scalars and strings."""
    out: dict[str, Any] = {"task": (config.get("task") or {}).get("name"),
                           "optimizer": (config.get("optimizer") or {}).get("name"), "seed": config.get("seed")}
    for key, value in (config.get("optimizer_hparams") or {}).items():
        out[f"optimizer.{key}"] = value
    for key, value in (config.get("lr_schedule") or {}).items():
        out[f"lr_schedule.{key}"] = value
    out["trainer.epochs"] = (config.get("trainer") or {}).get("epochs")
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in out.items()}


class TensorBoardLogger(RunLogger):
    """Event files in the run dir, one scalar per SPLIT/METRIC, against the optimizer step; the
    hyperparameters and final metrics in the HParams plugin's table."""

    def start(self, run_dir, config, step) -> None:
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        # On resume, events after the checkpoint's step are replayed: purge the stale ones.
        self.writer = SummaryWriter(str(run_dir), purge_step=step + 1 if step else None)
        self.hparams = hparams_of(config)
        self.final: dict[str, float] = {}
        if not step:
            self.writer.add_text("config", "```\n" + yaml.safe_dump(dict(config), sort_keys=False) + "```", 0)

    def log(self, split, values, step, epoch) -> None:
        for metric, value in values.items():
            self.writer.add_scalar(f"{split}/{metric}", value, step)

    def epoch_end(self, epoch, epochs_total, step, final, train_seconds) -> None:
        self.final = dict(final)
        self.writer.flush()

    def close(self, status) -> None:
        from tensorboard.plugins.hparams.api_pb2 import DATA_TYPE_BOOL
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
        from torch.utils.tensorboard.summary import hparams

        # The HParams session of this run: its columns are the final SPLIT/METRIC scalars above.
        values = {**self.hparams, "status": status}
        metrics = {k: v for k, v in self.final.items() if isinstance(v, float) and math.isfinite(v)}
        booleans = {k: v for k, v in values.items() if isinstance(v, bool)}
        for summary in hparams(values, metrics):
            # torch stores a bool as the number 1.0 or 0.0 (bool is an int): make it the bool it is.
            content = summary.value[0].metadata.plugin_data
            data = HParamsPluginData.FromString(content.content)
            for info in data.experiment.hparam_infos:
                if info.name in booleans:
                    info.type = DATA_TYPE_BOOL
            for name, value in booleans.items():
                if name in data.session_start_info.hparams:
                    data.session_start_info.hparams[name].bool_value = value
            content.content = data.SerializeToString()
            self.writer.file_writer.add_summary(summary)
        self.writer.close()


class WandbLogger(RunLogger):
    """A W&B run per run dir (offline unless ``logger.mode`` or ``WANDB_MODE`` says otherwise);
    its files go to ``RUN_DIR/wandb``.  A resumed run continues the same W&B run."""

    def __init__(self, project: str = "adaxbench", entity: str | None = None, mode: str | None = None,
                 group: str | None = None, tags: list[str] | None = None, name: str | None = None):
        self.options = {"project": project, "entity": entity, "group": group, "tags": list(tags or []) or None,
                        "name": name}
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"

    def start(self, run_dir, config, step) -> None:
        import wandb

        run_dir = Path(run_dir).resolve()
        group = self.options["group"] or sweep_group()
        run_id = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]  # same dir, same W&B run
        name = self.options["name"] or "/".join(str(x) for x in (
            (config.get("task") or {}).get("name"), (config.get("optimizer") or {}).get("name"),
            f"seed{config.get('seed')}"))
        self.run = wandb.init(**{**self.options, "name": name, "group": group}, config=dict(config),
                              dir=str(run_dir), id=run_id,
                              resume="allow", mode=self.mode, reinit="create_new",
                              settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))

    def log(self, split, values, step, epoch) -> None:
        self.run.log({**{f"{split}/{k}": v for k, v in values.items()}, "epoch": epoch}, step=step)

    def close(self, status) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status in ("completed", "diverged") else 1)


class Loggers(RunLogger):
    """Fans every call out to several loggers.  A logger that fails is reported once and
    dropped: the run and its record go on."""

    def __init__(self, loggers: list[RunLogger]):
        self.loggers = loggers

    def _each(self, method: str, *args: Any) -> None:
        for logger in list(self.loggers):
            try:
                getattr(logger, method)(*args)
            except Exception as e:
                log.warning("logger %s failed in %s (%s: %s); it is switched off for this run",
                            type(logger).__name__, method, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                self.loggers.remove(logger)

    def start(self, *args) -> None:
        self._each("start", *args)

    def log(self, *args) -> None:
        self._each("log", *args)

    def epoch_end(self, *args) -> None:
        self._each("epoch_end", *args)

    def close(self, *args) -> None:
        self._each("close", *args)


def sweep_group() -> str | None:
    """The sweep dir of a multirun job (its runs share a W&B group), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return str(HydraConfig.get().sweep.dir)[-128:]
    except Exception:  # no Hydra (the Python API): no sweep
        pass
    return None


def _logger_class(cfg: Mapping[str, Any], key: str) -> type:
    from ..errors import ConfigError
    from ..plugins import arguments, check_arguments, locate

    cls = locate(cfg["_target_"], key)
    if not (isinstance(cls, type) and issubclass(cls, RunLogger)):
        raise ConfigError(f"{key}._target_={cfg['_target_']} is not a RunLogger subclass "
                          "(adaxbench.train.loggers.RunLogger: start, log, epoch_end, close)")
    check_arguments(cls.__init__, arguments(cfg), key, positional=1)
    return cls


def check_logger(cfg: Mapping[str, Any], key: str = "logger") -> None:
    """One-line ``ConfigError`` for an unknown logger or a missing package."""
    from ..errors import ConfigError, not_a_key

    if "_target_" in cfg:
        _logger_class(cfg, key)
        return
    name = cfg.get("name", "none")
    if name not in LOGGERS:
        raise ConfigError(f"{key}={name!r} is unknown; accepted: {', '.join(LOGGERS)} "
                          f"(or {key}._target_=your RunLogger class)")
    if name == "many":
        items = cfg.get("loggers")
        if not isinstance(items, list) or not all(isinstance(c, Mapping) for c in items):
            raise ConfigError(f"{key}.loggers must be a list of logger configs, e.g. "
                              "[{name:tensorboard},{_target_:mypkg.MyLogger}], got " + repr(items))
        for i, item in enumerate(items):
            check_logger(item, f"{key}.loggers[{i}]")
        return
    allowed = {"none": ("name",), "tensorboard": ("name",), "wandb": ("name", "project", "entity", "mode", "group",
                                                                    "tags")}[name]
    unknown = [k for k in cfg if k not in allowed]
    if unknown:
        raise not_a_key(unknown[0], f"a key of the {name} logger", list(allowed), f"{key}.")
    package = PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"logger={name} needs the {package} package: pip install 'adaxbench[{name}]'")
    if name == "wandb" and cfg.get("mode") not in (None, "online", "offline", "disabled"):
        raise ConfigError(f"{key}.mode must be online, offline, disabled or null, got {cfg.get('mode')!r}")


def _build(cfg: Mapping[str, Any]) -> list[RunLogger]:
    cfg = dict(cfg)
    if "_target_" in cfg:
        from ..plugins import arguments
        return [_logger_class(cfg, "logger")(**arguments(cfg))]
    name = cfg.pop("name", "none")
    if name == "tensorboard":
        return [TensorBoardLogger()]
    if name == "wandb":
        return [WandbLogger(**cfg)]
    if name == "many":
        return [logger for item in cfg.get("loggers") or [] for logger in _build(item)]
    return []


def build_loggers(cfg: Mapping[str, Any] | None, console: bool, run_name: str = "",
                  extra: list[RunLogger] | None = None) -> Loggers:
    """The loggers of a run: those ``logger`` names, ``extra`` ones (the Python API's ``logger``
    argument), plus the console line when ``console``."""
    loggers: list[RunLogger] = [ConsoleLogger(run_name)] if console else []
    return Loggers(loggers + _build(cfg or {}) + list(extra or []))
