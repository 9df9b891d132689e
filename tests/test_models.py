"""Benchmark architectures: parameter counts derived by hand from the published
architectures (and equal to the counts printed in the DeepOBS paper, Schneider et al. 2019,
Table 1 / docs), TF-'same' padding semantics, DeepOBS initialisations, and that every model
trains (forward/backward, channels_last, bf16 autocast)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adaxbench.tasks.base import TaskError
from adaxbench.tasks.models import MODELS, build_model, l2_parameters


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def dense(a, b):
    return a * b + b


# Geometry per model: (num_classes, in_channels, image_size, hand-derived parameter count).
EXPECTED = {
    "logreg": (10, 1, 28, dense(784, 10)),                                         # 7,850
    "mlp": (10, 1, 28, dense(784, 1000) + dense(1000, 500) + dense(500, 100) + dense(100, 10)),
    # 28 -> pool 14 -> pool 7 (all 'same'), so the first dense layer sees 7*7*64.
    "2c2d": (10, 1, 28, conv(1, 32, 5) + conv(32, 64, 5) + dense(7 * 7 * 64, 1024) + dense(1024, 10)),
    # 32 -conv5 valid-> 28 -pool-> 14 -conv3 valid-> 12 -pool-> 6 -conv3 same-> 6 -pool-> 3.
    "3c3d": (10, 3, 32, conv(3, 64, 5) + conv(64, 96, 3) + conv(96, 128, 3)
             + dense(3 * 3 * 128, 512) + dense(512, 256) + dense(256, 10)),
    "allcnnc": (100, 3, 32, conv(3, 96, 3) + 2 * conv(96, 96, 3) + conv(96, 192, 3)
                + 3 * conv(192, 192, 3) + conv(192, 192, 1) + conv(192, 100, 1)),
    # Stem conv + BN(16); stage 1: 6 convs 16->16; stage 2: 16->32 then 5 convs 32->32;
    # stage 3: 32->64 then 5 convs 64->64; 2 BN params per channel per conv; fc 64->10.
    # Option A shortcuts have no parameters.
    "resnet20": (10, 3, 32, conv(3, 16, 3, False) + 2 * 16
                 + 6 * (conv(16, 16, 3, False) + 2 * 16)
                 + conv(16, 32, 3, False) + 5 * conv(32, 32, 3, False) + 6 * 2 * 32
                 + conv(32, 64, 3, False) + 5 * conv(64, 64, 3, False) + 6 * 2 * 64
                 + dense(64, 10)),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    assert set(EXPECTED) == set(MODELS)
    for name, (k, c, s, count) in EXPECTED.items():
        assert n_params(build_model(name, k, c, s)) == count, name
    # The totals the papers print, as an independent cross-check of the arithmetic above.
    published = {"logreg": 7_850, "mlp": 1_336_610, "2c2d": 3_274_634, "3c3d": 895_210,
                 "allcnnc": 1_387_108, "resnet20": 269_722}
    assert {n: e[3] for n, e in EXPECTED.items()} == published
    assert n_params(build_model("3c3d", 100, 3, 32)) == 895_210 + 256 * 90 + 90  # cifar100_3c3d


def test_resnet20_is_the_0_27m_option_a_net():
    m = build_model("resnet20", 10, 3, 32)
    assert round(n_params(m) / 1e6, 2) == 0.27
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 19 and all(x.kernel_size == (3, 3) for x in convs)  # no 1x1 projections
    assert sum(isinstance(x, nn.Linear) for x in m.modules()) == 1  # 19 + 1 = 20 weighted layers


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward(name):
    k, c, s, _ = EXPECTED[name]
    torch.manual_seed(0)
    m = build_model(name, k, c, s)
    x, y = torch.randn(4, c, s, s), torch.arange(4) % k
    out = m(x)
    assert out.shape == (4, k) and out.dtype == torch.float32
    F.cross_entropy(out, y).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert all(p.grad.abs().sum() > 0 for p in m.parameters())  # every layer gets signal


@pytest.mark.parametrize("name", ["2c2d", "3c3d", "allcnnc", "resnet20"])
def test_channels_last_and_bf16_autocast(name):
    k, c, s, _ = EXPECTED[name]
    torch.manual_seed(0)
    m = build_model(name, k, c, s).eval()
    x = torch.randn(2, c, s, s)
    ref = m(x)
    m_cl = m.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(m_cl(x_cl), ref, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m_cl(x_cl)
    assert out.shape == (2, k) and torch.isfinite(out.float()).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


def test_tf_same_maxpool_pads_bottom_right_only():
    # TF 'same' 3x3/2 pooling of 28x28: output 14x14, window (i, j) covers rows 2i..2i+2 and
    # cols 2j..2j+2, the missing row/col past the bottom/right edge is padding. (A symmetric
    # padding=1 pool would start its windows at -1.)
    m = build_model("3c3d", 10, 3, 32)
    pool = nn.Sequential(m[2], m[3])  # the pool after conv1 (28x28 maps)
    x = torch.rand(2, 5, 28, 28)  # >= 0, like the ReLU output it sees
    out = pool(x)
    assert out.shape == (2, 5, 14, 14)
    ref = torch.stack([torch.stack([x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].amax(dim=(2, 3))
                                    for j in range(14)], -1) for i in range(14)], -2)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_tf_same_stride2_conv_in_allcnnc():
    # All-CNN-C's third conv: 3x3, stride 2, 'same' on 32x32 -> 16x16; TF pads 0 on top/left
    # and 1 at bottom/right, so output (0, 0) sees rows/cols 0..2 and (15, 15) rows/cols 30..32.
    m = build_model("allcnnc", 100, 3, 32)
    convs = [x for x in m if isinstance(x, nn.Conv2d)]
    stage = nn.Sequential(*m[5:7])  # ZeroPad2d + the stride-2 conv
    conv3 = convs[2]
    assert stage[1] is conv3 and conv3.stride == (2, 2)
    x = torch.randn(1, 96, 32, 32, dtype=torch.float64)
    w, b = conv3.weight.double(), conv3.bias.double()
    out = stage.double()(x)
    assert out.shape == (1, 96, 16, 16)
    first = (w * x[:, None, :, 0:3, 0:3]).sum(dim=(2, 3, 4)) + b
    last = (w[:, :, :2, :2] * x[:, None, :, 30:32, 30:32]).sum(dim=(2, 3, 4)) + b
    torch.testing.assert_close(out[:, :, 0, 0], first)
    torch.testing.assert_close(out[:, :, 15, 15], last)


def test_deepobs_initialisations():
    torch.manual_seed(0)
    lr = build_model("logreg", 10, 1, 28)
    assert all((p == 0).all() for p in lr.parameters())

    # tf.truncated_normal(stddev=s) keeps |w| <= 2s; its std is s * sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    trunc = math.sqrt(1 - 4 * phi2 / math.erf(2 / math.sqrt(2)))  # 0.8796
    mlp = build_model("mlp", 10, 1, 28)
    w = mlp[1].weight
    assert w.abs().max() <= 0.06 and w.std().item() == pytest.approx(0.03 * trunc, rel=0.01)
    assert all((l.bias == 0).all() for l in mlp if isinstance(l, nn.Linear))

    c2 = build_model("2c2d", 10, 1, 28)
    layers = [l for l in c2 if isinstance(l, (nn.Conv2d, nn.Linear))]
    assert all((l.bias == 0.05).all() for l in layers)
    assert layers[2].weight.abs().max() <= 0.1
    assert layers[2].weight.std().item() == pytest.approx(0.05 * trunc, rel=0.01)

    c3 = build_model("3c3d", 10, 3, 32)
    conv2 = [l for l in c3 if isinstance(l, nn.Conv2d)][1]  # 96x64x3x3: fans 576 and 864
    assert conv2.weight.std().item() == pytest.approx(math.sqrt(2 / (576 + 864)), rel=0.02)
    fc1 = [l for l in c3 if isinstance(l, nn.Linear)][0]  # Xavier uniform, bound sqrt(6/(1152+512))
    bound = math.sqrt(6 / (1152 + 512))
    assert fc1.weight.abs().max() <= bound and fc1.weight.abs().max() > 0.99 * bound
    assert all((l.bias == 0).all() for l in c3 if isinstance(l, (nn.Conv2d, nn.Linear)))

    ac = build_model("allcnnc", 100, 3, 32)
    assert all((l.bias == 0.1).all() for l in ac if isinstance(l, nn.Conv2d))
    assert [l.p for l in ac if isinstance(l, nn.Dropout)] == [0.2, 0.5, 0.5]

    rn = build_model("resnet20", 10, 3, 32)
    w = rn.blocks[8].conv2.weight  # 64x64x3x3, He: std sqrt(2 / fan_in) = sqrt(2 / 576)
    assert w.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)


def test_resnet20_final_layer_init_is_the_authors_kaiming_normal():
    # switchablenorms/AdaX cifar10-code/models/ResNet_cifar.py: _weights_init applies
    # init.kaiming_normal (defaults: fan_in, a=0 -> gain sqrt(2)) to every Conv2d AND Linear,
    # so the 64->10 classifier is N(0, 2/64); its bias keeps torch's U(-1/8, 1/8).
    torch.manual_seed(0)
    fcs = [build_model("resnet20", 10, 3, 32).fc for _ in range(20)]
    w = torch.cat([fc.weight.detach().flatten() for fc in fcs]).double().sort().values
    # Kolmogorov-Smirnov against N(0, 2/64): D below the 0.1% critical value 1.95 / sqrt(n).
    cdf = torch.special.ndtr(w / math.sqrt(2 / 64))
    n = len(w)
    ks = torch.maximum(torch.arange(1, n + 1) / n - cdf, cdf - torch.arange(n) / n).max().item()
    assert ks < 1.95 / math.sqrt(n), ks
    # torch's default Linear init, U(-1/8, 1/8), would fail: the normal puts ~16% beyond 0.25.
    assert (w.abs() > 0.25).double().mean() > 0.1
    b = torch.cat([fc.bias.detach() for fc in fcs])
    assert b.abs().max() <= 1 / 8 and b.std() > 0.05


def test_allcnnc_dropout_only_in_train_mode():
    m = build_model("allcnnc", 100, 3, 32)
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
    m.train()
    assert not torch.equal(m(x), m(x))


def test_l2_parameters_are_the_weights_not_biases_or_bn():
    m = build_model("3c3d", 10, 3, 32)
    got = {id(p) for p in l2_parameters(m)}
    want = {id(p) for n, p in m.named_parameters() if n.endswith("weight")}
    assert got == want and len(got) == 6  # 3 conv + 3 dense kernels
    rn = build_model("resnet20", 10, 3, 32)
    l2 = l2_parameters(rn)
    assert len(l2) == 20 and all(p.dim() in (2, 4) for p in l2)
    # Everything but the BN scales/shifts (2 per channel of the 19 convs) and the fc bias.
    bn = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    assert sum(p.numel() for p in l2) == 269_722 - bn - 10


def test_other_geometries_and_errors():
    assert build_model("2c2d", 10, 3, 32)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("resnet20", 100, 1, 28)(torch.randn(2, 1, 28, 28)).shape == (2, 100)
    with pytest.raises(TaskError, match="accepted: logreg, mlp, 2c2d, 3c3d, allcnnc, resnet20"):
        build_model("vgg16", 10, 3, 32)
    with pytest.raises(TaskError, match="at least 9x9"):
        build_model("3c3d", 10, 3, 8)


def test_image_task_configs_build():
    from pathlib import Path

    from omegaconf import OmegaConf

    from adaxbench.tasks.datasets import DATASETS

    geometry = {"mnist": (10, 1, 28), "fashion_mnist": (10, 1, 28),
                "cifar10": (10, 3, 32), "cifar100": (100, 3, 32)}
    keys = {"name", "kind", "dataset", "model", "batch_size", "epochs", "l2_reg", "augment",
            "crop_padding", "normalize", "valid_size", "train_eval_size", "target", "lr_schedule"}
    files = sorted((Path(__file__).parents[1] / "configs" / "task").glob("*.yaml"))
    # custom.yaml / custom_image.yaml are templates for users' own tasks, models and data (tests/test_plugins.py).
    image = [OmegaConf.load(f) for f in files if f.stem not in ("custom", "custom_image")]
    image = [c for c in image if c.kind == "image"]
    assert {c.name for c in image} >= {"mnist_logreg", "mnist_mlp", "mnist_2c2d", "fmnist_mlp",
                                       "fmnist_2c2d", "cifar10_3c3d", "cifar100_3c3d",
                                       "cifar100_allcnnc", "cifar10_resnet20"}
    for c in image:
        assert keys <= set(c), c.name
        assert c.dataset in DATASETS and c.model in MODELS, c.name
        assert c.augment == c.dataset.startswith("cifar"), c.name
        assert 0 < c.target < 1 and c.l2_reg >= 0, c.name
    for model, dataset in {(c.model, c.dataset) for c in image}:
        k, ch, s = geometry[dataset]
        assert build_model(model, k, ch, s)(torch.zeros(1, ch, s, s)).shape == (1, k), (model, dataset)
