"""Real image datasets, decoded once into in-memory uint8 tensors.

MNIST and Fashion-MNIST are read from their IDX files (gzipped or not) with a vectorised
reader; CIFAR-10/100 through torchvision's own readers of the python pickles.  Nothing is
ever iterated per sample or turned into PIL images: the task indexes these tensors
directly, on the training device.

Lookup order: ``root`` (torchvision's on-disk layouts) -> for Fashion-MNIST the Debian
system copy (``apt-get install dataset-fashion-mnist``) -> a torchvision download into
``root`` when ``download=True``.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adaxbench.tasks.base import TaskError

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")

# Where Debian's dataset-fashion-mnist package puts the original gzipped IDX files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# torchvision class name (= its folder under root) and the number of classes.
_IDX_SETS = {"mnist": ("MNIST", 10), "fashion_mnist": ("FashionMNIST", 10)}
_CIFAR_SETS = {"cifar10": ("CIFAR10", "cifar-10-batches-py", 10),
               "cifar100": ("CIFAR100", "cifar-100-python", 100)}


class DataNotFoundError(TaskError):
    """The dataset files are not where we looked (message says where and how to get them)."""


@dataclass
class ImageArrays:
    """A whole image classification dataset as CPU tensors."""

    train_x: torch.Tensor  # uint8 [N, C, H, W], contiguous
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per-channel mean of train_x / 255
    std: tuple[float, ...]   # per-channel (population) std of train_x / 255
    source: str              # directory the data was read from


def load_dataset(name: str, root: str | os.PathLike, download: bool = False) -> ImageArrays:
    """Load ``name`` (one of ``DATASETS``) from ``root``, a system copy, or a download.

    Raises ``DataNotFoundError`` (one line: files, places looked, how to get them) when the
    data is nowhere and ``download`` is false, and ``TaskError`` for an unknown name.
    """
    from .user import is_user_dataset, load_user_dataset

    if is_user_dataset(name):  # {_target_: a dataset class} or a torch.save file (tasks/user.py)
        return _arrays("task.dataset", *load_user_dataset(name, root, download))
    root = Path(root).expanduser()
    if name in _IDX_SETS:
        return _load_idx_set(name, root, download)
    if name in _CIFAR_SETS:
        return _load_cifar(name, root, download)
    raise TaskError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")


def _read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (LeCun's MNIST format), gzipped or not."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError, zlib.error) as e:  # a cut-off download, a damaged .gz
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataNotFoundError(f"{path} is truncated or corrupted ({reason}); delete it and fetch it again "
                                "(data.download=true, or copy a good file there)") from None
    # Magic number: two zero bytes, the element type (0x08 = ubyte), the number of dims.
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataNotFoundError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise DataNotFoundError(f"{path} is truncated or corrupted: header says {shape}, "
                                f"found {len(data) - offset} bytes of data")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy())


def _find_idx_dir(dirs: list[Path]) -> tuple[Path, dict[str, Path]] | None:
    """The first directory holding all four IDX files (plain or .gz), with their paths."""
    for d in dirs:
        found = {}
        for f in _IDX_FILES:
            for candidate in (d / f, d / f"{f}.gz"):
                if candidate.is_file():
                    found[f] = candidate
                    break
        if len(found) == len(_IDX_FILES):
            return d, found
    return None


def _load_idx_set(name: str, root: Path, download: bool) -> ImageArrays:
    folder, num_classes = _IDX_SETS[name]
    dirs = [root / folder / "raw"]
    if name == "fashion_mnist":
        dirs.append(FASHION_MNIST_SYSTEM_DIR)
    hit = _find_idx_dir(dirs)
    if hit is None and download:
        import torchvision.datasets as tvd

        # Downloads and unpacks into root/<folder>/raw, the first place we look.
        _download(name, root, lambda: getattr(tvd, folder)(str(root), train=True, download=True))
        hit = _find_idx_dir(dirs)
    if hit is None:
        how = "set data.download=true"
        if name == "fashion_mnist":
            how += " or run `apt-get install dataset-fashion-mnist`"
        raise DataNotFoundError(
            f"{name}: files {', '.join(_IDX_FILES)} (optionally .gz) not found in "
            f"{' or '.join(str(d) for d in dirs)}; {how}")
    src, files = hit
    train_x, train_y = _read_idx(files[_IDX_FILES[0]]), _read_idx(files[_IDX_FILES[1]])
    test_x, test_y = _read_idx(files[_IDX_FILES[2]]), _read_idx(files[_IDX_FILES[3]])
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataNotFoundError(f"{name} in {src}: {split} images {tuple(x.shape)} do not "
                                    f"match labels {tuple(y.shape)}; the files are corrupted")
    return _arrays(name, train_x.unsqueeze(1), train_y, test_x.unsqueeze(1), test_y,
                   num_classes, str(src))


def _load_cifar(name: str, root: Path, download: bool) -> ImageArrays:
    import torchvision.datasets as tvd

    cls_name, folder, num_classes = _CIFAR_SETS[name]
    cls = getattr(tvd, cls_name)
    src = root / folder
    needed = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in needed if not (src / f).is_file()]
    if missing and not download:
        raise DataNotFoundError(f"{name}: files {', '.join(needed)} not found in {src} "
                                f"(missing {', '.join(missing)}); set data.download=true")
    if missing:
        _download(name, root, lambda: cls(str(root), train=True, download=True))
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
    except RuntimeError as e:  # torchvision's md5 check failed
        raise DataNotFoundError(f"{name} in {src} is corrupted ({e}); delete it and set "
                                f"data.download=true") from None

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        # torchvision keeps .data as an HWC view of the NCHW pickle rows; undo the view.
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    return _arrays(name, *tensors(train), *tensors(test), num_classes, str(src))


def _download(name: str, root: Path, fetch) -> None:
    """Run torchvision's download ``fetch`` into ``root``, failing with one line."""
    try:
        fetch()
    except Exception as e:  # no network, proxy, disk full...: say so in one line
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataNotFoundError(f"{name}: download into {root} failed ({msg}); copy the files "
                                f"there by hand or check the network") from None


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population std of ``x / 255`` from 256-bin histograms
    (no float copy of the whole dataset)."""
    v = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(x.shape[1]):
        p = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        p /= p.sum()
        m = (p * v).sum()
        means.append(m.item())
        stds.append(((p * (v - m) ** 2).sum()).sqrt().item())
    return tuple(means), tuple(stds)


def _arrays(name: str, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
            test_y: torch.Tensor, num_classes: int, source: str) -> ImageArrays:
    train_y, test_y = train_y.long(), test_y.long()
    for y, split in ((train_y, "train"), (test_y, "test")):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataNotFoundError(f"{name} in {source}: {split} labels outside 0..{num_classes - 1}; "
                                    f"the files are corrupted")
    mean, std = _channel_stats(train_x)
    return ImageArrays(train_x.contiguous(), train_y, test_x.contiguous(), test_y,
                       num_classes, mean, std, source)
