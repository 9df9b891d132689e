"""How the report writes a value: one spelling in labels, tables and notes alike."""

from __future__ import annotations

from typing import Any


def fmt_num(v: Any) -> str:
    """A config value as text: floats in their shortest form (``0.001``, ``1e-08``), sequences as
    ``(0.9,0.999)``, anything else as ``str``."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(fmt_num(x) for x in v) + ")"
    return str(v)
