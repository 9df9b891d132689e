"""random_crop_flip against a slow per-example reference: every output must be one of the
2 (2p+1)^2 crops/flips of its own zero-padded input, with the offsets and flips it drew.
color_jitter against torchvision's own per-image functional ops (adjust_brightness /
adjust_contrast / adjust_saturation), applied in each example's drawn order."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision.transforms.functional as TF

from adaxbench.tasks.augment import apply_jitter, color_jitter, draw_jitter, jitter_ranges, random_crop_flip, same_device


def reference(img: torch.Tensor, p: int, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """One example, the slow obvious way: zero canvas, paste, slice, maybe mirror."""
    C, H, W = img.shape
    canvas = torch.zeros(C, H + 2 * p, W + 2 * p, dtype=img.dtype)
    canvas[:, p:p + H, p:p + W] = img
    crop = canvas[:, dy:dy + H, dx:dx + W]
    return crop.flip(-1) if flip else crop


def candidates(img: torch.Tensor, p: int) -> tuple[torch.Tensor, list[tuple[int, int, bool]]]:
    keys = [(dy, dx, f) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for f in (False, True)]
    return torch.stack([reference(img, p, *k) for k in keys]), keys


def identify(out: torch.Tensor, x: torch.Tensor, p: int) -> list[tuple[int, int, bool]]:
    """(dy, dx, flip) of each output example, read off the output alone."""
    found = []
    for b in range(len(x)):
        cands, keys = candidates(x[b], p)
        hits = (cands == out[b]).flatten(1).all(1).nonzero().flatten().tolist()
        assert len(hits) == 1, f"example {b} matches {len(hits)} crops"  # all pixels differ
        found.append(keys[hits[0]])
    return found


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_matches_per_example_reference(dtype):
    # Distinct nonzero pixels and H != W, so any mix-up of rows/cols/flip/padding shows.
    B, C, H, W, p = 64, 3, 6, 8, 2
    x = (torch.randperm(B * C * H * W, generator=torch.Generator().manual_seed(1)) % 250 + 1)
    x = x.view(B, C, H, W).to(dtype)
    if dtype == torch.float32:
        x = x + torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(2))
    out = random_crop_flip(x, p, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    got = identify(out, x, p)
    # And it drew them in the documented order: row offsets, column offsets, flips.
    g = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 2 * p + 1, (B,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (B,), generator=g)
    flip = torch.randint(0, 2, (B,), generator=g)
    assert got == [(int(a), int(b), bool(f)) for a, b, f in zip(dy, dx, flip)]
    for b in range(B):
        assert torch.equal(out[b], reference(x[b], p, *got[b]))


def test_offsets_uniform_and_flip_half():
    # One image repeated; identify every example's crop from the output, then check the
    # 2 (2p+1)^2 = 18 cells are equally likely (chi-square, 17 dof; 60 is p ~ 1e-6).
    B, p = 9000, 1
    img = torch.arange(1, 1 + 2 * 5 * 7, dtype=torch.float32).view(2, 5, 7)
    out = random_crop_flip(img.expand(B, -1, -1, -1), p, torch.Generator().manual_seed(3))
    cands, keys = candidates(img, p)
    match = (out[:, None] == cands[None]).flatten(2).all(2)  # [B, 18]
    assert (match.sum(1) == 1).all()
    counts = match.sum(0).double()
    expected = B / len(keys)
    assert ((counts - expected) ** 2 / expected).sum() < 60
    flips = counts[[k for k, key in enumerate(keys) if key[2]]].sum() / B
    assert abs(flips - 0.5) < 5 * (0.25 / B) ** 0.5


def test_output_stays_inside_the_padded_image():
    # All-ones images: at most p zero rows at the top or bottom, p zero cols at left or right.
    B, p = 256, 4
    out = random_crop_flip(torch.ones(B, 3, 32, 32), p, torch.Generator().manual_seed(5))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    ones_rows = out[:, 0].amax(dim=2).sum(1)  # rows with any image pixel
    ones_cols = out[:, 0].amax(dim=1).sum(1)
    assert (ones_rows >= 32 - p).all() and (ones_cols >= 32 - p).all()
    assert out.sum(dim=(1, 2, 3)).eq(3 * ones_rows * ones_cols).all()  # one solid rectangle
    assert (ones_rows < 32).any() and (ones_cols < 32).any()  # and it does move


def test_padding_zero_only_flips():
    x = torch.rand(200, 3, 4, 4)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert (same ^ flipped).all() and 60 < flipped.sum() < 140


def test_deterministic_for_a_seed_and_advances_the_generator():
    x = torch.rand(32, 3, 8, 8)
    a = random_crop_flip(x, 2, torch.Generator().manual_seed(7))
    b = random_crop_flip(x, 2, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(7)
    first, second = random_crop_flip(x, 2, g), random_crop_flip(x, 2, g)
    assert torch.equal(first, a) and not torch.equal(first, second)


def test_channels_last_input():
    x = torch.rand(16, 3, 8, 8)
    ref = random_crop_flip(x, 2, torch.Generator().manual_seed(9))
    out = random_crop_flip(x.contiguous(memory_format=torch.channels_last), 2,
                           torch.Generator().manual_seed(9))
    assert torch.equal(out, ref)


def test_errors_are_one_line():
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        random_crop_flip(torch.rand(3, 8, 8), 2, g)
    with pytest.raises(ValueError, match=">= 0"):
        random_crop_flip(torch.rand(1, 3, 8, 8), -1, g)


def test_a_cuda_generator_without_index_is_on_the_current_device():
    # torch.Generator("cuda").device reads "cuda" while a tensor moved there reads "cuda:0": one device.
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    assert same_device(torch.device("cuda"), torch.device("cuda", current))
    assert not same_device(torch.device("cuda"), torch.device("cuda", current + 1))
    assert not same_device(torch.device("cpu"), torch.device("cuda", current))
    assert same_device(torch.device("cpu"), torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_reference():
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    out = random_crop_flip(x, 4, torch.Generator(device="cuda").manual_seed(0))
    assert out.device == x.device
    got = identify(out.cpu(), x.cpu(), 4)
    assert len(got) == 64
    with pytest.raises(ValueError, match="generator"):
        random_crop_flip(x, 4, torch.Generator())


# DeepOBS's ColorJitter(brightness=63/255, saturation=[0.5, 1.5], contrast=[0.2, 1.8]).
DEEPOBS_JITTER = {"brightness": 63 / 255, "contrast": [0.2, 1.8], "saturation": [0.5, 1.5]}
TV_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)


def test_jitter_ranges_follow_colorjitter_arguments():
    r = jitter_ranges(**DEEPOBS_JITTER)
    # A number v means [1 - v, 1 + v]: brightness in [192/255, 318/255].
    assert r.flatten().tolist() == pytest.approx([192 / 255, 318 / 255, 0.2, 1.8, 0.5, 1.5], abs=1e-12)
    assert jitter_ranges(contrast=0.5).tolist() == [[1, 1], [0.5, 1.5], [1, 1]]  # unused ops: factor 1
    assert jitter_ranges(brightness=2.0).tolist()[0] == [0.0, 3.0]  # clipped at 0, as torchvision
    with pytest.raises(ValueError, match="non negative"):
        jitter_ranges(brightness=-0.1)


def test_jitter_equals_torchvision_functional_per_image_in_the_drawn_order():
    B = 96
    x = torch.rand(B, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    factors, order = draw_jitter(B, jitter_ranges(**DEEPOBS_JITTER), torch.Generator().manual_seed(1))
    assert {tuple(o) for o in order.tolist()} == set(itertools.permutations(range(3)))  # all 6 orders occur
    out = apply_jitter(x, factors, order)
    ref = torch.empty_like(x)
    for b in range(B):
        img = x[b]
        for op in order[b].tolist():
            img = TV_OPS[op](img, float(factors[b, op]))
        ref[b] = img
    assert torch.allclose(out, ref, atol=2e-6, rtol=0)
    # The order matters (clamping after each op), so a fixed order would fail the comparison above.
    assert not torch.allclose(apply_jitter(x, factors, torch.tensor([[0, 1, 2]] * B)), ref, atol=1e-3)
    assert out.min() >= 0 and out.max() <= 1 and (out == 1).any()  # clamped, and it does clamp


def test_jitter_draws_uniform_factors_and_uniform_orders():
    B = 30000
    ranges = jitter_ranges(**DEEPOBS_JITTER)
    factors, order = draw_jitter(B, ranges, torch.Generator().manual_seed(2))
    lo, hi = ranges.float().unbind(1)
    assert (factors >= lo).all() and (factors <= hi).all()
    assert torch.allclose(factors.mean(0), (lo + hi) / 2, atol=0.01)
    assert torch.allclose(factors.var(0), (hi - lo) ** 2 / 12, rtol=0.05)  # uniform's variance
    perms = torch.tensor(list(itertools.permutations(range(3))))
    counts = (order[:, None, :] == perms[None]).all(2).sum(0).double()
    assert ((counts - B / 6) ** 2 / (B / 6)).sum() < 30  # chi-square, 5 dof
    # Documented draws: factors from one [B, 3] uniform, then the order as argsort of another.
    g = torch.Generator().manual_seed(2)
    u = torch.rand(B, 3, generator=g)
    assert torch.allclose(factors, lo + (hi - lo) * u)
    assert torch.equal(order, torch.rand(B, 3, generator=g).argsort(dim=1))


def test_color_jitter_is_draw_then_apply_and_checks_its_input():
    x = torch.rand(8, 3, 4, 4)
    ranges = jitter_ranges(**DEEPOBS_JITTER)
    out = color_jitter(x, ranges, torch.Generator().manual_seed(4))
    assert torch.equal(out, apply_jitter(x, *draw_jitter(8, ranges, torch.Generator().manual_seed(4))))
    with pytest.raises(ValueError, match="RGB"):
        color_jitter(torch.rand(8, 1, 4, 4), ranges, torch.Generator())
