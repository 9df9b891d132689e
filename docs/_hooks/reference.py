"""MkDocs hook: writes the reference pages that must not drift from the code, at build time.

- reference/config.md: every key of the run config, read from the schema's dataclasses
  (adaxbench/train/schema.py), and the shipped optimizer, lr schedule and logger configs.
- reference/cli.md: the help text of every ``adaxbench`` command, as the installed CLI prints it.

A schema key without a description below (or a description of a key the schema lacks) is a
warning, which ``mkdocs build --strict`` (run by ``make test``) turns into a failure.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import typing
from pathlib import Path

import yaml
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.reference")
ROOT = Path(__file__).resolve().parents[2]

# What each schema key means, for users. Keys are "SECTION.KEY" as in the generated tables.
HELP = {
    "run.task": "the task config group: dataset + model + protocol (`task=NAME`; keys below)",
    "run.optimizer": "the optimizer config group (`optimizer=NAME`); its keys are constructor arguments",
    "run.lr_schedule": "the lr schedule group; null: the task's protocol schedule (`task.lr_schedule`)",
    "run.trainer": "how to train: the `trainer.*` keys below",
    "run.data": "where datasets live: the `data.*` keys below",
    "run.seed": "seed of everything: model init, batch order, augmentation",
    "run.resume": "continue this run dir (`hydra.run.dir=...`) from its last checkpoint",
    "run.logger": "a live view besides metrics.parquet: `none`, `tensorboard`, `wandb`",
    "trainer.epochs": "epochs to train; null: the task's (`task.epochs`)",
    "trainer.device": "`auto` (cuda if present, else cpu), or `cpu`, `cuda`, `cuda:1`, `mps`",
    "trainer.train_limit": "train on the first N training examples only (smoke runs)",
    "trainer.eval_limit": "evaluate on the first N examples of each split only (smoke runs)",
    "trainer.log_every": "minibatch loss, lr and grad norm every N optimizer steps",
    "trainer.optimizer_impl": "`auto` (fused where supported, else foreach), `fused`, `foreach`, `forloop`",
    "trainer.precision": "`fp32`, or `bf16` autocast (the optimizer state stays fp32)",
    "trainer.compile": "`torch.compile` the model",
    "trainer.channels_last": "channels_last memory format for conv nets (a GPU speed-up)",
    "trainer.eval_batch_size": "batch size of the evaluations",
    "trainer.checkpoint": "save checkpoint.pt with the records (needed to resume)",
    "trainer.save_every_s": "after an epoch, save records and checkpoint once this many seconds passed since the "
                            "last save (0: every epoch), and at a stop signal; the run's end writes its records",
    "trainer.progress": "tqdm progress bar: `auto` (only on a terminal), `true`, `false`",
    "trainer.keep_checkpoint": "keep checkpoint.pt (with the trained model) after the run ends",
    "trainer.threads": "torch/OpenMP threads: `auto` (this job's share of its CPUs, see "
                       "[Thread budgets](../how-to/threads.md)) or N",
    "data.root": "where datasets live (`$ADAXBENCH_DATA` if set, else `data`)",
    "data.download": "let torchvision download MNIST/CIFAR",
    "image.name": "the task's name in records and reports",
    "image.kind": "`image`",
    "image.dataset": "a dataset name, your `torch.save` file (`.pt`) or `{_target_: ...}` (your dataset class)",
    "image.model": "a model name, or `{_target_: ...}` (your model class)",
    "image.batch_size": "training batch size",
    "image.epochs": "the protocol's epochs (`trainer.epochs` overrides it)",
    "image.l2_reg": "DeepOBS's L2 term 0.5 · l2_reg · Σ‖w‖² over conv and linear weights",
    "image.augment": "random crop + horizontal flip (+ colour jitter where set)",
    "image.crop_padding": "zero padding (px) of the random crop",
    "image.color_jitter": "null or `{brightness, contrast, saturation}`, as torchvision's ColorJitter",
    "image.normalize": "`dataset` (its own statistics), `none` ([0, 1]) or `{mean, std}`",
    "image.drop_last": "drop the last incomplete training batch",
    "image.valid_size": "training examples held out as the validation split (the same for every run)",
    "image.train_eval_size": "size of the fixed training subset evaluated after every epoch",
    "image.target": "the target value of the task's metric (time-to-target, performance profiles)",
    "image.target_metric": "the metric the target applies to",
    "image.metric": "the task's main metric (what `report` compares by default)",
    "image.select_metric": "what `report` and `best` select on where there is no validation split "
                           "(`+task.select_metric=...` where the task's file leaves it out)",
    "image.equivalence_margin": "the report's equivalence margin m: a number (for the task's metric) or `{METRIC: M}`",
    "image.lr_schedule": "the protocol's default lr schedule",
    "synthetic.name": "the task's name in records and reports",
    "synthetic.kind": "`synthetic`",
    "synthetic.problem": "`quadratic_deep`, `rosenbrock_2d`, `reddi_online` or `reddi_stochastic`",
    "synthetic.batch_size": "training batch size",
    "synthetic.epochs": "the protocol's epochs (`trainer.epochs` overrides it)",
    "synthetic.target": "the target value of the task's metric",
    "synthetic.target_metric": "the metric the target applies to",
    "synthetic.metric": "the task's main metric",
    "synthetic.select_metric": "what `report` and `best` select on where there is no validation split",
    "synthetic.equivalence_margin": "the report's equivalence margin m: a number (for the task's metric) or `{METRIC: M}`",
    "synthetic.lr_schedule": "the protocol's default lr schedule",
    "synthetic.noise_level": "standard deviation of the data noise",
    "synthetic.train_size": "number of fixed training points",
    "synthetic.start": "starting point",
    "synthetic.steps_per_epoch": "optimizer steps per epoch",
    "synthetic.x0": "starting point",
    "constant.name": "`constant`",
    "constant.warmup_steps": "linear warm-up over the first N optimizer steps",
    "inverse_sqrt.name": "`inverse_sqrt`: α/√t, t = 1, 2, ... optimizer steps",
    "inverse_sqrt.warmup_steps": "linear warm-up over the first N optimizer steps",
    "step.name": "`step`: lr × gamma at each milestone",
    "step.milestones": "milestones, in epochs",
    "step.gamma": "factor applied at each milestone",
    "step.warmup_steps": "linear warm-up over the first N optimizer steps",
    "cosine.name": "`cosine`: decay from lr to lr · min_factor over the whole run",
    "cosine.min_factor": "the final lr as a fraction of the initial",
    "cosine.warmup_steps": "linear warm-up over the first N optimizer steps",
}


def _type_name(annotation) -> str:
    text = str(annotation).replace("typing.", "")
    if text.startswith("Optional[") and text.endswith("]"):
        return f"{text[9:-1]} or null"
    return "any" if text == "Any" else text


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value == "???":
        return "required"
    if dataclasses.is_dataclass(value):
        return ""
    return f"`{yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}`"


def _table(section: str, prefix: str, schema, used: set) -> str:
    from adaxbench.train.validate import accepts, field_kind

    hints = typing.get_type_hints(schema)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(schema):
        key = f"{section}.{f.name}"
        used.add(key)
        if key not in HELP:
            log.warning(f"config reference: schema key {prefix}{f.name} ({schema.__name__}) has no description; "
                        f"add '{key}' to HELP in docs/_hooks/reference.py")
        kind = "section" if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(
            f.default_factory()) else _type_name(f.type)
        if f.metadata:  # the rules validate.check_value applies: ranges, choices
            item, listed = field_kind(hints[f.name])
            kind = _escape(f.metadata.get("says") or accepts(item, listed=listed, **f.metadata))
        rows.append(f"| `{prefix}{f.name}` | {kind} | {_default(f)} | {HELP.get(key, '')} |")
    return "\n".join(rows)


def _escape(text: str) -> str:
    """Plain text in a Markdown table cell."""
    return text.replace("|", "/").replace("*", r"\*").replace("_", r"\_").replace("<", "&lt;")


def _group_configs(group: str) -> str:
    rows = ["| name | class | defaults | about |", "|---|---|---|---|"]
    for path in sorted((ROOT / "configs" / group).glob("*.yaml")):
        text = path.read_text()
        cfg = yaml.safe_load(text) or {}
        about = " ".join(line.lstrip("# ").strip() for line in text.splitlines()[:3] if line.startswith("#"))
        target = cfg.pop("_target_", "")
        cfg.pop("name", None)
        defaults = ", ".join(f"`{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}`"
                             for k, v in cfg.items())
        rows.append(f"| `{path.stem}` | {f'`{target}`' if target and target != '???' else ''} | {defaults} "
                    f"| {_escape(about)} |")
    return "\n".join(rows)


def config_reference() -> str:
    from adaxbench.train import schema

    used: set = set()
    parts = [
        "# Config keys",
        "Generated at build time from the schema (`adaxbench/train/schema.py`) and the shipped config files "
        "(`configs/`), so it lists exactly the keys adaxbench accepts. Set any of them on the command line "
        "(`KEY=VALUE`), in a config file of your own, or in the Python API's overrides; "
        "`adaxbench run --cfg job ...` prints the composed config.",
        "## Top level", _table("run", "", schema.RunConfig, used),
        "## `trainer.*`", _table("trainer", "trainer.", schema.TrainerSchema, used),
        "## `data.*`", _table("data", "data.", schema.DataSchema, used),
        "## `task.*`",
        "A task is checked against the schema of its `kind`. Your own task class (`task._target_=...`) takes "
        "whatever keys its constructor takes instead (see [Your own task, model or dataset]"
        "(../how-to/your-task.md)).",
        "### `kind: image`", _table("image", "task.", schema.ImageTaskSchema, used),
        "### `kind: synthetic`", _table("synthetic", "task.", schema.SyntheticTaskSchema, used),
        "Problem-specific keys: " + "; ".join(f"`{p}`: " + ", ".join(f"`{k}`" for k in keys)
                                               for p, keys in schema.SYNTHETIC_KEYS.items()) + ".",
        "## `lr_schedule.*`",
        "Built-in schedules (`lr_schedule=NAME`); your own with `+lr_schedule._target_=...` "
        "(see [Learning-rate schedules](../how-to/lr-schedules.md)).",
    ]
    for name, kind in schema.SCHEDULE_SCHEMAS.items():
        parts += [f"### `{name}`", _table(name, "lr_schedule.", kind, used)]
    parts += [
        "## Optimizers (`optimizer=NAME`)",
        "Every key is a constructor argument of the class and can be overridden (`optimizer.lr=3e-3`); "
        "`+optimizer.KEY=VALUE` adds one.",
        _group_configs("optimizer"),
        "## Loggers (`logger=NAME`)", _group_configs("logger"),
    ]
    for key in sorted(set(HELP) - used):
        log.warning(f"config reference: HELP describes {key}, which the schema does not declare")
    return "\n\n".join(parts) + "\n"


def cli_reference() -> str:
    from adaxbench import cli

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}

    def help_text(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "adaxbench", *args], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=300)
        if out.returncode != 0:
            log.warning(f"CLI reference: adaxbench {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
        return out.stdout.strip()

    parts = ["# Command line",
             "Generated at build time from the installed CLI's own help. `python -m adaxbench` works the same "
             "as `adaxbench`.",
             f"```text\n{help_text('--help')}\n```"]
    for command in cli.COMMANDS:
        parts += [f"## `adaxbench {command}`", f"```text\n{help_text(command, '--help')}\n```"]
    return "\n\n".join(parts) + "\n"


GENERATED = {"reference/config.md": config_reference, "reference/cli.md": cli_reference}


def on_files(files, config):
    for path, render in GENERATED.items():
        files.append(File.generated(config, path, content=render()))
    return files
