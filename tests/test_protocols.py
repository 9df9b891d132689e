"""The protocols pinned to their sources (docs/protocols.md): step counts, lr milestones, input
ranges, augmentation parameters, normalisation constants and regularisation, checked on the
real composed configs and the task's real code path (fake images of the exact shapes).

Reference numbers come from the sources, not from our code:
- the AdaX authors' training script (switchablenorms/AdaX, cifar10-code/Adax_main_cifar.py and
  utils.py): ``while curr_step <= max_step`` over whole epochs of a DataLoader with batch 128
  (last batch kept), max_step = max(50000 * 100 / 128, 71000), lr ``base * 0.1 ** #{100, 150 <= epoch}``;
- DeepOBS's PyTorch pipeline (fsschneider/DeepOBS, deepobs/pytorch/datasets/*.py, dataset.py),
  testproblems (deepobs/pytorch/testproblems/*.py) and budgets (deepobs/config.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from adaxbench.optim.schedules import build_lr_lambda
from adaxbench.tasks import image
from adaxbench.tasks.augment import color_jitter, jitter_ranges, random_crop_flip
from adaxbench.train.runner import effective_schedule

from conftest import compose_cfg, fake_image_arrays

CPU = torch.device("cpu")
# deepobs/pytorch/datasets/cifar10.py and cifar100.py: transforms.Normalize constants.
DEEPOBS_CIFAR10 = ((0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784))
DEEPOBS_CIFAR100 = ((0.50707516, 0.48654887, 0.44091784), (0.26733429, 0.25643846, 0.27615047))
# ColorJitter(brightness=63. / 255., saturation=[0.5, 1.5], contrast=[0.2, 1.8]) as factor ranges.
DEEPOBS_JITTER = [[1 - 63 / 255, 1 + 63 / 255], [0.2, 1.8], [0.5, 1.5]]
# The AdaX authors' transforms.Normalize constants (Adax_main_cifar.py).
ADAX_CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# deepobs/config.py DEFAULT_TEST_PROBLEMS_SETTINGS and the testproblems' default l2_reg.
DEEPOBS_BUDGET = {"mnist_logreg": (128, 50, 0.0), "mnist_mlp": (128, 100, 0.0), "mnist_2c2d": (128, 100, 0.0),
                  "fmnist_mlp": (128, 100, 0.0), "fmnist_2c2d": (128, 100, 0.0),
                  "cifar10_3c3d": (128, 100, 0.002), "cifar100_allcnnc": (256, 350, 0.0005)}
ADAX_PAPER = ["experiment=adax_paper_cifar10", "+setting/adax_paper=sgd"]


@pytest.fixture(scope="module")
def cifar10_50k():
    """Fake CIFAR-10 with the real training set size (50,000), so step counts are the real ones."""
    return fake_image_arrays("cifar10", n_train=50_000, n_test=64)


def _task(cfg, arrays, monkeypatch) -> image.ImageClassificationTask:
    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: arrays)
    return image.ImageClassificationTask(cfg.task, cfg.data, CPU)


def authors_schedule() -> tuple[int, int]:
    """(epochs, steps) of the authors' loop: whole epochs while curr_step <= max_step."""
    steps_per_epoch = math.ceil(50_000 / 128)  # DataLoader(batch_size=128), drop_last=False
    max_step = max(int(50_000 * 100 / 128), 71_000)  # T_max = max(len * args.epochs / batch, max_iter)
    step = epochs = 0
    while step <= max_step:
        step, epochs = step + steps_per_epoch, epochs + 1
    return epochs, step


def test_adax_paper_trains_on_all_50k_images_for_71162_steps(cifar10_50k, monkeypatch):
    cfg = compose_cfg(ADAX_PAPER)
    assert authors_schedule() == (182, 71_162)
    assert cfg.task.name == "cifar10_resnet20" and cfg.task.valid_size == 0 and cfg.task.epochs == 182
    task = _task(cfg, cifar10_50k, monkeypatch)
    assert task.num_train == 50_000 and task.steps_per_epoch == 391 and task.batch_size == 128
    assert task.steps_per_epoch * cfg.task.epochs == 71_162
    # One epoch covers every image once: 390 full batches and the last 80 (not dropped).
    sizes = [len(y) for _, y in task.batches(0, torch.Generator().manual_seed(0))]
    assert sizes == [128] * 390 + [80]
    # No validation split: evaluation is on the test set (and the fixed train-eval subset).
    assert task.valid_x.shape[0] == 0 and task.test_x.shape[0] == 64
    task.train_eval = (task.train_eval[0][:8], task.train_eval[1][:8])  # keep the CPU forward pass small
    assert set(task.evaluate(task.model())) == {"train", "test"}
    assert cfg.task.select_metric == "test/accuracy"


def test_adax_paper_lr_drops_at_steps_39100_and_58650():
    cfg = compose_cfg(ADAX_PAPER)
    lr = build_lr_lambda(effective_schedule(cfg), 391, 71_162)
    # s = optimizer steps already taken (the authors' curr_step); epoch 100 starts at 100 * 391.
    got = {s: lr(s) for s in (0, 39_099, 39_100, 58_649, 58_650, 71_161)}
    assert got == pytest.approx({0: 1, 39_099: 1, 39_100: 0.1, 58_649: 0.1, 58_650: 0.01, 71_161: 0.01})
    assert cfg.optimizer.lr * lr(39_100) == pytest.approx(0.01)  # SGDM: 0.1 -> 0.01 -> 0.001


def test_adax_paper_preprocessing_is_the_authors(cifar10_50k, monkeypatch):
    cfg = compose_cfg(ADAX_PAPER)
    assert (tuple(cfg.task.normalize.mean), tuple(cfg.task.normalize.std)) == ADAX_CIFAR10
    assert cfg.task.augment and cfg.task.crop_padding == 4 and cfg.task.color_jitter is None
    assert cfg.task.l2_reg == 0 and cfg.task.batch_size == 128
    task = _task(cfg, cifar10_50k, monkeypatch)
    x = cifar10_50k.test_x[:8]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in ADAX_CIFAR10)
    assert torch.allclose(task._inputs(x), (x.float() / 255 - mean) / std, atol=1e-6)
    # The stand-alone task keeps a validation split: 40,000 images, ceil(40000 / 128) = 313 steps.
    alone = _task(compose_cfg(["task=cifar10_resnet20"]), cifar10_50k, monkeypatch)
    assert alone.num_train == 40_000 and alone.steps_per_epoch == 313


def test_adax_paper_settings_are_the_authors():
    # cfgs/cifar10/*_res20.yaml (SGD, AdamW, AdaX-W) and the AdaX class defaults (AdaX.py).
    expect = {"sgd": (0.1, 5e-4), "adamw": (1e-3, 0.1), "adaxw": (5e-3, 5e-2), "adax": (1.5e-3, 5e-4),
              "adam": (1e-3, 0.0), "amsgrad": (1e-3, 0.0)}
    for name, (lr, wd) in expect.items():
        opt = compose_cfg(["experiment=adax_paper_cifar10", f"+setting/adax_paper={name}"]).optimizer
        assert (opt.lr, opt.weight_decay) == (lr, wd), name
        if name in ("adax", "adaxw"):
            assert list(opt.betas) == [0.9, 1e-4] and opt.eps == 1e-12


@pytest.mark.parametrize("name", ["mnist_logreg", "mnist_mlp", "mnist_2c2d", "fmnist_mlp", "fmnist_2c2d"])
def test_mnist_family_inputs_are_raw_pixels_in_0_1(name, monkeypatch):
    cfg = compose_cfg([f"task={name}"])
    assert cfg.task.normalize == "none" and not cfg.task.augment
    arrays = fake_image_arrays(cfg.task.dataset, n_train=600, n_test=50)
    task = _task(compose_cfg([f"task={name}", "task.valid_size=100"]), arrays, monkeypatch)
    x, y = next(task.batches(0, torch.Generator().manual_seed(0)))
    assert x.shape == (128, 1, 28, 28) and x.min() == 0 and x.max() == 1  # fake pixels span 0..255
    assert torch.equal(x * 255, (x * 255).round())  # k / 255 exactly: no shift, no scale
    # Exactly ToTensor(): uint8 / 255, nothing else, for training and evaluation inputs alike.
    assert torch.equal(task._inputs(arrays.test_x), arrays.test_x.float() / 255)


def test_mnist_family_step_counts():
    # 60,000 training images - 10,000 validation (DeepOBS's train_eval_size) = 50,000; remainder dropped.
    for name in ("mnist_logreg", "mnist_mlp", "mnist_2c2d", "fmnist_mlp", "fmnist_2c2d"):
        t = compose_cfg([f"task={name}"]).task
        assert t.valid_size == 10_000 and t.get("drop_last", True)
        assert image.steps_per_epoch(60_000 - t.valid_size, t.batch_size, True) == 390


@pytest.mark.parametrize("name,consts", [("cifar10_3c3d", DEEPOBS_CIFAR10), ("cifar100_3c3d", DEEPOBS_CIFAR100),
                                         ("cifar100_allcnnc", DEEPOBS_CIFAR100)])
def test_deepobs_cifar_pipeline(name, consts, monkeypatch):
    cfg = compose_cfg([f"task={name}"])
    t = cfg.task
    assert t.augment and t.crop_padding == 2 and t.valid_size == 10_000 and t.get("drop_last", True)
    assert (tuple(t.normalize.mean), tuple(t.normalize.std)) == consts
    ranges = jitter_ranges(**OmegaConf.to_container(t.color_jitter))
    assert ranges.flatten().tolist() == pytest.approx(sum(DEEPOBS_JITTER, []), abs=1e-12)
    arrays = fake_image_arrays(t.dataset, n_train=600, n_test=16)
    task = _task(compose_cfg([f"task={name}", "task.valid_size=100"]), arrays, monkeypatch)
    # A training batch is exactly: permutation -> Pad(2) + crop + flip -> /255 -> ColorJitter
    # (per-example random order) -> Normalize, all drawn from the epoch generator in that order.
    x, y = next(task.batches(3, torch.Generator().manual_seed(11)))
    g = torch.Generator().manual_seed(11)
    idx = torch.randperm(task.num_train, generator=g)[:task.batch_size]
    ref = random_crop_flip(task.train_x[idx], 2, g).float() / 255
    ref = color_jitter(ref, ranges, g)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in consts)
    assert torch.equal(y, task.train_y[idx])
    assert torch.allclose(x, (ref - mean) / std, atol=1e-5)
    # Evaluation inputs are not augmented: only ToTensor + Normalize.
    assert torch.allclose(task._inputs(arrays.test_x), (arrays.test_x.float() / 255 - mean) / std, atol=1e-5)


def test_deepobs_step_counts_and_budgets():
    for name, (batch, epochs, l2) in DEEPOBS_BUDGET.items():
        t = compose_cfg([f"task={name}"]).task
        assert (t.batch_size, t.epochs, t.l2_reg) == (batch, epochs, l2), name
    # 50,000 CIFAR training images - 10,000 validation = 40,000, remainder dropped.
    assert image.steps_per_epoch(40_000, 128, True) == 312 and image.steps_per_epoch(40_000, 256, True) == 156
    # cifar100_3c3d has no DeepOBS budget; ours (200 epochs) is labelled as our own choice.
    t = compose_cfg(["task=cifar100_3c3d"]).task
    assert "cifar100_3c3d" not in DEEPOBS_BUDGET and (t.batch_size, t.epochs, t.l2_reg) == (128, 200, 0.002)


def test_deepobs_small_is_like_with_like():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="adaxbench.configs", version_base="1.3"):
        sweep = compose(config_name="config", overrides=["experiment=deepobs_small"], return_hydra_config=True)
    settings = str(sweep.hydra.sweeper.params["+setting/deepobs"]).split(",")
    assert not any(s.endswith("_adaxw") for s in settings)
    assert {s.rsplit("_", 1)[1] for s in settings} == {"sgd", "momentum", "adam", "adax"}
    for s in settings:
        cfg = compose_cfg([f"+setting/deepobs={s}"])
        # The task's own L2 is the only regularisation: no optimizer adds weight decay.
        assert cfg.optimizer.get("weight_decay", 0.0) == 0.0, s
        if cfg.task.kind == "image":
            assert cfg.task.l2_reg == DEEPOBS_BUDGET[cfg.task.name][2], s


def test_best_selects_on_the_named_metric_without_a_validation_split(tmp_path):
    from adaxbench.report.best import best_settings

    from report_fixtures import write_run

    # adax_paper-like runs: train and test evaluations only, task.select_metric = test/accuracy.
    for i, (lr, acc) in enumerate([(1e-3, 0.90), (3e-3, 0.92), (1e-2, 0.91)]):
        d = write_run(tmp_path / str(i), task="cifar10_resnet20", optimizer="adam", opt={"lr": lr}, epochs=2,
                      evals={"test/accuracy": [0.1, 0.5, acc], "train/loss": [2.3, 1.0, 0.5 + lr]},
                      task_extra={"valid_size": 0, "select_metric": "test/accuracy"})
        info = json.loads((d / "run.json").read_text())
        info["overrides"] = ["optimizer=adam", f"optimizer.lr={lr}", "seed=0"]
        (d / "run.json").write_text(json.dumps(info))
    best = best_settings(tmp_path).iloc[0]  # default --metric valid/accuracy is not logged here
    assert best["metric"] == "test/accuracy" and best["score"] == pytest.approx(0.92)
    assert best["overrides"] == ["optimizer=adam", "optimizer.lr=0.003"]
    assert np.isfinite(best["score"])


@pytest.mark.parametrize("key,value,message", [
    ("normalize", "imagenet", "task.normalize must be 'dataset', 'none' or {mean: [...], std: [...]}"),
    ("normalize", {"mean": [0.5], "std": [0.2]}, "with 3 number(s) each"),
    ("color_jitter", {"hue": 0.1}, "task.color_jitter must be null or a mapping with keys brightness"),
    ("color_jitter", {"brightness": -1}, "task.color_jitter: If brightness is a single number, it must be non negative"),
])
def test_bad_protocol_keys_are_one_line_task_errors(key, value, message, monkeypatch):
    from omegaconf import open_dict

    from adaxbench.tasks import TaskError

    cfg = compose_cfg(["task=cifar10_3c3d", "task.valid_size=16"])
    with open_dict(cfg):
        OmegaConf.update(cfg, f"task.{key}", value, merge=False)
    with pytest.raises(TaskError) as err:
        _task(cfg, fake_image_arrays("cifar10", n_train=64, n_test=8), monkeypatch)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key,value,message", [
    ("crop_padding", -1, "task.crop_padding must be an integer >= 0, got -1"),
    ("drop_last", "maybe", "task.drop_last must be true or false, got 'maybe'"),
    ("augment", 1, "task.augment must be true or false, got 1"),
])
def test_protocol_keys_the_schema_declares_are_checked_by_check_config(key, value, message):
    """One place: the schema's ranges and types, applied by check_config (the task does not repeat them)."""
    from omegaconf import open_dict

    from adaxbench.train.validate import ConfigError, check_config

    cfg = compose_cfg(["task=cifar10_3c3d"])
    with open_dict(cfg):
        OmegaConf.update(cfg, f"task.{key}", value, merge=False)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert str(err.value) == message


def test_colour_jitter_needs_rgb(monkeypatch):
    from adaxbench.tasks import TaskError

    cfg = compose_cfg(["task=fmnist_2c2d", "task.valid_size=16", "task.augment=true", "+task.color_jitter={contrast:0.5}"])
    with pytest.raises(TaskError, match="needs RGB images; this dataset has 1 channel"):
        _task(cfg, fake_image_arrays("fashion_mnist", n_train=64, n_test=8), monkeypatch)
