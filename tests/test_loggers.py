"""Loggers mirror the record: TensorBoard event files and an offline W&B run hold exactly the
rows of metrics.parquet; the console gets a line per epoch when the progress bar is off."""

from __future__ import annotations

import json
import logging
import struct

import pytest

from conftest import compose_cfg, read_run
from adaxbench.train.loggers import check_logger
from adaxbench.train.runner import run_in_dir
from adaxbench.train.validate import ConfigError, check_config

RUN = ["task=quadratic_deep", "optimizer=sgd", "optimizer.lr=0.01", "trainer.epochs=2", "trainer.log_every=2",
       "trainer.progress=false"]


def train(tmp_path, overrides):
    result = run_in_dir(compose_cfg(overrides), tmp_path / "run", overrides)
    assert result.status == "completed", result.error
    return read_run(tmp_path / "run")


def as_rows(metrics):
    return {(f"{r.split}/{r.metric}", int(r.step)): r.value for r in metrics.itertuples()}


def test_tensorboard_events_read_back_and_console_line(tmp_path, caplog):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with caplog.at_level(logging.INFO, logger="adaxbench"):
        info, metrics = train(tmp_path, RUN + ["logger=tensorboard"])
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    logged = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    expected = as_rows(metrics)
    assert logged.keys() == expected.keys()
    assert all(logged[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())  # float32 in the events
    assert "config/text_summary" in events.Tags()["tensors"]  # the resolved config, as text
    # The HParams table: SGD's booleans (nesterov, maximize) as booleans, numbers as numbers, the status.
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    def hparams_data(tag):
        data = plugin_data_pb2.HParamsPluginData()
        data.ParseFromString(events.SummaryMetadata(f"_hparams_/{tag}").plugin_data.content)
        return data

    session = hparams_data("session_start_info").session_start_info.hparams
    assert session["optimizer.nesterov"].WhichOneof("kind") == "bool_value"
    assert session["optimizer.nesterov"].bool_value is False and session["optimizer.maximize"].bool_value is False
    assert session["optimizer.lr"].number_value == 0.01 and session["seed"].number_value == 0
    assert session["optimizer"].string_value == "sgd" and session["status"].string_value == "completed"
    infos = {i.name: i.type for i in hparams_data("experiment").experiment.hparam_infos}
    assert infos["optimizer.nesterov"] == api_pb2.DATA_TYPE_BOOL and infos["optimizer.lr"] == api_pb2.DATA_TYPE_FLOAT64
    assert {m.name.tag for m in hparams_data("experiment").experiment.metric_infos} == {
        k for k in info["final"] if k.split("/")[0] in ("train", "test")}
    # The console line per epoch (the progress bar is off).
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert len(lines) == 2 and lines[1].startswith("quadratic_deep/sgd epoch 2/2 step 14 ")
    assert f"test/loss {info['final']['test/loss']:.4g}" in lines[1]


def wandb_history(run_dir):
    """History rows of the offline W&B run in ``run_dir``: its .wandb file is a LevelDB log
    (a 7-byte W&B header, then 32 KiB blocks of crc32|length|type-framed chunks) of
    protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    raw, pos, chunk, rows = path.read_bytes(), 7, b"", []
    assert raw.startswith(b":W&B")
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:  # block trailer
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_wandb_offline_run_holds_the_same_rows(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install '.[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    _, metrics = train(tmp_path, RUN + ["logger=wandb", "trainer.epochs=1", "logger.tags=[smoke]"])
    logged = {(k, row["_step"]): v for row in wandb_history(tmp_path / "run") for k, v in row.items()
              if "/" in k}
    expected = as_rows(metrics)
    assert logged.keys() == expected.keys()
    assert all(logged[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())


def test_logger_checks():
    with pytest.raises(ConfigError, match="logger='mlflow' is unknown; accepted: none, tensorboard, wandb"):
        check_logger({"name": "mlflow"})
    with pytest.raises(ConfigError, match="logger.mode must be online, offline, disabled or null"):
        check_config(compose_cfg(["task=quadratic_deep", "logger=wandb", "logger.mode=sometimes"]))


def test_missing_logger_package_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match=r"logger=tensorboard needs the tensorboard package: "
                                          r"pip install 'adaxbench\[tensorboard\]'"):
        check_config(compose_cfg(["task=quadratic_deep", "logger=tensorboard"]))


def test_a_failing_logger_never_stops_the_run(tmp_path, monkeypatch, caplog):
    from adaxbench.train import loggers

    def broken(self, *args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(loggers.TensorBoardLogger, "log", broken)
    pytest.importorskip("tensorboard")
    with caplog.at_level(logging.WARNING, logger="adaxbench"):
        info, _ = train(tmp_path, RUN + ["logger=tensorboard", "trainer.epochs=1"])
    assert info["status"] == "completed"
    assert any("TensorBoardLogger failed in log (RuntimeError: disk full)" in r.getMessage() for r in caplog.records)
