"""Command line: ``adaxbench run|list|report|best``.

``run`` hands everything after it to Hydra (overrides, ``-m``, ``--cfg job``, ``--help``);
the other subcommands are plain argparse programs.
"""

from __future__ import annotations

import os
import sys
from importlib import resources

USAGE = """usage: adaxbench COMMAND [ARGS...]

commands:
  run      train: adaxbench run [-m] [KEY=VALUE ...]   (Hydra; see `adaxbench run --help`)
  list     list tasks, optimizers, lr schedules, experiments and launchers
  report   comparison report: adaxbench report PATH... [--out DIR] (see `adaxbench report --help`)
  best     best setting per task x optimizer from a tuning sweep (see `adaxbench best --help`)
"""

# Config groups the user picks with GROUP=OPTION, as `adaxbench list` shows them.
GROUPS = {"task": "tasks", "optimizer": "optimizers", "lr_schedule": "lr schedules",
          "experiment": "experiments", "hydra/launcher": "launchers"}
HYDRA_LAUNCHERS = ("basic",)


def config_options(group: str) -> list[str]:
    root = resources.files("adaxbench.configs")
    folder = root.joinpath(*group.split("/"))
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")) if folder.is_dir() else []
    if group == "hydra/launcher":
        names = sorted(set(names) | set(HYDRA_LAUNCHERS) | {"joblib", "submitit_local", "submitit_slurm"})
    return names


# Launchers from the optional `cluster` extra, and the plugin module each needs.
LAUNCHER_PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
                    "slurm_gpu": "hydra_plugins.hydra_submitit_launcher"}


def _check_group_choices(args: list[str]) -> str | None:
    """One-line error for ``task=nope`` style overrides, before Hydra prints a page."""
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra/launcher" and value in LAUNCHER_PLUGINS:
            import importlib.util

            if importlib.util.find_spec(LAUNCHER_PLUGINS[value]) is None:
                return (f"hydra/launcher={value} needs the launcher plugins: pip install 'adaxbench[cluster]' "
                        "(hydra-joblib-launcher, hydra-submitit-launcher)")
            continue
        if key not in ("task", "optimizer", "lr_schedule", "experiment"):
            continue
        if value.startswith(("choice(", "glob(", "range(", "interval(")) or value in ("null", ""):
            continue
        options = config_options(key)
        for choice in value.split(","):
            if choice not in options:
                return f"unknown {key} '{choice}'; available: {', '.join(options)}"
    return None


def run_job(cfg):
    """The Hydra task function of ``adaxbench run``.

    A SLURM job unpickles it before submitit installs its signal handlers, so it lives
    here, where nothing heavy is imported: importing the runner (torch) takes seconds, and
    a time-limit signal in that window would kill the job instead of requeueing it.
    """
    from .train.runner import main_from_hydra

    return main_from_hydra(cfg)


def cmd_run(args: list[str]) -> int:
    if (error := _check_group_choices(args)) is not None:
        print(f"adaxbench: error: {error}", file=sys.stderr)
        return 2
    import hydra

    from .train import sweep

    task_function = hydra.main(config_path="pkg://adaxbench.configs", config_name="config",
                               version_base="1.3")(run_job)
    argv = sys.argv
    sys.argv = ["adaxbench run", *args]
    sweep.LAST_SUMMARY = None
    try:
        task_function()
    finally:
        sys.argv = argv
    if sweep.LAST_SUMMARY is not None and sweep.failed_count(sweep.LAST_SUMMARY):
        return 1
    return 0


def cmd_list(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print("usage: adaxbench list\n\nLists the options of each config group (choose with GROUP=OPTION).")
        return 0
    for group, title in GROUPS.items():
        print(f"{title} ({group}=NAME):")
        print("  " + "  ".join(config_options(group)))
    return 0


def cmd_report(args: list[str]) -> int:
    from .report.cli import main as report_main

    return report_main(args)


def cmd_best(args: list[str]) -> int:
    from .train.best import main as best_main

    return best_main(args)


COMMANDS = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "best": cmd_best}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"adaxbench: error: unknown command '{command}'; available: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except KeyboardInterrupt:
        print("adaxbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
