"""The house style of every adaxbench figure (matplotlib Figure objects, no pyplot or backend
state): sizes that read at ~900 px, fonts, one colour per optimizer name, log ticks without mathtext,
one legend per figure, countable series, and PNG + SVG written atomically.  The report's figures
(figures.py) and ``best``'s effort figure (effort.py) are drawn with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.text
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from ..rundir import atomic_write

RC = {"svg.fonttype": "none", "svg.hashsalt": "adaxbench", "font.size": 9, "axes.grid": True,
      "grid.alpha": 0.3, "legend.fontsize": 8, "legend.framealpha": 0.8, "savefig.dpi": 120}
WIDTH = 7.5  # inches: 900 px at savefig.dpi 120, so text stays ~9 pt when GitHub shows it ~900 px wide
_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class _LogTicks(LogFormatter):
    """One tick style per axis, without mathtext (its layout dominates the draw time):
    plain numbers (0.01 … 1000) when the whole axis lies in that range, else 10ᵏ (and 2×10ᵏ
    for labelled minor ticks)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        if 1e-2 <= min(vmin, vmax) and max(vmin, vmax) <= 1e4:
            return f"{x:g}"
        k = math.floor(math.log10(abs(x)) + 1e-9)
        m = round(x / 10**k, 6)
        return f"10{str(k).translate(_SUP)}" if m == 1 else f"{m:g}×10{str(k).translate(_SUP)}"


def optimizer_colors(names: list[str]) -> dict[str, Any]:
    """A fixed colour per optimizer name (sorted, tab10 then tab20), shared by every figure."""
    names = sorted(set(names))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def save(fig: Figure, out_dir: Path, stem: str) -> Path:
    """Write ``stem.png`` and ``stem.svg``; returns the PNG path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(_LogTicks(labelOnlyBase=True))
                # Label minor ticks only when the axis spans at most ~1.5 decades.
                axis.set_minor_formatter(_LogTicks(labelOnlyBase=False, minor_thresholds=(1.5, 0.4)))
    for text in fig.findobj(matplotlib.text.Text):  # names are plain text: "$" is no mathtext
        text.set_parse_math(False)
    with matplotlib.rc_context(RC):
        atomic_write(out_dir / f"{stem}.png", lambda tmp: fig.savefig(tmp, format="png"))
        fig.set_layout_engine("none")  # the layout is fixed by the first draw; don't redo it
        atomic_write(out_dir / f"{stem}.svg", lambda tmp: fig.savefig(tmp, format="svg"))
    return out_dir / f"{stem}.png"


def _new(nrows: int, ncols: int, h: float = 3.0, w: float = WIDTH) -> tuple[Figure, np.ndarray]:
    """A figure ``w`` inches wide (all panels together), ``h`` inches per row."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(w, h * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


def _legend(fig: Figure, axes, where=None) -> None:
    """One legend for all panels, built from every panel's handles (deduplicated by label), so
    only series that were actually drawn appear.  ``where``: a spare axis to hold it, else
    below the panels."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if not handles:
        return
    if where is not None:
        where.axis("off")
        where.legend(handles.values(), handles.keys(), loc="center", frameon=False)
    else:
        # As many columns as fit the figure's width (~8.5 px per character at legend.fontsize 8,
        # plus the line sample and padding).
        width = fig.get_figwidth() * RC["savefig.dpi"]
        longest = max(len(k) for k in handles) * 8.5 + 70
        fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                   ncols=max(1, min(3, len(handles), int(width // longest))), frameon=False)


def _note(ax, text: str) -> None:
    """An empty panel that says why it is empty (instead of silently dropping it)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, color="0.35")


class _Series:
    """Hands out gids, so every data series is countable in the SVG."""

    def __init__(self, prefix: str = "series") -> None:
        self.n = 0
        self.prefix = prefix

    def gid(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n}"


def _parts(metric: str) -> tuple[str, str]:
    """``test/accuracy`` -> (split, name) of a metric the analysis checked."""
    split, name = metric.split("/")
    return split, name


def _pretty(metric: str) -> str:
    return " ".join(_parts(metric))
