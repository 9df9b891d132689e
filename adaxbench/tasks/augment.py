"""Batched on-device data augmentation (no per-example Python)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are one: ``cuda`` (no index, as ``torch.Generator("cuda").device`` reads) is the
    current CUDA device, so it equals ``cuda:0`` there."""
    def indexed(d: torch.device) -> torch.device:
        if d.type == "cuda" and d.index is None:
            return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
        return d
    return indexed(torch.device(a)) == indexed(torch.device(b))


def random_crop_flip(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random ``padding``-px zero-padded crop and random horizontal flip (p = 0.5), drawn
    independently per example: the standard CIFAR augmentation of He et al. (2016).

    ``x`` is a float or uint8 ``[B, C, H, W]`` batch on any device; ``generator`` lives on
    ``x.device`` and is the only source of randomness.  Draw order (part of the contract,
    so runs are reproducible): row offsets, column offsets (each uniform in
    ``0..2*padding``), then flips, each a ``[B]`` tensor.  Returns a new tensor of the same
    shape, dtype and device.
    """
    if x.ndim != 4:
        raise ValueError(f"random_crop_flip expects a [B, C, H, W] batch, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"random_crop_flip padding must be >= 0, got {padding}")
    if not same_device(generator.device, x.device):
        raise ValueError(f"random_crop_flip generator is on {generator.device} but the batch is "
                         f"on {x.device}; they must match")
    B, C, H, W = x.shape
    dev = x.device
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=dev)
    flip = torch.randint(0, 2, (B,), generator=generator, device=dev, dtype=torch.bool)
    padded = F.pad(x, (padding,) * 4) if padding else x
    # Example b's output pixel (i, j) is padded pixel (dy[b] + i, dx[b] + j), or column
    # dx[b] + W - 1 - j when flipped: one gather over the flattened image, no loop.
    j = torch.arange(W, device=dev)
    rows = dy[:, None] + torch.arange(H, device=dev)
    cols = dx[:, None] + torch.where(flip[:, None], W - 1 - j, j)
    idx = rows[:, :, None] * padded.shape[3] + cols[:, None, :]
    out = padded.flatten(2).gather(2, idx.view(B, 1, H * W).expand(B, C, H * W))
    return out.view(B, C, H, W)


# torchvision's luma weights (transforms.functional.rgb_to_grayscale, ITU-R 601-2).
_LUMA = (0.2989, 0.587, 0.114)
JITTER_OPS = ("brightness", "contrast", "saturation")


def jitter_ranges(brightness=0, contrast=0, saturation=0) -> torch.Tensor:
    """Factor ranges ``[[lo, hi]] * 3`` (brightness, contrast, saturation) from
    ``torchvision.transforms.ColorJitter``'s own arguments and checks: a number ``v`` means
    ``[max(0, 1 - v), 1 + v]``, a pair is taken as is; an unused op gets ``[1, 1]``.
    Raises ValueError/TypeError (torchvision's message) on a bad value."""
    from torchvision.transforms import ColorJitter

    jitter = ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation)
    return torch.tensor([list(getattr(jitter, op) or (1.0, 1.0)) for op in JITTER_OPS], dtype=torch.float64)


def draw_jitter(batch: int, ranges: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example factors ``[B, 3]`` (brightness, contrast, saturation), each uniform in its
    range, and the order ``[B, 3]`` in which the three ops are applied: a uniformly random
    permutation per example, as torchvision's ColorJitter draws one per image.  Draw order
    (part of the contract): one ``[B, 3]`` uniform tensor for the factors, then one
    ``[B, 3]`` uniform tensor whose argsort is the op order."""
    dev = generator.device
    lo, hi = ranges.to(dev, torch.float32).unbind(1)
    factors = lo + (hi - lo) * torch.rand(batch, 3, generator=generator, device=dev)
    order = torch.rand(batch, 3, generator=generator, device=dev).argsort(dim=1)
    return factors, order


def apply_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_brightness`` / ``adjust_contrast`` / ``adjust_saturation`` on a
    float RGB batch in [0, 1], example b getting ``factors[b]`` in the order ``order[b]``.

    Each op is torchvision's blend ``clamp(f * x + (1 - f) * other, 0, 1)`` with ``other`` =
    0 (brightness), the mean of the image's grayscale (contrast) or the grayscale image
    itself (saturation); clamping after every op is why the order matters.  One pass per
    position in the order, every example in it at once: no per-example Python."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"colour jitter needs an RGB [B, 3, H, W] batch, got shape {tuple(x.shape)}")
    rows = torch.arange(x.shape[0], device=x.device)
    for k in range(3):
        op = order[:, k]
        f = factors[rows, op].to(x.dtype).view(-1, 1, 1, 1)
        r, g, b = x.unbind(dim=1)
        gray = (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)
        op = op.view(-1, 1, 1, 1)
        other = torch.where(op == 1, gray.mean(dim=(1, 2, 3), keepdim=True), gray)
        other = torch.where(op == 0, torch.zeros((), device=x.device, dtype=x.dtype), other)
        x = (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)
    return x


def color_jitter(x: torch.Tensor, ranges: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation per example, in a random order per example:
    ``torchvision.transforms.ColorJitter`` applied to every image of a float [0, 1] batch,
    batched on ``x.device``.  ``ranges`` comes from ``jitter_ranges``; ``generator`` (on
    ``x.device``) is the only source of randomness (draws as in ``draw_jitter``)."""
    if not same_device(generator.device, x.device):
        raise ValueError(f"color_jitter generator is on {generator.device} but the batch is on {x.device}")
    return apply_jitter(x, *draw_jitter(x.shape[0], ranges, generator))
