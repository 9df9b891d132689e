"""Bad input is stopped before any work starts (one line, exit 2), user optimizers from the
command line (any torch.optim.Optimizer, **kwargs, closures) and user config dirs.

Everything goes through the real CLI, ``adaxbench.cli.main``, in-process (fast); one test
runs the console script in a subprocess to prove the PYTHONPATH route a user takes.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from adaxbench.cli import main

from conftest import ROOT, read_run

# A run of a few steps: quadratic_deep with 256 training points = 2 steps of 128 per epoch.
TINY = ["task=quadratic_deep", "task.train_size=256", "trainer.epochs=2", "trainer.log_every=1",
        "trainer.progress=false"]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("adaxbench: error: ")
    assert expected in lines[0], lines[0]


# Each bad input, and (a part of) the one line it must give. None of them may start a run.
CATALOGUE = [
    # optimizer values
    (["optimizer.lr=inf"], "optimizer.lr must be a finite number > 0, got inf"),
    (["optimizer.lr=1e400"], "optimizer.lr must be a finite number > 0, got inf"),
    (["optimizer.lr=nan"], "optimizer.lr must be a finite number > 0, got nan"),
    (["optimizer.lr=fast"], "optimizer.lr must be a number > 0, got 'fast'"),
    (["optimizer.lr=-1"], "optimizer.lr must be a number > 0, got -1"),
    (["optimizer.betas=[0.9]"], "optimizer.betas must be a list of two numbers in [0, 1), got [0.9]"),
    (["optimizer=adax", "optimizer.eps_mode=nowhere"], "optimizer adax (adaxbench.optim.AdaX) rejects its arguments"),
    # unknown keys, everywhere
    (["optimizer.foo=1"], "optimizer.foo is not a key of optimizer; keys there: name, _target_, lr, betas, eps, "
                          "weight_decay, amsgrad; to pass another argument write +optimizer.foo=VALUE"),
    (["lr=0.1"], "lr is not a top-level key (did you mean optimizer.lr?); keys there: task, optimizer"),
    (["-m", "seed=0,1", "task.foo=2"], "task.foo is not a key of task; keys there: name, kind, dataset"),
    (["+optimizer.foo=1"], "optimizer.foo is not a hyperparameter of torch.optim.Adam; accepted: lr, betas"),
    (["+optimizer.ep=1"], "(did you mean optimizer.eps?)"),
    (["+trainer.epochz=3"], "trainer.epochz is not a key of trainer (did you mean trainer.epochs?); accepted: epochs"),
    (["trainer.epochz=3"], "trainer.epochz is not a key of trainer (did you mean trainer.epochs?); keys there: epochs"),
    (["+lr=0.1"], "lr is not a top-level key (did you mean optimizer.lr?); accepted: task, optimizer"),
    (["+task.foo=1"], "task.foo is not a key of task; accepted: name, kind"),
    (["task=reddi_online", "task.select_metric=train/avg_regret"],
     "task.select_metric is an optional task key this task's config does not set: write +task.select_metric=VALUE"),
    (["task=quadratic_deep", "+task.x0=0.5"], "task.x0 is not a key of task"),
    (["+data.rooot=x"], "data.rooot is not a key of data (did you mean data.root?)"),
    # task values
    (["task.target=abc"], "task.target must be a number or null, got 'abc'"),
    (["+task.select_metric=accuracy"], "task.select_metric must be SPLIT/METRIC with SPLIT train, valid or test"),
    (["+task.metric=tset/loss"], "task.metric must be SPLIT/METRIC with SPLIT train, valid or test"),
    (["task.l2_reg=-1"], "task.l2_reg must be a number >= 0, got -1"),
    (["task.augment=maybe"], "task.augment must be true or false, got 'maybe'"),
    (["task.batch_size=0"], "task.batch_size must be an integer >= 1, got 0"),
    (["task.batch_size=12.5"], "task.batch_size must be an integer, got 12.5"),
    (["task.epochs=0"], "task.epochs must be an integer >= 1, got 0"),
    (["task.dataset=imagenet"], "task.dataset must be one of mnist, fashion_mnist, cifar10, cifar100"),
    (["task.model=vgg"], "task.model must be one of logreg, mlp"),
    (["task=quadratic_deep", "task.noise_level=-1"], "task.noise_level must be a number >= 0, got -1"),
    (["task=quadratic_deep", "task.train_size=100"], "task.train_size must be an integer >= 128, got 100"),
    (["task=rosenbrock_2d", "task.start=[1]"], "task.start must be a list of two numbers"),
    (["task=reddi_online", "task.batch_size=8"], "task.batch_size must be 1 for reddi_online"),
    (["task=reddi_online", "task.x0=2"], "task.x0 must be a number in [-1, 1], got 2"),
    (["trainer.train_limit=5"], "trainer.train_limit=5 is smaller than task.batch_size=128"),
    # groups
    (["task=nope"], "unknown task 'nope'; available: cifar100_3c3d"),
    (["optimizer=adamx"], "unknown optimizer 'adamx'; available: adafactor"),
    (["experiment=nope"], "unknown experiment 'nope'"),
    (["lr_schedule=linear"], "unknown lr_schedule 'linear'; available: constant, cosine, inverse_sqrt, step"),
    (["hydra/launcher=unknown"], "unknown hydra/launcher 'unknown'; available: basic"),
    (["task=null"], "task=null: a config group is chosen by name; choose one of cifar100_3c3d"),
    (["optimizer=null"], "optimizer=null: a config group is chosen by name; choose one of adafactor"),
    (["experiment=null"], "choose one of adax_paper_cifar10, beta2_ablation, beta2_ablation_cpu, beta2_ablation_gpu, beta2_ablation_v2, deepobs_small, deepobs_validation, lr_tuning, lr_tuning_optuna, reddi, or leave "
                          "experiment out"),
    (["lr_schedule=null"], "lr_schedule=null: leave lr_schedule out (or write ~lr_schedule)"),
    (["~task"], "task is missing; choose one with task=NAME"),
    (["~optimizer"], "optimizer is missing; choose one with optimizer=NAME"),
    # lr schedules
    (["lr_schedule.warmup_steps=-5"], "lr_schedule.warmup_steps: no lr_schedule is chosen"),
    (["lr_schedule=constant", "lr_schedule.warmup_steps=-5"], "lr_schedule.warmup_steps must be an integer >= 0, got -5"),
    (["lr_schedule=step", "lr_schedule.milestones=[0]"], "lr_schedule.milestones must be a list of positive epoch numbers"),
    (["lr_schedule=step", "lr_schedule.gamma=abc"], "lr_schedule.gamma must be a number, got 'abc'"),
    (["lr_schedule=cosine", "lr_schedule.min_factor=2"], "lr_schedule.min_factor must be a number in [0, 1], got 2"),
    (["lr_schedule=cosine", "+lr_schedule.gamma=0.5"], "lr_schedule.gamma is not a key of lr_schedule"),
    # trainer, data, top level
    (["trainer.epochs=abc"], "trainer.epochs must be an integer or null, got 'abc'"),
    (["trainer.epochs=0"], "trainer.epochs must be an integer >= 1 or null, got 0"),
    (["trainer.compile=maybe"], "trainer.compile must be true or false, got 'maybe'"),
    (["trainer.precision=fp16"], "trainer.precision must be one of fp32, bf16, got 'fp16'"),
    (["trainer.optimizer_impl=fast"], "trainer.optimizer_impl must be one of auto, fused, foreach, forloop"),
    (["trainer.device=tpu"], "trainer.device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["trainer.log_every=0"], "trainer.log_every must be an integer >= 1, got 0"),
    (["trainer.progress=maybe"], "trainer.progress must be auto, true or false, got 'maybe'"),
    (["data.download=maybe"], "data.download must be true or false, got 'maybe'"),
    (["seed=abc"], "seed must be an integer, got 'abc'"),
    (["seed=-1"], "seed must be an integer >= 0, got -1"),
    (["resume=maybe"], "resume must be true or false, got 'maybe'"),
    # command-line syntax
    (["optimizer.lr=-1,0.01"], "optimizer.lr=-1,0.01 has several values: add -m to sweep over them"),
    (["optimizer.lr=["], "quote values with spaces or special characters"),
    (["+optimizer.lr=0.1"], "optimizer.lr is already in the config: set it with optimizer.lr=VALUE"),
    (["-m", "--cfg", "job"], "only one of --run, --multirun (-m) and --cfg can be given"),
    (["--cfg", "everything"], "argument --cfg/-c: invalid choice: 'everything'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag (see `adaxbench run --help`)"),
    (["--config-dir", "/nonexistent/adaxbench"], "--config-dir /nonexistent/adaxbench: no such directory"),
    (["experiment=beta2_ablation"], "this config sweeps over task, optimizer, seed (hydra.sweeper.params): run it "
                                     "with -m, or set task=... and optimizer=... and seed=... to run one job"),
    # a key every run config has, deleted
    (["~seed"], "seed is missing (deleted by a ~ override?): the run reads it; set it with seed=VALUE (an integer)"),
    (["~data"], "data is missing (deleted by a ~ override?): the run reads it; set its keys with data.KEY=VALUE"),
    (["-m", "hydra/launcher=packed", "seed=0,1", "~resume"], "resume is missing (deleted by a ~ override?)"),
    (["~trainer.device"], "trainer.device cannot be deleted (~trainer.device): every run config has it; "
                          "set it with trainer.device=VALUE"),
    (["~seed", "seed=3"], "seed is set, and ~seed deletes it on the same command line; give one of them"),
    (["~data", "data.root=x"], "data.root is set, and ~data deletes it on the same command line; give one of them"),
    (["~data", "+data.root=x"], "data.download is missing (deleted by a ~ override?): the run reads it; set it with "
                                "data.download=VALUE (true or false)"),
    (["~lr_schedule", "lr_schedule.warmup_steps=5"], "lr_schedule.warmup_steps: no lr_schedule is chosen"),
    (["~trainer.epochs"], "~trainer.epochs: trainer.epochs is not set in this config (absent or null), so there is "
                          "nothing to delete; leave it out"),
    (["trainer.epochs=true"], "trainer.epochs must be an integer or null, got 'true'"),  # as typed
    (["trainer.epochs=1e3"], "trainer.epochs must be an integer or null, got '1e3'"),
    (["task=quadratic_deep", "task.batch_size=1001", "task.train_size=null"],
     "task.batch_size must be at most 1000 (quadratic_deep's training set when task.train_size is not set)"),
    # sweeps: every job is checked before the first starts
    (["-m", "optimizer.lr=-1,0.01"], "optimizer.lr must be a number > 0, got -1 (in the sweep job optimizer.lr=-1)"),
    (["-m", "optimizer.lr=0.01,-1"], "(in the sweep job optimizer.lr=-1)"),
    (["-m", "optimizer=adam,nope"], "unknown optimizer 'nope'"),
    (["-m", "trainer.epochz=1,2"], "trainer.epochz is not a key of trainer (did you mean trainer.epochs?)"),
    (["-m", "seed=0,1", "task.augment=maybe"], "task.augment must be true or false"),
    # own optimizers
    (["optimizer=custom"], "optimizer._target_ is not set"),
    (["optimizer=custom", "optimizer._target_=nopkg.Opt"], "optimizer._target_='nopkg.Opt' cannot be imported"),
    (["optimizer=custom", "optimizer._target_=torch.nn.Linear"], "is not a torch.optim.Optimizer subclass"),
    (["optimizer=adam", "optimizer._target_=torch.optim.SGD", "~optimizer.betas", "~optimizer.eps", "~optimizer.amsgrad"],
     "optimizer._target_=torch.optim.SGD under the name 'adam' (our torch.optim.Adam) would be reported as adam; "
     "use optimizer=custom optimizer._target_=torch.optim.SGD (recorded as SGD)"),
    (["optimizer=custom", "optimizer._target_=torch.optim.SGD", "+optimizer.momentun=0.9"],
     "optimizer.momentun is not a hyperparameter of torch.optim.SGD (did you mean optimizer.momentum?)"),
]


@pytest.mark.parametrize("args, expected", CATALOGUE, ids=[" ".join(a) for a, _ in CATALOGUE])
def test_bad_input_one_line_exit_2_nothing_started(args, expected, tmp_path, capsys):
    code, out, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep", *args)
    assert_one_line_error(code, err, expected)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_run_dir_that_cannot_be_created(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/file/run", *TINY)
    assert_one_line_error(code, err, f"hydra.run.dir={tmp_path}/file/run cannot be created: {tmp_path}/file is a file")
    code, _, err = cli(capsys, "run", "-m", f"hydra.sweep.dir={tmp_path}/file", "seed=0,1", *TINY)
    assert_one_line_error(code, err, f"hydra.sweep.dir={tmp_path}/file is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_run_dir_without_write_permission(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = cli(capsys, "run", f"hydra.run.dir={locked}/run", *TINY)
    assert_one_line_error(code, err, f"cannot be written: no write permission in {locked}")


def test_run_dir_check_asks_the_os_for_write_permission(tmp_path, monkeypatch):
    """(Root may write anywhere, so the permission case is simulated where tests run as root.)"""
    from adaxbench.train import validate

    seen = []
    monkeypatch.setattr(validate.os, "access", lambda path, mode: seen.append((str(path), mode)) or False)
    with pytest.raises(validate.ConfigError, match=f"hydra.run.dir={tmp_path}/a/b cannot be written: no write "
                                                   f"permission in {tmp_path}; choose another hydra.run.dir"):
        validate.check_output_dir(tmp_path / "a" / "b", "hydra.run.dir")
    assert seen == [(str(tmp_path), os.W_OK | os.X_OK)]  # the nearest existing ancestor


def test_full_traceback_with_hydra_full_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(Exception, match="Error merging override trainer.epochs=abc"):
        main(["run", f"hydra.run.dir={tmp_path}/run", "trainer.epochs=abc"])


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_truncated_dataset_names_the_file(tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, array in (("train-images-idx3-ubyte", rng.integers(0, 256, (64, 28, 28))),
                        ("train-labels-idx1-ubyte", rng.integers(0, 10, 64)),
                        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (16, 28, 28))),
                        ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 16))):
        (raw / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
    cut = raw / "train-images-idx3-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a download cut off half-way
    code, _, err = cli(capsys, "run", "task=mnist_logreg", "task.valid_size=16", f"data.root={tmp_path}/data",
                       f"hydra.run.dir={tmp_path}/run", "trainer.progress=false")
    assert_one_line_error(code, err, f"{cut} is truncated or corrupted")
    assert "fetch it again (data.download=true" in err


# ------------------------------------------------------------------------------ own optimizers

def _run(capsys, tmp_path, *args: str, name: str = "run") -> tuple[dict, object]:
    code, _, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/{name}", *TINY, *args)
    assert code == 0, err
    info, metrics = read_run(tmp_path / name)
    assert info["status"] == "completed", info["error"]
    return info, metrics


def _final(metrics):
    return metrics.drop(columns=["time"]).reset_index(drop=True)


def test_custom_torch_optimizer_is_recorded_by_class_name(tmp_path, capsys):
    info, metrics = _run(capsys, tmp_path, "optimizer=custom", "optimizer._target_=torch.optim.SGD",
                         "optimizer.lr=0.01", "+optimizer.momentum=0.9", name="custom")
    assert info["config"]["optimizer"]["name"] == "SGD"  # never competes as one of ours
    assert info["config"]["optimizer"]["momentum"] == 0.9
    # The same class with the same hyperparameters as the shipped sgd config: identical run.
    _, reference = _run(capsys, tmp_path, "optimizer=sgd", "optimizer.lr=0.01", name="sgd")
    assert _final(metrics).equals(_final(reference))
    info, _ = _run(capsys, tmp_path, "optimizer=custom", "optimizer._target_=torch.optim.RMSprop",
                   "optimizer.name=my_rmsprop", name="rmsprop")
    assert info["config"]["optimizer"]["name"] == "my_rmsprop"


USER_MODULE = '''
import torch

SEEN = {}


class KwargsSGD(torch.optim.Optimizer):
    """Plain SGD whose constructor takes **kwargs (as many research optimizers do)."""

    def __init__(self, params, lr=1e-3, **kwargs):
        if "bad" in kwargs:
            raise ValueError("KwargsSGD does not know 'bad'\\n(a second line nobody should see)")
        SEEN.update(kwargs)
        super().__init__(params, dict(lr=lr, **kwargs))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


class Wrapping(torch.optim.Optimizer):
    """Takes its inner optimizer as a class (as SAM implementations take base_optimizer)."""

    def __init__(self, params, base_optimizer, **kwargs):
        params = list(params)
        self.base = base_optimizer(params, **kwargs)
        super().__init__(params, dict(kwargs))

    def step(self, closure=None):
        return self.base.step(closure)


class TinySAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al. 2021): step to w + rho g/|g|, take the
    gradient there (the closure), then an SGD step from w with it. rho = 0 is plain SGD."""

    def __init__(self, params, lr=0.1, rho=0.05):
        super().__init__(params, dict(lr=lr, rho=rho))
        self.closure_calls = 0

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is not None, "TinySAM requires a closure"
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    e = group["rho"] * p.grad / (norm + 1e-12)
                    p.add_(e)
                    self.state[p]["e"] = e
        loss = closure()
        self.closure_calls += 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(self.state[p]["e"])
                    p.add_(p.grad, alpha=-group["lr"])
        return loss
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mypkg_valid").mkdir()
    (tmp_path / "mypkg_valid" / "__init__.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("mypkg_valid", None)


def test_user_optimizer_with_kwargs(user_module, tmp_path, capsys):
    info, _ = _run(capsys, tmp_path, "optimizer=custom", "optimizer._target_=mypkg_valid.KwargsSGD",
                   "optimizer.lr=0.01", "+optimizer.momentum=0.9", "+optimizer.my_flag=true",
                   "optimizer.allow_extra=true")  # keys only **kwargs takes: refused unless allowed
    import mypkg_valid
    assert mypkg_valid.SEEN == {"momentum": 0.9, "my_flag": True}  # passed through **kwargs
    assert info["config"]["optimizer"]["name"] == "KwargsSGD"
    code, _, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/bad", *TINY, "optimizer=custom",
                       "optimizer._target_=mypkg_valid.KwargsSGD", "+optimizer.bad=1")
    assert_one_line_error(code, err, "optimizer KwargsSGD (mypkg_valid.KwargsSGD) rejects its arguments: "
                                     "KwargsSGD does not know 'bad'")
    code, _, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/bad", *TINY, "optimizer=custom",
                       "optimizer._target_=mypkg_valid.KwargsSGD", "+optimizer.scale=inf")
    assert_one_line_error(code, err, "optimizer.scale must be a finite number, got inf")


def test_object_arguments_are_built_by_hydra(user_module):
    import torch

    from adaxbench.train.validate import optimizer_kwargs

    cls, kwargs = optimizer_kwargs({"_target_": "mypkg_valid.Wrapping", "lr": 0.1, "base_optimizer": {
        "_target_": "hydra.utils.get_class", "path": "torch.optim.SGD"}})
    assert kwargs["base_optimizer"] is torch.optim.SGD
    assert isinstance(cls([torch.zeros(1, requires_grad=True)], **kwargs).base, torch.optim.SGD)


def test_closure_optimizer_sam_recomputes_the_same_batch(user_module, tmp_path, capsys):
    """SAM with rho = 0 evaluates its closure at the very point the runner did: if the closure
    recomputes the loss of the same batch, the run is step for step plain SGD."""
    sam = ["optimizer=custom", "optimizer._target_=mypkg_valid.TinySAM", "optimizer.lr=0.05"]
    info, metrics = _run(capsys, tmp_path, *sam, "+optimizer.rho=0.0", name="sam0")
    assert info["config"]["optimizer"]["name"] == "TinySAM"
    _, sgd = _run(capsys, tmp_path, "optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0", name="sgd")
    assert _final(metrics).equals(_final(sgd))
    _, sharp = _run(capsys, tmp_path, *sam, "+optimizer.rho=0.5", name="sam")
    assert not _final(sharp).equals(_final(sgd))  # the closure's gradient was used
    assert sharp["value"].notna().all()


def test_closure_optimizer_lbfgs(tmp_path, capsys):
    info, metrics = _run(capsys, tmp_path, "optimizer=custom", "optimizer._target_=torch.optim.LBFGS",
                         "optimizer.lr=0.1", "+optimizer.max_iter=3", "+optimizer.history_size=5")
    assert info["config"]["optimizer"]["name"] == "LBFGS"
    loss = metrics[(metrics.split == "test") & (metrics.metric == "loss")].sort_values("step")["value"]
    assert loss.iloc[-1] < loss.iloc[0]  # L-BFGS does descend on the quadratic


def test_pytorch_optimizer_optimizers(tmp_path, capsys):
    """pytorch_optimizer's classes as users name them: Lion (a plain step), and SAM (asserts a
    closure, takes its base optimizer as a class). SAM with rho = 0 is its base optimizer."""
    pytest.importorskip("pytorch_optimizer")
    info, _ = _run(capsys, tmp_path, "optimizer=custom", "optimizer._target_=pytorch_optimizer.Lion",
                   "optimizer.lr=1e-4", name="lion")
    assert info["config"]["optimizer"]["name"] == "Lion"
    sam = ["optimizer=custom", "optimizer._target_=pytorch_optimizer.SAM", "optimizer.lr=0.05",
           "+optimizer.base_optimizer._target_=hydra.utils.get_class", "+optimizer.base_optimizer.path=torch.optim.SGD"]
    info, metrics = _run(capsys, tmp_path, *sam, "+optimizer.rho=0.0", name="sam")
    assert info["config"]["optimizer"]["name"] == "SAM"
    _, sgd = _run(capsys, tmp_path, "optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0", name="sgd")
    assert _final(metrics).equals(_final(sgd))


def test_closure_detection():
    import torch

    from adaxbench.train.optimizer import needs_closure

    assert needs_closure(torch.optim.LBFGS, {})
    assert not needs_closure(torch.optim.Adam, {})
    assert not needs_closure(torch.optim.SGD, {"lr": 0.1})

    class Declared(torch.optim.SGD):
        requires_closure = True

    assert needs_closure(Declared, {"lr": 0.1})


def test_user_optimizer_from_pythonpath_console_script(tmp_path):
    """The route a user takes: a module on PYTHONPATH, the installed console script."""
    (tmp_path / "mypkg_valid").mkdir()
    (tmp_path / "mypkg_valid" / "__init__.py").write_text(USER_MODULE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    script = Path(sys.executable).parent / "adaxbench"
    proc = subprocess.run([str(script), "run", "optimizer=custom", "optimizer._target_=mypkg_valid.KwargsSGD",
                           "optimizer.lr=0.01", "+optimizer.momentum=0.9", "optimizer.allow_extra=true",
                           f"hydra.run.dir={tmp_path}/run", *TINY],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info, _ = read_run(tmp_path / "run")
    assert info["status"] == "completed" and info["config"]["optimizer"]["name"] == "KwargsSGD"


# ------------------------------------------------------------------------------ own config dirs

@pytest.fixture
def config_dir(tmp_path):
    conf = tmp_path / "myconf"
    for group, name, text in (
            ("optimizer", "my_adam", "name: my_adam\n_target_: torch.optim.Adam\nlr: 2.0e-3\n"),
            ("task", "tiny_quad", (ROOT / "configs/task/quadratic_deep.yaml").read_text()
             .replace("name: quadratic_deep", "name: tiny_quad").replace("train_size: 1000", "train_size: 256")),
            ("task", "bad_task", (ROOT / "configs/task/quadratic_deep.yaml").read_text()
             .replace("name: quadratic_deep", "name: bad_task").replace("noise_level: 0.6", "noise_level: -0.6")),
            ("experiment", "my_sweep", textwrap.dedent("""\
                # @package _global_
                defaults:
                  - override /task: tiny_quad
                hydra:
                  sweeper:
                    params:
                      optimizer: my_adam,sgd
                      optimizer.lr: 1e-3,-1
                """))):
        (conf / group).mkdir(parents=True, exist_ok=True)
        (conf / group / f"{name}.yaml").write_text(text)
    return conf


@pytest.mark.parametrize("how", ["--config-dir", "searchpath"])
def test_list_sees_user_configs(config_dir, capsys, how):
    args = ["--config-dir", str(config_dir)] if how == "--config-dir" else [f"hydra.searchpath=[file://{config_dir}]"]
    code, out, _ = cli(capsys, "list", *args)
    assert code == 0
    lines = out.splitlines()
    assert "my_adam" in lines[lines.index("optimizers (optimizer=NAME):") + 1].split()
    assert {"tiny_quad", "quadratic_deep"} <= set(lines[lines.index("tasks (task=NAME):") + 1].split())
    assert "my_sweep" in lines[lines.index("experiments (experiment=NAME):") + 1].split()
    code, out, _ = cli(capsys, "list")
    assert "my_adam" not in out


@pytest.mark.parametrize("how", ["--config-dir", "searchpath"])
def test_run_with_user_configs(config_dir, tmp_path, capsys, how):
    args = ["--config-dir", str(config_dir)] if how == "--config-dir" else [f"hydra.searchpath=[file://{config_dir}]"]
    code, _, err = cli(capsys, "run", *args, "optimizer=my_adam", "task=tiny_quad", "trainer.epochs=1",
                       "trainer.progress=false", f"hydra.run.dir={tmp_path}/run")
    assert code == 0, err
    info, _ = read_run(tmp_path / "run")
    assert info["status"] == "completed"
    assert info["config"]["optimizer"] == {"name": "my_adam", "_target_": "torch.optim.Adam", "lr": 0.002}
    assert info["config"]["task"]["name"] == "tiny_quad" and info["config"]["task"]["train_size"] == 256


def test_user_configs_are_validated_up_front(config_dir, tmp_path, capsys):
    base = ["run", "--config-dir", str(config_dir), f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sw"]
    code, _, err = cli(capsys, *base, "optimizer=nope")
    assert_one_line_error(code, err, "unknown optimizer 'nope'; available: ")
    assert "my_adam" in err and "adax" in err
    (config_dir / "optimizer" / "broken.yaml").write_text("name: broken\nlr: [1,\n")
    code, _, err = cli(capsys, *base, "optimizer=broken")
    assert_one_line_error(code, err, f"{config_dir}/optimizer/broken.yaml, line 3: not valid YAML")
    code, _, err = cli(capsys, *base, "task=bad_task")
    assert_one_line_error(code, err, "task.noise_level must be a number >= 0, got -0.6")
    # The user's experiment sweeps a bad lr: refused before its first (good) job starts.
    code, _, err = cli(capsys, *base, "-m", "experiment=my_sweep")
    assert_one_line_error(code, err, "optimizer.lr must be a number > 0, got -1 (in the sweep job optimizer=my_adam "
                                     "optimizer.lr=-1 experiment=my_sweep)")
    assert not (tmp_path / "sw").exists() and not (tmp_path / "run").exists()


def test_user_task_and_schedule_plugins_are_not_refused_by_the_schema():
    """``_target_`` tasks and schedules are plug-ins checked by their own code, not by the schema."""
    from adaxbench.train.validate import check_schedule, check_task

    check_task({"_target_": "mypkg.MyTask", "anything": 1, "width": 64})
    check_schedule({"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 10}, "lr_schedule")
    check_task({"name": "t", "kind": "image", "dataset": {"_target_": "mypkg.Data"}, "model": {"_target_": "m.Net"},
                "batch_size": 8, "epochs": 1})
    # Through the whole up-front check of the CLI (composition, schema, ranges): not refused.
    from adaxbench.train.preflight import preflight

    preflight(["--cfg", "job", "+lr_schedule._target_=torch.optim.lr_scheduler.StepLR", "+lr_schedule.step_size=10"])
    preflight(["+lr_schedule._target_=torch.optim.lr_scheduler.StepLR", "+lr_schedule.step_size=10"])
