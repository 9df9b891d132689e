"""ScheduledBeta2 against torch.optim.Adam/AdamW, against AdaX, and against hand-derived references."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import adaxbench.optim as optim
from adaxbench.optim import AdaX, AdaXW, ScheduledBeta2

IMPLS = {"loop": dict(foreach=False, fused=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "optimizer"


def make_data(n=10, steps=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    theta0 = torch.randn(n, generator=gen, dtype=torch.float64)
    mags = torch.logspace(-3, 1, n, dtype=torch.float64)
    return theta0, [mags * torch.randn(n, generator=gen, dtype=torch.float64) for _ in range(steps)]


def trajectory(make_opt, theta0, grads, dtype=torch.float64):
    p = torch.nn.Parameter(theta0.clone().to(dtype))
    opt = make_opt([p])
    out = []
    for g in grads:
        p.grad = g.clone().to(dtype)
        opt.step()
        out.append(p.detach().double().clone())
    return out


def reference_adafactor_schedule(theta0, grads, *, lr, beta1, c, eps, eps_mode):
    """Adam with β̂₂,t = 1 - t^{-c} written out: v̂_t = (1 - t^{-c}) v̂ + t^{-c} g², m̂ = m/(1 - β1^t)."""
    theta, m, v = theta0.clone(), torch.zeros_like(theta0), torch.zeros_like(theta0)
    out = []
    for t, g in enumerate(grads, 1):
        m = beta1 * m + (1 - beta1) * g
        v = (1 - t ** (-c)) * v + t ** (-c) * g * g
        m_hat = m / (1 - beta1**t)
        theta = theta - lr * m_hat / ((v.sqrt() + eps) if eps_mode == "outside" else (v + eps).sqrt())
        out.append(theta.clone())
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("schedule", ["adam", "adax", "adafactor"])
@pytest.mark.parametrize("eps_mode", ["outside", "inside"])
def test_first_step_by_hand(impl, schedule, eps_mode):
    # β̂₂,1 = 0 for every schedule and m̂_1 = g, so θ1 = θ0 - lr g/(|g| + eps) (or /√(g² + eps)).
    if impl == "fused" and eps_mode == "inside":
        return
    g = torch.tensor([0.5, -4.0, 1e-3], dtype=torch.float64)
    out = trajectory(lambda ps: ScheduledBeta2(ps, lr=0.1, schedule=schedule, eps=1e-3, eps_mode=eps_mode, **IMPLS[impl]),
                     torch.zeros(3, dtype=torch.float64), [g])
    if eps_mode == "outside":
        want = [-0.1 * 0.5 / 0.501, 0.1 * 4 / 4.001, -0.1 * 1e-3 / 2e-3]
    else:
        want = [-0.1 * 0.5 / math.sqrt(0.251), 0.1 * 4 / math.sqrt(16.001), -0.1 * 1e-3 / math.sqrt(1e-6 + 1e-3)]
    torch.testing.assert_close(out[0], torch.tensor(want, dtype=torch.float64), rtol=1e-15, atol=0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_schedule_is_torch_adam(impl, dtype, rtol, wd, decoupled):
    theta0, grads = make_data()
    torch_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    for beta1, beta2, eps in [(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3), (0.0, 0.99, 1e-8)]:
        want = trajectory(lambda ps: torch_cls(ps, lr=0.01, betas=(beta1, beta2), eps=eps, weight_decay=wd),
                          theta0, grads, dtype)
        got = trajectory(lambda ps: ScheduledBeta2(ps, lr=0.01, beta1=beta1, beta2=beta2, eps=eps, weight_decay=wd,
                                                   decoupled_weight_decay=decoupled, **IMPLS[impl]),
                         theta0, grads, dtype)
        moved = (want[-1] - theta0).abs().max().item()
        torch.testing.assert_close(got[-1], want[-1], rtol=rtol, atol=rtol * moved)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cls,wd", [(AdaX, 0.2), (AdaXW, 0.05)])
def test_adax_schedule_without_bias_correction_is_adax_outside(impl, cls, wd):
    theta0, grads = make_data(seed=2)
    for beta2 in (1e-4, 0.2):
        want = trajectory(lambda ps: cls(ps, lr=0.02, betas=(0.9, beta2), eps=1e-6, weight_decay=wd,
                                         eps_mode="outside", **IMPLS[impl]), theta0, grads)
        got = trajectory(lambda ps: ScheduledBeta2(ps, lr=0.02, schedule="adax", beta2=beta2, eps=1e-6,
                                                   bias_correction1=False, eps_mode="outside", weight_decay=wd,
                                                   decoupled_weight_decay=cls is AdaXW, **IMPLS[impl]),
                         theta0, grads)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def reference_adax_no_bias_correction(theta0, grads, *, lr, beta1, beta2, eps):
    """AdaX as the paper writes it (Li et al. 2020, Algorithm 2), first moment not bias-corrected:
    m_t = β1 m + (1 - β1) g,  v_t = (1 + β2) v + β2 g²,  v̂_t = v_t / ((1 + β2)^t - 1),  θ -= lr m_t/(√v̂_t + eps)."""
    theta, m, v = theta0.clone(), torch.zeros_like(theta0), torch.zeros_like(theta0)
    out = []
    for t, g in enumerate(grads, 1):
        m = beta1 * m + (1 - beta1) * g
        v = (1 + beta2) * v + beta2 * g * g
        theta = theta - lr * m / ((v / ((1 + beta2) ** t - 1)).sqrt() + eps)
        out.append(theta.clone())
    return out


@pytest.mark.parametrize("impl", IMPLS)
def test_sched_adax_nobc_config_matches_the_papers_adax(impl):
    # The study's fourth arm (configs/optimizer/sched_adax_nobc.yaml) against the paper's recursion written out.
    _, kwargs = build("sched_adax_nobc")
    assert kwargs["schedule"] == "adax" and kwargs["bias_correction1"] is False
    theta0, grads = make_data(seed=5)
    kwargs = {**kwargs, "lr": 0.02, "eps": 1e-6, **IMPLS[impl]}
    got = trajectory(lambda ps: ScheduledBeta2(ps, **kwargs), theta0, grads)
    want = reference_adax_no_bias_correction(theta0, grads, lr=0.02, beta1=0.9, beta2=1e-4, eps=1e-6)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    # Bias correction matters early: with it (sched_adax) the first steps are (1 - β1^t)⁻¹ times larger.
    with_bc = trajectory(lambda ps: ScheduledBeta2(ps, **{**kwargs, "bias_correction1": True}), theta0, grads)
    assert (with_bc[0] - theta0).abs().max() > 5 * (got[0] - theta0).abs().max()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("eps_mode", ["outside", "inside"])
def test_adafactor_schedule_matches_reference(impl, eps_mode):
    if impl == "fused" and eps_mode == "inside":
        return
    theta0, grads = make_data(seed=4)
    for c in (0.8, 0.5):
        want = reference_adafactor_schedule(theta0, grads, lr=0.01, beta1=0.9, c=c, eps=1e-6, eps_mode=eps_mode)
        got = trajectory(lambda ps: ScheduledBeta2(ps, lr=0.01, schedule="adafactor", decay_rate=c, eps=1e-6,
                                                   eps_mode=eps_mode, **IMPLS[impl]), theta0, grads)
        torch.testing.assert_close(got[-1], want[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("schedule,beta2", [("adam", 0.999), ("adax", 1e-4), ("adax", 0.5), ("adafactor", None)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_long_horizon_constant_gradient(impl, schedule, beta2, dtype):
    # Constant g: m_T = (1 - β1^T) g, so m̂ = g, and v̂_T = g²; each further step moves θ by
    # lr·g/(|g| + eps) exactly, at any T (here 1e6 and 9e8, resumed through load_state_dict).
    lr, eps = 1e-3, 1e-8
    g = torch.tensor([0.5, -2.0, 1e-3, -3e-6], dtype=torch.float64)
    for T in (10**6, 9 * 10**8):
        p = torch.nn.Parameter(torch.ones(4, dtype=dtype))
        opt = ScheduledBeta2([p], lr=lr, schedule=schedule, beta2=beta2, eps=eps, **IMPLS[impl])
        sd = opt.state_dict()
        sd["state"] = {0: {"step": T, "exp_avg": ((1 - 0.9**T) * g).to(dtype), "exp_avg_sq_hat": (g * g).to(dtype)}}
        opt.load_state_dict(sd)
        for _ in range(3):
            p.grad = g.to(dtype)
            opt.step()
        want = 1 - 3 * lr * g / (g.abs() + eps)
        rtol = 1e-14 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(p.detach().double(), want, rtol=rtol, atol=0)
        # Effective steps lr/(|g| + eps); the median of four is the mean of the middle two (|g| = 0.5, 1e-3).
        median = (lr / (0.5 + eps) + lr / (1e-3 + eps)) / 2
        assert opt.diagnostics()["eff_lr_median"] == pytest.approx(median, rel=1e-6)


def test_diagnostics_beta2_hat_follows_the_schedule():
    for schedule, want in [("adam", 0.999 * (1 - 0.999**4) / (1 - 0.999**5)),
                           ("adax", 1 - 1e-4 / (1.0001**5 - 1)), ("adafactor", 1 - 5**-0.8)]:
        p = torch.nn.Parameter(torch.zeros(3))
        opt = ScheduledBeta2([p], schedule=schedule)
        assert opt.diagnostics() == {}
        for _ in range(5):
            p.grad = torch.ones(3)
            opt.step()
        assert opt.diagnostics()["beta2_hat"] == pytest.approx(want, rel=1e-12)


def test_decoupled_weight_decay_with_bias_correction_uses_base_lr():
    # θ ← θ(1 - lr·wd) with the *base* lr even though the step uses lr/(1 - β1^t) (as AdamW).
    # Zero gradient: m = v̂ = 0, so only the decay acts: θ_t = (1 - lr wd)^t θ0.
    for impl, kw in IMPLS.items():
        p = torch.nn.Parameter(torch.full((3,), 2.0, dtype=torch.float64))
        opt = ScheduledBeta2([p], lr=0.1, weight_decay=0.5, decoupled_weight_decay=True, **kw)
        for _ in range(4):
            p.grad = torch.zeros(3, dtype=torch.float64)
            opt.step()
        torch.testing.assert_close(p.detach(), torch.full((3,), 2.0 * 0.95**4, dtype=torch.float64), rtol=1e-14, atol=0)


@pytest.mark.parametrize("kwargs,name", [
    (dict(lr=-1.0), "lr"), (dict(beta1=1.0), "beta1"), (dict(beta1=-0.5), "beta1"),
    (dict(schedule="rmsprop"), "schedule"), (dict(beta2=1.0), "beta2"), (dict(beta2=-0.1), "beta2"),
    (dict(schedule="adax", beta2=0.0), "beta2"), (dict(schedule="adafactor", beta2=0.999), "beta2"),
    (dict(schedule="adafactor", decay_rate=-0.8), "decay_rate"), (dict(eps=-1e-8), "eps"),
    (dict(eps_mode="official"), "eps_mode"), (dict(eps_mode="both"), "eps_mode"),
    (dict(bias_correction1="yes"), "bias_correction1"), (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(decoupled_weight_decay=1), "decoupled_weight_decay"),
    (dict(foreach=True, fused=True), "foreach and fused"), (dict(fused=True, eps_mode="inside"), "inside"),
])
def test_invalid_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name) as e:
        ScheduledBeta2([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    assert "\n" not in str(e.value)


def test_exports():
    assert optim.beta2_hat("adax", 1) == 0.0
    for cls in (optim.AdaX, optim.AdaXW, optim.ScheduledBeta2):
        assert issubclass(cls, torch.optim.Optimizer)


# ---- configs -----------------------------------------------------------------------------
def build(name):
    """What the runner does: pop name/_target_, lists -> tuples, the rest as keyword arguments."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert cfg.pop("name") == name
    module, cls_name = cfg.pop("_target_").rsplit(".", 1)
    assert module == "adaxbench.optim"
    cls = getattr(optim, cls_name)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    return cls, kwargs


def hyperparameters(cls):
    import inspect

    return {k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "params")}


@pytest.mark.parametrize("name,cls", [("adax", AdaX), ("adaxw", AdaXW), ("sched_adam", ScheduledBeta2),
                                      ("sched_adax", ScheduledBeta2), ("sched_adafactor", ScheduledBeta2),
                                      ("sched_adax_nobc", ScheduledBeta2)])
def test_config_exposes_every_hyperparameter_and_builds(name, cls):
    got_cls, kwargs = build(name)
    assert got_cls is cls
    assert set(kwargs) == hyperparameters(cls)
    p = torch.nn.Parameter(torch.zeros(2))
    opt = got_cls([p], **kwargs)
    p.grad = torch.ones(2)
    opt.step()


def test_adax_configs_are_the_authors_defaults():
    _, a = build("adax")
    _, w = build("adaxw")
    assert a == dict(lr=1.5e-3, betas=(0.9, 1e-4), eps=1e-12, weight_decay=0.0, eps_mode="official",
                     foreach=None, fused=None)
    assert w == dict(a, lr=5e-3, weight_decay=5e-2)


def test_sched_configs_differ_only_in_schedule():
    cfgs = {s: build(f"sched_{s}")[1] for s in ("adam", "adax", "adafactor")}
    for s, kw in cfgs.items():
        assert kw.pop("schedule") == s
    assert cfgs["adam"] == cfgs["adax"] == cfgs["adafactor"]
