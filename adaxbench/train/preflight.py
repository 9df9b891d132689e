"""``adaxbench run`` checks everything before the first job starts, through Hydra's own machinery.

The command line is read and its jobs composed as the run will (``compose``).  Every
job of a sweep is composed (``load_sweep_config``, as the launchers do) and given to
``validate.check_config``, the check the run itself makes, so ``-m optimizer.lr=-1,0.01`` fails
before the good job trains.  Any failure becomes one line (``hydra_error_line``); with
``HYDRA_FULL_ERROR=1`` the original exception propagates with its traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import typing
import unicodedata
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException, OverrideParseException, SearchPathException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ..errors import did_you_mean, first_line, not_a_key
from .compose import (CONFIG_NAME, full_error, hydra_app, parse_args, parse_overrides, run_memo, search_space_jobs,
                      sweep_jobs, sweep_params)
from .schema import RunConfig, TaskSchema
from .validate import ConfigError, check_config, check_output_dir, check_value, describe, top_level_hint

# The launchers of the optional `cluster` extra (hydra-joblib-launcher, hydra-submitit-launcher).
CLUSTER_LAUNCHERS = ("joblib", "submitit_local", "submitit_slurm", "slurm_gpu")


def check_config_once(cfg: DictConfig) -> tuple[type, dict[str, Any]]:
    """``check_config``; inside ``composing_once`` once per resolved config (the launch checks again
    every job that preflight checked).  Failures are raised each time."""
    checked = run_memo()
    if checked is None:
        return check_config(cfg)
    try:
        key = json.dumps({k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                          for k, v in cfg.items() if k != "hydra"}, sort_keys=True, default=repr)
    except Exception:  # an interpolation that does not resolve: check_config says so
        return check_config(cfg)
    if key not in checked:
        checked[key] = check_config(cfg)
    cls, kwargs = checked[key]
    return cls, copy.deepcopy(kwargs)


def _check_direction(cfg: DictConfig) -> None:
    """An optimizing sweeper's direction must agree with the metric its jobs return (``best``'s
    selection metric: accuracies are maximised, losses minimised)."""
    direction = cfg.hydra.sweeper.get("direction")
    direction = getattr(direction, "name", direction)  # the sweeper's default is its enum, Direction.minimize
    check_value("hydra.sweeper.direction", direction, choices=("minimize", "maximize"), null=True,
                says="minimize or maximize (adaxbench returns one score per run: its selection metric)")
    task = cfg.get("task")
    if direction is None or not isinstance(task, DictConfig) or "_target_" in task:
        return  # no direction, or a user's task, which logs what it logs
    metric = task.get("select_metric") or task.get("metric") or \
        ("valid/accuracy" if task.get("kind") == "image" else "train/loss")
    wants = "maximize" if "acc" in str(metric).split("/")[-1].lower() else "minimize"
    if direction != wants:
        raise ConfigError(f"hydra.sweeper.direction={direction}, but each job returns its {metric.split('/')[-1]} "
                          f"(the selection metric of task {task.get('name')}), which is best "
                          f"{'high' if wants == 'maximize' else 'low'}: use hydra.sweeper.direction={wants}")


def _forgot_multirun(cfg: DictConfig, parsed: list[Any]) -> None:
    """``adaxbench run experiment=beta2_ablation`` without -m would train one job of 27."""
    given = {o.key_or_group for o in parsed}
    loose = [o.get_key_element() for o in sweep_params(cfg) if o.key_or_group not in given]
    if loose:
        raise ConfigError(f"this config sweeps over {', '.join(loose)} (hydra.sweeper.params): run it with -m, "
                          f"or set {' and '.join(f'{k}=...' for k in loose)} to run one job")


def _check_job(cfg: DictConfig) -> None:
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} interpolations resolve as in the job
    check_config_once(cfg)


def preflight(args: list[str]) -> None:
    """Compose and check what ``adaxbench run ARGS`` will run; raise on the first problem."""
    ns = parse_args(args)
    if ns.help or ns.hydra_help or ns.shell_completion or ns.info or ns.experimental_rerun:
        return
    commands = ns.run + (ns.cfg is not None) + ns.multirun
    if commands > 1:
        raise ConfigError("only one of --run, --multirun (-m) and --cfg can be given")
    if ns.resolve and ns.cfg is None:
        raise ConfigError("--resolve works only together with --cfg")
    config_name = ns.config_name or CONFIG_NAME
    overrides = list(ns.overrides)
    parsed = parse_overrides(overrides)
    for directory in user_config_dirs(ns.config_dir, parsed):
        check_user_configs(directory)
    with hydra_app(ns.config_dir, ns.config_path) as hydra:
        # The mode as hydra.main settles it, and the override it adds then: so the configs composed
        # here are those the launch composes (``composing_once`` hands them over).
        mode = hydra.get_mode(config_name, overrides)
        if not ns.cfg and (mode is None or (ns.multirun and mode == RunMode.RUN)):
            mode = RunMode.MULTIRUN if ns.multirun else RunMode.RUN
            overrides.append(f"hydra.mode={mode.name}")
        mode = mode or RunMode.RUN
        try:
            cfg = hydra.compose_config(config_name=config_name, overrides=overrides, run_mode=mode)
        except Exception as e:
            if full_error():
                raise
            raise composition_error(e, hydra, config_name, parsed) from None
        if ns.cfg:  # printing the config: composition is all it needs
            return
        if mode == RunMode.RUN:
            _forgot_multirun(cfg, parsed)
            _check_job(cfg)
            check_output_dir(cfg.hydra.run.dir, "hydra.run.dir")
            return
        check_output_dir(cfg.hydra.sweep.dir, "hydra.sweep.dir")  # before composing every job
        check_launcher_values(cfg.hydra.launcher)
        jobs = sweep_jobs(cfg, hydra.config_loader)
        if jobs is None:  # another sweeper (Optuna) proposes its jobs as it goes: check its search space
            _check_direction(cfg)
            jobs = search_space_jobs(cfg, hydra.config_loader)
        for index, job in enumerate(jobs or []):
            try:
                job_cfg = hydra.config_loader.load_sweep_config(cfg, list(job))
                with open_dict(job_cfg):  # as the launchers number their jobs (seed=${hydra:job.num})
                    job_cfg.hydra.job.num = job_cfg.hydra.job.id = index
                _check_job(job_cfg)
            except Exception as e:
                if full_error():
                    raise
                said = composition_error(e, hydra, config_name, parse_overrides(list(job)))
                typed = [o.removesuffix("=null") if o.startswith("~") else o for o in job]  # the sweeper's ~KEY=null
                raise ConfigError(f"{said} (in the sweep job {' '.join(typed)})") from None


# Launcher settings that count something (jobs, CPUs, minutes): a positive integer each.
LAUNCHER_COUNTS = ("timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "nodes", "mem_gb",
                   "array_parallelism", "max_num_timeout", "max_pack")


def check_launcher_values(launcher: DictConfig) -> None:
    """The launcher's counts, read as the launcher will read them (``${oc.env:...}`` resolved):
    ``ADAXBENCH_SLURM_TIME_MIN=abc`` or ``hydra.launcher.n_jobs=0`` would fail after the sweep dir
    exists, in the launcher's own code."""
    for key in [key for key in [*LAUNCHER_COUNTS, "n_jobs"] if key in launcher]:
        raw = OmegaConf.to_container(launcher, resolve=False)[key]
        env = re.match(r"\$\{oc\.env:(\w+)", raw) if isinstance(raw, str) else None
        try:
            value = launcher[key]
        except Exception:  # a typed field that cannot hold the value (Hydra's launcher schemas)
            value = os.environ.get(env.group(1), raw) if env else raw
        if key == "n_jobs" and (value == 0 or not isinstance(value, (int, type(None))) or isinstance(value, bool)):
            raise ConfigError(f"hydra.launcher.n_jobs must be a non-zero integer (-1: all cores), got {value!r}")
        if key != "n_jobs" and value is not None:
            try:
                check_value(f"hydra.launcher.{key}", value, int, low=0 if key == "max_num_timeout" else 1)
            except ConfigError as e:
                raise ConfigError(f"{e}{f' ({env.group(1)})' if env else ''}") from None


def user_config_dirs(config_dir: str | None, parsed: list[Any]) -> list[str]:
    """The user's own config dirs: ``--config-dir`` and ``hydra.searchpath=[file://...]``."""
    dirs = [config_dir] if config_dir else []
    for o in parsed:
        if o.key_or_group == "hydra.searchpath" and isinstance(o.value(), list):
            dirs += [str(p)[len("file://"):] for p in o.value() if str(p).startswith("file://")]
    return [os.path.abspath(os.path.expanduser(d)) for d in dirs if os.path.isdir(os.path.expanduser(d))]


# A config file expanding (YAML aliases followed) to more nodes than this is refused: an alias
# bomb of a few lines would otherwise expand without end inside Hydra.
MAX_CONFIG_NODES = 100_000


def check_user_configs(directory: str) -> None:
    """Every YAML file under a user's config dir: UTF-8, a mapping, bounded when its aliases are
    expanded, and not naming itself in its defaults list.  Hydra's own messages for these
    are opaque (or it recurses, or hangs)."""
    for root, _, files in os.walk(directory):
        for name in sorted(f for f in files if f.endswith((".yaml", ".yml"))):
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                data = f.read()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                                  "save it as UTF-8") from None
            try:
                node = yaml.compose(text, Loader=yaml.SafeLoader)
            except yaml.YAMLError:
                continue  # Hydra reports the syntax error with its line (hydra_error_line)
            if node is None:
                continue
            if _expanded_size(node, {}) > MAX_CONFIG_NODES:
                raise ConfigError(f"{path} expands to more than {MAX_CONFIG_NODES} values (YAML aliases); "
                                  "refusing to load it")
            if not isinstance(node, yaml.MappingNode):
                kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
                group = os.path.relpath(path, directory)
                raise ConfigError(f"{group} is {kind}; a config file must be a mapping of keys (in {directory})")
            stem, group = os.path.splitext(name)[0], os.path.relpath(root, directory)
            for key, value in node.value:
                if key.value == "defaults" and isinstance(value, yaml.SequenceNode):
                    names = {item.value for item in value.value if isinstance(item, yaml.ScalarNode)}
                    if names & {stem, f"/{group}/{stem}"}:
                        raise ConfigError(f"{path} includes itself in its defaults list")


def _expanded_size(node: Any, sizes: dict) -> int:
    """How many nodes ``node`` becomes once every alias is copied (memoised: linear time)."""
    if id(node) not in sizes:
        sizes[id(node)] = 1  # (a recursive alias counts once)
        children = node.value if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) else []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for item in children
                                  for child in (item if isinstance(item, tuple) else (item,)))
    return sizes[id(node)]


def composition_error(e: BaseException, hydra: Any, config_name: str, parsed: list[Any]) -> ConfigError:
    """One line for a command line's config that does not compose (``adaxbench run``'s and the API's):
    the keys or the choices that are there."""
    if isinstance(e, RecursionError):
        return ConfigError("the configs include each other without end: a defaults list names its own "
                           "config (directly or through others)")
    if str(e).startswith("Could not override '"):
        return ConfigError(_not_in_config(str(e).split("'")[1], hydra, config_name, parsed))
    nulled = [o.key_or_group for o in parsed if not o.is_delete() and o.value() is None and "." not in o.key_or_group]
    if str(e).startswith("Config group override must be a string") and nulled:
        return ConfigError(_group_set_to_null(nulled[0], hydra))
    return ConfigError(hydra_error_line(e))


def _group_set_to_null(group: str, hydra: Any) -> str:
    if group == "lr_schedule":
        return "lr_schedule=null: leave lr_schedule out (or write ~lr_schedule) to use the task's own schedule"
    try:
        options = ", ".join(sorted(hydra.config_loader.get_group_options(group)))
    except Exception:
        options = "see `adaxbench list`"
    optional = "" if group in ("task", "optimizer") else f", or leave {group} out"
    return f"{group}=null: a config group is chosen by name; choose one of {options}{optional}"


def _not_in_config(key: str, hydra: Any, config_name: str, parsed: list[Any]) -> str:
    """``optimizer.foo=1`` / ``trainer.epochz=3`` / ``lr=0.1``: name the keys that are there."""
    parent, _, leaf = key.rpartition(".")
    if parent == "lr_schedule":
        if leaf == "_target_":  # a user's own schedule (a torch.optim.lr_scheduler class or step -> factor)
            return f"{key}: no lr_schedule is chosen, so there is nothing to override; write +{key}=CLASS"
        return (f"{key}: no lr_schedule is chosen (the task's own schedule is used); choose one first, e.g. "
                f"lr_schedule=constant {key}=VALUE (see `adaxbench list`)")
    deleted = next((o.key_or_group for o in parsed if o.is_delete() and f"{key}.".startswith(f"{o.key_or_group}.")), None)
    if deleted is not None:
        return f"{key} is set, and ~{deleted} deletes it on the same command line; give one of them"
    if parent == "task" and leaf in {f.name for f in dataclasses.fields(TaskSchema) if f.default is None}:
        return f"{key} is an optional task key this task's config does not set: write +{key}=VALUE"
    rest = [o.input_line for o in parsed if o.key_or_group != key]
    try:
        cfg = hydra.compose_config(config_name=config_name, overrides=rest, run_mode=RunMode.MULTIRUN)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = [k for k in node.keys() if k != "hydra"] if isinstance(node, DictConfig) else []
    except Exception:
        cfg, keys = {}, []
    where = f"a key of {parent}" if parent else "a top-level key"
    hint = "" if parent else top_level_hint(cfg, leaf)  # lr=0.1: the key of that name one level down
    text = str(not_a_key(leaf, where, keys or None, parent + "." if parent else "", hint, listing="keys there"))
    if "_target_" in keys and not parent.startswith("hydra"):  # constructor arguments: new ones come with +
        text += f"; to pass another argument write +{key}=VALUE"
    return text


def hydra_error_line(e: BaseException) -> str:
    """One line for an error of Hydra's composition (or our own ConfigError)."""
    if isinstance(e, ConfigError):
        return str(e)
    msg = str(e)
    mark = getattr(e, "problem_mark", None)
    if mark is not None:  # a YAML syntax error in a config file (ours or the user's)
        return f"{mark.name}, line {mark.line + 1}: not valid YAML ({getattr(e, 'problem', None) or first_line(msg)})"
    if isinstance(e, MissingConfigException):
        missing = e.missing_cfg_file or ""
        group, _, option = missing.rpartition("/")
        if group == "hydra/launcher" and option in CLUSTER_LAUNCHERS:
            return (f"hydra/launcher={option} needs the launcher plugins: pip install 'adaxbench[cluster]' "
                    "(hydra-joblib-launcher, hydra-submitit-launcher)")
        if group and e.options is not None:
            return f"unknown {group} '{option}'; available: {', '.join(sorted(e.options))}{did_you_mean(option, e.options)}"
        return f"config '{missing}' not found ({first_line(msg)})"
    if isinstance(e, OverrideParseException):
        lines = [line.strip() for line in msg.splitlines() if line.strip()]
        odd = next((c for c in msg if ord(c) > 127), None)
        if odd is not None:  # the lexer shows a caret, never the character: name it
            return (f"{odd!r} (U+{ord(odd):04X} {unicodedata.name(odd, 'unnamed')}) in {lines[0].split(': ', 1)[-1]} "
                    "is not part of Hydra's override syntax; type it in ASCII or quote the value "
                    "(KEY='VALUE') for a string")
        return "; ".join(lines[:2]) + " (write KEY=VALUE, quote values with spaces or special characters)"
    if isinstance(e, SearchPathException):
        return first_line(msg)
    if msg.startswith("Ambiguous value for argument"):
        arg = msg.split("'")[1] if "'" in msg else "KEY=A,B"
        return (f"{arg} has several values: add -m to sweep over them, write KEY=[A,B] for a list, "
                "or quote the value for a string")
    if msg.startswith("Could not delete from config.") and msg.endswith("does not exist."):
        key = msg.split("'")[1]
        return f"~{key}: {key} is not set in this config (absent or null), so there is nothing to delete; leave it out"
    if msg.startswith("Could not append to config. An item is already at"):
        key = msg.split("'")[1]
        return f"{key} is already in the config: set it with {key}=VALUE (without the +)"
    cause = e.__cause__ or e.__context__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or ""
        what = first_line(getattr(cause, "msg", None) or str(cause))
        if msg.startswith("Error merging override "):
            override = msg[len("Error merging override "):].strip()
            return _typed_error(override, key, what)
        return f"{first_line(msg)}: {key + ': ' if key else ''}{what}"
    return first_line(e)


def _typed_error(override: str, key: str, what: str) -> str:
    """``trainer.epochs=abc``: say what the schema accepts there; ``~trainer.device``: that it stays."""
    parsed = parse_overrides([override])[0]
    if parsed.is_delete():
        return (f"{parsed.key_or_group} cannot be deleted ({override}): every run config has it; "
                f"set it with {parsed.key_or_group}=VALUE")
    hint: Any = RunConfig
    for part in key.split("."):
        hint = typing.get_type_hints(hint).get(part) if isinstance(hint, type) else None
    value = override.partition("=")[2]  # as typed (the key is the parser's)
    return f"{key} must be {describe(hint)}, got {value!r}" if hint is not None else f"{override}: {what}"
