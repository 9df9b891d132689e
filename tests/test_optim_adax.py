"""AdaX / AdaX-W against the published algorithm, computed independently in float64.

The reference below is the authors' formulation (switchablenorms/AdaX, AdaX.py): the raw
accumulator v_t = (1+β2) v + β2 g², corrected by (1+β2)^t - 1 at the end, eps added to √v_t
before the correction.  Our optimizers never form v_t (it overflows); agreeing with this
reference is the point.
"""

from __future__ import annotations

import copy
import io
import math

import mpmath
import pytest
import torch

from adaxbench.optim import AdaX, AdaXW

IMPLS = {"loop": dict(foreach=False, fused=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


def reference_adax(theta0, grads, *, lr, beta1, beta2, eps, wd, eps_mode="official", decoupled=False):
    """Published AdaX / AdaX-W in float64, raw-accumulator form; returns the iterates."""
    theta = theta0.double().clone()
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    out = []
    for t, g in enumerate(grads, 1):
        g = g.double()
        if decoupled:
            theta = theta * (1 - lr * wd)
        elif wd:
            g = g + wd * theta
        m = beta1 * m + (1 - beta1) * g
        v = (1 + beta2) * v + beta2 * g * g
        bc = (1 + beta2) ** t - 1
        if eps_mode == "official":
            theta = theta - lr * math.sqrt(bc) * m / (v.sqrt() + eps)
        elif eps_mode == "outside":
            theta = theta - lr * m / ((v / bc).sqrt() + eps)
        else:
            theta = theta - lr * m / (v / bc + eps).sqrt()
        out.append(theta.clone())
    return out


def run(opt_cls, theta0, grads, dtype=torch.float64, **kw):
    p = torch.nn.Parameter(theta0.clone().to(dtype))
    opt = opt_cls([p], **kw)
    out = []
    for g in grads:
        p.grad = g.clone().to(dtype)
        opt.step()
        out.append(p.detach().double().clone())
    return out, opt, p


def make_data(n=8, steps=30, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    theta0 = torch.randn(n, generator=gen, dtype=torch.float64)
    # Gradients spanning several orders of magnitude, some coordinates tiny.
    mags = torch.logspace(-3, 1, n, dtype=torch.float64)
    grads = [scale * mags * torch.randn(n, generator=gen, dtype=torch.float64) for _ in range(steps)]
    return theta0, grads


def test_first_step_by_hand():
    # θ0 = [1, -2], g = [0.5, -4], lr = 0.01, β1 = 0.9, β2 = 1e-4, eps = 1e-3:
    # m = [0.05, -0.4]; v_1 = β2 g² = [2.5e-5, 1.6e-3]; √v_1 = [0.005, 0.04]; √((1+β2)^1 - 1) = 0.01.
    theta0, g = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, -4.0], dtype=torch.float64)
    want = {
        "official": [1 - 0.01 * 0.01 * 0.05 / (0.005 + 1e-3), -2 + 0.01 * 0.01 * 0.4 / (0.04 + 1e-3)],
        "outside": [1 - 0.01 * 0.05 / (0.5 + 1e-3), -2 + 0.01 * 0.4 / (4 + 1e-3)],
        "inside": [1 - 0.01 * 0.05 / math.sqrt(0.25 + 1e-3), -2 + 0.01 * 0.4 / math.sqrt(16 + 1e-3)],
    }
    for mode, w in want.items():
        for impl, kw in IMPLS.items():
            if impl == "fused" and mode == "inside":
                continue
            out, _, _ = run(AdaX, theta0, [g], lr=0.01, betas=(0.9, 1e-4), eps=1e-3, eps_mode=mode, **kw)
            torch.testing.assert_close(out[0], torch.tensor(w, dtype=torch.float64), rtol=1e-15, atol=0)
    # AdaX-W: θ(1 - lr wd) first, then the AdaX step; step 2 with the same gradient by hand:
    # m_2 = 0.9·0.05 + 0.1·0.5 = 0.095, v_2 = (1+β2)·2.5e-5 + β2·0.25, √((1+β2)^2 - 1) = √(2β2 + β2²).
    b2 = 1e-4
    th1 = 1 * (1 - 0.01 * 0.1) - 0.01 * 0.01 * 0.05 / (0.005 + 1e-3)
    th2 = th1 * (1 - 0.01 * 0.1) - 0.01 * math.sqrt(2 * b2 + b2 * b2) * 0.095 / (math.sqrt((1 + b2) * 2.5e-5 + b2 * 0.25) + 1e-3)
    for impl, kw in IMPLS.items():
        out, _, _ = run(AdaXW, theta0[:1], [g[:1], g[:1]], lr=0.01, betas=(0.9, b2), eps=1e-3, weight_decay=0.1, **kw)
        assert out[0].item() == pytest.approx(th1, rel=1e-15)
        assert out[1].item() == pytest.approx(th2, rel=1e-14)


@pytest.mark.parametrize("impl,eps_mode", [(i, m) for i in IMPLS for m in ("official", "outside", "inside")
                                            if (i, m) != ("fused", "inside")])  # fused rejects 'inside'
@pytest.mark.parametrize("cls,wd", [(AdaX, 0.0), (AdaX, 0.3), (AdaXW, 0.05)])
def test_trajectory_matches_reference_float64(impl, eps_mode, cls, wd):
    theta0, grads = make_data()
    for beta2, eps in [(1e-4, 1e-12), (0.3, 1e-3)]:
        hp = dict(lr=0.02, beta1=0.8, beta2=beta2, eps=eps, wd=wd)
        want = reference_adax(theta0, grads, eps_mode=eps_mode, decoupled=cls is AdaXW, **hp)
        got, _, _ = run(cls, theta0, grads, lr=0.02, betas=(0.8, beta2), eps=eps, weight_decay=wd,
                        eps_mode=eps_mode, **IMPLS[impl])
        for t, (a, b) in enumerate(zip(got, want), 1):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=f"step {t}")


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_stays_finite_where_the_raw_form_overflows(impl):
    # β2 = 0.1: the raw accumulator v_t ~ g² 1.1^t overflows float32 near t = 930 (and the
    # authors' float32 code produces inf/nan there); ours follows the float64 reference.
    theta0, grads = make_data(n=4, steps=1200, seed=1)
    want = reference_adax(theta0, grads, lr=1e-3, beta1=0.9, beta2=0.1, eps=1e-12, wd=0.0)[-1]
    raw = torch.zeros(4, dtype=torch.float32)
    for g in grads:
        raw = 1.1 * raw + 0.1 * g.float() ** 2
    assert not torch.isfinite(raw).all()  # the naive form really does overflow here
    got, _, p = run(AdaX, theta0, grads, dtype=torch.float32, lr=1e-3, betas=(0.9, 0.1), **IMPLS[impl])
    assert torch.isfinite(p).all()
    moved = (want - theta0).abs().max()
    assert moved > 0.01
    torch.testing.assert_close(got[-1], want, rtol=0, atol=2e-6)


def _closed_form_state(T, g, beta1):
    """Constant gradient g for T steps: m_T = (1 - β1^T) g and v̂_T = g² for every schedule."""
    return {"step": T, "exp_avg": (1 - beta1**T) * g, "exp_avg_sq_hat": g * g}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("beta2", [1e-4, 0.1, 0.9])
def test_long_horizon_constant_gradient(impl, dtype, beta2):
    # Resume at step T from the closed-form state and take 3 more steps; θ must move by
    # lr (1 - β1^t) g / (|g| + eps/√((1+β2)^t - 1)) each step (eps term from mpmath).
    lr, beta1, eps = 1e-3, 0.9, 1e-12
    g = torch.tensor([0.5, -2.0, 1e-3, 3e-6], dtype=torch.float64)
    for T in (10**6 - 1, 9 * 10**8):
        p = torch.nn.Parameter(torch.ones(4, dtype=dtype))
        opt = AdaX([p], lr=lr, betas=(beta1, beta2), eps=eps, **IMPLS[impl])
        sd = opt.state_dict()
        sd["state"] = {0: {k: (v.to(dtype) if torch.is_tensor(v) else v) for k, v in _closed_form_state(T, g, beta1).items()}}
        opt.load_state_dict(sd)
        theta = torch.ones(4, dtype=torch.float64)
        for t in range(T + 1, T + 4):
            p.grad = g.to(dtype)
            opt.step()
            eps_t = float(eps / mpmath.sqrt((1 + mpmath.mpf(beta2)) ** t - 1))
            theta = theta - lr * (1 - beta1**t) * g / (g.abs() + eps_t)
        rtol = 1e-14 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(p.detach().double(), theta, rtol=rtol, atol=0)
        torch.testing.assert_close(opt.state[p]["exp_avg_sq_hat"].double(), g * g, rtol=rtol, atol=0)
        assert opt.state[p]["step"] == T + 3


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype,T", [(torch.float32, 2 * 10**6), (torch.float64, 10**9), (torch.bfloat16, 2 * 10**6)])
def test_zero_gradient_coordinates_stay_put_at_any_step(impl, dtype, T):
    # A coordinate whose gradient has always been 0 has m = v̂ = 0; the authors' code steps it
    # by 0/(0 + eps) = 0.  Late in training eps/√((1+β2)^t - 1) underflows (float32 near
    # t = 1e6, float64 by t = 1e9): the step must still be 0, never 0/0.
    p = torch.nn.Parameter(torch.ones(3, dtype=dtype))
    opt = AdaX([p], lr=0.01, **IMPLS[impl])
    sd = opt.state_dict()
    g = torch.tensor([0.0, 0.5, -2.0], dtype=torch.float64)
    sd["state"] = {0: {"step": T, "exp_avg": (g * 0.1).to(dtype), "exp_avg_sq_hat": (g * g).to(dtype)}}
    opt.load_state_dict(sd)
    p.grad = g.to(dtype)
    opt.step()
    assert torch.isfinite(p).all()
    assert p[0].item() == 1.0
    # m = 0.1g·0.9 + 0.1g = 0.19g, v̂ = g²: the other coordinates move by 0.01·0.19·sign(g).
    torch.testing.assert_close(p[1:].double(), torch.tensor([1 - 0.0019, 1 + 0.0019], dtype=torch.float64),
                               rtol=1e-14 if dtype == torch.float64 else 1e-2 if dtype == torch.bfloat16 else 1e-6, atol=0)
    assert math.isfinite(opt.diagnostics()["eff_lr_median"])


def test_official_eps_matters_early_only():
    # At t = 1 the official eps is eps/√β2 = 100·eps; with eps = 1e-4 and |g| = 1e-3 that is
    # a 10% damping of the first step (hand: lr(1-β1)g/(|g| + 1e-2)), gone by t ~ 1e6.
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = AdaX([p], lr=1.0, betas=(0.9, 1e-4), eps=1e-4)
    p.grad = torch.tensor([1e-3], dtype=torch.float64)
    opt.step()
    assert p.item() == pytest.approx(-0.1 * 1e-3 / (1e-3 + 1e-2), rel=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_grad_is_not_modified_and_params_without_grad_are_skipped(impl):
    a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    b0 = b.detach().clone()
    opt = AdaX([a, b], weight_decay=0.5, **IMPLS[impl])
    a.grad = torch.randn(5, dtype=torch.float64)
    g0 = a.grad.clone()
    opt.step()
    assert torch.equal(a.grad, g0)
    assert torch.equal(b.detach(), b0) and len(opt.state[b]) == 0


def test_param_groups_use_their_own_hyperparameters():
    theta0, grads = make_data(n=6)
    a = torch.nn.Parameter(theta0[:3].clone())
    b = torch.nn.Parameter(theta0[3:].clone())
    opt = AdaXW([{"params": [a]}, {"params": [b], "lr": 0.05, "betas": (0.5, 0.2), "weight_decay": 0.0}],
                lr=0.01, weight_decay=0.1)
    for g in grads:
        a.grad, b.grad = g[:3].clone(), g[3:].clone()
        opt.step()
    wa = reference_adax(theta0[:3], [g[:3] for g in grads], lr=0.01, beta1=0.9, beta2=1e-4, eps=1e-12, wd=0.1, decoupled=True)
    wb = reference_adax(theta0[3:], [g[3:] for g in grads], lr=0.05, beta1=0.5, beta2=0.2, eps=1e-12, wd=0.0, decoupled=True)
    torch.testing.assert_close(a.detach(), wa[-1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b.detach(), wb[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_parameters_keep_their_own_step_counts(impl):
    # b only gets a gradient on every third step: its t (hence β̂₂ and the eps correction)
    # counts its own updates, as in torch.optim, so it follows the reference run on its grads alone.
    theta0, grads = make_data(n=6, steps=15)
    a = torch.nn.Parameter(theta0[:3].clone())
    b = torch.nn.Parameter(theta0[3:].clone())
    opt = AdaX([a, b], lr=0.01, betas=(0.9, 0.3), eps=1e-4, **IMPLS[impl])
    for i, g in enumerate(grads):
        a.grad = g[:3].clone()
        b.grad = g[3:].clone() if i % 3 == 0 else None
        opt.step()
    hp = dict(lr=0.01, beta1=0.9, beta2=0.3, eps=1e-4, wd=0.0)
    wa = reference_adax(theta0[:3], [g[:3] for g in grads], **hp)[-1]
    wb = reference_adax(theta0[3:], [g[3:] for i, g in enumerate(grads) if i % 3 == 0], **hp)[-1]
    torch.testing.assert_close(a.detach(), wa, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b.detach(), wb, rtol=1e-12, atol=1e-14)
    assert (opt.state[a]["step"], opt.state[b]["step"]) == (15, 5)


def test_closure_is_evaluated_with_grad():
    p = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    opt = AdaX([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0
    # grad 6: m = 0.6, √v̂ = 6, official eps negligible -> θ = 3 - 0.1·0.1 = 2.99
    assert p.item() == pytest.approx(2.99, rel=1e-12)


@pytest.mark.parametrize("save_impl,load_impl", [("loop", "loop"), ("foreach", "foreach"), ("fused", "fused"),
                                                 ("fused", "loop"), ("loop", "foreach")])
def test_state_dict_round_trip_resumes_exactly(save_impl, load_impl):
    theta0, grads = make_data(n=7, steps=12)
    p = torch.nn.Parameter(theta0.float().clone())
    opt = AdaXW([p], lr=0.01, **IMPLS[save_impl])
    for g in grads[:6]:
        p.grad = g.float()
        opt.step()
    buf = io.BytesIO()
    torch.save({"p": p.detach().clone(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    q = torch.nn.Parameter(ck["p"])
    opt2 = AdaXW([q], lr=123.0, **IMPLS[load_impl])  # hyperparameters come from the checkpoint
    opt2.load_state_dict(ck["opt"])
    assert opt2.param_groups[0]["lr"] == 0.01
    ref = copy.deepcopy(opt.state_dict())
    for g in grads[6:]:
        p.grad, q.grad = g.float(), g.float()
        opt.step()
        opt2.step()
    if save_impl == load_impl:
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["exp_avg_sq_hat"], opt2.state[q]["exp_avg_sq_hat"])
    else:
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    assert opt2.state[q]["step"] == ref["state"][0]["step"] + 6 == 12


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16_tracks_reference(impl):
    theta0, grads = make_data(n=16, steps=20, seed=3)
    want = reference_adax(theta0, grads, lr=0.05, beta1=0.9, beta2=1e-4, eps=1e-12, wd=0.0)[-1]
    got, opt, p = run(AdaX, theta0, grads, dtype=torch.bfloat16, lr=0.05, **IMPLS[impl])
    assert p.dtype == torch.bfloat16 and opt.state[p]["exp_avg"].dtype == torch.bfloat16
    # 20 steps of size <= 0.05 from |θ| ~ 1: bf16 resolves ~0.004 there.
    torch.testing.assert_close(got[-1], want, rtol=0, atol=0.03)


def test_rejects_sparse_and_complex():
    e = torch.nn.Embedding(4, 2, sparse=True)
    opt = AdaX(e.parameters())
    e(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    r = torch.nn.Parameter(torch.zeros(2))
    c = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    opt = AdaX([r, c])
    r.grad, c.grad = torch.ones(2), torch.randn(3, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="complex"):
        opt.step()
    assert torch.equal(r.detach(), torch.zeros(2)) and len(opt.state[r]) == 0  # nothing half-done


@pytest.mark.parametrize("kwargs,name", [
    (dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"), (dict(lr=torch.tensor(1e-3)), "lr"),
    (dict(betas=(1.0, 1e-4)), r"betas\[0\]"), (dict(betas=(-0.1, 1e-4)), r"betas\[0\]"),
    (dict(betas=(0.9, 0.0)), r"betas\[1\]"), (dict(betas=(0.9, 1.0)), r"betas\[1\]"),
    (dict(betas=(0.9,)), "betas"), (dict(betas=0.9), "betas"),
    (dict(eps=-1e-8), "eps"), (dict(eps=float("inf")), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"), (dict(weight_decay=True), "weight_decay"),
    (dict(eps_mode="before"), "eps_mode"),
    (dict(foreach="yes"), "foreach"), (dict(fused=1), "fused"),
    (dict(foreach=True, fused=True), "foreach and fused"),
    (dict(fused=True, eps_mode="inside"), "inside"),
])
@pytest.mark.parametrize("cls", [AdaX, AdaXW])
def test_invalid_hyperparameters(cls, kwargs, name):
    with pytest.raises(ValueError, match=name) as e:
        cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    assert "\n" not in str(e.value)


def test_invalid_param_group_override_is_rejected_and_not_added():
    opt = AdaX([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "betas": (0.9, 2.0)})
    assert len(opt.param_groups) == 1


def test_diagnostics_by_hand():
    # Constant gradient: v̂ = g² exactly, so eff_lr_i = lr / (|g_i| + eps/√((1+β2)^t - 1)).
    g = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    lr, b2, eps = 0.01, 0.2, 1e-2
    opt = AdaX([p], lr=lr, betas=(0.9, b2), eps=eps)
    assert opt.diagnostics() == {}
    for _ in range(3):
        p.grad = g.clone()
        opt.step()
    eps3 = eps / math.sqrt((1 + b2) ** 3 - 1)
    eff = [lr / (x + eps3) for x in (0.5, 1.0, 2.0, 4.0)]
    d = opt.diagnostics()
    assert set(d) == {"beta2_hat", "eff_lr_mean", "eff_lr_median"}
    assert d["beta2_hat"] == pytest.approx(1 - b2 / ((1 + b2) ** 3 - 1), rel=1e-14)
    assert d["eff_lr_mean"] == pytest.approx(sum(eff) / 4, rel=1e-12)
    assert d["eff_lr_median"] == pytest.approx((eff[1] + eff[2]) / 2, rel=1e-12)
    # eps_mode inside: lr/√(g² + eps); odd count -> middle value.
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = AdaX([p], lr=lr, eps=eps, eps_mode="inside")
    p.grad = g[:3].clone()
    opt.step()
    eff = [lr / math.sqrt(x * x + eps) for x in (0.5, 1.0, 2.0)]
    d = opt.diagnostics()
    assert d["beta2_hat"] == 0.0
    assert d["eff_lr_median"] == pytest.approx(eff[1], rel=1e-12)
    assert d["eff_lr_mean"] == pytest.approx(sum(eff) / 3, rel=1e-12)
