"""adaxbench's Hydra launcher plugin ``packed`` (``hydra/launcher=packed``): see
``adaxbench.train.packed``. Hydra finds it by scanning the ``hydra_plugins`` namespace."""
