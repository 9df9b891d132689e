# Hydra imports this package to read the config tree: register the run-config schema
# (adaxbench.train.schema) that configs/config.yaml names first in its defaults.
from adaxbench.train.schema import register as _register

_register()
