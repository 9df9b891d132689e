"""Users' own tasks, models, datasets and lr schedules by ``_target_``, their up-front checks,
and the provenance run.json records for them (tests/plugin_user_code.py is the user's code)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import adaxbench
import plugin_user_code as user
from adaxbench import cli
from conftest import ROOT, compose_cfg, read_run
from adaxbench.tasks import build_task
from adaxbench.tasks.datasets import load_dataset
from adaxbench.train.runner import run_in_dir
from adaxbench.train.validate import ConfigError, check_config
from test_datasets import fake_idx_set

OWN_TASK = ["task=custom", "task._target_=plugin_user_code.LeastSquares", "optimizer=sgd", "optimizer.momentum=0.0",
            "optimizer.lr=0.1", "trainer.log_every=1", "trainer.progress=false"]


def run_cfg(tmp_path, overrides, name="run"):
    cfg = compose_cfg(overrides)
    result = run_in_dir(cfg, tmp_path / name, overrides)
    assert result.status == "completed", result.error
    return read_run(tmp_path / name)


def test_own_task_first_sgd_step_matches_hand_computation(tmp_path):
    info, metrics = run_cfg(tmp_path, OWN_TASK + ["task.batch_size=32", "task.epochs=1", "+task.dim=4", "seed=7"])
    # The runner passed the config's keys and the context the constructor declares.
    assert user.SEEN["dim"] == 4 and user.SEEN["batch_size"] == 32 and user.SEEN["seed"] == 7
    assert user.SEEN["device"] == torch.device("cpu")
    # Full batch, w0 = 0: one SGD step is w1 = lr * 2/n X^T y; the test loss is mean((X w1 - y)^2).
    task = user.LeastSquares(32, dim=4, device=torch.device("cpu"), seed=0)
    x, y = user.as_numpy(task.x), user.as_numpy(task.y)
    w1 = 0.1 * 2 / len(y) * x.T @ y
    test = metrics[(metrics.split == "test") & (metrics.metric == "loss")].sort_values("step")
    assert test.value.tolist() == pytest.approx([np.mean(y ** 2), np.mean((x @ w1 - y) ** 2)], rel=1e-12)
    assert info["config"]["task"]["name"] == "LeastSquares"  # the class name unless task.name is given
    assert info["final"]["test/loss"] == pytest.approx(np.mean((x @ w1 - y) ** 2), rel=1e-12)


def test_own_task_provenance_and_version(tmp_path):
    info, _ = run_cfg(tmp_path, OWN_TASK + ["task.batch_size=8", "task.epochs=1"])
    from importlib.metadata import version

    assert info["env"]["adaxbench_version"] == version("adaxbench")
    source = (ROOT / "tests" / "plugin_user_code.py").read_bytes()
    task = info["env"]["plugins"]["task"]
    assert task["module"] == "plugin_user_code" and task["qualname"] == "LeastSquares"
    assert task["file"] == str(ROOT / "tests" / "plugin_user_code.py")
    assert task["sha256"] == hashlib.sha256(source).hexdigest()
    import inspect
    assert task["source_sha256"] == hashlib.sha256(inspect.getsource(user.LeastSquares).encode()).hexdigest()
    assert "optimizer" not in info["env"]["plugins"]  # torch.optim.SGD is versioned with torch


def test_version_without_installed_metadata(monkeypatch):
    import importlib.metadata as md

    import adaxbench
    from adaxbench.plugins import adaxbench_version

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    assert adaxbench_version() == adaxbench.__version__
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert adaxbench.__version__ == pyproject["project"]["version"]


@pytest.mark.parametrize("overrides, message", [
    ([], "task._target_ is missing: give task._target_=mypkg.MyClass (your own class)"),
    (["task._target_=plugin_user_code.Nope"], "task._target_='plugin_user_code.Nope' cannot be imported"),
    (["task._target_=plugin_user_code.LeastSquares", "+task.depth=3"],
     "task.depth is not an argument of LeastSquares; accepted: batch_size, dim, n"),
    (["task._target_=plugin_user_code.linear_to_zero"],
     "task.batch_size is not an argument of linear_to_zero; accepted: step, total_steps"),
    (["task._target_=plugin_user_code.LeastSquares", "+lr_schedule._target_=torch.optim.lr_scheduler.StepLR"],
     "lr_schedule: StepLR needs the argument 'step_size'; add +lr_schedule.step_size=VALUE"),
    (["task._target_=plugin_user_code.LeastSquares", "+lr_schedule._target_=torch.optim.lr_scheduler.StepLR",
      "+lr_schedule.step_size=2", "+lr_schedule.gama=0.5"], "lr_schedule.gama is not an argument of StepLR"),
    (["task._target_=plugin_user_code.LeastSquares", "+lr_schedule._target_=torch.optim.lr_scheduler.ReduceLROnPlateau"],
     "ReduceLROnPlateau needs a metric at every step"),
    (["task._target_=plugin_user_code.LeastSquares", "+lr_schedule._target_=plugin_user_code.SEEN"],
     "is neither a torch.optim.lr_scheduler class nor a step -> factor callable"),
])
def test_bad_targets_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        check_config(compose_cfg(["task=custom", *overrides]))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["task.model._target_=plugin_user_code.TinyNet", "+task.model.depth=2", "task.dataset=mnist"],
     "task.model.depth is not an argument of TinyNet"),
    (["task.dataset._target_=plugin_user_code.Nope", "task.model=mlp"],
     "task.dataset._target_='plugin_user_code.Nope' cannot be"),
    (["task.dataset._target_=torchvision.datasets.FakeData", "task.model=mlp"], "takes neither train= nor split="),
    (["task.dataset=/no/such/file.pt", "task.model=mlp"], "task.dataset=/no/such/file.pt: no such file"),
    (["task.model=mlp"], "task.dataset is missing: give task.dataset=PATH (a torch.save file"),
    (["task.dataset=mnist"], "task.model is missing: give task.model=NAME (logreg, mlp"),
])
def test_bad_image_parts_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        check_config(compose_cfg(["task=custom_image", *overrides]))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_target_exits_2_with_one_line(tmp_path, capsys):
    from adaxbench import cli

    # `adaxbench run`, in this process (tests/ is on sys.path)
    assert cli.main(["run", "task=custom", "task._target_=plugin_user_code.LeastSquares", "+task.depth=3",
                     f"hydra.run.dir={tmp_path}/r"]) == 2
    assert capsys.readouterr().err.strip() == ("adaxbench: error: task.depth is not an argument of LeastSquares; "
                                               "accepted: batch_size, dim, n")


def test_task_without_the_protocol_fails_in_one_line(tmp_path):
    cfg = compose_cfg(["task=custom", "task._target_=plugin_user_code.NoLoss"])
    with pytest.raises(ConfigError, match="task._target_='plugin_user_code.NoLoss' is not a task class: it lacks batches, loss, "
                                         "evaluate of the task protocol"):
        run_in_dir(cfg, tmp_path / "r", [])
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"


# ---------------------------------------------------------------------------------- lr schedules


def logged_lr(metrics):
    rows = metrics[(metrics.split == "batch") & (metrics.metric == "lr")].sort_values("step")
    return rows.step.to_numpy(), rows.value.to_numpy()


def test_torch_scheduler_class_is_stepped_per_optimizer_step(tmp_path):
    # 4 steps per epoch, 2 epochs; StepLR(step_size=3, gamma=0.5): step t uses lr * 0.5^((t-1)//3).
    _, metrics = run_cfg(tmp_path, OWN_TASK + ["task.batch_size=8", "task.epochs=2",
                                               "+lr_schedule._target_=torch.optim.lr_scheduler.StepLR",
                                               "+lr_schedule.step_size=3", "+lr_schedule.gamma=0.5"])
    steps, lr = logged_lr(metrics)
    assert steps.tolist() == list(range(1, 9))
    assert lr == pytest.approx([0.1 * 0.5 ** ((t - 1) // 3) for t in steps])


def test_onecycle_gets_total_steps_and_checkpoint_loads(tmp_path):
    _, metrics = run_cfg(tmp_path, OWN_TASK + ["task.batch_size=8", "task.epochs=2",
                                               "+lr_schedule._target_=torch.optim.lr_scheduler.OneCycleLR",
                                               "+lr_schedule.max_lr=0.2", "trainer.keep_checkpoint=true"])
    reference = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(1)], lr=0.1), max_lr=0.2,
                                                    total_steps=8)
    expected = []
    for _ in range(8):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert logged_lr(metrics)[1] == pytest.approx(expected)
    torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)  # the resume path reads it so


def test_step_factor_callable_with_context_and_warmup(tmp_path):
    _, metrics = run_cfg(tmp_path, OWN_TASK + ["task.batch_size=8", "task.epochs=2",
                                               "+lr_schedule._target_=plugin_user_code.linear_to_zero",
                                               "+lr_schedule.warmup_steps=2"])
    steps, lr = logged_lr(metrics)
    # lr of step t = s + 1: 0.1 * (1 - s/8) * min(1, (s + 1)/2)
    assert lr == pytest.approx([0.1 * (1 - (t - 1) / 8) * min(1.0, t / 2) for t in steps])


@pytest.mark.parametrize("cfg", [
    {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": 7},
    {"_target_": "plugin_user_code.linear_to_zero", "warmup_steps": 3},
    {"_target_": "plugin_user_code.HalveEvery", "every": 2},
], ids=["torch-class", "function", "callable-class"])
def test_own_schedule_resumes_from_its_checkpointed_state(cfg, tmp_path):
    from adaxbench.optim.schedules import build_scheduler

    def scheduler():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        return opt, build_scheduler(opt, cfg, steps_per_epoch=4, total_steps=10)

    opt, straight = scheduler()
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        straight.step()
    opt, first = scheduler()
    for _ in range(5):
        opt.step()
        first.step()
    torch.save({"opt": opt.state_dict(), "sched": first.state_dict()}, tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)  # as the runner's resume loads it
    opt, resumed = scheduler()
    opt.load_state_dict(state["opt"])
    resumed.load_state_dict(state["sched"])
    rest = []
    for _ in range(5):
        rest.append(opt.param_groups[0]["lr"])
        opt.step()
        resumed.step()
    assert rest == pytest.approx(lrs[5:])
    assert len(set(lrs)) > 2  # the schedule does move


# -------------------------------------------------------------------------- own models and data


def test_torchvision_dataset_class_reads_exactly_what_our_reader_reads(tmp_path):
    fake_idx_set(tmp_path / "MNIST" / "raw", n_train=20, n_test=10)
    ours = load_dataset("mnist", tmp_path)
    theirs = load_dataset({"_target_": "torchvision.datasets.MNIST"}, tmp_path)  # root = data.root
    for a in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(ours, a), getattr(theirs, a)), a
    assert (theirs.num_classes, theirs.mean, theirs.std) == (ours.num_classes, ours.mean, ours.std)


def test_item_by_item_dataset_and_saved_tensors(tmp_path):
    arrays = load_dataset({"_target_": "plugin_user_code.TrainTestImages", "size": 12}, tmp_path)
    assert user.SEEN["dataset_roots"][-2:] == [str(tmp_path)] * 2  # root defaults to data.root
    train, test = user.TrainTestImages("x", train=True, size=12), user.TrainTestImages("x", train=False, size=12)
    assert torch.equal(arrays.train_x, train.images) and torch.equal(arrays.test_y, test.labels)
    assert arrays.num_classes == int(max(train.labels.max(), test.labels.max())) + 1
    # torch.save'd tensors, NHWC as numpy users keep them: read back as NCHW.
    path = tmp_path / "data.pt"
    torch.save({"train_x": train.images.permute(0, 2, 3, 1).contiguous(), "train_y": train.labels,
                "test_x": test.images.permute(0, 2, 3, 1).contiguous(), "test_y": test.labels, "num_classes": 7},
               path)
    saved = load_dataset(str(path), tmp_path)
    assert torch.equal(saved.train_x, train.images) and torch.equal(saved.test_x, test.images)
    assert saved.num_classes == 7 and saved.source == str(path.resolve())
    torch.save({"train_x": train.images.float(), "train_y": train.labels, "test_x": test.images,
                "test_y": test.labels}, path)
    with pytest.raises(Exception, match="images must be uint8"):
        load_dataset(str(path), tmp_path)


def test_own_model_and_dataset_train_through_our_pipeline(tmp_path):
    train = user.TrainTestImages("x", train=True, size=40)
    test = user.TrainTestImages("x", train=False, size=16)
    torch.save({"train_x": train.images, "train_y": train.labels, "test_x": test.images, "test_y": test.labels},
               tmp_path / "data.pt")
    overrides = ["task=custom_image", f"task.dataset={tmp_path}/data.pt", "task.model._target_=plugin_user_code.TinyNet",
                 "+task.model.width=5", "task.valid_size=8", "task.batch_size=8", "task.epochs=1", "task.augment=true",
                 "trainer.progress=false", "trainer.log_every=1"]
    info, metrics = run_cfg(tmp_path, overrides)
    assert {k: user.SEEN[k] for k in ("num_classes", "in_channels", "image_size", "width")} == \
        {"num_classes": 4, "in_channels": 3, "image_size": 6, "width": 5}
    assert (metrics.split == "valid").any() and info["final"]["test/accuracy"] >= 0
    assert len(metrics[(metrics.split == "batch") & (metrics.metric == "loss")]) == (40 - 8) // 8
    assert info["env"]["plugins"]["task.dataset"]["sha256"] == \
        hashlib.sha256((tmp_path / "data.pt").read_bytes()).hexdigest()
    assert info["env"]["plugins"]["task.model"]["qualname"] == "TinyNet"


def test_model_name_keeps_working_with_own_data(tmp_path):
    cfg = compose_cfg(["task=custom_image", "task.dataset._target_=plugin_user_code.TrainTestImages", "+task.dataset.size=30",
                       "task.model=mlp", "task.valid_size=10"])
    check_config(cfg)
    task = build_task(cfg.task, cfg.data, torch.device("cpu"), 0)
    assert task.num_train == 20 and task.model()(task.test_x[:2].float()).shape == (2, 4)


# --------------------------------------------------------------------------------- the example

EXAMPLE = ROOT / "examples" / "custom_optimizer"


def test_example_lion_first_steps_by_hand():
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_lion", EXAMPLE / "lion.py")
    lion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lion)
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    opt = lion.Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    g1, g2 = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64), torch.tensor([-0.5, -0.1, 0.4], dtype=torch.float64)
    p.grad = g1.clone()
    opt.step()
    # m0 = 0: sign((1 - β1) g1); decoupled decay first: p1 = p0 (1 - lr λ) - lr sign(g1)
    p1 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * 0.95 - 0.1 * torch.sign(g1)
    assert torch.allclose(p.detach(), p1)
    p.grad = g2.clone()
    opt.step()
    m1 = 0.01 * g1
    p2 = p1 * 0.95 - 0.1 * torch.sign(0.9 * m1 + 0.1 * g2)
    assert torch.allclose(p.detach(), p2)
    assert torch.allclose(opt.state[p]["exp_avg"], 0.99 * m1 + 0.01 * g2)


def test_example_config_dir_yaml_is_valid():
    import adaxbench

    sys.path.insert(0, str(EXAMPLE))
    try:
        cls, kwargs = check_config(adaxbench.compose(["optimizer=lion", "task=quadratic_deep"], config_dir=EXAMPLE / "configs"))
    finally:
        sys.path.remove(str(EXAMPLE))
    assert cls.__module__ == "lion" and kwargs == {"lr": 3e-4, "betas": (0.9, 0.99), "weight_decay": 0.0}


def test_example_runs_end_to_end_from_a_clean_environment(tmp_path):
    # A fresh cwd, PYTHONPATH only to the example, the script as a user runs it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HYDRA", "ADAXBENCH", "WANDB"))}
    proc = subprocess.run([sys.executable, str(EXAMPLE / "compare.py"), "--quick"], cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(EXAMPLE), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "lion_vs_adam_py"
    assert (out / "report" / "report.md").is_file() and "report: runs/lion_vs_adam_py/report/report.md" in proc.stdout
    runs = {d.parent.name: json.loads((d / "run.json").read_text()) for d in out.glob("*/0")}
    assert sorted(runs) == ["adam", "adax", "lion"]
    assert {k: r["status"] for k, r in runs.items()} == dict.fromkeys(runs, "completed")
    lion = runs["lion"]
    assert lion["config"]["optimizer"]["name"] == "Lion"
    assert lion["env"]["plugins"]["optimizer"]["sha256"] == hashlib.sha256((EXAMPLE / "lion.py").read_bytes()).hexdigest()
    assert "Lion" in (out / "report" / "report.md").read_text()


@pytest.mark.parametrize("overrides, message", [
    (["optimizer=custom", "optimizer._target_=torch.optim.Adamm"],
     "optimizer._target_='torch.optim.Adamm' cannot be imported (No module named 'torch.optim.Adamm') "
     "(did you mean torch.optim.Adam?)"),
    (["optimizer=custom", "optimizer._target_=torch.optm.Adam"],
     "optimizer._target_='torch.optm.Adam' cannot be imported (No module named 'torch.optm') "
     "(did you mean torch.optim?)"),
    (["task=custom", "task._target_=plugin_user_code.LeastSquare"],
     "task._target_='plugin_user_code.LeastSquare' cannot be imported (No module named "
     "'plugin_user_code.LeastSquare'; 'plugin_user_code' is not a package) (did you mean plugin_user_code.LeastSquares?)"),
    (["optimizer=custom", "optimizer._target_=nopkg.Opt"],  # no module to look in: where to look
     "optimizer._target_='nopkg.Opt' cannot be imported (No module named 'nopkg'); is its module on PYTHONPATH?"),
])
def test_a_typo_in_a_target_gets_the_name_likely_meant(overrides, message, tmp_path, capsys):
    """From the command line and from the API alike (one line, exit 2, nothing written)."""
    assert cli.main(["run", *overrides, f"hydra.run.dir={tmp_path / 'cli'}"]) == 2
    assert capsys.readouterr().err == f"adaxbench: error: {message}\n"
    with pytest.raises(ConfigError) as e:
        adaxbench.run(overrides=overrides, run_dir=tmp_path / "api")
    assert str(e.value) == message
    assert not (tmp_path / "cli").exists() and not (tmp_path / "api").exists()
