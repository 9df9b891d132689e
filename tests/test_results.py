"""The published β̂₂ ablations (results/beta2_ablation_cpu/, results/beta2_ablation_v2/) stay honest: the committed tables are
what `adaxbench report` makes of the committed run records; the GPU preset still composes."""

from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from adaxbench.report.render import build_report
from conftest import ROOT, compose_cfg

PUBLISHED = ROOT / "results" / "beta2_ablation_cpu"
# Columns that depend on where the records lie, not on what they hold.
PATH_COLUMNS = ["path"]


def _table(path, drop=()) -> pd.DataFrame:
    return pd.read_csv(path).drop(columns=[c for c in drop if c in pd.read_csv(path, nrows=0).columns])


# The report's options in scripts/beta2_ablation_cpu.sh (publish): the losses' margins of the task configs,
# passed explicitly because the records predate the equivalence_margin key; rosenbrock_2d has none.
MARGINS = "quadratic_deep=0.1,reddi_online=0.002,reddi_stochastic=0.004"


def _verdict_lines(md: str) -> list[str]:
    """The report's tables and warnings: every line that carries a number or a verdict."""
    return [line for line in md.splitlines() if line.startswith(("|", "⚠", "Budget:", "Hyperparameters of every row"))
            or "per-task verdicts" in line]


@pytest.mark.skipif(not (PUBLISHED / "summary.csv").exists(), reason="no published results in this checkout")
@pytest.mark.parametrize("baseline,sub", [("sched_adam", "."), ("sched_adax", "vs_sched_adax")])
def test_published_tables_reproduce_from_the_records(tmp_path, baseline, sub):
    build_report([PUBLISHED / "runs" / "seeds"], out=tmp_path, baseline=baseline, formats=["md"], figures=False,
                 margin=MARGINS)
    for name in ("summary.csv", "aggregate.csv"):
        committed = _table(PUBLISHED / sub / name, PATH_COLUMNS)
        regenerated = _table(tmp_path / name, PATH_COLUMNS)
        assert len(committed) > 0
        pd.testing.assert_frame_equal(regenerated, committed, check_exact=False, rtol=1e-9, atol=0,
                                      obj=f"{sub}/{name}")
    committed = _verdict_lines((PUBLISHED / sub / "report.md").read_text())
    assert len(committed) > 40 and any("equivalent within" in line for line in committed)
    assert _verdict_lines((tmp_path / "report.md").read_text()) == committed


@pytest.mark.skipif(not (PUBLISHED / "summary.csv").exists(), reason="no published results in this checkout")
def test_published_readme_uses_only_the_verdict_words():
    """The README draws no conclusion stronger than the report's verdicts, and names every
    schedule-divergence warning of the report."""
    readme = (PUBLISHED / "README.md").read_text()
    lowered = readme.lower()
    for banned in ("no difference", "no detectable difference", "significantly", "not significant"):
        assert banned not in lowered, banned
    agg = pd.read_csv(PUBLISHED / "aggregate.csv")
    for row in agg[agg["verdict"].notna()].itertuples():
        assert f"{row.verdict}" in readme
    warned = agg[(agg["schedule_tv"] < 0.2) & agg["tv_apart_step"].notna()]  # different schedules, alike here
    assert set(warned["task"]) == {"fmnist_2c2d", "fmnist_mlp", "quadratic_deep", "rosenbrock_2d"}
    for task in set(warned["task"]):
        assert f"{task}" in readme.split("## Schedule-divergence warnings")[1], task


@pytest.mark.skipif(not (PUBLISHED / "summary.csv").exists(), reason="no published results in this checkout")
def test_published_records_are_the_protocol():
    """Every task x optimizer has >= 5 completed seeds at one setting; no checkpoints were committed."""
    agg = pd.read_csv(PUBLISHED / "aggregate.csv")
    tasks = {"quadratic_deep", "rosenbrock_2d", "reddi_online", "reddi_stochastic", "fmnist_mlp", "fmnist_2c2d"}
    optimizers = {"sched_adam", "sched_adax", "sched_adafactor", "adam", "adax"}
    assert set(agg["task"]) == tasks
    for task, rows in agg.groupby("task"):
        assert set(rows["optimizer"]) == optimizers, task
        assert (rows["seeds"] >= 5).all() and (rows["failed"] == 0).all(), task
    assert not list(PUBLISHED.rglob("checkpoint.pt"))


def test_gpu_preset_composes_every_job():
    """experiment=beta2_ablation (the cluster run) composes for each of its sweep's jobs."""
    params = OmegaConf.load(ROOT / "configs" / "experiment" / "beta2_ablation.yaml").hydra.sweeper.params
    grid = {k: str(v).split(",") for k, v in params.items()}
    assert set(grid["optimizer"]) == {"sched_adam", "sched_adax", "sched_adafactor"}
    assert set(grid["task"]) == {"fmnist_mlp", "fmnist_2c2d", "cifar10_3c3d"}
    # One job per task, the optimizers in turn (each composition costs ~0.5 s).
    tasks, optimizers = grid.pop("task"), grid.pop("optimizer")
    for i, task in enumerate(tasks):
        combo = (task, optimizers[i % len(optimizers)], *(v[0] for v in grid.values()))
        names = ("task", "optimizer", *grid)
        overrides = [f"{k}={v}" for k, v in zip(names, combo)]
        cfg = compose_cfg(["experiment=beta2_ablation", *overrides])
        assert cfg.task.name == task and cfg.optimizer.name == combo[1]
        assert cfg.optimizer._target_ == "adaxbench.optim.ScheduledBeta2"


# ---- the v2 study (results/beta2_ablation_v2/): records in runs.tar.xz --------------------------------------------

V2 = ROOT / "results" / "beta2_ablation_v2"
V2_ARCHIVE = V2 / "runs.tar.xz"
# Each published report with the options scripts/beta2_ablation_v2.sh (publish) gave it: the record paths under
# runs/, the baseline and the pre-registered margins of the tasks named in the paths.
V2_REPORTS = {
    "report": (["eval/fmnist_mlp", "eval/reddi_online", "eval/reddi_stochastic"],
               dict(baseline="sched_adam", margin="fmnist_mlp=0.005,reddi_online=0.002,reddi_stochastic=0.004")),
    "bias_correction": (["eval/fmnist_mlp", "eval/reddi_online", "eval/reddi_stochastic"],
                        dict(baseline="sched_adax", margin="fmnist_mlp=0.005,reddi_online=0.002,reddi_stochastic=0.004")),
    "quadratic_deep": (["eval/quadratic_deep"], dict(baseline="sched_adam", margin="quadratic_deep=0.1")),
    "beta2_sensitivity": (["eval/fmnist_mlp/sched_adam", "sens"], dict(baseline="sched_adam", margin="fmnist_mlp=0.005")),
    "reddi_grid": (["tune/reddi_online", "tune/reddi_stochastic"],
                   dict(baseline="sched_adam", margin="reddi_online=0.002,reddi_stochastic=0.004")),
    "validation": (["validation"], dict(baseline="adam")),
    "validation_loss": (["validation/fmnist_2c2d"], dict(baseline="adam", metric="test/loss")),
    "posthoc_reddi_online": (["posthoc/reddi_online"], dict(baseline="sched_adam", margin="reddi_online=0.002")),
    "posthoc_reddi_stochastic_lr10": (["posthoc/reddi_stochastic_lr10"],
                                      dict(baseline="sched_adam", margin="reddi_stochastic=0.004")),
    "posthoc_reddi_stochastic_lr3.16": (["posthoc/reddi_stochastic_adam_lr3.16", "eval/reddi_stochastic/sched_adax"],
                                        dict(baseline="sched_adam", margin="reddi_stochastic=0.004")),
}
needs_v2 = pytest.mark.skipif(not V2_ARCHIVE.exists(), reason="no published v2 records in this checkout")


@pytest.fixture(scope="module")
def v2_runs(tmp_path_factory):
    """The published records, unpacked once (Python's tarfile: no xz binary needed)."""
    import tarfile
    root = tmp_path_factory.mktemp("v2")
    with tarfile.open(V2_ARCHIVE, "r:xz") as archive:
        archive.extractall(root, filter="data")
    return root / "runs"


@needs_v2
@pytest.mark.parametrize("sub", sorted(V2_REPORTS))
def test_v2_tables_reproduce_from_the_records(v2_runs, tmp_path, sub):
    paths, options = V2_REPORTS[sub]
    build_report([v2_runs / p for p in paths], out=tmp_path, formats=["md"], figures=False, **options)
    for name in ("summary.csv", "aggregate.csv"):
        committed = _table(V2 / sub / name, PATH_COLUMNS)
        assert len(committed) > 0
        pd.testing.assert_frame_equal(_table(tmp_path / name, PATH_COLUMNS), committed, check_exact=False,
                                      rtol=1e-9, atol=0, obj=f"{sub}/{name}")
    committed = _verdict_lines((V2 / sub / "report.md").read_text())
    assert committed and _verdict_lines((tmp_path / "report.md").read_text()) == committed


@needs_v2
@pytest.mark.parametrize("task", ["fmnist_mlp", "quadratic_deep", "reddi_online", "reddi_stochastic"])
def test_v2_tuning_effort_reproduces_from_the_records(v2_runs, tmp_path, task):
    from adaxbench.report.best import main as best
    assert best([str(v2_runs / "tune" / task), "--effort", str(tmp_path)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "effort.csv"), pd.read_csv(V2 / "effort" / task / "effort.csv"),
                                  check_exact=False, rtol=1e-9, atol=0)


@needs_v2
def test_v2_records_are_the_protocol(v2_runs):
    """PROTOCOL.md's design, read back from the records: the arms, the shared evaluation seeds (200 for the
    schedules on reddi_stochastic), budgets where Adam's and AdaX's schedules are >= 0.5 apart on the evidence
    tasks (quadratic_deep below, labelled), every run completed, no checkpoints published."""
    agg = pd.read_csv(V2 / "report" / "aggregate.csv")
    arms = {"sched_adam", "sched_adax", "sched_adafactor", "sched_adax_nobc", "adam", "adax"}
    for task, rows in agg.groupby("task"):
        assert set(rows["optimizer"]) == arms, task
        assert (rows["failed"] == 0).all() and (rows["diverged"] == 0).all(), task
        seeds = rows.set_index("optimizer")["seeds"]
        for arm in arms:
            assert seeds[arm] == (200 if task == "reddi_stochastic" and arm.startswith("sched_") else 10), (task, arm)
        assert rows.set_index("optimizer").loc["sched_adax", "schedule_tv"] >= 0.5, task
    assert agg.set_index(["task", "optimizer"]).loc[("fmnist_mlp", "sched_adam"), "steps"] == 7800
    quadratic = pd.read_csv(V2 / "quadratic_deep" / "aggregate.csv").set_index("optimizer")
    assert quadratic.loc["sched_adax", "schedule_tv"] < 0.5
    assert len(agg[agg["verdict"].notna()]) == 15  # the confirmatory family
    assert not list(v2_runs.rglob("checkpoint.pt"))
    assert len([p for p in v2_runs.rglob("run.json") if "posthoc" not in p.parts]) == 1425
    assert len(list((v2_runs / "posthoc").rglob("run.json"))) == 16 + 400 + 200


@needs_v2
def test_v2_readme_states_each_verdict_of_the_family_in_its_words():
    """Every verdict of the confirmatory family appears in the README's table, with its arm, in the report's words
    and nothing stronger; the regimes that cannot separate schedules are labelled."""
    readme = (V2 / "README.md").read_text()
    for banned in ("no difference", "no detectable difference", "significantly", "not significant"):
        assert banned not in readme.lower(), banned
    table = readme.split("## Verdicts")[1].split("Read in words")[0]
    rows, task = {}, None
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[1].startswith("`"):
            task = cells[0].split("`")[1] if cells[0] else task
            rows[(task, cells[1].strip("`").split("`")[0])] = cells[5]
    agg = pd.read_csv(V2 / "report" / "aggregate.csv")
    family = agg[agg["verdict"].notna()]
    assert len(rows) == len(family) == 15
    for row in family.itertuples():
        words = f"equivalent within ±{row.margin:g}" if row.verdict == "equivalent" else row.verdict
        assert words in rows[(row.task, row.optimizer)], (row.task, row.optimizer, words)
    assert "cannot be told apart" in readme and "0.096" in readme  # quadratic_deep's label
    assert "0.08" in readme  # fmnist_mlp: AdaFactor's schedule within 0.08 of Adam's


@needs_v2
def test_v2_posthoc_numbers_reproduce_from_the_records(v2_runs, tmp_path):
    """extras.md (the README's post-hoc numbers no report table holds) is what the script makes of the records."""
    import runpy
    write_extras = runpy.run_path(str(ROOT / "scripts" / "beta2_ablation_v2_extras.py"))["main"]
    write_extras(v2_runs, tmp_path / "extras.md")
    assert (tmp_path / "extras.md").read_text() == (V2 / "extras.md").read_text()

