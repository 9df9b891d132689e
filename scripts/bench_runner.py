"""Training throughput of the harness against a bare loop and a DataLoader pipeline.

For each task (fmnist_mlp, cifar10_3c3d) and the current device, prints training samples/s of
  harness     - `adaxbench.train.runner` end to end (training time only, evaluation excluded)
  bare        - a hand-written loop: same model, batch size, optimizer, in-memory tensors
  dataloader  - torchvision's per-sample Dataset (PIL + transforms) + DataLoader, 0 and 2 workers
and the ratios harness/bare (goal >= 0.9) and harness/dataloader (goal >= 2 on CPU).
Fashion-MNIST is the real data when installed; CIFAR-10 uses random uint8 images of its exact
shape (throughput does not depend on pixel values, and CIFAR cannot be downloaded here).

    python scripts/bench_runner.py [--steps 100] [--rounds 3] [--tasks fmnist_mlp,cifar10_3c3d] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from adaxbench.tasks import datasets, image
from adaxbench.tasks.augment import color_jitter, jitter_ranges, random_crop_flip
from adaxbench.tasks.models import build_model, l2_parameters
from adaxbench.train.runner import run_in_dir
from adaxbench.train.optimizer import choose_impl
from adaxbench.train.validate import resolve_device


def load_arrays(task_cfg) -> datasets.ImageArrays:
    if task_cfg.dataset == "fashion_mnist":
        try:
            return datasets.load_dataset("fashion_mnist", "data")
        except datasets.DataNotFoundError:
            pass
    shape, n = ((3, 32, 32), 50000) if task_cfg.dataset.startswith("cifar") else ((1, 28, 28), 60000)
    g = torch.Generator().manual_seed(0)
    return datasets.ImageArrays(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                                torch.randint(0, 10, (n,), generator=g),
                                torch.randint(0, 256, (1000, *shape), dtype=torch.uint8, generator=g),
                                torch.randint(0, 10, (1000,), generator=g), 10, (0.5,) * shape[0],
                                (0.25,) * shape[0], "random")


def make_adam(model, device) -> torch.optim.Optimizer:
    # The same implementation the harness picks (trainer.optimizer_impl=auto: fused where
    # supported), so the comparison measures the loop and the data path, not the optimizer.
    kwargs, _ = choose_impl(torch.optim.Adam, {"lr": 1e-3}, "auto", device)
    return torch.optim.Adam(model.parameters(), **kwargs)


def harness(cfg, arrays, steps: int) -> float:
    """Steady-state samples/s of the real runner: between its first and last log step (the
    bare loop likewise leaves out its warm-up step), log-step syncs and diagnostics included."""
    image.load_dataset = lambda *a, **k: arrays
    bs = cfg.task.batch_size
    cfg.trainer.train_limit, cfg.trainer.epochs, cfg.trainer.log_every = (steps + 1) * bs, 1, 10
    cfg.trainer.progress, cfg.trainer.checkpoint, cfg.trainer.eval_limit = False, False, 1000
    with tempfile.TemporaryDirectory() as d:
        run_in_dir(cfg, Path(d) / "run")
        info = json.loads((Path(d) / "run" / "run.json").read_text())
        rows = pd.read_parquet(Path(d) / "run" / "metrics.parquet")
    assert info["status"] == "completed", info["error"]
    loss = rows[(rows.split == "batch") & (rows.metric == "loss")]
    first, last = loss.iloc[0], loss.iloc[-1]
    return float((last.step - first.step) * bs / (last.time - first.time))


def bare(cfg, arrays, steps: int, device) -> float:
    torch.manual_seed(0)
    bs = cfg.task.batch_size
    x_all, y_all = arrays.train_x[: steps * bs].to(device), arrays.train_y[: steps * bs].to(device)
    c = x_all.shape[1]
    # The task's own protocol (docs/protocols.md): crop padding, colour jitter, normalisation.
    pad, jitter_cfg = cfg.task.crop_padding, cfg.task.get("color_jitter")
    jitter = jitter_ranges(**OmegaConf.to_container(jitter_cfg)) if jitter_cfg else None
    mean, std = image.normalization(OmegaConf.to_container(cfg.task).get("normalize", "dataset"), arrays)
    mean = None if mean is None else torch.tensor(mean, device=device).view(1, c, 1, 1)
    std = None if std is None else torch.tensor(std, device=device).view(1, c, 1, 1)
    model = build_model(cfg.task.model, 10, c, x_all.shape[-1]).to(device)
    opt = make_adam(model, device)
    l2, l2_params = float(cfg.task.get("l2_reg", 0.0) or 0.0), l2_parameters(model)
    g = torch.Generator(device=device).manual_seed(0)
    perm = torch.randperm(x_all.shape[0], device=device, generator=g)

    def step(i):
        idx = perm[i * bs:(i + 1) * bs]
        x = x_all[idx]
        if cfg.task.augment:
            x = random_crop_flip(x, pad, g)
        x = x.float() / 255
        if cfg.task.augment and jitter is not None:
            x = color_jitter(x, jitter, g)
        if mean is not None:
            x = (x - mean) / std
        loss = F.cross_entropy(model(x), y_all[idx])
        if l2:  # the protocol's L2 term (DeepOBS), as the harness computes it
            loss = loss + 0.5 * l2 * torch.stack(torch._foreach_norm(l2_params)).square().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step(0)  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t)


class PerSampleImages(Dataset):
    """torchvision's dataset pattern (CIFAR10/FashionMNIST.__getitem__): one PIL image at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x = x.numpy()
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        a = self.x[i]
        img = Image.fromarray(a[0], mode="L") if a.shape[0] == 1 else Image.fromarray(np.transpose(a, (1, 2, 0)))
        return self.transform(img), self.y[i]


def dataloader(cfg, arrays, steps: int, device, workers: int) -> float:
    torch.manual_seed(0)
    bs = cfg.task.batch_size
    task = OmegaConf.to_container(cfg.task)
    aug = [transforms.RandomCrop(32, padding=task["crop_padding"]), transforms.RandomHorizontalFlip()] \
        + ([transforms.ColorJitter(**task["color_jitter"])] if task.get("color_jitter") else []) \
        if task["augment"] else []
    mean, std = image.normalization(task.get("normalize", "dataset"), arrays)
    norm = [transforms.Normalize(mean, std)] if mean is not None else []
    tf = transforms.Compose([*aug, transforms.ToTensor(), *norm])
    ds = PerSampleImages(arrays.train_x[: (steps + 1) * bs], arrays.train_y[: (steps + 1) * bs], tf)
    loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    c = arrays.train_x.shape[1]
    model = build_model(cfg.task.model, 10, c, arrays.train_x.shape[-1]).to(device)
    opt = make_adam(model, device)
    it = iter(loader)
    t = None
    for i in range(steps + 1):
        if i == 1:  # the first batch pays for worker start-up: not counted
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--tasks", default="fmnist_mlp,cifar10_3c3d")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.steps} steps per measurement, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'task':14s} {'pipeline':16s} {'samples/s':>10s}")
    for task in args.tasks.split(","):
        with initialize_config_module(config_module="adaxbench.configs", version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"task={task}", "optimizer=adam",
                                                           f"trainer.device={args.device}"])
        arrays = load_arrays(cfg.task)
        pipelines = {"bare": lambda: bare(cfg, arrays, args.steps, device),
                     "harness": lambda: harness(cfg.copy(), arrays, args.steps),
                     "dataloader w=0": lambda: dataloader(cfg, arrays, args.steps, device, 0),
                     "dataloader w=2": lambda: dataloader(cfg, arrays, args.steps, device, 2)}
        # Interleaved rounds, median per pipeline: machine noise hits every pipeline alike.
        samples = {name: [] for name in pipelines}
        for _ in range(args.rounds):
            for name, measure in pipelines.items():
                samples[name].append(measure())
        results = {name: float(np.median(v)) for name, v in samples.items()}
        for name, sps in results.items():
            print(f"{task:14s} {name:16s} {sps:10.0f}", flush=True)
        dl = max(results["dataloader w=0"], results["dataloader w=2"])
        print(f"{task:14s} harness/bare = {results['harness'] / results['bare']:.2f} (goal >= 0.90), "
              f"harness/best dataloader = {results['harness'] / dl:.2f} (goal >= 2 on CPU)", flush=True)


if __name__ == "__main__":
    main()
