"""The Python API: ``adaxbench.run``, ``adaxbench.load_runs``, ``adaxbench.report``.

They leave exactly the records of the command line (a run dir with run.json,
metrics.parquet, checkpoint.pt and .hydra/), so runs started from Python and from the
shell mix freely in ``load_runs`` and ``report``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

# Hydra's own syntax of a plain string value (anything else gets quoted in an override).
_BARE = re.compile(r"^[A-Za-z_/.:][\w/.:\-]*$")


@dataclass
class RunOutcome:
    """How a run ended: ``status`` (completed, diverged, failed), its ``run_dir``, the
    ``error`` line if any, and the ``final`` metrics ({"test/accuracy": ..., ...})."""

    status: str
    run_dir: Path
    error: str | None = None
    final: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self):
        """The run's metrics.parquet as a pandas DataFrame (step, epoch, time, split, metric, value)."""
        import pandas as pd

        return pd.read_parquet(self.run_dir / "metrics.parquet")


def _value(v: Any) -> str:
    """A Python value in Hydra's override syntax."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v.items()) + "}"
    s = _literal(str(v))
    return s if _BARE.match(s) and s not in ("null", "true", "false") else "'" + s.replace("'", "\\'") + "'"


def _literal(v: Any) -> Any:
    """A string kept as written: ``${`` escaped, so a name is never read as an interpolation."""
    if isinstance(v, str):
        return v.replace("${", "\\${")
    if isinstance(v, (list, tuple)):
        return [_literal(x) for x in v]
    return {k: _literal(x) for k, x in v.items()} if isinstance(v, dict) else v


def _target(obj: Any, what: str) -> str:
    """The import path of a class or function, which must be importable by that path."""
    from .train.validate import ConfigError

    qualname = getattr(obj, "__qualname__", "")
    if "<locals>" in qualname or not getattr(obj, "__module__", None):
        raise ConfigError(f"{what} {qualname or obj!r} is defined inside a function; define it at module level "
                          "so it can be imported by name")
    return f"{obj.__module__}.{qualname}"


def _hyperparameter(key: str, v: Any) -> Any:
    """A hyperparameter as config: a class (SAM's ``base_optimizer=torch.optim.SGD``) becomes the
    config the command line writes for it; anything a config cannot hold is one line."""
    from .train.validate import ConfigError

    if isinstance(v, type):
        return {"_target_": "hydra.utils.get_class", "path": _target(v, f"hyperparameter {key}")}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return type(v)(_hyperparameter(key, x) for x in v)
    if isinstance(v, dict):
        return {k: _hyperparameter(f"{key}.{k}", x) for k, x in v.items()}
    raise ConfigError(f"hyperparameter {key}={type(v).__name__} object cannot be recorded in a config; pass "
                      "numbers, strings, lists, dicts or a class (e.g. base_optimizer=torch.optim.SGD)")


# The command line's spelling of the switch for keys only an optimizer's **kwargs take (run(allow_extra=True)).
_CLI_ALLOW_EXTRA = "set optimizer.allow_extra=true"


def _run_loggers(logger: Any) -> list:
    """The RunLogger instances among ``run(logger=...)`` (a name is a config, chosen by override)."""
    from .train.loggers import RunLogger
    from .train.validate import ConfigError

    if logger is None or isinstance(logger, str):
        return []
    items = list(logger) if isinstance(logger, (list, tuple)) else [logger]
    for item in items:
        if not isinstance(item, RunLogger):
            raise ConfigError(f"logger must be a logger config name, a RunLogger instance or a list of them, "
                              f"got {type(item).__name__}")
    return items


def _default_run_dir() -> Path:
    """runs/DATE/TIME as on the command line; a suffix when several runs start in one second."""
    now = datetime.now()
    base = Path("runs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    candidate, i = base, 0
    while candidate.exists():
        i += 1
        candidate = base.with_name(f"{base.name}_{i}")
    return candidate


def _ensure_console() -> None:
    """Show the runner's INFO lines (e.g. the line per epoch) when the program configured no
    logging; a program that did configure it keeps full control."""
    logger = logging.getLogger("adaxbench")
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[adaxbench] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def compose(overrides: Sequence[str] = (), config_dir: str | os.PathLike | None = None):
    """The run config ``adaxbench run OVERRIDES`` would get (``config_dir``: like --config-dir,
    your own optimizer/, task/, experiment/ yaml files next to ours)."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from .train.compose import parse_overrides
    from .train.preflight import check_user_configs, composition_error, hydra_error_line
    from .train.validate import ConfigError

    overrides = _string_list(overrides, "overrides")
    try:
        keys = {o.key_or_group for o in parse_overrides(overrides)}
    except HydraException as e:
        raise ConfigError(hydra_error_line(e)) from None
    if "hydra.run.dir" in keys:  # would be ignored, not followed
        raise ConfigError("hydra.run.dir is not an override of adaxbench.run: pass run_dir=... instead")
    if config_dir is not None:
        path = Path(config_dir).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"config_dir {config_dir}: no such directory")
        check_user_configs(str(path))
        overrides.append(f"hydra.searchpath=[file://{path}]")
    with initialize_config_module(config_module="adaxbench.configs", version_base="1.3"):
        try:
            cfg = hydra_compose(config_name="config", overrides=overrides)
        except Exception as e:  # in the command line's words (as preflight says it)
            raise composition_error(e, GlobalHydra.instance().hydra, "config", parse_overrides(overrides)) from None
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def run(optimizer: str | type | None = None, overrides: Sequence[str] = (), *, task: str | type | None = None,
        name: str | None = None, run_dir: str | os.PathLike | None = None, config_dir: str | os.PathLike | None = None,
        resume: bool = False, logger: Any = None, **hyperparameters: Any) -> RunOutcome:
    """Train one run and record it like ``adaxbench run`` does.

    ``optimizer``: a config name (``"adax"``) or a ``torch.optim.Optimizer`` subclass;
    ``hyperparameters`` (``lr=1e-3``, ``betas=(0.9, 0.99)``...) are its constructor arguments.
    ``overrides``: anything else, as on the command line (``["task=quadratic_deep", "seed=1"]``).
    ``task``: a task config name, or your own task class (see docs/how-to/your-task.md).
    ``name``: the optimizer's recorded name (default: the config name or the class name).
    ``run_dir``: default ``runs/DATE/TIME``; ``resume=True`` continues a run dir.
    ``logger``: a logger config name (``"tensorboard"``), or a ``RunLogger`` instance or a list of them
    (your own, called with the run's metrics as they are logged).

    Returns a ``RunOutcome``.  A bad config raises ``ConfigError`` (one line), before any
    training; a run that diverges or crashes is a recorded outcome, not an exception.
    """
    import torch
    from omegaconf import OmegaConf, open_dict

    from .rundir import read_record
    from .train.runner import Interrupted, RunLocked, run_in_dir
    from .train.validate import ConfigError, check_config, check_output_dir

    overrides = _string_list(overrides, "overrides")
    if not (optimizer is None or isinstance(optimizer, str)
            or (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer))):
        raise ConfigError(f"optimizer must be a config name (e.g. 'adax') or a torch.optim.Optimizer subclass, "
                          f"got {optimizer!r}")
    if not (task is None or isinstance(task, str) or isinstance(task, type) or callable(task)):
        raise ConfigError(f"task must be a task config name (e.g. 'quadratic_deep') or your task class, got {task!r}")
    hyperparameters = {k: _hyperparameter(k, v) for k, v in hyperparameters.items()}
    extra: list[str] = []
    if isinstance(task, str):
        extra.append(f"task={task}")
    elif task is not None:
        extra += ["task=custom", f"task._target_={_target(task, 'task')}"]
    if isinstance(optimizer, str):
        extra.append(f"optimizer={optimizer}")
    if isinstance(logger, str):
        extra.append(f"logger={logger}")
    instances = _run_loggers(logger)
    extra += [f"++optimizer.{k}={_value(v)}" for k, v in hyperparameters.items()]
    if name is not None:
        extra.append(f"++optimizer.name={_value(name)}")
    if optimizer is None or isinstance(optimizer, str):
        cfg = compose(extra + overrides, config_dir)
    else:  # a class: its config is exactly its name, path and the given hyperparameters
        target = _target(optimizer, "optimizer")
        cfg = compose([o for o in extra if not o.startswith("++optimizer.")] + overrides, config_dir)
        with open_dict(cfg):
            cfg.optimizer = OmegaConf.create(_literal({"name": name or optimizer.__name__, "_target_": target,
                                                       **hyperparameters}))
        # The command line that gives the same config (`optimizer=custom`, see docs/tutorials/your-optimizer.md).
        extra = ["optimizer=custom", f"optimizer._target_={target}"] + extra
    recorded = extra + overrides

    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir()
    check_output_dir(run_dir, "run_dir")
    try:
        check_config(cfg)  # before anything is written: a bad config leaves no run dir behind
    except ConfigError as e:  # its hint for keys only **kwargs take, as this function takes it
        raise ConfigError(str(e).replace(_CLI_ALLOW_EXTRA, "pass allow_extra=True")) from None

    def save_hydra_files() -> None:  # once admitted, a new run: Hydra's record of its config, as the CLI leaves it
        if (run_dir / "run.json").exists():
            return
        hydra_dir = run_dir / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, hydra_dir / "config.yaml")
        OmegaConf.save(OmegaConf.create(recorded), hydra_dir / "overrides.yaml")

    _ensure_console()
    try:
        result = run_in_dir(cfg, run_dir, recorded, resume=resume, raise_config_errors=True, loggers=instances,
                            accepted=save_hydra_files)
    except RunLocked as e:
        raise ConfigError(f"{run_dir}: {e}; wait for it, or choose another run_dir") from None
    except Interrupted as e:
        raise KeyboardInterrupt(f"run interrupted ({e}); progress saved in {run_dir}") from None
    record, _ = read_record(run_dir)
    return RunOutcome(result.status, run_dir, result.error, record.final if record is not None else {})


def _string_list(values: Any, what: str) -> list[str]:
    from .train.validate import ConfigError

    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(f"{what} must be a list of strings such as ['seed=1', 'trainer.epochs=3'], got {values!r}")
    return [str(v) for v in values]


def load_runs(*paths: str | os.PathLike):
    """Every run under ``paths`` (run dirs, sweep dirs, run.json files) as one pandas
    DataFrame, a row per run: ``run_dir``, ``status``, ``error``, ``task``, ``optimizer``,
    ``seed``, the resolved config flattened (``optimizer.lr``, ``task.batch_size``...) and the
    final metrics (``test/accuracy``, ``valid/loss``...).  Unreadable runs are rows too, with
    status ``unreadable``."""
    import pandas as pd

    from .report.load import load_runs as read_runs

    rs = read_runs(paths or ("runs",))
    info = rs.runs.reset_index(drop=True)
    head = pd.DataFrame({"run_dir": info["path"], "status": info["status"],
                         "error": info["error"].where(info["error"] != "", None), "task": info["task"],
                         "optimizer": info["optimizer"], "seed": info["seed"]})
    config = pd.json_normalize([_lists_as_tuples(c) for c in rs.configs], sep=".")
    config = config.drop(columns=[c for c in config.columns if c in head.columns], errors="ignore")
    final = info[[c for c in info.columns if c.startswith("final.")]]
    final.columns = [c[len("final."):] for c in final.columns]
    return pd.concat([head, config.reset_index(drop=True), final.reset_index(drop=True)], axis=1)


def _lists_as_tuples(d: Any) -> Any:
    # Lists (betas, milestones) as tuples: hashable, so the frame can be grouped by them.
    if isinstance(d, dict):
        return {k: _lists_as_tuples(v) for k, v in d.items()}
    return tuple(_lists_as_tuples(v) for v in d) if isinstance(d, list) else d


def report(*paths: str | os.PathLike, out: str | os.PathLike = "report", **options: Any):
    """Write the comparison report of the runs under ``paths`` into ``out``, as
    ``adaxbench report PATH... --out OUT`` does.  ``options``: ``metric``, ``x``, ``target``,
    ``baseline``, ``formats``, ``select``, ``figures``, ``margin``, ``family`` (the CLI's flags).  Returns the
    ``Report`` (``out``, ``files``, ``summary``, ``aggregate``, ``excluded``)."""
    from .report.render import build_report

    return build_report(paths, out=out, **options)
