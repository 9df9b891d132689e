"""Someone else's optimizers (pytorch-optimizer) from the CLI and the API: what ran is recorded
exactly (every hyperparameter, class defaults included), one class is one optimizer however it
was named, schedule-free optimizers are evaluated at their averaged point, second-order ones get
backward(create_graph=True)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import adaxbench
from adaxbench import cli
from adaxbench.report.aggregate import label_settings
from adaxbench.report.load import load_runs
from adaxbench.train.validate import ConfigError
from conftest import compose_cfg

po = pytest.importorskip("pytorch_optimizer")
QUICK = ["task=quadratic_deep", "trainer.epochs=1", "trainer.progress=false"]


def cli_run(tmp_path, name, *overrides):
    assert cli.main(["run", "optimizer=custom", *overrides, *QUICK, f"hydra.run.dir={tmp_path / name}"]) == 0
    return json.loads((tmp_path / name / "run.json").read_text())


def api_run(tmp_path, name, cls, **hyper):
    out = adaxbench.run(cls, QUICK, run_dir=tmp_path / name, **hyper)
    assert out.status == "completed", out.error
    return json.loads((tmp_path / name / "run.json").read_text())


def test_cli_and_api_record_every_hyperparameter_and_pool(tmp_path):
    cli_rec = cli_run(tmp_path, "cli", "optimizer._target_=pytorch_optimizer.Lion", "+optimizer.lr=3e-4", "seed=1")
    api_rec = api_run(tmp_path, "api", po.Lion, lr=3e-4)
    # What the user wrote stays; the class is one identity.
    assert cli_rec["config"]["optimizer"]["_target_"] == "pytorch_optimizer.Lion"
    assert api_rec["config"]["optimizer"]["_target_"] == "pytorch_optimizer.optimizer.lion.Lion"
    assert cli_rec["optimizer_class"] == api_rec["optimizer_class"] == "pytorch_optimizer.optimizer.lion.Lion"
    # Lion's defaults (Chen et al. 2023: betas 0.9, 0.99), which neither config names.
    for rec in (cli_rec, api_rec):
        h = rec["optimizer_hparams"]
        assert h["lr"] == 3e-4 and h["betas"] == [0.9, 0.99] and h["weight_decay"] == 0.0
    rs = load_runs([tmp_path])
    assert list(rs.runs["optimizer"]) == ["Lion", "Lion"] and rs.runs["setting"].nunique() == 1


def test_class_defaults_are_recorded(tmp_path):
    # AdaBelief's eps is 1e-16 (Zhuang et al. 2020), not Adam's 1e-8; Adan has three betas.
    assert api_run(tmp_path, "belief", po.AdaBelief, lr=1e-3)["optimizer_hparams"]["eps"] == 1e-16
    adan = cli_run(tmp_path, "adan", "optimizer._target_=pytorch_optimizer.Adan", "+optimizer.lr=1e-3")
    assert adan["optimizer_hparams"]["betas"] == [0.98, 0.92, 0.99]


def test_custom_without_lr_uses_the_class_default(tmp_path):
    # Prodigy's lr is a multiplier of its estimated step size, 1.0 by default (Mishchenko & Defazio 2023).
    cli_rec = cli_run(tmp_path, "cli", "optimizer._target_=pytorch_optimizer.Prodigy")
    api_rec = api_run(tmp_path, "api", po.Prodigy)
    assert cli_rec["optimizer_hparams"]["lr"] == api_rec["optimizer_hparams"]["lr"] == 1.0
    assert "lr" not in cli_rec["config"]["optimizer"]


def test_keys_only_kwargs_take_are_refused(tmp_path, capsys):
    args = ["run", "optimizer=custom", "optimizer._target_=pytorch_optimizer.Lion", "+optimizer.betaz=[0.9,0.99]",
            *QUICK, f"hydra.run.dir={tmp_path / 'r'}"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer.betaz is not a named parameter of Lion" in err[0]
    assert "lr, betas, weight_decay" in err[0] and "optimizer.allow_extra=true" in err[0]
    rec = cli_run(tmp_path, "extra", "optimizer._target_=pytorch_optimizer.Lion", "+optimizer.betaz=[0.9,0.99]",
                  "optimizer.allow_extra=true")
    assert rec["optimizer_hparams"]["betaz"] == [0.9, 0.99]


def test_the_api_names_its_own_allow_extra(tmp_path):
    with pytest.raises(ConfigError) as e:
        adaxbench.run(po.Lion, QUICK, run_dir=tmp_path / "r", lr=1e-3, betaz=[0.9, 0.99])
    assert "optimizer.betaz is not a named parameter of Lion" in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).endswith("; pass allow_extra=True to pass it anyway")
    assert api_run(tmp_path, "extra", po.Lion, lr=1e-3, betaz=[0.9, 0.99], allow_extra=True)["optimizer_hparams"][
        "betaz"] == [0.9, 0.99]


def test_sam_with_a_base_optimizer_from_cli_and_api(tmp_path):
    cli_rec = cli_run(tmp_path, "cli", "optimizer._target_=pytorch_optimizer.SAM",
                      "+optimizer.base_optimizer._target_=hydra.utils.get_class",
                      "+optimizer.base_optimizer.path=torch.optim.SGD", "+optimizer.lr=0.01", "+optimizer.momentum=0.9")
    api_rec = api_run(tmp_path, "api", po.SAM, base_optimizer=torch.optim.SGD, lr=0.01, momentum=0.9)
    for rec in (cli_rec, api_rec):  # SAM's rho (Foret et al. 2021: 0.05) and SGD's own keys
        h = rec["optimizer_hparams"]
        assert h["rho"] == 0.05 and h["lr"] == 0.01 and h["momentum"] == 0.9


def test_api_hyperparameter_objects_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"hyperparameter rho=object object cannot be recorded") as e:
        adaxbench.run(po.SAM, QUICK, run_dir=tmp_path / "r", base_optimizer=torch.optim.SGD, rho=object())
    assert "\n" not in str(e.value)


def test_second_order_optimizers_get_create_graph(tmp_path, capsys):
    rec = cli_run(tmp_path, "cli", "optimizer._target_=pytorch_optimizer.AdaHessian", "optimizer.lr=0.1")
    assert rec["status"] == "completed" and rec["optimizer_hparams"]["hessian_power"] == 1.0
    api_rec = api_run(tmp_path, "api", po.AdaHessian, lr=0.1)
    assert api_rec["final"] == rec["final"]  # same run, same numbers
    capsys.readouterr()
    # Told otherwise, it is refused before training, in one line.
    assert cli.main(["run", "optimizer=custom", "optimizer._target_=pytorch_optimizer.AdaHessian",
                     "optimizer.create_graph=false", *QUICK, f"hydra.run.dir={tmp_path / 'no'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer.create_graph=true" in err[0]


def test_schedule_free_is_evaluated_at_its_averaged_point(tmp_path):
    rec = cli_run(tmp_path, "sf", "optimizer._target_=pytorch_optimizer.ScheduleFreeAdamW", "optimizer.lr=0.05",
                  "trainer.keep_checkpoint=true")
    api_rec = api_run(tmp_path, "api", po.ScheduleFreeAdamW, lr=0.05)
    assert api_rec["final"] == rec["final"]
    cfg = compose_cfg(QUICK)
    from adaxbench.tasks import build_task

    task = build_task(cfg.task, cfg.data, torch.device("cpu"), 0)
    model = task.model()
    state = torch.load(tmp_path / "sf" / "checkpoint.pt", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer = po.ScheduleFreeAdamW(model.parameters(), lr=0.05)
    optimizer.load_state_dict(state["optimizer"])
    # The checkpoint holds the averaged point x (train_mode off), and the recorded losses are x's.
    assert optimizer.param_groups[0]["train_mode"] is False
    at_x = task.evaluate(model)["test"]["loss"]
    assert at_x == pytest.approx(rec["final"]["test/loss"], rel=1e-6)
    optimizer.train()  # the training point y = (1 - beta1) z + beta1 x, where the gradients are taken
    at_y = task.evaluate(model)["test"]["loss"]
    assert abs(at_y - at_x) > 1e-3 * abs(at_x)


def test_two_classes_of_one_name_are_told_apart(tmp_path):
    api_run(tmp_path, "theirs", po.Lion, lr=1e-4)
    cli_run(tmp_path, "mine", "optimizer._target_=third_party_user.Lion", "optimizer.lr=0.01")
    rs = load_runs([tmp_path])
    assert sorted(rs.runs["optimizer"]) == ["pytorch_optimizer.optimizer.lion.Lion", "third_party_user.Lion"]
    assert len(rs.notes) == 1 and "optimizer Lion names 2 different classes" in rs.notes[0]
    from adaxbench.report.render import build_report
    build_report([tmp_path], out=tmp_path / "report", figures=False)
    assert "Note: optimizer Lion names 2 different classes" in (tmp_path / "report" / "report.md").read_text()


def test_packed_launcher_says_why_it_runs_them_unpacked(caplog):
    from adaxbench.train.packed import plan

    lion = compose_cfg(["optimizer=custom", "optimizer._target_=pytorch_optimizer.Lion", *QUICK])
    adam = compose_cfg(["optimizer=adam", *QUICK])
    with caplog.at_level("INFO", logger="adaxbench"):
        assert plan([lion, lion, adam, adam], max_pack=8) == [[0], [1], [2, 3]]
    told = [r.getMessage() for r in caplog.records if "runs unpacked" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith("pytorch_optimizer.Lion runs unpacked") and "AdaX" in told[0]


def test_a_class_default_passed_or_left_out_is_one_setting(tmp_path, capsys):
    """Runs are compared by the hyperparameters the optimizer ran with: Lion's default betas
    (0.9, 0.99) passed on the command line (as 0.90, with weight_decay 0 an int), left out, or
    passed as a tuple from Python are one setting; betas (0.9, 0.95) is another.  A record of an
    earlier version (no optimizer_hparams) that left betas out pools with them too."""
    lion = "optimizer._target_=pytorch_optimizer.Lion"
    cli_run(tmp_path, "passed", lion, "optimizer.lr=1e-3", "+optimizer.betas=[0.90,0.990]",
            "+optimizer.weight_decay=0", "seed=0")
    left_out = cli_run(tmp_path, "left_out", lion, "optimizer.lr=1e-3", "seed=1")
    out = adaxbench.run(po.Lion, [*QUICK, "seed=2"], run_dir=tmp_path / "tuple", lr=1e-3, betas=(0.9, 0.99))
    assert out.status == "completed", out.error
    cli_run(tmp_path, "other", lion, "optimizer.lr=1e-3", "+optimizer.betas=[0.9,0.95]", "seed=0")
    old = {k: v for k, v in left_out.items() if k not in ("optimizer_class", "optimizer_hparams")}
    old["config"]["seed"] = 3
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps(old))
    (tmp_path / "old" / "metrics.parquet").write_bytes((tmp_path / "left_out" / "metrics.parquet").read_bytes())

    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "report"), "--no-figures"]) == 0
    agg = pd.read_csv(tmp_path / "report" / "aggregate.csv").sort_values("seeds")
    assert list(agg["seeds"]) == [1, 4]
    assert list(agg["label"]) == ["Lion betas=(0.9,0.95)", "Lion betas=(0.9,0.99)"]
    capsys.readouterr()
    assert cli.main(["best", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best of 2]" in out and "over Lion betas=(0.9,0.99);" in out
    assert "None" not in out and "=default" not in out
    # Without a run that recorded Lion's default betas, the earlier record's label says what it ran with.
    rs = load_runs([tmp_path / "old", tmp_path / "other"])
    assert sorted(label_settings(rs)) == ["Lion betas=(0.9,0.95)", "Lion betas=default"]


def test_a_class_own_infinite_default_may_be_passed():
    """Prodigy's growth_rate defaults to inf: passing that default explicitly is no error, while an
    infinite value the class does not default to still is."""
    from adaxbench.train.validate import optimizer_kwargs

    _, kwargs = optimizer_kwargs({"_target_": "pytorch_optimizer.Prodigy", "growth_rate": float("inf")})
    assert kwargs["growth_rate"] == float("inf")
    with pytest.raises(ConfigError, match="optimizer.weight_decay must be a finite number"):
        optimizer_kwargs({"_target_": "pytorch_optimizer.Prodigy", "weight_decay": float("inf")})


def _strict(text: str) -> dict:
    """run.json as a strict JSON reader (JavaScript's, jq) reads it: no Infinity or NaN."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_an_infinite_hyperparameter_is_strict_json_and_pools_with_earlier_records(tmp_path):
    """Prodigy's growth_rate defaults to inf: run.json spells it "inf" (strict JSON), passed or left
    out; an earlier record's Infinity and NaN read as the same setting; a resume takes the config back."""
    prodigy = "optimizer._target_=pytorch_optimizer.Prodigy"
    cli_run(tmp_path, "passed", prodigy, "+optimizer.growth_rate=inf", "trainer.keep_checkpoint=true", "seed=0")
    cli_run(tmp_path, "left_out", prodigy, "seed=1")
    passed, left_out = (_strict((tmp_path / d / "run.json").read_text()) for d in ("passed", "left_out"))
    assert passed["config"]["optimizer"]["growth_rate"] == "inf"
    assert passed["optimizer_hparams"]["growth_rate"] == left_out["optimizer_hparams"]["growth_rate"] == "inf"
    # An earlier version's record: Python's json wrote Infinity and NaN.
    old = {**left_out, "config": {**left_out["config"], "seed": 2}, "final": {**left_out["final"], "test/loss": "nan"}}
    old["optimizer_hparams"] = {**old["optimizer_hparams"], "growth_rate": float("inf")}
    old["final"]["test/loss"] = float("nan")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps(old))
    assert "Infinity" in (tmp_path / "old" / "run.json").read_text()
    (tmp_path / "old" / "metrics.parquet").write_bytes((tmp_path / "left_out" / "metrics.parquet").read_bytes())
    rs = load_runs([tmp_path])
    assert rs.runs["setting"].nunique() == 1 and len(rs.runs) == 3 and set(rs.runs["problem"]) == {""}
    finals = rs.runs.set_index("seed")["final.test/loss"]
    assert finals[0] > 0 and np.isnan(finals[2])
    # A resume compares the config it was started with (on disk: "inf") with the config given (inf).
    (tmp_path / "passed" / "run.json").write_text(json.dumps({**passed, "status": "interrupted"}))
    cli_run(tmp_path, "passed", prodigy, "+optimizer.growth_rate=inf", "trainer.keep_checkpoint=true", "seed=0",
            "resume=true")
    assert _strict((tmp_path / "passed" / "run.json").read_text())["status"] == "completed"
