"""Batched on-device data augmentation (no per-example Python)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    if generator.device != x.device:
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
