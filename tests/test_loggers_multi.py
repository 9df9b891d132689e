"""Loggers of one's own (a RunLogger class by _target_, or an instance through the Python API),
several at once, TensorBoard's HParams table, and one W&B group per sweep."""

from __future__ import annotations

import pytest

import adaxbench
from adaxbench import cli
from adaxbench.train.validate import ConfigError
from conftest import read_run
from loggers_user import Recorder, calls

RUN = ["task=quadratic_deep", "optimizer=sgd", "optimizer.lr=0.01", "trainer.epochs=1", "trainer.log_every=2",
       "trainer.progress=false"]


def logged_rows(entries):
    return {(split, metric, step): value for tag, kind, *rest in entries if kind == "log"
            for split, values, step in [rest] for metric, value in values.items()}


def metric_rows(metrics):
    return {(r.split, r.metric, int(r.step)): r.value for r in metrics.itertuples()}


def test_own_logger_from_the_cli(tmp_path):
    path = tmp_path / "calls.jsonl"
    assert cli.main(["run", *RUN, "logger=custom", "logger._target_=loggers_user.Recorder", f"+logger.path={path}",
                     f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    info, metrics = read_run(tmp_path / "run")
    entries = calls(path)
    assert entries[0][1] == "start" and entries[0][2] == info["optimizer_hparams"] and entries[0][2]["lr"] == 0.01
    assert entries[-1][1:] == ["close", "completed"]
    assert logged_rows(entries) == metric_rows(metrics)  # every row of the record, nothing else
    # after the (one) epoch's evaluation: where the run is and its final metrics
    assert [e[1:] for e in entries if e[1] == "epoch_end"] == [["epoch_end", 1, 1, info["progress"]["step"],
                                                                info["final"]]]


def test_several_loggers_at_once_and_tensorboard_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    path = tmp_path / "calls.jsonl"
    loggers = f"logger.loggers=[{{name:tensorboard}},{{_target_:loggers_user.Recorder,path:'{path}'}}]"
    assert cli.main(["run", *RUN, "logger=many", loggers, f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    info, metrics = read_run(tmp_path / "run")
    assert logged_rows(calls(path)) == metric_rows(metrics)
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert events.Scalars("test/loss")[-1].value == pytest.approx(info["final"]["test/loss"], rel=1e-6)
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = {k: v.number_value or v.string_value for k, v in start.session_start_info.hparams.items()}
    assert hp["optimizer"] == "sgd" and hp["optimizer.lr"] == 0.01 and hp["optimizer.momentum"] == info["optimizer_hparams"]["momentum"] == 0.9
    assert hp["status"] == "completed"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert "test/loss" in {m.name.tag for m in experiment.experiment.metric_infos}


def test_wandb_runs_of_a_sweep_share_a_group(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    seen = []

    class FakeRun:
        summary: dict = {}

        def log(self, *args, **kwargs):
            pass

        def finish(self, **kwargs):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kwargs: seen.append(kwargs) or FakeRun())
    sweep = tmp_path / "sweep"
    assert cli.main(["run", "-m", *RUN, "logger=wandb", "seed=0,1", f"hydra.sweep.dir={sweep}"]) == 0
    assert [s["group"] for s in seen] == [str(sweep)] * 2
    assert len({s["id"] for s in seen}) == 2


def test_api_takes_logger_instances(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    out = adaxbench.run("sgd", RUN[2:], lr=0.01, task="quadratic_deep", run_dir=tmp_path / "run",
                        logger=[Recorder(str(a)), Recorder(str(b))])
    assert out.status == "completed"
    _, metrics = read_run(tmp_path / "run")
    assert logged_rows(calls(a)) == logged_rows(calls(b)) == metric_rows(metrics)
    with pytest.raises(ConfigError, match="logger must be a logger config name, a RunLogger instance"):
        adaxbench.run("sgd", RUN[2:], task="quadratic_deep", run_dir=tmp_path / "bad", logger=object())


@pytest.mark.parametrize("args, message", [
    (["logger=custom", "logger._target_=collections.OrderedDict"], "is not a RunLogger subclass"),
    (["logger=custom", "logger._target_=loggers_user.Recorder"], "needs the argument 'path'"),
    (["logger=tensorboard", "+logger.project=x"], "logger.project is not a key of the tensorboard logger"),
])
def test_bad_loggers_are_one_line(tmp_path, capsys, args, message):
    assert cli.main(["run", *RUN, *args, f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
