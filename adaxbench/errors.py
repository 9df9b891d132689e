"""The config vocabulary's error and the words its messages share, at the bottom of the layers
so every layer can raise it.

Each layer checks the part of a run config it owns (``tasks`` its task, model and dataset,
``optim`` its lr schedule, ``train`` the rest) and says what is wrong as a ``ConfigError``:
one line, what was given and what is accepted; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

from typing import Any, Iterable


class ConfigError(ValueError):
    """A user-facing configuration problem (one line)."""


# ``KeyboardInterrupt(SAID)``: a stopped run has printed its line (the signal, where its progress is);
# the CLI ends the sweep without another.
SAID = "said"


def first_line(e: Any) -> str:
    """The first non-blank line of an error's text (its type's name where it has none)."""
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return text or (type(e).__name__ if isinstance(e, BaseException) else "")


def did_you_mean(key: str, accepted: Iterable[Any], prefix: str = "") -> str:
    import difflib

    close = difflib.get_close_matches(key, [str(a) for a in accepted], n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def not_a_key(key: str, where: str, accepted: list[Any] | None, prefix: str = "", hint: str = "",
              listing: str = "accepted") -> ConfigError:
    """``{prefix}{key} is not {where}``, with the key likely meant (else ``hint``) and the keys
    accepted there (None: not known): the one shape of every unknown-key message."""
    text = f"{prefix}{key} is not {where}{did_you_mean(key, accepted or [], prefix) or hint}"
    if accepted is not None:
        text += f"; {listing}: {', '.join(map(str, accepted)) or '(none)'}"
    return ConfigError(text)
