"""Dataset readers, checked against tiny files written in the exact on-disk formats
(IDX with magic numbers, gzipped or not; CIFAR python pickles as Python 2 wrote them) and
against the real Fashion-MNIST system copy."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from adaxbench.tasks import datasets
from adaxbench.tasks.base import TaskError
from adaxbench.tasks.datasets import DATASETS, DataNotFoundError, load_dataset


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """IDX per LeCun's spec: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian int32 dims, data."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def fake_idx_set(raw_dir: Path, n_train: int = 20, n_test: int = 10, gz: bool = False):
    """Images with pixel (n, i, j) = (31 n + 7 i + 3 j) mod 256, labels n mod 10 (train) and
    9 - n mod 10 (test)."""
    raw_dir.mkdir(parents=True)
    n, i, j = np.ogrid[:n_train + n_test, :28, :28]
    pix = ((31 * n + 7 * i + 3 * j) % 256).astype(np.uint8)
    train_x, test_x = pix[:n_train], pix[n_train:]
    train_y = np.arange(n_train) % 10
    test_y = 9 - np.arange(n_test) % 10
    write_idx(raw_dir / "train-images-idx3-ubyte", train_x, gz)
    write_idx(raw_dir / "train-labels-idx1-ubyte", train_y, gz)
    write_idx(raw_dir / "t10k-images-idx3-ubyte", test_x, gz)
    write_idx(raw_dir / "t10k-labels-idx1-ubyte", test_y, gz)
    return train_x, train_y, test_x, test_y


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_exact(tmp_path, gz):
    train_x, train_y, test_x, test_y = fake_idx_set(tmp_path / "MNIST" / "raw", gz=gz)
    d = load_dataset("mnist", tmp_path)
    assert d.train_x.shape == (20, 1, 28, 28) and d.test_x.shape == (10, 1, 28, 28)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.train_x.is_contiguous() and d.test_x.is_contiguous()
    # Spot pixels by the formula, then everything against the arrays written.
    assert d.train_x[3, 0, 5, 7].item() == (31 * 3 + 7 * 5 + 3 * 7) % 256 == 149
    assert d.test_x[9, 0, 27, 27].item() == (31 * 29 + 7 * 27 + 3 * 27) % 256 == 145
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(train_x))
    assert torch.equal(d.test_x[:, 0], torch.from_numpy(test_x))
    assert d.train_y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2
    assert d.test_y.tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert d.num_classes == 10
    assert d.source == str(tmp_path / "MNIST" / "raw")
    # Population mean/std over all training pixels, as published constants are defined.
    assert d.mean == pytest.approx((np.mean(train_x / 255),), abs=1e-12)
    assert d.std == pytest.approx((np.std(train_x / 255),), abs=1e-12)


def test_fashion_mnist_root_copy_comes_before_system_copy(tmp_path):
    train_x, *_ = fake_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True)
    d = load_dataset("fashion_mnist", tmp_path)
    assert d.source == str(tmp_path / "FashionMNIST" / "raw")
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(train_x))


def test_idx_bad_magic_is_rejected(tmp_path):
    fake_idx_set(tmp_path / "MNIST" / "raw")
    f = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(f.read_bytes())
    data[2] = 0x0D  # float32 elements: not what MNIST holds
    f.write_bytes(bytes(data))
    with pytest.raises(DataNotFoundError, match="magic"):
        load_dataset("mnist", tmp_path)


def test_idx_truncated_is_rejected(tmp_path):
    fake_idx_set(tmp_path / "MNIST" / "raw")
    f = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(DataNotFoundError, match="truncated"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------- CIFAR python pickles

class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING opcodes), as in the
    real CIFAR pickles (made with Python 2 cPickle): they load as ``str`` under
    ``encoding='latin1'`` (what torchvision uses) and as ``bytes`` under ``encoding='bytes'``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def dump_py2(obj, path: Path) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def cifar_rows(start: int, n: int) -> np.ndarray:
    """Rows of 3072 bytes: 1024 red, 1024 green, 1024 blue, each row-major 32x32.
    Pixel (n, c, i, j) = (n + 5 c + 11 i + 13 j) mod 256."""
    n_, c, i, j = np.ogrid[start:start + n, :3, :32, :32]
    return ((n_ + 5 * c + 11 * i + 13 * j) % 256).astype(np.uint8).reshape(n, 3072)


@pytest.fixture
def no_md5(monkeypatch):
    # The tiny files cannot match the published md5 sums; existence is still checked.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity",
                        lambda path, md5=None: os.path.isfile(path))


def fake_cifar10(root: Path) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for b in range(5):  # 4 examples per batch, 20 in all
        dump_py2({b"batch_label": b"training batch %d of 5" % (b + 1),
                  b"labels": [(4 * b + k) % 10 for k in range(4)],
                  b"data": cifar_rows(4 * b, 4),
                  b"filenames": [b"img_%d.png" % (4 * b + k) for k in range(4)]},
                 d / f"data_batch_{b + 1}")
    dump_py2({b"batch_label": b"testing batch 1 of 1", b"labels": [7] * 10,
              b"data": cifar_rows(100, 10), b"filenames": [b"t%d.png" % k for k in range(10)]},
             d / "test_batch")
    dump_py2({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                               b"frog", b"horse", b"ship", b"truck"],
              b"num_cases_per_batch": 4, b"num_vis": 3072}, d / "batches.meta")


def test_fixture_pickles_look_like_the_real_ones(tmp_path):
    fake_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        as_bytes = pickle.load(f, encoding="bytes")
    assert set(as_bytes) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape == (4, 3072)


def test_cifar10_pickles_exact(tmp_path, no_md5):
    fake_cifar10(tmp_path)
    d = load_dataset("cifar10", tmp_path)
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_x.shape == (10, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.train_x.is_contiguous()
    # Channel c of row n is bytes c*1024 .. c*1024+1023 of that row, row-major.
    assert d.train_x[6, 2, 3, 4].item() == (6 + 10 + 33 + 52) % 256 == 101
    assert d.test_x[0, 1, 31, 0].item() == (100 + 5 + 341) % 256 == 190
    n, c, i, j = np.ogrid[:20, :3, :32, :32]
    assert torch.equal(d.train_x, torch.from_numpy(((n + 5 * c + 11 * i + 13 * j) % 256).astype(np.uint8)))
    assert torch.equal(d.test_x.reshape(10, -1), torch.from_numpy(cifar_rows(100, 10)))
    assert d.train_y.tolist() == [k % 10 for k in range(20)]
    assert d.test_y.tolist() == [7] * 10
    assert d.num_classes == 10 and d.source == str(tmp_path / "cifar-10-batches-py")
    x = d.train_x.double().numpy() / 255
    assert d.mean == pytest.approx(tuple(x.mean(axis=(0, 2, 3))), abs=1e-12)
    assert d.std == pytest.approx(tuple(x.std(axis=(0, 2, 3))), abs=1e-12)


def test_cifar100_pickles_exact(tmp_path, no_md5):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    fine = [(17 * k) % 100 for k in range(20)]
    dump_py2({b"filenames": [b"x.png"] * 20, b"batch_label": b"training batch 1 of 1",
              b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine],
              b"data": cifar_rows(0, 20)}, d / "train")
    dump_py2({b"filenames": [b"y.png"] * 10, b"batch_label": b"testing batch 1 of 1",
              b"fine_labels": list(range(90, 100)), b"coarse_labels": [19] * 10,
              b"data": cifar_rows(50, 10)}, d / "test")
    dump_py2({b"fine_label_names": [b"c%d" % k for k in range(100)],
              b"coarse_label_names": [b"s%d" % k for k in range(20)]}, d / "meta")
    data = load_dataset("cifar100", tmp_path)
    assert data.num_classes == 100
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    assert data.train_y.tolist() == fine  # fine labels, not coarse
    assert data.test_y.tolist() == list(range(90, 100))
    assert data.test_x[9, 2, 31, 31].item() == (59 + 10 + 341 + 403) % 256 == 45
    assert torch.equal(data.train_x.reshape(20, -1), torch.from_numpy(cifar_rows(0, 20)))


def test_cifar_checksum_failure_is_one_clear_line(tmp_path):
    fake_cifar10(tmp_path)  # files present but (without the bypass) md5 sums do not match
    with pytest.raises(DataNotFoundError, match="corrupted") as e:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(e.value) and "data.download=true" in str(e.value)


# ---------------------------------------------------------------- errors and the real data

def test_missing_data_messages(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "data_batch_1" in msg and "batches.meta" in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data.download=true" in msg

    with pytest.raises(DataNotFoundError) as e:
        load_dataset("mnist", str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "train-images-idx3-ubyte" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg and "data.download=true" in msg

    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("fashion_mnist", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "nowhere") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert isinstance(e.value, TaskError)


def test_download_goes_through_torchvision_into_root(tmp_path, monkeypatch):
    # Stand-in for the network: torchvision's MNIST.download asks for each .gz and expects
    # it unpacked into root/MNIST/raw; serve the files from a local staging copy.
    train_x, *_ = fake_idx_set(tmp_path / "staging", gz=False)
    fetched = []

    def fake_fetch(url, download_root, filename=None, md5=None, **kw):
        fetched.append(filename)
        plain = filename[:-3]
        (Path(download_root) / plain).write_bytes((tmp_path / "staging" / plain).read_bytes())

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", fake_fetch)
    with pytest.raises(DataNotFoundError):
        load_dataset("mnist", tmp_path / "data")  # download=False: never fetches
    assert fetched == []
    d = load_dataset("mnist", tmp_path / "data", download=True)
    assert sorted(fetched) == sorted(f + ".gz" for f in datasets._IDX_FILES)
    assert d.source == str(tmp_path / "data" / "MNIST" / "raw")
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(train_x))


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    with pytest.raises(DataNotFoundError, match="download into .* failed .*name resolution") as e:
        load_dataset("cifar100", tmp_path, download=True)
    assert "\n" not in str(e.value)


def test_unknown_dataset_lists_the_accepted_ones(tmp_path):
    with pytest.raises(TaskError) as e:
        load_dataset("imagenet", tmp_path)
    assert all(name in str(e.value) for name in DATASETS)


@pytest.mark.skipif(not (datasets.FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="needs `apt-get install dataset-fashion-mnist`")
def test_real_fashion_mnist_system_copy(tmp_path):
    d = load_dataset("fashion_mnist", tmp_path)  # nothing under tmp_path: the system copy
    assert d.source == str(datasets.FASHION_MNIST_SYSTEM_DIR)
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_x.dtype == torch.uint8 and d.num_classes == 10
    assert d.train_y.bincount().tolist() == [6000] * 10
    assert d.test_y.bincount().tolist() == [1000] * 10
    # First labels as published (e.g. keras.datasets.fashion_mnist docs / the original repo).
    assert d.train_y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert d.test_y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    # The widely used normalisation constants for Fashion-MNIST: 0.2860, 0.3530.
    assert d.mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert d.std[0] == pytest.approx(0.3530, abs=1e-4)
