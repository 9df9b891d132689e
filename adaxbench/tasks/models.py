"""The benchmark architectures.

``logreg``, ``mlp``, ``2c2d``, ``3c3d`` and ``allcnnc`` follow DeepOBS (Schneider et al.
2019; ``deepobs/pytorch/testproblems/testproblems_modules.py``) layer for layer, including
TensorFlow's ``'same'`` padding (which is asymmetric for stride 2: the extra row/column goes
to the bottom/right) and DeepOBS's initialisations.  ``resnet20`` is He et al. (2016)'s
CIFAR ResNet-20 with the parameter-free option-A shortcut (0.27M parameters).

All models take float ``[B, C, H, W]`` inputs, already normalised, and return logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adaxbench.tasks.base import TaskError

MODELS = ("logreg", "mlp", "2c2d", "3c3d", "allcnnc", "resnet20")


def build_model(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build model ``name`` (one of ``MODELS``) for ``in_channels`` x ``image_size``^2 inputs."""
    builders = {"logreg": _logreg, "mlp": _mlp, "2c2d": _2c2d, "3c3d": _3c3d,
                "allcnnc": _allcnnc, "resnet20": ResNet20}
    if name not in builders:
        raise TaskError(f"unknown model {name!r}; accepted: {', '.join(MODELS)}")
    # 3c3d and All-CNN-C end in 'valid' convolutions that need >= 3x3 maps there.
    min_size = {"3c3d": 9, "allcnnc": 9}.get(name, 1)
    if image_size < min_size:
        raise TaskError(f"model {name!r} needs images of at least {min_size}x{min_size} pixels, "
                        f"got {image_size}")
    return builders[name](num_classes, in_channels, image_size)


def l2_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters DeepOBS's L2 regularisation ``0.5 * l2_reg * sum ||w||^2`` applies to:
    the weights of convolutions and linear layers (no biases, no normalisation scales)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow 'same' padding along one axis: (before, after, output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _conv_same(cin: int, cout: int, kernel: int, stride: int, size: int) -> tuple[list[nn.Module], int]:
    """Conv2d with TF 'same' padding, as one symmetric-padded conv when possible."""
    lo, hi, out = _same_pad(size, kernel, stride)
    if lo == hi:
        return [nn.Conv2d(cin, cout, kernel, stride, padding=lo)], out
    return [nn.ZeroPad2d((lo, hi, lo, hi)), nn.Conv2d(cin, cout, kernel, stride)], out


def _maxpool_same(kernel: int, stride: int, size: int) -> tuple[list[nn.Module], int]:
    """Max-pool with TF 'same' padding.  Zero padding equals TF's -inf padding here because
    every pool follows a ReLU (inputs >= 0)."""
    lo, hi, out = _same_pad(size, kernel, stride)
    pad = [nn.ZeroPad2d((lo, hi, lo, hi))] if hi else []
    return pad + [nn.MaxPool2d(kernel, stride)], out


def _trunc_normal_(w: torch.Tensor, std: float) -> None:
    # tf.truncated_normal: resample outside two standard deviations.
    nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _logreg(num_classes: int, in_channels: int, size: int) -> nn.Module:
    """DeepOBS net_mnist_logreg: one linear layer, weights and biases initialised to 0."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * size * size, num_classes))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    return model


def _mlp(num_classes: int, in_channels: int, size: int) -> nn.Module:
    """DeepOBS net_mlp: 784-1000-500-100-classes with ReLU; truncated normal(0.03), bias 0."""
    widths = [in_channels * size * size, 1000, 500, 100]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], num_classes))
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            _trunc_normal_(m.weight, 0.03)
            nn.init.zeros_(m.bias)
    return model


def _2c2d(num_classes: int, in_channels: int, size: int) -> nn.Module:
    """DeepOBS net_mnist_2c2d: conv5x5(32)-pool-conv5x5(64)-pool-fc1024-fc, all 'same';
    truncated normal(0.05) weights and 0.05 biases everywhere."""
    layers: list[nn.Module] = []
    for cin, cout in ((in_channels, 32), (32, 64)):
        conv, size = _conv_same(cin, cout, 5, 1, size)
        pool, size = _maxpool_same(2, 2, size)
        layers += conv + [nn.ReLU()] + pool
    layers += [nn.Flatten(), nn.Linear(64 * size * size, 1024), nn.ReLU(), nn.Linear(1024, num_classes)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _trunc_normal_(m.weight, 0.05)
            nn.init.constant_(m.bias, 0.05)
    return model


def _3c3d(num_classes: int, in_channels: int, size: int) -> nn.Module:
    """DeepOBS net_cifar10_3c3d: conv5x5(64, valid)-pool-conv3x3(96, valid)-pool-
    conv3x3(128, same)-pool-fc512-fc256-fc, pools 3x3/2 'same'.  Xavier-normal conv and
    Xavier-uniform dense weights, zero biases."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 5), nn.ReLU()]
    pool, size = _maxpool_same(3, 2, size - 4)
    layers += pool + [nn.Conv2d(64, 96, 3), nn.ReLU()]
    pool, size = _maxpool_same(3, 2, size - 2)
    conv, size = _conv_same(96, 128, 3, 1, size)
    layers += pool + conv + [nn.ReLU()]
    pool, size = _maxpool_same(3, 2, size)
    layers += pool + [nn.Flatten(), nn.Linear(128 * size * size, 512), nn.ReLU(),
                      nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, num_classes)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def _allcnnc(num_classes: int, in_channels: int, size: int) -> nn.Module:
    """DeepOBS net_cifar100_allcnnc (Springenberg et al. 2015, All-CNN-C): dropout 0.2 on the
    input, 0.5 after each stride-2 block; Xavier-normal weights, 0.1 biases."""
    layers: list[nn.Module] = [nn.Dropout(0.2)]
    cin = in_channels
    for width in (96, 192):
        for stride in (1, 1, 2):
            conv, size = _conv_same(cin, width, 3, stride, size)
            layers += conv + [nn.ReLU()]
            cin = width
        layers.append(nn.Dropout(0.5))
    layers += [nn.Conv2d(192, 192, 3), nn.ReLU(),  # 'valid': 8x8 -> 6x6 on CIFAR
               nn.Conv2d(192, 192, 1), nn.ReLU(),
               # DeepOBS keeps a ReLU on the class maps before the global mean; kept for fidelity.
               nn.Conv2d(192, num_classes, 1), nn.ReLU(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            nn.init.constant_(m.bias, 0.1)
    return model


class _BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU (He et al. 2016, Fig. 2 left)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Option A shortcut: subsample by the stride, zero-pad the new channels (no parameters).
        short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.extra:
            short = F.pad(short, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(out + short)


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016, Sec. 4.2): conv3x3(16), 3 stages x 3 basic blocks of
    16/32/64 channels (stride 2 at stages 2 and 3), global average pool, linear classifier.
    Option-A shortcuts.  Initialised as the AdaX authors' code does (switchablenorms/AdaX,
    cifar10-code/models/ResNet_cifar.py, ``_weights_init``): ``kaiming_normal`` with its
    defaults (fan-in, gain sqrt(2), i.e. N(0, 2 / fan_in)) on every conv AND the final
    linear layer; the linear bias and BN (scale 1, shift 0) keep torch's defaults."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(_BasicBlock(cin, width, stride if i == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))
