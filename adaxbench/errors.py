"""The config vocabulary's error, at the bottom of the layers so every layer can raise it.

Each layer checks the part of a run config it owns (``tasks`` its task, model and dataset,
``optim`` its lr schedule, ``train`` the rest) and says what is wrong as a ``ConfigError``:
one line, what was given and what is accepted; the CLI prints it and exits with status 2.
"""


class ConfigError(ValueError):
    """A user-facing configuration problem (one line)."""
