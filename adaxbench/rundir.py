"""The run-directory contract: what a run leaves on disk and how it is read back.

A run dir holds ``run.json`` (a :class:`RunRecord`), ``metrics.parquet`` (tidy rows of
:data:`METRICS_SCHEMA`), ``checkpoint.pt`` while the run can still be resumed, and ``.lock``
while a process trains it.  The runner writes these files, the sweep summary, ``report`` and
``best`` read them; all of them go through this module, which imports no torch (the report
reads runs without it).

- Writers are atomic (a temporary file in the same directory, then ``os.replace``) and give
  files the mode the user's umask allows, like any other file the user creates.
- Readers are tolerant: a file of the wrong shape gives ``(None, problem)``, never an exception.
- :func:`setting_key` says which runs are seeds of one setting: the effective config minus the
  :data:`BOOKKEEPING` keys (where and how a run ran, not what it trained).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

RUN_FILE = "run.json"
METRICS_FILE = "metrics.parquet"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".lock"
ERROR_LOG = "error.log"
# The files the writers below put into a run dir, and the suffix of their temporary files.
RUN_FILES = (RUN_FILE, METRICS_FILE, CHECKPOINT_FILE, ERROR_LOG)
TMP_SUFFIX = ".tmp"

METRIC_COLUMNS = ("step", "epoch", "time", "split", "metric", "value")
METRICS_SCHEMA = pa.schema([("step", pa.int64()), ("epoch", pa.float64()), ("time", pa.float64()),
                            ("split", pa.string()), ("metric", pa.string()), ("value", pa.float64())])
SCHEMA = METRICS_SCHEMA  # the name earlier versions exported

# The metric a run is summed up by when its task names none: the first of these it logged.
MAIN_METRICS = ("test/accuracy", "test/loss", "valid/accuracy", "valid/loss", "train/accuracy", "train/loss")


class Status(str, Enum):
    """``run.json``'s ``status``; str-valued, so the strings on disk stay what they always were."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    __hash__ = str.__hash__  # "completed" and Status.COMPLETED are one key in sets and dicts

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """A result (completed, or diverged: a diverged optimizer is a result); never rerun."""
        return self in (Status.COMPLETED, Status.DIVERGED)


FINISHED = (Status.COMPLETED, Status.DIVERGED)
# run.json's spelling of the non-finite floats (``strict_json``); read back as floats (``read_run_json``).
NON_FINITE = ("inf", "-inf", "nan")


# ---- writers -----------------------------------------------------------------------------------
def umask() -> int:
    try:  # Linux shows it without changing it (os.umask would, for a moment, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class WriteError(OSError):
    """A file could not be written (disk full, no permission, read-only file system); the
    message is one line naming the file.  The previous version of the file is left as it was."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        # pyarrow's strerror is a paragraph; the errno's own text is the one line wanted here.
        reason = os.strerror(cause.errno) if cause.errno else cause.strerror or _first_line(cause)
        super().__init__(cause.errno, f"cannot write {path}: {reason}")
        self.path = Path(path)

    def __str__(self) -> str:
        return self.strerror


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any], mode: int | None = None) -> None:
    """Call ``write(tmp_path)`` and move the result over ``path`` in one step.

    ``path`` is replaced, never written through: a symlink planted there is replaced by the file,
    not followed.  mkstemp creates 0600 files; they get ``mode`` (default 0666 & ~umask, as
    ``open`` would give) before the rename.  An OSError (disk full, no permission) is a
    ``WriteError`` naming ``path``; the temporary file is removed and ``path`` left as it was.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as e:
        raise WriteError(path, e) from e
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from e
        raise


def write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """``Path.write_text``, atomically and without following a link at ``path``."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write, mode)


def remove_orphan_tmp(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writes that were killed before their rename (``.NAME.*.tmp``
    of this module's writers); call it only while holding the run dir's lock."""
    removed = []
    for p in Path(run_dir).glob(f".*{TMP_SUFFIX}"):
        if p.name.startswith(tuple(f".{name}." for name in RUN_FILES)) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def write_json(path: str | os.PathLike, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str, allow_nan=True)
            f.write("\n")
    atomic_write(path, write)


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float spelled as a string of NON_FINITE: run.json is strict
    JSON, which has no inf or NaN (a third-party optimizer's ``float('inf')`` default, a diverged
    run's last evaluation loss)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else "inf" if obj > 0 else "-inf"
    if isinstance(obj, Mapping):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def non_finite_floats(obj: Any) -> Any:
    """``obj`` with every string of NON_FINITE read as the float it spells: ``strict_json`` undone."""
    if isinstance(obj, str) and obj in NON_FINITE:
        return float(obj)
    if isinstance(obj, dict):
        return {k: non_finite_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [non_finite_floats(v) for v in obj]
    return obj


def write_run_json(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """``run_dir``'s run.json (atomically), strict JSON (``strict_json``)."""
    write_json(Path(run_dir) / RUN_FILE, strict_json(record))


class MetricsLog:
    """Column-wise buffer of metric rows, flushed to parquet as a whole table."""

    COLUMNS = METRIC_COLUMNS

    def __init__(self) -> None:
        self.cols: dict[str, list] = {c: [] for c in self.COLUMNS}
        # The rows already converted to Arrow: each save converts only the rows added since.
        self._table: pa.Table = METRICS_SCHEMA.empty_table()

    def __len__(self) -> int:
        return len(self.cols["step"])

    def add(self, step: int, epoch: float, time: float, split: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            self.cols["step"].append(int(step))
            self.cols["epoch"].append(float(epoch))
            self.cols["time"].append(float(time))
            self.cols["split"].append(split)
            self.cols["metric"].append(metric)
            self.cols["value"].append(float(value))

    def truncate(self, n: int) -> None:
        for c in self.cols.values():
            del c[n:]
        if n < self._table.num_rows:
            self._table = self._table.slice(0, n)

    def table(self) -> pa.Table:
        done = self._table.num_rows
        if done < len(self):
            new = pa.table({c: self.cols[c][done:] for c in self.COLUMNS}, schema=METRICS_SCHEMA)
            self._table = pa.concat_tables([self._table, new]).combine_chunks()
        return self._table

    def save(self, path: str | os.PathLike) -> None:
        table = self.table()
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MetricsLog":
        """Strict: raises on a missing file or another schema (the runner must not guess)."""
        table = read_metrics_strict(path)
        log = cls()
        for c in cls.COLUMNS:
            log.cols[c] = table.column(c).to_pylist()
        return log

    def frame(self):
        return self.table().to_pandas()


# ---- the run.json record -----------------------------------------------------------------------
class RecordError(ValueError):
    """A run.json that does not follow the contract; the message is one line naming the field."""


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _expect(ok: bool, name: str, want: str, value: Any) -> None:
    if not ok:
        shown = "" if value is None else " " + (repr(value)[:40] + "…" if len(repr(value)) > 40 else repr(value))
        raise RecordError(f"run.json field {name}: expected {want}, got {_type_name(value)}{shown}")


@dataclass
class RunRecord:
    """The content of ``run.json``.  ``extra`` keeps fields this version does not know."""

    status: Status
    config: dict[str, Any]
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    final: dict[str, float | None] = field(default_factory=dict)
    # The optimizer that ran: its class (module.qualname, however the config named it) and the
    # hyperparameters of its built param groups, class defaults included (absent in older records).
    optimizer_class: str | None = None
    optimizer_hparams: dict[str, Any] | list[dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS = ("status", "error", "config", "overrides", "env", "timing", "throughput", "progress", "final",
              "optimizer_class", "optimizer_hparams")

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.FIELDS}
        d["status"] = Status(self.status).value
        for k in ("optimizer_class", "optimizer_hparams"):  # older records have neither: round-trip them
            if not d[k]:
                del d[k]
        return {**d, **self.extra}

    def write(self, run_dir: str | os.PathLike) -> None:
        record = self.to_json()
        problem = record_problem(record)
        if problem is not None:
            raise RecordError(f"refused to write {Path(run_dir) / RUN_FILE}: {problem}")
        write_run_json(run_dir, record)

    @classmethod
    def from_json(cls, d: Any) -> "RunRecord":
        """Check every field the readers use; raise RecordError naming the first bad one."""
        _expect(isinstance(d, dict), "(top level)", "a JSON object", d)
        for name in ("status", "config"):
            if name not in d:
                raise RecordError(f"run.json has no {name}")
        status = d["status"]
        _expect(isinstance(status, str) and status in Status._value2member_map_, "status",
                "one of " + ", ".join(s.value for s in Status), status)
        _expect(isinstance(d.get("config"), dict), "config", "an object", d.get("config"))
        _expect(d.get("error") is None or isinstance(d.get("error"), str), "error", "a string or null", d.get("error"))
        overrides = d.get("overrides", [])
        _expect(isinstance(overrides, list) and all(isinstance(o, str) for o in overrides), "overrides",
                "a list of strings", overrides)
        _expect(d.get("optimizer_class") is None or isinstance(d["optimizer_class"], str), "optimizer_class",
                "a string or null", d.get("optimizer_class"))
        hparams = d.get("optimizer_hparams")  # an object; a list of param groups is read as its first
        _expect(hparams is None or isinstance(hparams, (dict, list)), "optimizer_hparams", "an object", hparams)
        for name in ("env", "timing", "throughput", "progress", "final"):
            v = d.get(name, {})
            _expect(v is None or isinstance(v, dict), name, "an object", v)
        cfg = d["config"]
        for group in ("task", "optimizer"):
            _expect(isinstance(cfg.get(group), dict), f"config.{group}", "an object", cfg.get(group))
            _expect(isinstance(cfg[group].get("name"), str), f"config.{group}.name", "a string", cfg[group].get("name"))
        seed = cfg.get("seed")
        _expect(seed is None or (isinstance(seed, int) and not isinstance(seed, bool)), "config.seed",
                "an integer", seed)
        progress = d.get("progress") or {}
        for k in ("step", "epoch", "epochs_total"):
            _expect(progress.get(k) is None or _is_number(progress[k]), f"progress.{k}", "a number", progress.get(k))
        for k, v in (d.get("final") or {}).items():
            _expect(v is None or _is_number(v) or v in NON_FINITE, f"final.{k}",
                    f"a number, null or one of {', '.join(NON_FINITE)}", v)
        d = non_finite_floats(d)  # run.json's "inf"/"nan", wherever they are, as the floats they spell
        known = {k: d.get(k) for k in cls.FIELDS if k in d}
        for k in ("env", "timing", "throughput", "progress", "final", "optimizer_hparams"):
            known[k] = known.get(k) or {}
        known["overrides"] = known.get("overrides") or []
        known["status"] = Status(status)
        return cls(**known, extra={k: v for k, v in d.items() if k not in cls.FIELDS})


def record_problem(record: Mapping[str, Any]) -> str | None:
    """What makes a run.json about to be written say what did not happen (None: nothing).
    Checked at every write: a run is never ``completed`` short of its epochs."""
    progress = record.get("progress") or {}
    epoch, total = progress.get("epoch"), progress.get("epochs_total")
    if record.get("status") == Status.COMPLETED.value and _is_number(epoch) and _is_number(total) and epoch < total:
        return f"status completed at epoch {epoch:g} of {total:g}"
    return None


def _json_int(text: str) -> int:
    """An integer of run.json; no record holds one beyond 64 bits (10**400 would overflow every float)."""
    if len(text.lstrip("-")) > 20:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def read_json(path: str | os.PathLike) -> tuple[Any, str]:
    """``(object, "")`` or ``(None, problem)`` for a missing or unparsable file."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            return None, "run.json is not a regular file"
        with open(path) as f:
            return json.load(f, parse_int=_json_int), ""
    except FileNotFoundError:
        return None, "run.json missing"
    except RecursionError:
        return None, "run.json unreadable: nested too deeply"
    except (OSError, ValueError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        return None, f"run.json unreadable: {type(e).__name__}: {msg}"[:200]


def read_run_json(run_dir: str | os.PathLike) -> tuple[Any, str]:
    """``run_dir``'s run.json as ``read_json`` reads it, its non-finite numbers floats wherever they are,
    as this version writes them (``strict_json``: "inf") and as earlier versions did (``Infinity``)."""
    d, problem = read_json(Path(run_dir) / RUN_FILE)
    return non_finite_floats(d), problem


def read_record(run_dir: str | os.PathLike) -> tuple[RunRecord | None, str]:
    """The run.json of ``run_dir`` as a RunRecord, or ``(None, problem)``: never raises."""
    d, problem = read_json(Path(run_dir) / RUN_FILE)  # from_json reads its non-finite numbers
    if d is None:
        return None, problem
    try:
        return RunRecord.from_json(d), ""
    except RecordError as e:
        return None, str(e)


def read_status(run_dir: str | os.PathLike) -> str:
    """The status string of a run dir: a Status value, ``missing`` or ``unreadable``."""
    rec, problem = read_record(run_dir)
    if rec is not None:
        return rec.status.value
    return "missing" if problem == "run.json missing" else "unreadable"


# ---- metrics.parquet ---------------------------------------------------------------------------
def read_metrics_strict(path: str | os.PathLike, dictionary: bool = False) -> pa.Table:
    """The metrics table in the contract's column order and types; raises on anything else."""
    kw = {"read_dictionary": ["split", "metric"]} if dictionary else {}
    table = pq.read_table(path, columns=list(METRIC_COLUMNS), **kw).select(list(METRIC_COLUMNS))
    if dictionary:
        return table.cast(_DICT_SCHEMA)
    return table.cast(METRICS_SCHEMA)


# split/metric may stay dictionary-encoded end to end: pandas categoricals without millions of
# Python strings (the report reads thousands of runs this way).
_DICT = pa.dictionary(pa.int32(), pa.string())
_DICT_SCHEMA = pa.schema([(f.name, _DICT if f.type == pa.string() else f.type) for f in METRICS_SCHEMA])


def read_metrics(path: str | os.PathLike, dictionary: bool = True) -> tuple[pa.Table | None, str]:
    """``(table, "")`` or ``(None, problem)``: a missing, half-written or foreign file is a problem."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, "metrics.parquet is not a regular file"
        return read_metrics_strict(path, dictionary), ""
    except FileNotFoundError:
        return None, "metrics.parquet missing"
    except Exception as e:  # pyarrow raises many types for foreign files; none may stop a reader
        msg = str(e).splitlines()[0] if str(e) else ""
        return None, f"metrics.parquet unreadable: {type(e).__name__}: {msg}"[:200]


# ---- settings ----------------------------------------------------------------------------------
def _get(d: Any, dotted: str, default: Any = None) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, Mapping) or k not in d:
            return default
        d = d[k]
    return d


def effective_lr_schedule(config: Mapping[str, Any]) -> dict[str, Any]:
    """The lr schedule a run uses: ``lr_schedule`` if chosen, else the task's protocol default."""
    sched = _get(config, "lr_schedule") or _get(config, "task.lr_schedule") or {"name": "constant"}
    sched = dict(sched)
    sched.setdefault("warmup_steps", 0)
    return sched


def effective_epochs(config: Mapping[str, Any]) -> Any:
    """``trainer.epochs`` if set, else the task's protocol budget ``task.epochs``."""
    epochs = _get(config, "trainer.epochs")
    return epochs if epochs is not None else _get(config, "task.epochs")


def effective_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with its protocol defaults resolved: ``lr_schedule`` and ``trainer.epochs`` hold
    what the run used, and ``task.lr_schedule`` / ``task.epochs`` (the defaults) are dropped."""
    cfg = json.loads(json.dumps(dict(config), default=str))  # a deep, plain copy
    cfg["lr_schedule"] = effective_lr_schedule(config)
    trainer = cfg.setdefault("trainer", {}) if isinstance(cfg.get("trainer", {}), dict) else {}
    trainer["epochs"] = effective_epochs(config)
    cfg["trainer"] = trainer
    if isinstance(cfg.get("task"), dict):
        cfg["task"].pop("lr_schedule", None)
        cfg["task"].pop("epochs", None)
    cfg.pop("hydra", None)
    return cfg


# Where and how a run ran, not what it trained: two runs that differ only here are seeds of one
# setting (``seed``), or the same run (the rest).  A key also covers everything below it.
BOOKKEEPING = (
    "seed", "resume", "data.root", "data.download",
    "trainer.device", "trainer.progress", "trainer.checkpoint", "trainer.keep_checkpoint", "trainer.save_every_s",
    "trainer.log_every", "trainer.eval_batch_size", "trainer.optimizer_impl", "trainer.compile",
    "trainer.channels_last", "trainer.threads", "logger", "optimizer.allow_extra", "optimizer.create_graph",
)

# The packages whose optimizers the shipped configs name by their public path (``torch.optim.Adam``,
# ``adaxbench.optim.AdaX``): a class of theirs is known by that path however it was spelled
# (``torch.optim.adam.Adam``), so the shipped configs keep the identity their records always had.
_PUBLIC = ("torch.optim", "adaxbench.optim")


def public_class_path(path: str) -> str:
    """``torch.optim.adam.Adam`` -> ``torch.optim.Adam`` (every public optimizer of these packages is
    exported at the top); any other class path as it is."""
    for package in _PUBLIC:
        inner = path[len(package) + 1:].split(".") if path.startswith(package + ".") else []
        if len(inner) > 1 and not any(p.startswith("_") for p in inner):
            return f"{package}.{inner[-1]}"
    return path


def optimizer_identity(record: RunRecord) -> str | None:
    """The class a run's optimizer was, whichever path its config named it by (``pytorch_optimizer.Lion``
    and ``pytorch_optimizer.optimizer.lion.Lion`` are one class, as are ``torch.optim.adam.Adam`` and
    ``torch.optim.Adam``): ``optimizer_class``, else (older records) the provenance of a user's optimizer."""
    cls = record.optimizer_class
    if cls is None:
        prov = (record.env.get("plugins") or {}).get("optimizer") or {}
        if prov.get("module") and prov.get("qualname"):
            cls = f"{prov['module']}.{prov['qualname']}"
    return None if cls is None else public_class_path(cls)


def identity_config(record: RunRecord) -> dict[str, Any]:
    """The record's config with the optimizer's ``_target_`` as its class's one identity (what the
    user wrote stays in run.json), so runs of one class pool however they named it; a class given as
    an argument (SAM's ``base_optimizer``) likewise."""
    optimizer = record.config.get("optimizer")
    if not isinstance(optimizer, dict):
        return record.config
    cls = optimizer_identity(record)
    optimizer = _public_class_args(optimizer)
    return {**record.config, "optimizer": {**optimizer, "_target_": cls} if cls else optimizer}


def _public_class_args(section: dict[str, Any]) -> dict[str, Any]:
    """``section`` with every class argument (``{_target_: hydra.utils.get_class, path: P}``) at its public path."""
    out = {}
    for k, v in section.items():
        if isinstance(v, dict):
            v = _public_class_args(v)
            if v.get("_target_") == "hydra.utils.get_class" and isinstance(v.get("path"), str):
                v = {**v, "path": public_class_path(v["path"])}
        out[k] = v
    return out


def is_bookkeeping(key: str) -> bool:
    return any(key == b or key.startswith(b + ".") for b in BOOKKEEPING)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


# An experiment preset writes its values into the config itself; its name adds nothing (and is
# absent from most records), so ``experiment=NAME`` stays an override but is no config key.
_PRESET_NAME = "experiment"


def setting_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The setting of a run, flattened to dotted keys: its effective config minus BOOKKEEPING."""
    flat = _flatten(effective_config(config))
    return {k: v for k, v in sorted(flat.items()) if not is_bookkeeping(k) and k != _PRESET_NAME}


def setting_key(config: Mapping[str, Any]) -> str:
    """One canonical string per setting: runs with equal keys differ at most in BOOKKEEPING."""
    return json.dumps(setting_of(config), sort_keys=True, default=str)


def setting_changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """How config ``now`` trains otherwise than ``before`` (its setting and seed), one
    ``key: old -> new`` each; a key ``before`` lacks counts only where ``now`` sets it."""
    old, new = setting_of(before), setting_of(now)
    old["seed"], new["seed"] = before.get("seed"), now.get("seed")
    missing = object()
    return [f"{k}: {old.get(k, 'absent')!r} -> {new.get(k, 'absent')!r}" for k in sorted(old.keys() | new.keys())
            if old.get(k, missing) != new.get(k, missing) and not (k not in old and new[k] is None)]


def override_key(override: str) -> str:
    """``+trainer.epochs=3`` -> ``trainer.epochs``; ``hydra/launcher=joblib`` -> ``hydra/launcher``."""
    return override.lstrip("+~").partition("=")[0]


def setting_overrides(overrides: list[str], keep_seed: bool = False) -> list[str]:
    """The overrides that define the setting: Hydra's own and BOOKKEEPING ones dropped."""
    out = []
    for o in overrides:
        key = override_key(o)
        if key.startswith(("hydra.", "hydra/")) or key == "hydra":
            continue
        if is_bookkeeping(key.replace("/", ".")) and not (keep_seed and key == "seed"):
            continue
        out.append(o)
    return out


# ---- summing a run up --------------------------------------------------------------------------
def main_metrics(final: Mapping[str, Any], task: Mapping[str, Any] | None = None) -> list[str]:
    """The metrics a run is summed up by: the task's ``metric`` if it names one, else the first of
    MAIN_METRICS logged, with the loss of the same split beside an accuracy."""
    named = (task or {}).get("metric") if isinstance(task, Mapping) else None
    first = named if named in final else next((m for m in MAIN_METRICS if m in final), None)
    if first is None:
        return []
    split = first.split("/")[0]
    extra = f"{split}/loss"
    return [first] + ([extra] if extra != first and extra in final else [])


def result_line(record: RunRecord, run_dir: str | os.PathLike) -> str:
    """``completed in 41 s: test/accuracy 0.8687, test/loss 0.371 -> runs/...``"""
    seconds = record.timing.get("wall_seconds")
    took = f" in {seconds:.0f} s" if _is_number(seconds) else ""
    parts = []
    for m in main_metrics(record.final, record.config.get("task")):
        v = record.final.get(m)
        parts.append(f"{m} {v:.4g}" if _is_number(v) and math.isfinite(v) else f"{m} {v}")
    why = f" ({record.error})" if record.error else ""
    return f"{record.status.value}{took}{why}" + (f": {', '.join(parts)}" if parts else "") + f" -> {run_dir}"

