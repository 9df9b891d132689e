"""The README stays a short entry point into the docs site (the site itself is built by
`make test` with `mkdocs build --strict`, which fails on a broken link or an undescribed config key)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_is_short():
    assert README.stat().st_size <= 15_000


def test_readme_starts_with_the_two_make_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands[:2] == ["make run", "make test"]


def test_readme_links_resolve():
    targets = re.findall(r"\]\(([^)#\s]+)", README.read_text())
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into the docs"
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_tasks_reference_table_matches_the_task_configs_and_models():
    """docs/reference/tasks.md is written by hand: its parameter counts, batch sizes, budgets and L2 factors
    are those of configs/task/*.yaml and the models they build, so an edit to either fails here."""
    import yaml

    from adaxbench.tasks.models import build_model

    geometry = {"mnist": (10, 1, 28), "fashion_mnist": (10, 1, 28), "cifar10": (10, 3, 32), "cifar100": (100, 3, 32)}
    rows = [line.split("|")[1:-1] for line in (ROOT / "docs/reference/tasks.md").read_text().splitlines()
            if re.match(r"\| (mnist|fmnist|cifar)", line)]
    checked = set()
    for cells in rows:
        names, _, params, budget, l2 = (c.strip() for c in cells[:5])
        batch, epochs = re.match(r"(\d+) × (\d+)", budget).groups()
        for name in names.split(" / "):
            cfg = yaml.safe_load((ROOT / "configs/task" / f"{name}.yaml").read_text())
            model = build_model(cfg["model"], *geometry[cfg["dataset"]])
            assert f"{sum(p.numel() for p in model.parameters()):,}" == params, name
            assert (cfg["batch_size"], cfg["epochs"]) == (int(batch), int(epochs)), name
            assert (l2 == "–" and not cfg.get("l2_reg")) or float(l2) == cfg["l2_reg"], name
            checked.add(name)
        schedule = cfg["lr_schedule"]
        shown = re.search(r"lr ×([\d.]+) at ([\d, ]+)", budget)  # e.g. ResNet-20's step schedule
        assert (schedule["name"] == "step") == (shown is not None), name
        if shown:
            assert (float(shown.group(1)), [int(m) for m in shown.group(2).split(", ")]) == \
                (schedule["gamma"], schedule["milestones"]), name
    image_tasks = {p.stem for p in (ROOT / "configs/task").glob("*.yaml")
                   if yaml.safe_load(p.read_text()).get("kind") == "image" and p.stem != "custom_image"}
    assert checked == image_tasks
    # The synthetic problems' default budgets: batch × epochs, or steps with the α/√t schedule.
    for line in (ROOT / "docs/reference/tasks.md").read_text().splitlines():
        if line.startswith("| `"):
            name, budget = line.split("|")[1].strip(" `"), line.split("|")[-2].strip()
            cfg = yaml.safe_load((ROOT / "configs/task" / f"{name}.yaml").read_text())
            if cfg["lr_schedule"]["name"] == "inverse_sqrt":
                assert budget == f"{cfg['epochs'] * cfg['steps_per_epoch']:,} steps, α/√t", name
            else:
                assert (budget, cfg["lr_schedule"]["name"]) == (f"batch {cfg['batch_size']}, {cfg['epochs']} epochs",
                                                                "constant"), name
