"""Packed runs: each member of a pack is the run it would have been alone (metrics, run.json,
checkpoint), diverging members leave the others alone, lr grids and resumes are exact, and
``hydra/launcher=packed`` gives every job the basic launcher's run dir."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adaxbench.cli import config_options
from adaxbench.report.load import load_runs
from adaxbench.rundir import WriteError
from adaxbench.train.packed import Member, pack_key, plan, train
from adaxbench.train.runner import Interrupted, Run, run_in_dir
from adaxbench.train.validate import check_config

from conftest import EVERY_EPOCH, adaxbench, compose_cfg, fake_image_arrays, needs_fmnist, read_run

CPU = ["trainer.progress=false", "trainer.device=cpu", EVERY_EPOCH]


def _members(base: Path, runs: list[list[str]]) -> list[Member]:
    members = []
    for k, overrides in enumerate(runs):
        cfg = compose_cfg(overrides)
        members.append(Member(Run(cfg, base / f"packed{k}", overrides), int(cfg.seed), check_config(cfg)))
    return members


def _alone_and_packed(tmp_path: Path, runs: list[list[str]]) -> list[tuple[tuple, tuple]]:
    """Train every run alone (run_in_dir) and all of them as one pack; (alone, packed) records."""
    for k, overrides in enumerate(runs):
        run_in_dir(compose_cfg(overrides), tmp_path / f"alone{k}", overrides)
    train(_members(tmp_path, runs))
    return [(read_run(tmp_path / f"alone{k}"), read_run(tmp_path / f"packed{k}")) for k in range(len(runs))]


def _assert_same_rows(alone: pd.DataFrame, packed_: pd.DataFrame, rtol: float) -> None:
    keys = ["step", "epoch", "split", "metric"]
    pd.testing.assert_frame_equal(alone[keys], packed_[keys])
    np.testing.assert_allclose(packed_["value"], alone["value"], rtol=rtol, atol=0)


SYNTHETIC = {
    "quadratic_deep": ["task=quadratic_deep", "optimizer=adam", "trainer.epochs=2", "trainer.log_every=2"],
    "rosenbrock_2d": ["task=rosenbrock_2d", "optimizer=adax", "optimizer.lr=0.01", "task.train_size=2560",
                      "trainer.epochs=2", "trainer.log_every=4"],
    "reddi_online": ["task=reddi_online", "optimizer=adam", "optimizer.lr=0.5", "optimizer.betas=[0.9,0.99]",
                     "task.steps_per_epoch=250", "trainer.epochs=2", "trainer.log_every=10"],
}


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "vmap"])
@pytest.mark.parametrize("task", sorted(SYNTHETIC))
def test_synthetic_members_equal_their_runs_alone(task, stacked, tmp_path, monkeypatch):
    """The synthetic problems take the members stacked (``broadcasts_members``); under vmap, as a
    task without it is called, they give the same."""
    from adaxbench.tasks import synthetic

    for cls in (synthetic.QuadraticDeep, synthetic.Rosenbrock2D, synthetic.Reddi):
        monkeypatch.setattr(cls, "broadcasts_members", stacked)
    runs = [[*SYNTHETIC[task], *CPU, f"seed={seed}"] for seed in (0, 1, 2)]
    records = _alone_and_packed(tmp_path, runs)
    for (info_a, rows_a), (info_p, rows_p) in records:
        assert info_p["status"] == info_a["status"] == "completed", info_p["error"]
        _assert_same_rows(rows_a, rows_p, rtol=1e-6)
        assert info_p["final"] == pytest.approx(info_a["final"], rel=1e-6)
        assert info_p["progress"] == info_a["progress"] and info_p["config"] == info_a["config"]
        assert info_p["env"]["packed"] == {"members": 3} and info_p["env"]["optimizer_impl"] == \
            info_a["env"]["optimizer_impl"]
        # the pack's process gets the thread budget a run alone gets, and records it
        assert (info_p["env"]["threads"], info_p["env"]["threads_reason"]) == \
            (info_a["env"]["threads"], info_a["env"]["threads_reason"])
    # Seeds matter: the members were not one run copied three times.
    data = [r[1][1] for r in records]
    batch = [d[(d.split == "batch") & (d.metric == "loss")]["value"].to_numpy() for d in data]
    if task != "reddi_online":  # its data order does not depend on the seed
        assert not np.array_equal(batch[0], batch[1])


def test_a_task_that_claims_to_take_members_stacked_but_gives_one_value_for_all_fails_the_pack(tmp_path,
                                                                                              monkeypatch):
    """A task with ``broadcasts_members`` whose loss gives one value for all members (here, the mean over
    every member's batch) would mix the members' gradients: the pack fails them with one line instead.
    (Values of the members' shape that still mix them cannot be told apart: the flag is the task's word.)"""
    from adaxbench.tasks import synthetic

    monkeypatch.setattr(synthetic.Rosenbrock2D, "_loss", staticmethod(
        lambda u, v, noise: ((1 - u) ** 2 + 100 * (v - u**2) ** 2).mean() + (noise.mean() * u.mean())))
    runs = [[*SYNTHETIC["rosenbrock_2d"], *CPU, f"seed={seed}"] for seed in (0, 1)]
    members = _members(tmp_path, runs)
    train(members)
    for k in range(2):
        info, _ = read_run(tmp_path / f"packed{k}")
        assert info["status"] == "failed"
        # (at the evaluation before the first step: the loss of every split)
        assert "Rosenbrock2D sets broadcasts_members, but gave values of shapes [(), (), ()] for 2 stacked " \
            "members" in info["error"]


def test_checkpoint_is_the_unpacked_checkpoint(tmp_path):
    runs = [[*SYNTHETIC["reddi_online"], *CPU, "task=reddi_stochastic", "trainer.keep_checkpoint=true", f"seed={seed}"] for seed in (3, 4)]
    for (info_a, rows_a), (info_p, rows_p) in _alone_and_packed(tmp_path, runs):
        _assert_same_rows(rows_a, rows_p, rtol=1e-6)
    for k in range(2):
        a = torch.load(tmp_path / f"alone{k}" / "checkpoint.pt", weights_only=True)
        p = torch.load(tmp_path / f"packed{k}" / "checkpoint.pt", weights_only=True)
        assert a.keys() == p.keys()
        for key in ("model", "scheduler", "step", "epoch", "metric_rows"):
            assert str(a[key]) == str(p[key]), key
        assert a["optimizer"]["param_groups"] == p["optimizer"]["param_groups"]
        assert str(a["optimizer"]["state"]) == str(p["optimizer"]["state"])
        assert all(torch.equal(a["rng"][k], p["rng"][k]) if isinstance(a["rng"][k], torch.Tensor)
                   else a["rng"][k] == p["rng"][k] for k in a["rng"])


def test_lr_grid_pack_is_exact(tmp_path):
    common = ["task=quadratic_deep", "optimizer=sched_adax", "trainer.epochs=2", "trainer.log_every=1", *CPU]
    runs = [[*common, "optimizer.lr=0.01", "seed=0"], [*common, "optimizer.lr=0.1", "seed=0"],
            [*common, "optimizer.lr=0.01", "seed=1"], [*common, "optimizer.lr=0.3", "seed=2"]]
    assert len({pack_key(compose_cfg(r)) for r in runs}) == 1
    for (info_a, rows_a), (info_p, rows_p) in _alone_and_packed(tmp_path, runs):
        assert info_p["status"] == "completed"
        _assert_same_rows(rows_a, rows_p, rtol=1e-6)
        lrs = rows_p[rows_p.metric == "lr"]["value"].unique()
        assert len(lrs) == 1 and lrs[0] == info_p["config"]["optimizer"]["lr"]


def test_a_diverging_member_is_recorded_and_the_others_carry_on(tmp_path):
    common = ["task=rosenbrock_2d", "optimizer=sgd", "task.train_size=1280", "trainer.epochs=2",
              "trainer.log_every=2", *CPU]
    runs = [[*common, "optimizer.lr=1e-3", "seed=0"], [*common, "optimizer.lr=0.5", "seed=1"],
            [*common, "optimizer.lr=1e-3", "seed=2"]]
    records = _alone_and_packed(tmp_path, runs)
    statuses = [(a[0]["status"], p[0]["status"]) for a, p in records]
    assert statuses == [("completed", "completed"), ("diverged", "diverged"), ("completed", "completed")]
    for (info_a, rows_a), (info_p, rows_p) in records:
        assert info_p["error"] == info_a["error"]
        _assert_same_rows(rows_a, rows_p, rtol=1e-6)


def test_resumed_pack_ends_as_the_uninterrupted_runs(tmp_path, monkeypatch):
    """A pack stopped by SIGTERM after epoch 1 resumes as a pack (members 0, 1) or alone (2)."""
    runs = [[*SYNTHETIC["quadratic_deep"], *CPU, f"seed={seed}"] for seed in (0, 1, 2)]
    for k, overrides in enumerate(runs):
        run_in_dir(compose_cfg(overrides), tmp_path / f"alone{k}", overrides)
    saved = []
    original = Run.save_checkpoint

    def save_then_stop(self, *args):
        original(self, *args)
        saved.append(self.run_dir)
        if len(saved) == len(runs):
            raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(Run, "save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        train(_members(tmp_path, runs))
    assert [read_run(tmp_path / f"packed{k}")[0]["status"] for k in range(3)] == ["interrupted"] * 3
    monkeypatch.setattr(Run, "save_checkpoint", original)
    train(_members(tmp_path, runs[:2]))
    run_in_dir(compose_cfg(runs[2]), tmp_path / "packed2", runs[2], resume=True)
    for k in range(3):
        (info_a, rows_a), (info_p, rows_p) = read_run(tmp_path / f"alone{k}"), read_run(tmp_path / f"packed{k}")
        assert info_p["status"] == "completed" and info_p["progress"]["resumed_from_epoch"] == 1
        _assert_same_rows(rows_a, rows_p, rtol=1e-6)


def test_a_signal_stops_a_pack_at_a_step_and_it_resumes_exactly(tmp_path, monkeypatch):
    """SIGTERM in the middle of epoch 2: every member checkpoints at that step (as a run alone
    does), and resumes mid-epoch, as a pack (members 0, 1) or alone (2), to the uninterrupted
    runs' metrics."""
    import os

    from adaxbench.train.packed import Pack

    runs = [[*SYNTHETIC["quadratic_deep"], *CPU, f"seed={seed}"] for seed in (0, 1, 2)]
    for k, overrides in enumerate(runs):
        run_in_dir(compose_cfg(overrides), tmp_path / f"alone{k}", overrides)
    before = signal.getsignal(signal.SIGTERM)
    original, steps = Pack.run_after_step, []

    def step_then_signal(self):
        original(self)
        steps.append(1)
        if len(steps) == 10:  # 7 steps per epoch: the signal comes during step 10's bookkeeping
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Pack, "run_after_step", step_then_signal)
    with pytest.raises(Interrupted):
        train(_members(tmp_path, runs))
    monkeypatch.setattr(Pack, "run_after_step", original)
    for k in range(3):
        info, _ = read_run(tmp_path / f"packed{k}")
        assert info["status"] == "interrupted" and info["progress"]["step"] == 10
        assert info["progress"]["stops"] == [{"step": 10, "signal": "SIGTERM"}]
        assert torch.load(tmp_path / f"packed{k}" / "checkpoint.pt", weights_only=True)["step"] == 10
    assert signal.getsignal(signal.SIGTERM) is before  # the pack's handler is gone again
    train(_members(tmp_path, runs[:2]))
    run_in_dir(compose_cfg(runs[2]), tmp_path / "packed2", runs[2], resume=True)
    for k in range(3):
        (info_a, rows_a), (info_p, rows_p) = read_run(tmp_path / f"alone{k}"), read_run(tmp_path / f"packed{k}")
        assert info_p["status"] == "completed" and info_p["progress"]["step"] == info_a["progress"]["step"] == 14
        assert info_p["progress"]["resumed_from_step"] == 10
        _assert_same_rows(rows_a, rows_p, rtol=1e-6)


def test_a_member_whose_save_fails_at_a_stop_fails_alone_and_the_others_stop(tmp_path, monkeypatch):
    """SIGTERM during epoch 2, and seed 1's checkpoint cannot be written there: seed 1 is recorded failed
    by its own error, the others interrupted at the step; all three resume to their runs alone."""
    import os

    from adaxbench.train.packed import Pack

    runs = [[*SYNTHETIC["quadratic_deep"], *CPU, f"seed={seed}"] for seed in (0, 1, 2)]
    for k, overrides in enumerate(runs):
        run_in_dir(compose_cfg(overrides), tmp_path / f"alone{k}", overrides)
    after_step, save_checkpoint, steps = Pack.run_after_step, Run.save_checkpoint, []

    def step_then_signal(self):
        after_step(self)
        steps.append(1)
        if len(steps) == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    def save_unless_stopping_seed_1(self, *args):
        if self.stops and self.cfg.seed == 1:
            _fail_checkpoint_write(self)
        save_checkpoint(self, *args)

    monkeypatch.setattr(Pack, "run_after_step", step_then_signal)
    monkeypatch.setattr(Run, "save_checkpoint", save_unless_stopping_seed_1)
    with pytest.raises(Interrupted):
        train(_members(tmp_path, runs))
    monkeypatch.undo()
    records = [read_run(tmp_path / f"packed{k}")[0] for k in range(3)]
    assert [(r["status"], r["error"]) for r in records] == [
        ("interrupted", "received SIGTERM"),
        ("failed", f"cannot write {tmp_path / 'packed1'}/checkpoint.pt: Permission denied; epochs up to 1 are saved; "
                   "free space and resume"),
        ("interrupted", "received SIGTERM")]
    train(_members(tmp_path, runs))
    for k in range(3):
        (info_a, rows_a), (info_p, rows_p) = read_run(tmp_path / f"alone{k}"), read_run(tmp_path / f"packed{k}")
        assert info_p["status"] == "completed" and info_p["progress"]["resumed_from_step"] == (7 if k == 1 else 10)
        _assert_same_rows(rows_a, rows_p, rtol=1e-6)


def test_what_cannot_be_packed_runs_alone():
    base = ["task=quadratic_deep", *CPU]
    configs = [compose_cfg([*base, "optimizer=adam", "seed=0"]), compose_cfg([*base, "optimizer=adafactor", "seed=0"]),
               compose_cfg([*base, "optimizer=adam", "seed=1"]), compose_cfg([*base, "optimizer=adafactor", "seed=1"]),
               compose_cfg([*base, "optimizer=adax", "seed=0"]), compose_cfg([*base, "optimizer=adam", "seed=2",
                                                                            "trainer.compile=true"]),
               compose_cfg([*base, "optimizer=adam", "seed=3", "task=rosenbrock_2d"]),
               compose_cfg([*base, "optimizer=adam", "seed=4"])]
    assert plan(configs, max_pack=2) == [[0, 2], [1], [3], [4], [5], [6], [7]]
    assert plan(configs, max_pack=64) == [[0, 2, 7], [1], [3], [4], [5], [6]]


def test_packed_launcher_sweep_has_the_basic_launchers_run_dirs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["run", "-m", "hydra/launcher=packed", "task=quadratic_deep", "optimizer=adam,adafactor", "seed=0,1",
            "trainer.epochs=2", "trainer.log_every=3", *CPU,
            f"hydra.sweep.dir={sweep}"]
    proc = adaxbench(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 completed, 0 diverged, 0 failed" in proc.stdout
    assert "training 2 jobs as one pack" in proc.stdout + proc.stderr  # adam's seeds; Adafactor's alone
    for job in range(4):
        run_dir = sweep / str(job)
        assert {p.name for p in (run_dir / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
        info, metrics = read_run(run_dir)
        # Finished: like an unpacked run, it keeps no checkpoint (trainer.keep_checkpoint=false).
        assert info["status"] == "completed" and not (run_dir / "checkpoint.pt").exists()
        assert f"seed={job % 2}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
        assert info["config"]["seed"] == job % 2 and f"seed={job % 2}" in info["overrides"]
        assert ["optimizer=adam", "optimizer=adafactor"][job // 2] in info["overrides"]
        assert ("packed" in info["env"]) == (job < 2)
        # its log holds its own lines only (the launcher's '#k : overrides' lines go to the console)
        log_text = (run_dir / "adaxbench.log").read_text() if (run_dir / "adaxbench.log").exists() else ""
        assert not any(f"#{k} :" in log_text for k in range(4)), (job, log_text)
    # A relaunch skips every finished job, packed or not; the report reads the sweep.
    again = adaxbench(*args, cwd=tmp_path)
    assert again.returncode == 0 and again.stderr.count("skipping") + again.stdout.count("skipping") == 4
    runs = load_runs([sweep])
    assert len(runs.runs) == 4 and set(runs.runs["status"]) == {"completed"}
    assert set(runs.runs["optimizer"]) == {"adam", "adafactor"} and runs.metrics["run"].nunique() == 4


def test_a_job_dir_it_cannot_write_or_another_process_trains_is_one_line_as_with_the_basic_launcher(tmp_path):
    """Job 1's dir cannot be written (.hydra is a file), job 2's is another live process's: each says so in
    one line and the sweep goes on, counting 1 failed and skipping 2, exactly as the basic launcher does."""
    from filelock import FileLock

    said = {}
    for launcher in ("basic", "packed"):
        sweep = tmp_path / launcher
        (sweep / "1").mkdir(parents=True)
        (sweep / "1" / ".hydra").write_text("x\n")
        (sweep / "2").mkdir()
        with FileLock(sweep / "2" / ".lock"):
            proc = adaxbench("run", "-m", f"hydra/launcher={launcher}", "task=quadratic_deep", "trainer.epochs=1",
                             "seed=0,1,2", *CPU, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "1 completed, 0 diverged, 1 failed" in proc.stdout and "1 running in another process" in proc.stdout
        said[launcher] = sorted(line.replace(str(sweep), "S") for line in proc.stderr.splitlines()
                                if "S" in line.replace(str(sweep), "S") and "[" not in line)
    assert said["packed"] == said["basic"]
    assert [line for line in said["packed"] if not line.startswith("completed in ")] == [
        "adaxbench: error: cannot use S/1: File exists",
        "skipping S/2: another live process is training it (it holds S/2/.lock)"]


def test_launcher_is_listed_and_bad_max_pack_is_one_line(capsys):
    from hydra_plugins.adaxbench_packed_launcher.packed_launcher import PackedLauncher

    assert "packed" in config_options("hydra/launcher")
    with pytest.raises(SystemExit) as exit_:
        PackedLauncher(max_pack=0)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "adaxbench: error: hydra.launcher.max_pack must be an integer >= 1, got 0\n"


@needs_fmnist
def test_fmnist_mlp_members_match_their_runs_alone(tmp_path):
    common = ["task=fmnist_mlp", "optimizer=adam", "trainer.train_limit=1024", "trainer.eval_limit=1000",
              "trainer.epochs=1", "trainer.log_every=2", "trainer.keep_checkpoint=true", *CPU]
    for (info_a, rows_a), (info_p, rows_p) in _alone_and_packed(tmp_path, [[*common, "seed=0"], [*common, "seed=1"]]):
        assert info_p["status"] == "completed"
        assert info_p["final"]["test/loss"] == pytest.approx(info_a["final"]["test/loss"], rel=1e-4)
        assert abs(info_p["final"]["test/accuracy"] - info_a["final"]["test/accuracy"]) <= 0.002
        _assert_same_rows(rows_a, rows_p, rtol=1e-3)  # float32 GEMMs batched differently: not bitwise
    # The pack stores Linear weights transposed: a member's checkpoint must still hold its weights
    # and Adam state in the model's own (out, in) layout, contiguous, as its run alone saved them.
    for k in range(2):
        a = torch.load(tmp_path / f"alone{k}" / "checkpoint.pt", weights_only=True)
        p = torch.load(tmp_path / f"packed{k}" / "checkpoint.pt", weights_only=True)
        for name, value in a["model"].items():
            assert p["model"][name].shape == value.shape and p["model"][name].is_contiguous()
            torch.testing.assert_close(p["model"][name], value, rtol=1e-3, atol=1e-5)
        for i, state in a["optimizer"]["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                mine = p["optimizer"]["state"][i][key]
                assert mine.shape == state[key].shape and mine.is_contiguous(), (i, key)
                torch.testing.assert_close(mine, state[key], rtol=1e-2, atol=1e-7)


def test_mlp_lr_grid_pack_matches_its_runs_alone(tmp_path, monkeypatch):
    """Two param groups of an MLP (its Linear weights stored transposed, joined by a cat)."""
    from adaxbench.tasks import image

    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: fake_image_arrays(name))
    common = ["task=mnist_mlp", "optimizer=adam", "task.valid_size=32", "trainer.train_limit=256",
              "trainer.eval_limit=64", "trainer.epochs=1", "trainer.log_every=1", "trainer.keep_checkpoint=true", *CPU]
    runs = [[*common, "optimizer.lr=1e-3", "seed=0"], [*common, "optimizer.lr=1e-2", "seed=0"],
            [*common, "optimizer.lr=1e-3", "seed=1"]]
    for k, ((info_a, rows_a), (info_p, rows_p)) in enumerate(_alone_and_packed(tmp_path, runs)):
        assert info_p["status"] == "completed" and info_p["env"]["packed"] == {"members": 3}
        _assert_same_rows(rows_a, rows_p, rtol=1e-3)
        a = torch.load(tmp_path / f"alone{k}" / "checkpoint.pt", weights_only=True)
        p = torch.load(tmp_path / f"packed{k}" / "checkpoint.pt", weights_only=True)
        for name, value in a["model"].items():
            torch.testing.assert_close(p["model"][name], value, rtol=1e-3, atol=1e-5)


def test_resnet20_members_keep_their_own_batchnorm_statistics(tmp_path, monkeypatch):
    from adaxbench.tasks import image

    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: fake_image_arrays(name))
    common = ["task=cifar10_resnet20", "optimizer=adaxw", "task.valid_size=32", "task.batch_size=32",
              "trainer.train_limit=64", "trainer.eval_limit=32", "trainer.epochs=1", "trainer.log_every=1",
              "trainer.keep_checkpoint=true", *CPU]
    records = _alone_and_packed(tmp_path, [[*common, "seed=0"], [*common, "seed=1"]])
    for (info_a, rows_a), (info_p, rows_p) in records:
        assert info_p["status"] == "completed"
        # Step 1's mean effective lr, lr/(|g| + eps) averaged, is ruled by the few |g| near eps,
        # where float32 rounding of a batched GEMM moves it by percents (the pack stores Linear
        # weights transposed); every metric, the median and later steps must still agree.
        ill = ((rows_a.metric == "eff_lr_mean") & (rows_a.step <= 1)).to_numpy()
        _assert_same_rows(rows_a[~ill], rows_p[~ill], rtol=1e-3)
        assert ill.sum() == 1
    stats = []
    for k in range(2):
        alone = torch.load(tmp_path / f"alone{k}" / "checkpoint.pt", weights_only=True)["model"]
        mine = torch.load(tmp_path / f"packed{k}" / "checkpoint.pt", weights_only=True)["model"]
        for name in ("bn.running_mean", "bn.running_var", "blocks.8.bn2.running_var"):
            torch.testing.assert_close(mine[name], alone[name], rtol=1e-4, atol=1e-6)
        assert mine["bn.num_batches_tracked"] == alone["bn.num_batches_tracked"] == 2
        stats.append(mine["bn.running_mean"])
    assert not torch.allclose(stats[0], stats[1])  # each member its own statistics


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("task", ["quadratic_deep", "reddi_online"])
def test_packed_on_cuda_matches_unpacked_on_cuda(task, tmp_path):
    runs = [[*SYNTHETIC[task], "trainer.progress=false", "trainer.device=cuda", f"seed={seed}"] for seed in (0, 1)]
    for (info_a, rows_a), (info_p, rows_p) in _alone_and_packed(tmp_path, runs):
        assert info_p["status"] == info_a["status"] == "completed" and info_p["env"]["device"].startswith("cuda")
        _assert_same_rows(rows_a, rows_p, rtol=1e-4)  # cuBLAS may sum a batched GEMM in another order


def test_conv_net_with_l2_in_bf16_channels_last(tmp_path, monkeypatch):
    """cifar10_3c3d: DeepOBS's L2 term under vmap, bf16 autocast and channels_last in a pack."""
    from adaxbench.tasks import image

    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: fake_image_arrays(name))
    common = ["task=cifar10_3c3d", "optimizer=adam", "task.valid_size=32", "task.batch_size=32",
              "trainer.train_limit=64", "trainer.eval_limit=32", "trainer.epochs=1", "trainer.log_every=1",
              "trainer.precision=bf16", "trainer.channels_last=true", *CPU]
    for (info_a, rows_a), (info_p, rows_p) in _alone_and_packed(tmp_path, [[*common, "seed=0"], [*common, "seed=1"]]):
        assert info_p["status"] == "completed"
        first = rows_a.step == 1  # the first step's loss (with its L2 term), before any update
        np.testing.assert_allclose(rows_p[first & (rows_p.metric == "loss")]["value"],
                                   rows_a[first & (rows_a.metric == "loss")]["value"], rtol=1e-2)
        assert info_p["final"]["test/loss"] == pytest.approx(info_a["final"]["test/loss"], rel=2e-2)


def test_dropout_model_members_run_one_by_one(tmp_path, monkeypatch):
    """All-CNN-C draws dropout masks from the global RNG: its jobs train alone, unchanged."""
    from adaxbench.tasks import image

    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: fake_image_arrays(name))
    executed = []
    original = Run.execute
    monkeypatch.setattr(Run, "execute", lambda self, **kw: executed.append(self.run_dir) or original(self, **kw))
    common = ["task=cifar100_allcnnc", "optimizer=sgd", "task.valid_size=8", "task.batch_size=8",
              "trainer.train_limit=8", "trainer.eval_limit=8", "trainer.epochs=1", "trainer.log_every=1", *CPU]
    train(_members(tmp_path, [[*common, "seed=0"], [*common, "seed=1"]]))
    assert executed == [tmp_path / "packed0", tmp_path / "packed1"]
    for k in range(2):
        info, rows = read_run(tmp_path / f"packed{k}")
        assert info["status"] == "completed" and "packed" not in info["env"] and (rows.split == "test").any()


def test_named_tuple_batches_stack_as_their_type():
    """A task may yield NamedTuple batches (its fields by name in ``loss``): a pack stacks them
    field by field and gives ``loss`` the same type, numbers equal in every member unbatched."""
    from typing import NamedTuple

    from adaxbench.train.packed import _stack_batches

    class Batch(NamedTuple):
        x: torch.Tensor
        scale: float

    batch, dims = _stack_batches([Batch(torch.full((2,), float(k)), 0.5) for k in range(3)])
    assert isinstance(batch, Batch) and isinstance(dims, Batch)
    assert batch.x.tolist() == [[0, 0], [1, 1], [2, 2]] and batch.scale == 0.5 and dims == Batch(0, None)


@pytest.mark.parametrize("task", ["rosenbrock_2d", "quadratic_deep", "reddi_online", "reddi_stochastic", "mnist_mlp"])
def test_stacked_batches_are_the_members_own_batches(task, monkeypatch):
    """A built-in task cuts a pack's batches for all members at once: member k's must be, bit
    for bit, the batches its run alone draws from its own generator."""
    from adaxbench.tasks import image
    from adaxbench.train.packed import _stack_batches
    from adaxbench.train.runner import epoch_generator, prepare

    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: fake_image_arrays(name))
    setup = prepare(compose_cfg([f"task={task}", "task.valid_size=32", "trainer.train_limit=300", *CPU]
                                if task == "mnist_mlp" else [f"task={task}", *CPU]), {})
    seeds, task_ = (0, 5, 7), setup.task
    for epoch in (0, 3):
        generators = lambda: [epoch_generator(seed, epoch, setup.device) for seed in seeds]  # noqa: E731
        stacked = list(task_.stacked_batches(epoch, generators()))
        alone = [_stack_batches(list(b))[0] for b in zip(*(task_.batches(epoch, g) for g in generators()))]
        assert len(stacked) == len(alone) == task_.steps_per_epoch
        for mine, theirs in zip(stacked, alone):
            for a, b in zip(*((x,) if not isinstance(x, tuple) else x for x in (mine, theirs))):
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_a_packed_sweep_composes_and_checks_each_job_once(tmp_path, monkeypatch):
    """Preflight, Hydra's sweeper (validate_batch_is_legal) and the launcher each want every job's
    config: one composition (and one check_config) per job serves them all, and the jobs still get
    their own configs (their seeds)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from adaxbench.cli import cmd_run
    from adaxbench.train import preflight

    composed, checked = [], []
    compose, check = ConfigLoaderImpl._load_configuration_impl, preflight.check_config
    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration_impl",
                        lambda self, *a, **k: composed.append(list(k["overrides"])) or compose(self, *a, **k))
    monkeypatch.setattr(preflight, "check_config", lambda cfg: checked.append(int(cfg.seed)) or check(cfg))
    assert cmd_run(["-m", "hydra/launcher=packed", "task=rosenbrock_2d", "optimizer=adam", "seed=3,4",
                    "trainer.epochs=1", "trainer.progress=false", f"hydra.sweep.dir={tmp_path}"], print_best=False) == 0
    jobs = [o for o in composed if "seed=3" in o or "seed=4" in o]
    assert len(jobs) == 2 and len(composed) == 4  # + hydra.main's mode and the sweep's own config
    assert sorted(checked) == [3, 4]
    assert [json.loads((tmp_path / j / "run.json").read_text())["config"]["seed"] for j in "01"] == [3, 4]
    assert ConfigLoaderImpl.load_configuration.__module__.startswith("hydra")  # put back afterwards


def test_a_pack_member_resolves_hydra_values_as_its_own_job(tmp_path):
    # ${hydra:...} in a run's config names that job's dir and number, in a pack as alone.
    root = "data.root=${hydra:runtime.output_dir}/data_${hydra:job.num}"
    for launcher in ("packed", "basic"):
        sweep = tmp_path / launcher
        proc = adaxbench("run", "-m", f"hydra/launcher={launcher}", "task=rosenbrock_2d", "trainer.epochs=1",
                         "trainer.progress=false", "seed=0,1", root, f"hydra.sweep.dir={sweep}",
                         env={"OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        records = [json.loads((sweep / str(k) / "run.json").read_text()) for k in (0, 1)]
        assert [r["config"]["data"]["root"] for r in records] == [f"{sweep / str(k)}/data_{k}" for k in (0, 1)]
        assert (records[0]["env"].get("packed") is not None) == (launcher == "packed")


def _fail_checkpoint_write(self, *args):
    """The disk refuses seed 1's checkpoint after epoch 2 (as ``atomic_write`` reports it)."""
    raise WriteError(self.run_dir / "checkpoint.pt", PermissionError(errno.EACCES, "Permission denied"))


WRITE_FAULTS = {  # (Run method, its replacement for seed 1 after epoch 2, what the member's record says)
    "disk": ("save_checkpoint", _fail_checkpoint_write,
             "cannot write {run_dir}/checkpoint.pt: Permission denied; epochs up to 1 are saved; free space and resume"),
    "bug": ("write", None, "RuntimeError: the write broke"),
}


@pytest.mark.parametrize("fault", sorted(WRITE_FAULTS))
def test_a_failing_member_write_fails_that_member_only_and_a_relaunch_resumes_it(fault, tmp_path, monkeypatch):
    """One member's write fails mid-pack (a disk fault, or a bug): that member is recorded failed by its own
    error, as alone; the others train on to the records of their runs alone; a relaunch resumes it."""
    from adaxbench import cli

    common = [*SYNTHETIC["quadratic_deep"], "trainer.epochs=3", *CPU]
    for seed in (0, 1, 2):
        run_in_dir(compose_cfg([*common, f"seed={seed}"]), tmp_path / f"alone{seed}", [*common, f"seed={seed}"])
    sweep = tmp_path / "sweep"
    args = ["run", "-m", "hydra/launcher=packed", *common, "seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    name, replacement, error = WRITE_FAULTS[fault]
    original, failed = getattr(Run, name), []

    def write(self, *a):
        if self.cfg.seed == 1 and self.epochs_done == 2 and not failed:
            failed.append(self.run_dir)
            if replacement is not None:
                return replacement(self, *a)
            raise RuntimeError("the write broke")
        return original(self, *a)

    monkeypatch.setattr(Run, name, write)
    assert cli.main(args) == 1  # a sweep with a failed run
    assert failed == [sweep / "1"]
    info = read_run(sweep / "1")[0]
    assert (info["status"], info["error"]) == ("failed", error.format(run_dir=sweep / "1"))
    error_log = sweep / "1" / "error.log"
    assert error_log.exists() == (fault == "bug")  # a disk fault is its one line, as alone
    if fault == "bug":
        assert "Traceback" in error_log.read_text() and "RuntimeError: the write broke" in error_log.read_text()
    for seed in (0, 2):
        info, rows = read_run(sweep / str(seed))
        assert (info["status"], info["error"]) == ("completed", None) and not (sweep / str(seed) / "error.log").exists()
        _assert_same_rows(read_run(tmp_path / f"alone{seed}")[1], rows, rtol=1e-6)
    monkeypatch.setattr(Run, name, original)
    assert cli.main(args) == 0  # the relaunch skips the finished members and resumes the failed one
    for seed in (0, 1, 2):
        info, rows = read_run(sweep / str(seed))
        assert info["status"] == "completed"
        assert info["progress"]["resumed_from_epoch"] == (1 if seed == 1 else None)
        _assert_same_rows(read_run(tmp_path / f"alone{seed}")[1], rows, rtol=1e-6)


def test_a_pack_saves_its_members_when_due_and_ends_as_every_epoch_saved(tmp_path, monkeypatch):
    """trainer.save_every_s in a pack: a member saves after an epoch only when due (``Run.save_due``),
    and its records end as when every epoch is saved (and as the run alone)."""
    overrides = [*SYNTHETIC["quadratic_deep"], "trainer.epochs=3", "trainer.progress=false", "trainer.device=cpu"]
    original, saved = Run.save_checkpoint, []

    def spy(self, *args):
        saved.append((self.run_dir.name, self.epochs_done))
        original(self, *args)

    monkeypatch.setattr(Run, "save_checkpoint", spy)
    ends = {}
    for every in ("0", "3600"):
        saved.clear()
        runs = [[*overrides, f"trainer.save_every_s={every}", f"seed={seed}"] for seed in (0, 1)]
        train(_members(tmp_path / every, runs))
        due = [1, 2, 3] if every == "0" else []  # the last epoch's records: written by the pack's end
        assert sorted(saved) == [(f"packed{k}", e) for k in range(2) for e in due], every
        ends[every] = [read_run(tmp_path / every / f"packed{k}")[1] for k in range(2)]
    alone = [*overrides, "trainer.save_every_s=3600", "seed=1"]
    run_in_dir(compose_cfg(alone), tmp_path / "alone", alone)
    for a, b in zip(*ends.values()):
        _assert_same_rows(a, b, rtol=0)
    _assert_same_rows(read_run(tmp_path / "alone")[1], ends["3600"][1], rtol=1e-6)


def test_a_packs_members_save_at_the_same_epochs_whatever_their_own_clocks(tmp_path, monkeypatch):
    """The jobs of a pack are admitted one after another, so their own save clocks differ; the pack
    saves them all on its clock, at the same epochs, so a relaunch after a kill resumes them as one
    pack (members saved at different epochs would train as several packs, one after another)."""
    overrides = [*SYNTHETIC["rosenbrock_2d"], "task.train_size=1280", "trainer.epochs=40", "trainer.progress=false",
                 "trainer.device=cpu", "trainer.save_every_s=0.02"]
    original, saved = Run.save_checkpoint, {}

    def spy(self, *args):
        saved.setdefault(self.run_dir.name, []).append(self.epochs_done)
        original(self, *args)

    monkeypatch.setattr(Run, "save_checkpoint", spy)
    members = _members(tmp_path, [[*overrides, f"seed={seed}"] for seed in (0, 1, 2)])
    for k, m in enumerate(members):  # as if admitted 11 ms apart (an epoch here takes a few ms)
        m.run.saved_at -= 0.011 * k
    train(members)
    assert sorted(saved) == ["packed0", "packed1", "packed2"] and saved["packed0"], saved
    assert saved["packed0"] == saved["packed1"] == saved["packed2"], saved


@pytest.mark.parametrize("logging_args", [[], ["+hydra.job_logging.handlers.file.mode=w"]], ids=["append", "w"])
def test_a_packed_members_adaxbench_log_holds_its_own_epoch_lines_as_alone(tmp_path, logging_args):
    """trainer.progress=false: a run alone logs one line per epoch to its adaxbench.log; a packed
    member the same lines, its own only, and the console does not get one per member.  Also when
    the job's log file is opened with mode w (Hydra closes it between jobs; it does not reopen)."""
    logs, out = {}, {}
    for launcher in ("basic", "packed"):
        sweep = tmp_path / launcher
        proc = adaxbench("run", "-m", *SYNTHETIC["rosenbrock_2d"], *CPU, "trainer.progress=false", "seed=0,1",
                         *logging_args, f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[launcher] = proc.stdout + proc.stderr
        logs[launcher] = [[line.split(" - ", 1)[1] for line in (sweep / str(k) / "adaxbench.log").read_text().splitlines()
                           if " epoch " in line] for k in range(2)]
    assert "packed" in read_run(tmp_path / "packed" / "0")[0]["env"]
    for k in range(2):
        assert len(logs["basic"][k]) == 2, logs["basic"][k]
        # the same epoch lines (the training seconds aside)
        assert [line.rsplit(" (", 1)[0] for line in logs["packed"][k]] == \
            [line.rsplit(" (", 1)[0] for line in logs["basic"][k]]
    assert " epoch 1/2 " in out["basic"] and " epoch 1/2 " not in out["packed"]


def test_a_packed_member_without_a_log_file_shows_its_epoch_lines_on_the_console(tmp_path):
    """A job logging config without a file (hydra/job_logging=stdout): the members' epoch lines go to
    the console, where the basic launcher puts them."""
    proc = adaxbench("run", "-m", *SYNTHETIC["rosenbrock_2d"], *CPU, "trainer.progress=false", "seed=0,1",
                     "hydra/job_logging=stdout", "hydra/launcher=packed", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "packed" in read_run(tmp_path / "sweep" / "0")[0]["env"]
    assert (proc.stdout + proc.stderr).count(" epoch 2/2 ") == 2, proc.stdout + proc.stderr


def test_a_members_log_file_gets_its_own_lines_only(tmp_path):
    """While a pack trains, a line that names a member's run dir (``Run.log_extra``: its epoch lines, its
    resume, stop or failure) goes to that member's log only; the pack's own lines to none of them."""
    import logging
    from types import SimpleNamespace

    from adaxbench.train.packed import members_logging

    members = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        opened = logging.FileHandler(run_dir / "adaxbench.log", mode="w")
        opened.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        opened.close()  # as the launcher's logging leaves it
        members.append(SimpleNamespace(run=SimpleNamespace(run_dir=run_dir, env={"packed": {"members": 2}}),
                                       log_files=[opened]))
    log = logging.getLogger("adaxbench")
    with members_logging(members):
        log.error("cannot resume from a/checkpoint.pt", extra={"run_dir": tmp_path / "a"})
        log.warning("received SIGTERM: stopping at step 7", extra={"run_dir": tmp_path / "b"})
        log.info("has dropout: its 2 jobs run one by one")
    log.error("after the pack", extra={"run_dir": tmp_path / "a"})
    assert (tmp_path / "a" / "adaxbench.log").read_text() == "ERROR cannot resume from a/checkpoint.pt\n"
    assert (tmp_path / "b" / "adaxbench.log").read_text() == "WARNING received SIGTERM: stopping at step 7\n"
