"""User code plugged in through ``_target_``: resolve it, check it up front, record where it came from.

A ``_target_`` (Hydra's convention) is a dotted import path: ``mypkg.MyTask``,
``torch.optim.lr_scheduler.StepLR``.  Everything the run config names this way is
imported and its signature checked before any data is read, so a typo or a wrong argument
is one line and exit status 2, not a traceback halfway through a run.  This module is the
resolver only and knows no layer above it: each layer checks the targets it owns with the
helpers here (``tasks.user`` the task, model and dataset, ``optim.schedules`` the lr
schedule, ``train.loggers`` the logger), and ``train.validate.check_config`` calls them.

Some arguments are not configuration but facts only the runner knows (the device, the
number of classes, the total number of steps).  The runner fills in such a *context*
argument when the constructor or function declares a parameter of that name and the
config does not set it; see ``TASK_CONTEXT``, ``MODEL_CONTEXT``, ``SCHEDULE_CONTEXT``.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError, did_you_mean, first_line, not_a_key

# Keys of a ``_target_`` config that are bookkeeping, never constructor arguments.
META_KEYS = ("_target_", "name")
# Targets from these packages are the harness's own or versioned with torch: no file hash.
BUILTIN_PACKAGES = ("adaxbench", "torch", "torchvision")


# Refused whatever Hydra's version: targets that run a command or code named by the config
# (checked on the name given and on the object's own module.qualname, so aliases such as
# logging.os.system are caught).  Hydra's instantiate policy, where installed, is applied too.
DENIED_TARGETS = ("builtins.eval", "builtins.exec", "builtins.compile", "builtins.__import__", "builtins.open",
                  "builtins.breakpoint", "os.system", "os.popen", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                  "os.kill", "os.remove", "os.unlink", "os.rmdir", "os.rename", "os.replace", "os.truncate",
                  "os.chmod", "os.chown", "os.putenv", "shutil.rmtree", "shutil.move", "importlib.import_module",
                  # loaders that unpickle (run code from) a file a config names, and code compilers
                  "torch.load", "torch.serialization", "torch.hub", "torch.package", "torch.utils.cpp_extension",
                  "numpy.load", "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format", "pandas.read_pickle",
                  "joblib.load", "joblib.numpy_pickle")
DENIED_MODULES = ("subprocess", "pty", "runpy", "code", "codeop", "ctypes", "pickle", "_pickle", "marshal", "shelve",
                  "multiprocessing", "pdb", "webbrowser", "dill", "cloudpickle", "_winapi")


def _denied(name: str) -> bool:
    if name.startswith(("posix.", "nt.")):
        name = "os." + name.partition(".")[2]
    parts = name.split(".")
    # any module or function about pickles or subprocesses (pandas.io.pickle, _posixsubprocess.fork_exec,
    # asyncio.create_subprocess_shell, ...), whatever package it lives in
    if any("pickle" in p.lower() or "subprocess" in p.lower() for p in parts):
        return True
    return name.startswith(DENIED_TARGETS) or parts[0] in DENIED_MODULES


def _hydra_resolve(target: str, key: str) -> Any:
    """``_locate(target)`` under the target policy Hydra's ``instantiate`` applies (Hydra 1.3.8+;
    plain ``_locate`` before).  Raises ``InstantiationException`` (refused; no ``__cause__``)
    or an import error."""
    from hydra._internal.utils import _locate  # get_object without its multi-line error log
    try:
        from hydra._internal.instantiate._instantiate2 import _resolve_target
        from hydra._internal.target_policy import (_EXPECTED_TARGET_POLICY_DIGEST, _target_policy_context,
                                                   _validated_target_policy)
    except ImportError:  # a Hydra without a target policy: adaxbench's own list still applies
        return _locate(target)
    with _target_policy_context(_validated_target_policy(_EXPECTED_TARGET_POLICY_DIGEST)):
        return _resolve_target(target, key)


def locate(target: Any, key: str) -> Any:
    """The object a dotted path names, or a one-line ``ConfigError``.  Every ``_target_``
    adaxbench resolves itself comes here and passes one policy: Hydra's ``instantiate`` target
    policy plus ``DENIED_TARGETS`` / ``DENIED_MODULES`` (no shell commands, no code from strings)."""
    from hydra._internal.utils import _locate
    from hydra.errors import InstantiationException

    if target == "???":  # left open in configs/task/custom*.yaml
        raise ConfigError(f"{key}._target_ is missing: give {key}._target_=mypkg.MyClass (your own class)")
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{key}._target_ must be a dotted import path such as mypkg.MyClass, got {target!r}")
    refused = f"{key}._target_={target!r} is refused: it could run commands or code named by a config " \
              "(see docs/records-and-safety.md); use a class or function of your own"
    if _denied(target):
        raise ConfigError(refused)
    try:
        obj = _hydra_resolve(target, key)
    except Exception as e:
        if isinstance(e, InstantiationException) and e.__cause__ is None:  # Hydra's own verdict
            if "Expected a callable target" not in str(e):
                raise ConfigError(refused) from None
            obj = _locate(target)  # authorized, but not callable: the caller says what it expected
        else:
            cause = e
            while cause.__cause__ is not None:
                cause = cause.__cause__
            hint = _close_target(target) or "; is its module on PYTHONPATH?"
            raise ConfigError(f"{key}._target_={target!r} cannot be imported ({first_line(cause)}){hint}") from None
    identity = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if _denied(identity):
        raise ConfigError(refused)
    return obj


def _close_target(target: str) -> str:
    """`` (did you mean mypkg.MyClass?)`` where the module (or class) of ``target`` that is there has
    a name close to the part that is not (``torch.optim.Adamm``); imports only what Hydra's lookup
    of ``target`` imported."""
    import importlib

    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:
            continue
        for j in range(i, len(parts)):
            if not hasattr(obj, parts[j]):
                prefix = ".".join(parts[:j]) + "."
                names = [n for n in dir(obj) if not n.startswith("_") and not _denied(prefix + n)]
                return did_you_mean(parts[j], names, prefix)
            obj = getattr(obj, parts[j])
        return ""
    return ""


def accepts(fn: Callable, name: str) -> bool:
    """Whether ``fn`` can be called with the keyword argument ``name``."""
    params = _signature(fn).parameters
    return name in params and params[name].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                        inspect.Parameter.VAR_POSITIONAL)


def _signature(fn: Callable) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: accept anything
        return inspect.Signature([inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])


def check_arguments(fn: Callable, kwargs: Mapping[str, Any], key: str, *, context: tuple[str, ...] = (),
                    positional: int = 0) -> None:
    """Check that ``fn(<positional args>, **kwargs, <declared context>)`` binds: unknown keys
    (unless it takes ``**kwargs``) and missing required arguments are one-line errors."""
    sig = _signature(fn)
    params = list(sig.parameters.values())
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)][positional:]
    names = [p.name for p in named]
    target = getattr(fn, "__qualname__", repr(fn))
    for k in kwargs:
        if k not in names and not var_kw:
            raise not_a_key(k, f"an argument of {target}", [n for n in names if n not in context], f"{key}.")
    for p in named:
        if p.default is p.empty and p.kind != p.POSITIONAL_ONLY and p.name not in kwargs and p.name not in context:
            raise ConfigError(f"{key}: {target} needs the argument {p.name!r}; add +{key}.{p.name}=VALUE")


def call_with_context(fn: Callable, kwargs: Mapping[str, Any], context: Mapping[str, Any], *args: Any) -> Any:
    """``fn(*args, **kwargs)`` plus each context value whose name ``fn`` declares and
    ``kwargs`` leaves unset."""
    full = dict(kwargs)
    for name, value in context.items():
        if name not in full and accepts(fn, name):
            full[name] = value
    return fn(*args, **full)


def arguments(cfg: Mapping[str, Any], meta: tuple[str, ...] = META_KEYS) -> dict[str, Any]:
    """Constructor arguments of a ``_target_`` config: every key but the bookkeeping ones;
    lists become tuples (as torch's betas=(0.9, 0.999))."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k not in meta}


# -------------------------------------------------------------------------------- provenance


def adaxbench_version() -> str:
    """The installed distribution's version (works from a wheel, where there is no git
    commit to record); the package's own ``__version__`` when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adaxbench")
    except PackageNotFoundError:
        from ._version import __version__
        return __version__


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provenance(obj: Any) -> dict[str, Any]:
    """Where a user's class or function came from: module, qualified name, file, the sha256
    of the file's bytes and of the object's own source, and the version of the installed
    distribution that provides it (if any)."""
    module = getattr(obj, "__module__", None)
    out: dict[str, Any] = {"module": module, "qualname": getattr(obj, "__qualname__", None),
                           "file": None, "sha256": None, "source_sha256": None, "distribution": None}
    try:
        path = inspect.getsourcefile(obj) or inspect.getfile(obj)
        out["file"] = os.path.abspath(path)
        out["sha256"] = _sha256(Path(path).read_bytes())
    except (TypeError, OSError):
        pass
    try:
        out["source_sha256"] = _sha256(inspect.getsource(obj).encode())
    except (TypeError, OSError):
        pass
    top = (module or "").split(".")[0]
    if top:
        from importlib.metadata import packages_distributions, version

        try:
            dists = packages_distributions().get(top) or []
            if dists:
                out["distribution"] = f"{dists[0]}=={version(dists[0])}"
        except Exception:  # broken metadata of some installed package: provenance stays partial
            pass
    return out


def file_provenance(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path).expanduser()
    try:
        return {"file": str(p.resolve()), "sha256": _sha256(p.read_bytes())}
    except OSError:
        return {"file": str(p), "sha256": None}


def user_targets(cfg: Mapping[str, Any]) -> dict[str, str]:
    """``{config key: _target_}`` of every target in the run config that is not the harness's
    own (adaxbench, torch, torchvision)."""
    task = cfg.get("task") or {}
    sched = cfg.get("lr_schedule") or task.get("lr_schedule") or {}
    found = {"optimizer": (cfg.get("optimizer") or {}).get("_target_"), "task": task.get("_target_"),
             "lr_schedule": sched.get("_target_") if isinstance(sched, Mapping) else None}
    for part in ("model", "dataset"):
        if isinstance(task.get(part), Mapping):
            found[f"task.{part}"] = task[part].get("_target_")
    return {k: v for k, v in found.items()
            if isinstance(v, str) and v.split(".")[0] not in BUILTIN_PACKAGES}


def run_provenance(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``env`` entries of run.json that say what code ran: adaxbench's version and, for
    each user target (and a dataset file), its provenance."""
    plugins: dict[str, Any] = {}
    for key, target in user_targets(cfg).items():
        try:
            plugins[key] = {"target": target, **provenance(locate(target, key))}
        except ConfigError as e:
            plugins[key] = {"target": target, "error": str(e)}
    dataset = (cfg.get("task") or {}).get("dataset")
    if isinstance(dataset, str) and os.path.isfile(os.path.expanduser(dataset)):
        plugins["task.dataset"] = file_provenance(dataset)
    return {"adaxbench_version": adaxbench_version(), "plugins": plugins}
