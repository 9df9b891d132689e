"""adaxbench's Hydra config tree (shipped inside the package as ``adaxbench.configs``)."""

from omegaconf import OmegaConf


def _class_name(*, _parent_) -> str:
    """The last part of the sibling ``_target_`` (``mypkg.MyTask`` -> ``MyTask``); ``custom``
    while it is still missing, so the config stays resolvable for the one-line error."""
    if OmegaConf.is_missing(_parent_, "_target_"):
        return "custom"
    return str(_parent_["_target_"]).rsplit(".", 1)[-1]


# ${adaxbench.class_name:} as a task's name: the default name of a user's own task.
if not OmegaConf.has_resolver("adaxbench.class_name"):
    OmegaConf.register_new_resolver("adaxbench.class_name", _class_name)


# Hydra imports this package to read the config tree: register the run-config schema
# (adaxbench.train.schema) that configs/config.yaml names first in its defaults.
from adaxbench.train.schema import register as _register

_register()
