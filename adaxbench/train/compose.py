"""How ``adaxbench run`` reads its command line and composes its jobs, with Hydra's own machinery.

Hydra's argument parser reads the command line, its override parser the overrides, and its config loader
composes them with the search path ``hydra.main`` builds (``--config-dir``, ``hydra.searchpath``), so a
user's own config files are seen as the run will see them.  ``composing_once`` lets preflight, Hydra's
sweeper and the launcher share one composition of each job.  The checks live in ``validate`` (one config)
and ``preflight`` (every job of a command line).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError

CONFIG_MODULE = "pkg://adaxbench.configs"
CONFIG_NAME = "config"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


# Hydra flags that take a value (``--info`` takes an optional one from INFO_CHOICES).
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--experimental-rerun"}
INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def flags_first(args: list[str]) -> list[str]:
    """Hydra's parser wants flags before the overrides (``a=1 -m b=2`` is refused there);
    move every flag, with its value, in front of the overrides, keeping both orders."""
    flags, overrides = [], []
    info_last = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):  # overrides never do (KEY=VALUE, +KEY=VALUE, ~KEY)
            flags.append(arg)
            takes = arg in VALUE_FLAGS or (arg in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in INFO_CHOICES)
            if takes and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
            elif arg in ("--info", "-i"):  # without a value it must come last, or it eats an override
                flags.pop()
                info_last = True
        else:
            overrides.append(arg)
        i += 1
    return flags + overrides + (["--info"] if info_last else [])


def parse_args(args: list[str]) -> Any:
    """The ``adaxbench run`` arguments as Hydra's own parser reads them."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> None:  # argparse would print its usage block and exit
        raise ConfigError(f"{message} (see `adaxbench run --help`)")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(args)


@contextlib.contextmanager
def hydra_app(config_dir: str | None = None, config_path: str | None = None) -> Iterator[Any]:
    """A Hydra instance with the search path ``hydra.main`` builds for adaxbench (the package's
    configs, ``--config-dir`` prepended), cleared again on exit."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.config_search_path import SearchPathQuery

    from .schema import register

    register()
    search_path = create_config_search_path(config_path or CONFIG_MODULE)
    if config_dir is not None:
        path = os.path.abspath(os.path.expanduser(config_dir))
        if not os.path.isdir(path):
            raise ConfigError(f"--config-dir {config_dir}: no such directory")
        search_path.prepend(provider="command-line", path=f"file://{path}", anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()
    try:
        yield Hydra.create_main_hydra2(task_name="adaxbench", config_search_path=search_path)
    finally:
        GlobalHydra.instance().clear()


@contextlib.contextmanager
def composing_once() -> Iterator[None]:
    """Inside, Hydra composes each config once: a sweep's every job is composed by ``preflight``,
    by the basic sweeper's own check (``validate_batch_is_legal``) and by the launcher, a quarter
    of a second each.  A composition is reused for the same search path, arguments and working
    directory; each caller gets its own copy, with the variables ``hydra.job.env_copy`` names read
    again (the environment is all else it reads, and adaxbench's jobs and torch set variables of
    their own in between).  Failures are not kept: they are raised again."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import open_dict

    compose = ConfigLoaderImpl.load_configuration
    composed: dict[str, DictConfig] = {}

    def load_configuration(self: Any, *args: Any, **kwargs: Any) -> DictConfig:
        key = repr((self.config_search_path.get_path(), args, sorted(kwargs.items()), os.getcwd()))
        if key not in composed:
            composed[key] = compose(self, *args, **kwargs)
        cfg = copy.deepcopy(composed[key])
        with open_dict(cfg.hydra):
            for name in cfg.hydra.job.env_copy:
                cfg.hydra.job.env_set[name] = os.environ[name]
        return cfg

    global _memo
    ConfigLoaderImpl.load_configuration = load_configuration  # type: ignore[method-assign]
    _memo = {}
    try:
        yield
    finally:
        ConfigLoaderImpl.load_configuration = compose  # type: ignore[method-assign]
        _memo = None


# Inside ``composing_once``: a dict that lives as long as it (preflight keeps each job's check result there).
_memo: dict[str, Any] | None = None


def run_memo() -> dict[str, Any] | None:
    return _memo


def group_options(group: str, args: list[str] | None = None) -> list[str]:
    """The options of a config group on the search path that ``args`` (``--config-dir DIR``,
    ``hydra.searchpath=[...]``) give, as Hydra's config repository lists them."""
    ns = parse_args(list(args or []))
    with hydra_app(ns.config_dir, ns.config_path) as hydra:
        overrides = [o.input_line for o in parse_overrides(ns.overrides) if o.key_or_group == "hydra.searchpath"]
        return sorted(hydra.config_loader.get_group_options(group, config_name=ns.config_name or CONFIG_NAME,
                                                            overrides=overrides))


def parse_overrides(overrides: list[str], config_loader: Any = None) -> list[Any]:
    """Overrides as Hydra's own parser reads them (``Override``: key, value, +/~/++)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create(config_loader=config_loader).parse_overrides(overrides)


def sweep_params(cfg: DictConfig, config_loader: Any = None, command_line: bool = False) -> list[Any]:
    """A sweep's overrides: ``hydra.sweeper.params`` of an experiment (then the command line's)."""
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.get("params") or {}).items()]
    given = list(OmegaConf.to_container(cfg.hydra.overrides.task)) if command_line else []
    return parse_overrides(params + given, config_loader)


def sweep_jobs(cfg: DictConfig, config_loader: Any) -> list[list[str]] | None:
    """The override list of every job the basic sweeper will launch (its own expansion); None for
    other sweepers."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if cfg.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    batches = BasicSweeper.split_arguments(sweep_params(cfg, config_loader, command_line=True), None)
    return [job for batch in batches for job in batch]


def _candidates(override: Any) -> list[str]:
    """The values of a sweep override worth checking: every choice and range value, an interval's
    bounds (Optuna samples floats from [low, high), integers from [low, high])."""
    import math

    from hydra.core.override_parser.types import IntervalSweep

    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    value = override.value()
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if isinstance(low, float) or isinstance(high, float):
            high = math.nextafter(float(high), float(low))
        return [repr(low), repr(high)]
    return list(override.sweep_string_iterator())


def search_space_jobs(cfg: DictConfig, config_loader: Any) -> list[list[str]]:
    """Jobs that together reach every bound and choice of a sampling sweeper's search space
    (``hydra.sweeper.params`` and the command line's sweeps): the first value of every key, then
    each other value of one key at a time."""
    values: dict[str, list[str]] = {}
    for override in sweep_params(cfg, config_loader, command_line=True):
        values[override.get_key_element()] = _candidates(override)  # the command line wins
    first = {key: vals[0] for key, vals in values.items()}
    jobs = [[f"{k}={v}" for k, v in first.items()]]
    for key, vals in values.items():
        jobs += [[f"{k}={v if k != key else other}" for k, v in first.items()] for other in vals[1:]]
    return jobs
