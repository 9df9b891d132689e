"""A user's own logger: appends every call it gets to a JSON-lines file."""

import json

from adaxbench.train.loggers import RunLogger


class Recorder(RunLogger):
    def __init__(self, path: str, tag: str = ""):
        self.path, self.tag = path, tag

    def _write(self, *entry) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps([self.tag, *entry], default=str) + "\n")

    def start(self, run_dir, config, step) -> None:
        self._write("start", config.get("optimizer_hparams"), step)

    def log(self, split, values, step, epoch) -> None:
        self._write("log", split, dict(values), step)

    def epoch_end(self, epoch, epochs_total, step, final, train_seconds) -> None:
        self._write("epoch_end", epoch, epochs_total, step, dict(final))

    def close(self, status) -> None:
        self._write("close", status)


def calls(path):
    with open(path) as f:
        return [json.loads(line) for line in f]
