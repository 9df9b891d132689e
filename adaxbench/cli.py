"""Command line: ``adaxbench run|list|report|best|tune``.

``run`` hands everything after it to Hydra (overrides, ``-m``, ``--cfg job``, ``--help``);
the other subcommands are plain argparse programs.
"""

from __future__ import annotations

import gc
import math
import os
import sys

from .errors import SAID

USAGE = """usage: adaxbench COMMAND [ARGS...]

commands:
  run      train: adaxbench run [-m] [KEY=VALUE ...]   (Hydra; see `adaxbench run --help`)
  list     list tasks, optimizers, lr schedules, experiments, loggers, launchers and sweepers [--config-dir DIR]
  report   comparison report: adaxbench report PATH... [--out DIR] (see `adaxbench report --help`)
  best     best setting per task x optimizer from a tuning sweep (see `adaxbench best --help`)
  tune     the lr-tuning protocol end to end: grid, widening, evaluation seeds, report (`adaxbench tune --help`)
"""

# Config groups the user picks with GROUP=OPTION, as `adaxbench list` shows them.
GROUPS = {"task": "tasks", "optimizer": "optimizers", "lr_schedule": "lr schedules",
          "experiment": "experiments", "logger": "loggers", "hydra/launcher": "launchers", "hydra/sweeper": "sweepers"}


def config_options(group: str, args: list[str] | None = None) -> list[str]:
    """Options of a config group as Hydra sees them: the package's configs, installed launcher
    plugins, and a user's ``--config-dir DIR`` / ``hydra.searchpath=[...]`` in ``args``."""
    from .train.compose import group_options

    register_packed_launcher()
    return group_options(group, args)


def register_packed_launcher() -> None:
    """Registers hydra/launcher=packed. Hydra's plugin scan finds it in an installed wheel, but
    cannot list the hydra_plugins namespace through setuptools' editable-install finder."""
    from hydra.core.plugins import Plugins
    from hydra_plugins.adaxbench_packed_launcher.packed_launcher import PackedLauncher

    Plugins.instance().register(PackedLauncher)


def run_job(cfg):
    """The Hydra task function of ``adaxbench run``.

    A SLURM job unpickles it before submitit installs its signal handlers, so it lives
    here, where nothing heavy is imported: importing the runner (torch) takes seconds, and
    a time-limit signal in that window would kill the job instead of requeueing it.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .train.runner import main_from_hydra

    status = main_from_hydra(cfg)
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return status
    from .report.best import sweep_score, wants_scores  # what an optimizing sweeper (Optuna) is told

    return sweep_score(hc.runtime.output_dir, hc.sweeper) if wants_scores(hc.sweeper) else status


def cmd_run(args: list[str], print_best: bool = True) -> int:
    from .train.compose import composing_once, flags_first

    register_packed_launcher()
    if any(len(flag) > 2 and "--experimental-rerun".startswith(flag.partition("=")[0]) for flag in args):
        # Hydra's --experimental-rerun unpickles the file it is given (code runs on load), and
        # adaxbench never writes the config.pickle it reads: relaunch with the overrides instead.
        print("adaxbench: error: --experimental-rerun is not supported (it loads a pickle); relaunch with the "
              "run's overrides (run.json 'overrides'), adding resume=true to continue it", file=sys.stderr)
        return 2
    with composing_once():  # the sweep's jobs as preflight composed them are the jobs launched
        return _checked_launch(flags_first(args), print_best)


def _checked_launch(args: list[str], print_best: bool) -> int:
    from .errors import ConfigError
    from .train.compose import full_error

    try:
        check_run(args)  # every job of a sweep is composed and checked before the first starts
    except ConfigError as e:
        if full_error():
            raise
        print(f"adaxbench: error: {e}", file=sys.stderr)
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
    except SystemExit as e:  # hydra.main and the runner exit with a status; hand it back
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    if sweep.LAST_SUMMARY is None:
        return 0
    if print_best:
        print_best_per_task(sweep.LAST_SWEEP_DIR)
    return 1 if sweep.failed_count(sweep.LAST_SUMMARY) else 0


def print_best_per_task(sweep_dir) -> None:
    """After a sweep's closing line: its best setting per task (as `adaxbench best` selects it)."""
    from .report.best import best_per_task, best_settings
    from .report.load import ReportError

    try:
        best = best_per_task(best_settings(sweep_dir))
    except ReportError:  # nothing finished with a score: the summary line has said why
        return
    except Exception as e:  # a closing remark must not turn a finished sweep into a traceback
        print(f"adaxbench: no best setting selected ({type(e).__name__}: {e}); try adaxbench best {sweep_dir}")
        return
    for row in best.itertuples():
        if not math.isfinite(row.score):  # every seed of every setting diverged
            continue
        print(f"best on {row.task}: {row.optimizer} {' '.join(row.overrides)} "
              f"({row.metric} {row.mode} {row.score:.4g}, {row.seeds} seed(s))".replace("  ", " "), flush=True)


def cmd_list(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print("usage: adaxbench list [--config-dir DIR] [hydra.searchpath=[file://DIR,...]]\n\n"
              "Lists the options of each config group (choose with GROUP=OPTION): tasks, optimizers, lr schedules,\n"
              "experiments, loggers, launchers and sweepers, your own config dirs included.")
        return 0
    from .train.preflight import hydra_error_line

    try:
        options = {group: config_options(group, args) for group in GROUPS}
    except Exception as e:
        print(f"adaxbench: error: {hydra_error_line(e)}", file=sys.stderr)
        return 2
    for group, title in GROUPS.items():
        print(f"{title} ({group}=NAME):")
        print("  " + "  ".join(options[group]))
    return 0


def cmd_report(args: list[str]) -> int:
    from .report.cli import main as report_main

    return report_main(args)


def cmd_best(args: list[str]) -> int:
    from .report.best import main as best_main

    return best_main(args)


def cmd_tune(args: list[str]) -> int:
    from .tune import main as tune_main

    register_packed_launcher()
    return tune_main(args, run=cmd_run, config_options=config_options, check_run=check_run)


def check_run(args: list[str]) -> None:
    """``adaxbench run ARGS``'s checks, without running (``adaxbench run`` and ``tune`` make them): a
    ConfigError of one line where they fail; with HYDRA_FULL_ERROR=1 the error as raised."""
    from .errors import ConfigError
    from .train.compose import full_error
    from .train.preflight import hydra_error_line, preflight

    try:
        preflight(args)
    except Exception as e:  # Hydra's own in adaxbench run's words
        if isinstance(e, ConfigError) or full_error():
            raise
        raise ConfigError(hydra_error_line(e)) from None


COMMANDS = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "best": cmd_best, "tune": cmd_tune}


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
    except KeyboardInterrupt as e:
        if e.args != (SAID,):
            print("adaxbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def entry() -> None:
    code = main()
    # Python's exit runs full garbage collections over the millions of objects torch, Hydra and
    # pandas made (~0.8 s on a 2-core VM); frozen, they are freed as their modules go, without them.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
