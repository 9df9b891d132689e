"""Our per-epoch curves inside or outside a published 10-seed spread (DeepOBS's tuned settings).

``references/deepobs_curves.csv`` holds DeepOBS's test accuracy and loss after every epoch, for every seed of
every tuned setting of ``references/deepobs.yaml`` (written by ``scripts/deepobs_curves.py``; its header says
where each number comes from). For a task whose runs train one of those settings (same optimizer, SGD's
momentum and lr), :func:`spread_line` says in one line how many of our logged epochs lie inside the range
[min, max] of DeepOBS's 10 seeds at that epoch, and which do not.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .aggregate import split_metric
from .load import RunSet
from .references import DATA_DIR

CURVES_FILE = DATA_DIR / "deepobs_curves.csv"
SOURCE = "DeepOBS_Baselines v1.1"
# A value on the range's edge up to float32 rounding counts as inside: DeepOBS logged float32 losses (stored to
# 8 significant digits), so quadratic_deep's initial loss 353.44676 equals ours (353.4468) only to ~1e-7.
ROUNDING = 1e-6


@lru_cache(maxsize=2)
def load_curves(path: Path = CURVES_FILE) -> pd.DataFrame:
    """The published curves, long: task, optimizer, momentum, lr, seed, metric, epoch, value."""
    wide = pd.read_csv(path, comment="#")
    long = wide.melt(id_vars=["task", "optimizer", "momentum", "lr", "seed", "metric"], var_name="epoch")
    long["epoch"] = long["epoch"].str[1:].astype(int)
    return long


def _same(a: Any, b: float) -> bool:
    return a is not None and math.isclose(float(a), float(b), rel_tol=1e-6)


def _matches(setting: Mapping[str, Any], optimizer: str, momentum: float, lr: float) -> bool:
    if setting.get("optimizer.name") != optimizer or not _same(setting.get("optimizer.lr"), lr):
        return False
    return math.isnan(momentum) or _same(setting.get("optimizer.momentum", 0.0), momentum)


def spread_line(rs: RunSet, task: str, metric: str, setting_keys: Iterable[str],
                curves: pd.DataFrame | None = None) -> str | None:
    """One line for ``task``: per setting of ours that is a published tuned setting, how many of our epochs'
    seed-mean ``metric`` lie inside the published seeds' [min, max] at the same epoch; None where none is."""
    curves = load_curves() if curves is None else curves
    pub = curves[(curves["task"] == task) & (curves["metric"] == metric)]
    if pub.empty:
        return None
    split, name = split_metric(metric)
    ours = rs.select(split, name)
    parts = []
    for (opt, momentum, lr), ref in pub.groupby(["optimizer", "momentum", "lr"], dropna=False):
        keys = [k for k in setting_keys if _matches(rs.settings[k], opt, momentum, lr)]
        for key in keys:
            runs = rs.runs.index[rs.runs["setting"] == key]
            rows = ours[ours["run"].isin(runs) & (ours["epoch"] % 1 == 0)]
            if rows.empty:
                continue
            mean = rows.groupby("epoch")["value"].mean()
            band = ref.groupby("epoch")["value"].agg(["min", "max", "size"])
            mean = mean[mean.index.isin(band.index)]
            outside = [(int(e), v, lo, hi) for e, v in mean.items()
                       for lo, hi in [(band.at[e, "min"], band.at[e, "max"])]
                       if not lo - ROUNDING * abs(lo) <= v <= hi + ROUNDING * abs(hi)]
            seeds = int(band["size"].min())
            cfg = rs.settings[key]
            label = opt if math.isnan(momentum) else f"{opt} momentum {momentum:g}"
            text = (f"{label} lr {lr:.3g}: {len(mean) - len(outside)} of {len(mean)} epochs inside DeepOBS's "
                    f"{seeds}-seed range (mean of our {len(runs)} seed{'s' * (len(runs) > 1)})")
            if outside:
                shown = ", ".join(f"epoch {e} {v:.4g} {'below' if v < lo else 'above'} [{lo:.4g}, {hi:.4g}]"
                                  for e, v, lo, hi in outside[:3])
                text += f"; outside: {shown}" + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
            if cfg.get("task.valid_size") not in (0, None) or cfg.get("task.batch_size") not in (128, None):
                text += (f" — not DeepOBS-TF's conditions (valid_size {cfg.get('task.valid_size')}, batch "
                         f"{cfg.get('task.batch_size')}; theirs: all training images, batch 128)")
            parts.append(text)
    if not parts:
        return None
    return f"Per epoch against {SOURCE} ({metric}): " + "; ".join(parts) + "."
